"""OmniMedVQA (Hu et al., 2024), the repository README's headline benchmark: release layout -> EvalItems.

Release layout (dataset card of foreverbeliever/OmniMedVQA; the open-access part ships its images):

    OmniMedVQA/
    ├── Images/<dataset>/<image files>
    └── QA_information/
        ├── Open-access/<dataset>.json          a JSON list of QA items per source dataset
        └── Restricted-access/<dataset>.json    paths into the original (separately licensed) datasets

One QA item (field names as read by the benchmark's own evaluation code, OpenGVLab Multi-Modality-Arena
MedicalEval, and by MedEvalKit's OmniMedVQA loader):

    {"dataset": "ACRIMA", "question_id": "ACRIMA_0000", "question_type": "Disease Diagnosis",
     "question": "...", "gt_answer": "Glaucoma", "image_path": "Images/ACRIMA/Im002_ACRIMA.png",
     "option_A": "Glaucoma", "option_B": "Normal", "modality_type": "Fundus Photography"}

-> MCQ with options A.. (2 to 4 of them; C and D are optional), answer = the letter whose text is gt_answer,
   the image resolved under the release root (it may not leave it), metadata modality / question_type / dataset
   for the per-modality and per-question-type breakdowns. One item in "Chest CT Scan.json" names its modality
   "modality" instead of "modality_type"; both are read. Without question_id the id is "<file>/<position>".
"""

from pathlib import Path

from .base import MCQ, BadRecord, EvalItem, ImageRef, TaskConfig, option_letters
from .sources import glob_files, is_missing, read_records

OPTION_FIELDS = [f"option_{letter}" for letter in option_letters(26)]


def omnimedvqa_records(config: TaskConfig, root: Path, split: str) -> list[dict]:
    """Items of every QA file of the split's folder, each tagged with its file's dataset name and position."""
    patterns = [pattern.format(split=split) for pattern in config.options["files"]]
    records = []
    for path in glob_files(root, patterns):
        for position, record in enumerate(read_records(path)):
            records.append({**record, "_file": path.stem, "_position": position})
    return records


def convert_omnimedvqa(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """One QA item -> MCQ (rules in the module docstring); bad items raise BadRecord and are counted."""
    options = {}
    for letter, field in zip(option_letters(26), OPTION_FIELDS):
        if is_missing(record.get(field)):
            break
        options[letter] = str(record[field]).strip()
    if any(not is_missing(record.get(field)) for field in OPTION_FIELDS[len(options):]):
        present = sorted(field for field in OPTION_FIELDS if not is_missing(record.get(field)))
        raise BadRecord(f"options are not contiguous from option_A (have {present})")
    if len(options) < 2:
        raise BadRecord(f"{len(options)} option(s); an MCQ needs at least 2")
    gold = str(record["gt_answer"]).strip()
    letters = [letter for letter, text in options.items() if text == gold]
    if len(letters) != 1:
        raise BadRecord(f"gt_answer {gold!r} matches {len(letters)} options, expected exactly one")
    if root is None:
        raise BadRecord("image_path needs the release folder")
    dataset = record.get("dataset") or record.get("_file")
    item_id = record.get("question_id")
    return EvalItem(
        task=config.name,
        id=str(item_id) if not is_missing(item_id) else f"{record.get('_file')}/{record.get('_position')}",
        question=str(record["question"]).strip(),
        kind=MCQ,
        answer=letters[0],
        options=options,
        images=[_image(record["image_path"], root)],
        metadata={"modality": record.get("modality_type", record.get("modality")),
                  "question_type": record.get("question_type"), "dataset": dataset},
    )


def _image(path: str, root: Path) -> ImageRef:
    if is_missing(path):
        raise BadRecord("no image_path")
    return ImageRef(path=str(path), root=str(root))


__all__ = ["convert_omnimedvqa", "omnimedvqa_records"]
