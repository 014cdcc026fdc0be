"""MIMIC-CXR findings generation (multi-view & longitudinal) and impression generation, from the official
MIMIC-CXR-JPG layout under a user-supplied folder (credentialed data; no hub copy):

    mimic-cxr-2.0.0-split.csv[.gz]      dicom_id, study_id, subject_id, split (train / validate / test)
    mimic-cxr-2.0.0-metadata.csv[.gz]   dicom_id, subject_id, study_id, ViewPosition, StudyDate (YYYYMMDD),
                                        StudyTime (HHMMSS.fff as a number, no leading zero), ...
    files/p10/p10000032/s50414267/<dicom_id>.jpg
    files/p10/p10000032/s50414267.txt   the free-text report (from mimic-cxr-reports.zip)

One item per study of the split that has the wanted report section and at least one image: the study's
views (PA, AP, lateral, ... then by dicom_id) followed, when `longitudinal` is on, by the views of the
subject's most recent earlier study.
"""

import math
import re
from collections import defaultdict
from pathlib import Path

from ...rows import read_rows
from .base import GENERATION, BadRecord, EvalItem, ImageRef, TaskConfig
from .sources import MissingData

_VIEW_ORDER = {"PA": 0, "AP": 1, "LATERAL": 2, "LL": 3}
# A report section header: "FINDINGS:", "IMPRESSION:", "COMPARISON:" at the start of a line.
_HEADER_RE = re.compile(r"^\s*([A-Z][A-Z /&]{2,40}):", re.MULTILINE)


def report_section(report: str, section: str) -> str | None:
    """The text of one upper-case headed section ("FINDINGS", "IMPRESSION"), whitespace collapsed."""
    headers = list(_HEADER_RE.finditer(report))
    for n, header in enumerate(headers):
        if header.group(1).strip() == section:
            end = headers[n + 1].start() if n + 1 < len(headers) else len(report)
            text = " ".join(report[header.end():end].split())
            return text or None
    return None


def _read_table(root: Path, stem: str) -> list[dict]:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (root / name).is_file():
            return list(read_rows(root / name, strict=True))
    raise MissingData(f"{stem}.csv[.gz] not found under {root}")


def _study_time(value: str | None) -> float:
    """StudyTime is an HHMMSS.fff number written without leading zeros ("84801.265" is 08:48), so it is compared
    as a number: as text it would sort after "213014.531" (21:30) of the same day. Missing or unreadable: 0."""
    try:
        time = float(value)
    except (TypeError, ValueError):
        return 0.0
    return time if math.isfinite(time) else 0.0


def _study_dir(subject_id: str, study_id: str) -> str:
    return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}"


def mimic_records(config: TaskConfig, root: Path, split: str) -> list[dict]:
    """One record per study of `split`: its images, its prior study's images and its report path."""
    split_of = {row["dicom_id"]: row["split"] for row in _read_table(root, "mimic-cxr-2.0.0-split")}
    views: dict[str, list[tuple]] = defaultdict(list)
    study_info: dict[str, dict] = {}
    for row in _read_table(root, "mimic-cxr-2.0.0-metadata"):
        view = row.get("ViewPosition") or ""
        views[row["study_id"]].append((_VIEW_ORDER.get(view, 9), row["dicom_id"], view))
        study_info[row["study_id"]] = {"subject_id": row["subject_id"], "split": split_of.get(row["dicom_id"]),
                                       "when": (row.get("StudyDate") or "", _study_time(row.get("StudyTime")))}
    by_subject: dict[str, list[str]] = defaultdict(list)
    for study_id, info in study_info.items():
        by_subject[info["subject_id"]].append(study_id)

    wanted = "validate" if split == "validation" else split
    records = []
    for study_id in sorted(s for s, info in study_info.items() if info["split"] == wanted):
        info = study_info[study_id]
        earlier = [s for s in by_subject[info["subject_id"]] if study_info[s]["when"] < info["when"]]
        prior = max(earlier, key=lambda s: study_info[s]["when"]) if earlier else None
        records.append({"study_id": study_id, "subject_id": info["subject_id"],
                        "views": sorted(views[study_id]), "prior_study_id": prior,
                        "prior_views": sorted(views[prior]) if prior else []})
    return records


def _image_refs(root: Path, subject_id: str, study_id: str, views: list[tuple]) -> list[ImageRef]:
    refs = []
    for _, dicom_id, _ in views:
        rel = f"{_study_dir(subject_id, study_id)}/{dicom_id}.jpg"
        if not (root / rel).is_file():
            raise BadRecord(f"image file {rel} missing")
        refs.append(ImageRef(path=rel, root=str(root)))
    return refs


def convert_mimic(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """{"study_id": "50414267", "subject_id": "10000032", "views": [(0, "02aa804e-...", "PA"), ...],
        "prior_study_id": "53189527", "prior_views": [...]}
    -> EvalItem(kind=GENERATION, answer=<FINDINGS or IMPRESSION section>, images=current views + prior views)
    """
    section = config.options["section"]
    subject, study = record["subject_id"], record["study_id"]
    report_root = root / config.options.get("report_dir", ".")
    report_path = report_root / f"{_study_dir(subject, study)}.txt"
    if not report_path.is_file():
        raise BadRecord(f"report {report_path} missing")
    reference = report_section(report_path.read_text(encoding="utf-8", errors="replace"), section)
    if not reference:
        raise BadRecord(f"report has no {section} section")
    images = _image_refs(root, subject, study, record["views"])
    if not images:
        raise BadRecord("study has no image")
    prior_images = []
    if config.options.get("longitudinal", True) and record["prior_study_id"]:
        prior_images = _image_refs(root, subject, record["prior_study_id"], record["prior_views"])
    return EvalItem(
        task=config.name, id=study, question=f"Write the {section.lower()} section of the report.", kind=GENERATION,
        answer=reference, images=images + prior_images,
        metadata={"group": subject, "views": [v for _, _, v in record["views"]],
                  "prior_views": [v for _, _, v in record["prior_views"]] if prior_images else []},
    )
