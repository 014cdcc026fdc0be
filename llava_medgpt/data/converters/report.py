"""MIMIC-CXR findings generation (stage 1): single-panel studies, and multi-view/longitudinal studies
(all views of the current study plus the previous study of the same subject).

Raw layout (MIMIC-CXR-JPG 2.x, credentialed; the root is ${MIMIC_CXR_ROOT}):
    mimic-cxr-2.0.0-metadata.csv[.gz]  dicom_id,subject_id,study_id,PerformedProcedureStepDescription,
                                       ViewPosition,Rows,Columns,StudyDate,StudyTime,...
    mimic-cxr-2.0.0-split.csv[.gz]     dicom_id,study_id,subject_id,split   (optional; only "train" is used)
    files/p10/p10000032/s50414267/<dicom_id>.jpg
    files/p10/p10000032/s50414267.txt  the free-text report (from MIMIC-CXR's mimic-cxr-reports; may live
                                       under another root, see --reports-root)

`read_mimic_cxr_studies` (file access) turns this layout into one study row per study, ordered by subject,
StudyDate and StudyTime, each carrying its previous study; the converters below are pure functions of that row.

Study row -> record (mimic_cxr_single):
    raw:    {"subject_id": "10000032", "study_id": "50414267", "study_date": "21800506", "split": "train",
             "images": [{"dicom_id": "02aa804e-...", "view": "PA",
                         "path": "files/p10/p10000032/s50414267/02aa804e-....jpg"}],
             "report": "FINAL REPORT\\n ... FINDINGS: No focal consolidation. ... IMPRESSION: ...",
             "prior": null}
    record: {"id": "mimic_cxr_single-50414267",
             "image": "files/p10/p10000032/s50414267/02aa804e-....jpg",
             "conversations": [{"from": "human", "value": "<image>\\nChest X-ray (PA).\\n"
                                "Write the FINDINGS section of the radiology report."},
                               {"from": "gpt", "value": "No focal consolidation. ..."}]}
"""

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator, Mapping

from ...constants import IMAGE_MARKER
from ...rows import read_rows
from .common import SkipRow, gpt, human, make_record

FINDINGS_INSTRUCTION = "Write the FINDINGS section of the radiology report."
LONGITUDINAL_INSTRUCTION = ("Write the FINDINGS section of the radiology report for the current study, "
                            "comparing with the prior study where relevant.")
# A section header: a line starting with upper-case words and a colon ("FINDINGS:", "WET READ:").
_SECTION_RE = re.compile(r"^[ \t]*([A-Z][A-Z /&()-]*[A-Z)]):", re.MULTILINE)


def parse_report_sections(report: str) -> dict[str, str]:
    """{"FINDINGS": ..., "IMPRESSION": ..., ...}: each header's text with whitespace collapsed."""
    matches = list(_SECTION_RE.finditer(report))
    sections = {}
    for match, following in zip(matches, matches[1:] + [None]):
        end = following.start() if following else len(report)
        sections[match.group(1).strip()] = " ".join(report[match.end():end].split())
    return sections


def findings(report: str | None) -> str:
    if report is None:
        raise SkipRow("report file missing")
    text = parse_report_sections(report).get("FINDINGS", "")
    if not text:
        raise SkipRow("report has no FINDINGS section")
    return text


def _check_train(row: Mapping[str, Any]) -> None:
    split = row.get("split")
    if split is not None and split != "train":
        raise SkipRow(f"study in split {split!r}")


def _views(images: list[dict]) -> str:
    return ", ".join(image["view"] or "unknown view" for image in images)


def convert_mimic_single(row: Mapping[str, Any], index: int) -> list[dict]:
    _check_train(row)
    images = row["images"]
    if len(images) != 1:
        raise SkipRow("multi-image study (single-panel set takes one-image studies)")
    target = findings(row.get("report"))
    prompt = f"{IMAGE_MARKER}\nChest X-ray ({_views(images)}).\n{FINDINGS_INSTRUCTION}"
    return [make_record(f"mimic_cxr_single-{row['study_id']}", [human(prompt), gpt(target)], [images[0]["path"]])]


