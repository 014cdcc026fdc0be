"""OmniMedVQA (Hu et al. 2024), the repository README's headline benchmark.

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
    -> OmniMedVQAQuestion(mcq=McqQuestion(id="ACRIMA_0000", options A-B, answer="A"), image="Images/ACRIMA/...")

Options run from option_A without gaps (2 to 4 in the release; C and D are optional); the gold letter is the
option whose text equals gt_answer. One item in "Chest CT Scan.json" names its modality "modality" instead of
"modality_type"; both are read. Without question_id the id is "<file stem>/<position in the file>".
"""

from dataclasses import dataclass
from typing import Any, Mapping

from .base import LETTERS, BadRow, McqQuestion, field_text, is_missing

OPTION_FIELDS = tuple(f"option_{letter}" for letter in LETTERS)


@dataclass(frozen=True)
class OmniMedVQAQuestion:
    mcq: McqQuestion  # metadata: modality, question_type, dataset
    image: str  # image_path, relative to the release root


def parse(row: Mapping[str, Any], file_stem: str, position: int) -> OmniMedVQAQuestion:
    """One QA item of <file_stem>.json (at `position` in its list)."""
    options = {}
    for letter, name in zip(LETTERS, OPTION_FIELDS):
        if is_missing(row.get(name)):
            break
        options[letter] = str(row[name]).strip()
    present = [name for name in OPTION_FIELDS if not is_missing(row.get(name))]
    if len(present) != len(options):
        raise BadRow(f"options are not contiguous from option_A (have {present})")
    if len(options) < 2:
        raise BadRow(f"{len(options)} option(s); a multiple-choice item needs at least 2")
    gold = field_text(row, "gt_answer")
    letters = [letter for letter, text in options.items() if text == gold]
    if len(letters) != 1:
        raise BadRow(f"gt_answer {gold!r} matches {len(letters)} options, expected exactly one")
    item_id = str(row["question_id"]) if not is_missing(row.get("question_id")) else f"{file_stem}/{position}"
    metadata = {"modality": row.get("modality_type", row.get("modality")), "question_type": row.get("question_type"),
                "dataset": row.get("dataset") or file_stem}
    mcq = McqQuestion(id=item_id, question=field_text(row, "question"), options=options, answer=letters[0],
                      metadata=metadata)
    return OmniMedVQAQuestion(mcq=mcq, image=field_text(row, "image_path"))