def convert_mimic_longitudinal(row: Mapping[str, Any], index: int) -> list[dict]:
    """Current study's views (and the previous study's views, if any) -> current FINDINGS.

    Images are listed prior first, in the order their markers appear in the prompt.
    """
    _check_train(row)
    images, prior = row["images"], row.get("prior")
    if len(images) < 2 and not prior:
        raise SkipRow("one image and no prior study (single-panel set)")
    target = findings(row.get("report"))
    parts, paths = [], []
    if prior:
        parts.append(f"Prior study ({prior['study_date']}; {_views(prior['images'])}):")
        parts += [IMAGE_MARKER] * len(prior["images"])
        paths += [image["path"] for image in prior["images"]]
    parts.append(f"Current study ({row['study_date']}; {_views(images)}):")
    parts += [IMAGE_MARKER] * len(images)
    paths += [image["path"] for image in images]
    parts.append(LONGITUDINAL_INSTRUCTION if prior else FINDINGS_INSTRUCTION)
    record_id = f"mimic_cxr_longitudinal-{row['study_id']}"
    return [make_record(record_id, [human("\n".join(parts)), gpt(target)], paths)]


# ------------------------------------------------------------------------------------------ reading


def _csv_path(root: Path, stem: str) -> Path | None:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (root / name).is_file():
            return root / name
    return None


def _study_dir(subject_id: str, study_id: str) -> str:
    return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}"


def read_mimic_cxr_studies(root: str | os.PathLike, reports_root: str | os.PathLike | None = None) -> Iterator[dict]:
    """Study rows (see module docstring) from a MIMIC-CXR-JPG folder; reports are read from `reports_root`
    (default: `root`) at files/pXX/pYYYYYYY/sZZZZZZZZ.txt; a missing report gives report=None.
    """
    root = Path(root)
    reports_root = Path(reports_root) if reports_root else root
    metadata = _csv_path(root, "mimic-cxr-2.0.0-metadata")
    if metadata is None:
        raise FileNotFoundError(f"{root}: no mimic-cxr-2.0.0-metadata.csv[.gz]")
    studies: dict[tuple[str, str], dict] = {}
    for line in read_rows(metadata, strict=True):
        subject, study = line["subject_id"].strip(), line["study_id"].strip()
        entry = studies.setdefault((subject, study), {
            "subject_id": subject, "study_id": study,
            "study_date": line["StudyDate"].strip(), "study_time": (line.get("StudyTime") or "").strip(),
            "images": [],
        })
        entry["images"].append({
            "dicom_id": line["dicom_id"].strip(),
            "view": (line.get("ViewPosition") or "").strip(),
            "path": f"{_study_dir(subject, study)}/{line['dicom_id'].strip()}.jpg",
        })
    splits: dict[str, str] = {}
    split_file = _csv_path(root, "mimic-cxr-2.0.0-split")
    if split_file is not None:
        splits = {line["study_id"].strip(): line["split"].strip() for line in read_rows(split_file, strict=True)}

    by_subject: dict[str, list[dict]] = defaultdict(list)
    for entry in studies.values():
        by_subject[entry["subject_id"]].append(entry)
    for subject in sorted(by_subject):
        ordered = sorted(by_subject[subject], key=lambda s: (s["study_date"], _time(s["study_time"]), s["study_id"]))
        previous = None
        for entry in ordered:
            entry["images"].sort(key=lambda image: image["dicom_id"])
            report_path = reports_root / f"{_study_dir(subject, entry['study_id'])}.txt"
            report = report_path.read_text(encoding="utf-8") if report_path.is_file() else None
            row = dict(entry, report=report, split=splits.get(entry["study_id"]) if splits else None)
            row["prior"] = None if previous is None else {
                "study_id": previous["study_id"], "study_date": previous["study_date"], "images": previous["images"],
            }
            yield row
            previous = entry


def _time(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0
