"""Visual question answering: open-ended (SLAKE, VQA-RAD, MIMIC-CXR-VQA) and multiple-choice (PMC-VQA,
OpenMM-Medical). Multiple-choice prompts and answers use the shared format in `mcq.py`.

MIMIC-CXR-VQA (PhysioNet MIMIC-Ext-MIMIC-CXR-VQA, train.json built by baeseongsu/mimic-cxr-vqa):
    raw:    {"split": "train", "idx": 13280, "image_id": "34c81443-...", "question": "Are there signs of both
             pleural effusion and lung cancer in the left lower lung zone?", "answer": ["no"],
             "subject_id": "10000032", "study_id": "50414267",
             "image_path": "p10/p10000032/s50414267/34c81443-....jpg", "content_type": ..., ...}
    record: {"id": "mimic_cxr_vqa-13280", "image": "files/p10/p10000032/s50414267/34c81443-....jpg", ...}
            (image paths are made relative to the MIMIC-CXR-JPG root, like the MIMIC-CXR report records)

OpenMM-Medical (baichuan-inc/OpenMM_Medical, OpenMMMedical.tsv + Images.zip; VLMEvalKit MCQ table):
    raw:    {"index": "17", "question": "What is the modality of this image?", "A": "CT", "B": "MRI",
             "C": "X-ray", "D": "", "answer": "A", "image_path": "Images/ACRIMA/Im002_ACRIMA.png", ...}
    record: {"id": "openmm_medical-17", "image": "Images/ACRIMA/Im002_ACRIMA.png",
             "conversations": [{"from": "human", "value": "<image>\\nWhat is the modality of this image?\\n
                                A. CT\\nB. MRI\\nC. X-ray\\nAnswer with ..."}, {"from": "gpt", "value": "A. CT"}]}

SLAKE (BoKelvin/SLAKE, train.json; parsed by `llava_medgpt.benchmarks.slake`, English questions only):
    raw:    {"img_id": 102, "img_name": "xmlab102/source.jpg", "question": "Which organ is abnormal?",
             "answer": "Lung", "q_lang": "en", "qid": 11934, "answer_type": "OPEN", ...}
    record: {"id": "slake-11934", "image": "xmlab102/source.jpg",
             "conversations": [{"from": "human", "value": "<image>\\nWhich organ is abnormal?"},
                               {"from": "gpt", "value": "Lung"}]}

PMC-VQA (xmcmic/PMC-VQA, train.csv):
    raw:    {"Figure_path": "PMC1064097_F1.jpg", "Question": "What is the uptake pattern in the breast?",
             "Answer": "Focal uptake pattern", "Choice A": "A:Diffuse uptake pattern",
             "Choice B": "B:Focal uptake pattern", "Choice C": "C:No uptake pattern",
             "Choice D": "D:Cannot determine from the information given", "Answer_label": "B"}
    record: {"id": "pmc_vqa-PMC1064097_F1-0", "image": "PMC1064097_F1.jpg",
             "conversations": [{"from": "human", "value": "<image>\\nWhat is the uptake pattern in the breast?\\n"
                                "A. Diffuse uptake pattern\\nB. Focal uptake pattern\\nC. No uptake pattern\\n"
                                "D. Cannot determine from the information given\\n"
                                "Answer with the option's letter and text, e.g. \\"A. ...\\"."},
                               {"from": "gpt", "value": "B. Focal uptake pattern"}]}
"""

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Mapping

from ...benchmarks import slake
from .common import SkipRow, release_row, any_of, first_key, gpt, human, is_missing, make_record, text, with_images
from .mcq import LETTERS, format_mcq_answer, format_mcq_prompt, lettered


@dataclass(frozen=True)
class OpenVQAFields:
    prefix: str
    images: tuple[str, ...]  # candidate image fields, first present wins
    question: str
    answer: str
    id: str | None = None  # None -> row index
    split: tuple[str, str] | None = None  # (field, value) rows must match; others are skipped
    test_marker: tuple[str, str] | None = None  # (field, prefix): rows whose field starts with prefix are test rows
    image_prefix: str = ""  # prepended to the image path (MIMIC-CXR-VQA paths are relative to files/)

    def columns(self) -> tuple[str, ...]:
        return (any_of(self.images), self.question, self.answer)


# Official JSON ("VQA_RAD Dataset Public.json": image_name, qid, phrase_type ...) or the hub parquet
# (flaviagiammarino/vqa-rad: image, question, answer; its train split has the 1,793 rows of Table 1).
VQA_RAD = OpenVQAFields(prefix="vqa_rad", images=("image_name", "image"), question="question", answer="answer",
                        id="qid", test_marker=("phrase_type", "test"))
MIMIC_CXR_VQA = OpenVQAFields(prefix="mimic_cxr_vqa", images=("image_path",), question="question", answer="answer",
                              id="idx", split=("split", "train"), image_prefix="files/")


def _answer_text(value: Any) -> str:
    # MIMIC-CXR-VQA answers are lists ("list the abnormalities" -> several; none present -> []).
    if isinstance(value, list):
        return ", ".join(str(v).strip() for v in value) if value else "none"
    return value


def convert_open_vqa(fields: OpenVQAFields, row: Mapping[str, Any], index: int) -> list[dict]:
    if fields.split and row.get(fields.split[0], fields.split[1]) != fields.split[1]:
        raise SkipRow(f"{fields.split[0]} is not {fields.split[1]!r}")
    if fields.test_marker and str(row.get(fields.test_marker[0], "")).startswith(fields.test_marker[1]):
        raise SkipRow(f"test row ({fields.test_marker[0]} starts with {fields.test_marker[1]!r})")
    image = fields.image_prefix + text(row, first_key(row, fields.images))
    question = text(row, fields.question)
    answer = text({"answer": _answer_text(row.get(fields.answer))}, "answer")
    key = text(row, fields.id) if fields.id and not is_missing(row.get(fields.id)) else str(index)
    turns = [human(with_images(question, 1)), gpt(answer)]
    return [make_record(f"{fields.prefix}-{key}", turns, [image])]


SLAKE_COLUMNS = ("img_name", "question", "answer", "q_lang", "answer_type", "qid")


def convert_slake(row: Mapping[str, Any], index: int) -> list[dict]:
    """SLAKE's English questions (the recipe's "SLAKE (English)"), open and closed, answered with their text."""
    if row.get("q_lang") != "en":
        raise SkipRow("q_lang is not 'en'")
    with release_row():
        question = slake.parse(row)
    turns = [human(with_images(question.question, 1)), gpt(question.answer)]
    return [make_record(f"slake-{question.id}", turns, [question.image])]


PMC_VQA_COLUMNS = ("Figure_path", "Question", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label")
_PMC_CHOICE_RE = re.compile(r"^\s*([A-D])\s*:\s*(.*)$", re.DOTALL)


def convert_pmc_vqa(row: Mapping[str, Any], index: int) -> list[dict]:
    image = text(row, "Figure_path")
    question = text(row, "Question")
    options = {}
    for letter in "ABCD":
        raw = text(row, f"Choice {letter}")
        match = _PMC_CHOICE_RE.match(raw)  # choices carry their own "A:" prefix
        if match and match.group(1) != letter:
            raise SkipRow(f"'Choice {letter}' is labelled {match.group(1)}")
        option = match.group(2).strip() if match else raw
        if not option:
            raise SkipRow(f"'Choice {letter}' is empty")
        options[letter] = option
    label = text(row, "Answer_label").upper()
    if label not in options:
        raise SkipRow(f"Answer_label {label!r} is not one of A-D")
    turns = [human(with_images(format_mcq_prompt(question, options), 1)), gpt(format_mcq_answer(label, options))]
    return [make_record(f"pmc_vqa-{PurePosixPath(image).stem}-{index}", turns, [image])]


def mcq_options(value: Any) -> dict[str, str]:
    """Options given as a list, a {letter: text} dict, or "A. x\\nB. y" text -> {letter: text}."""
    if isinstance(value, list):
        options = lettered([str(v).strip() for v in value])
    elif isinstance(value, dict):
        options = {str(k).strip().upper(): str(v).strip() for k, v in value.items() if not is_missing(v)}
    elif isinstance(value, str):
        options = {}
        for line in value.splitlines():
            match = re.match(r"^\s*\(?([A-Z])[.):]\s*(.+)$", line)
            if match:
                options[match.group(1)] = match.group(2).strip()
    else:
        raise SkipRow("options are missing")
    if len(options) < 2 or list(options) != list(LETTERS[: len(options)]):
        raise SkipRow("options are not lettered A, B, ... in order")
    return options


def answer_letter(value: Any, options: dict[str, str]) -> str:
    """An answer given as a letter ("B", "B.", "(B)") or as the option's text -> its letter."""
    answer = str(value).strip()
    match = re.match(r"^\(?([A-Z])\)?[.:]?(\s|$)", answer)
    if match and match.group(1) in options:
        return match.group(1)
    hits = [letter for letter, option in options.items() if option.strip().lower() == answer.lower()]
    if len(hits) != 1:
        raise SkipRow("answer matches no single option")
    return hits[0]


@dataclass(frozen=True)
class McqVQAFields:
    prefix: str
    image: str
    question: str
    options: str | None  # None -> one column per letter, "A", "B", ... (VLMEvalKit tables); empty cells end them
    answer: str
    id: str | None = None
    hint: str | None = None  # optional context put before the question (VLMEvalKit "hint")

    def columns(self) -> tuple[str, ...]:
        options = (self.options,) if self.options is not None else ("A", "B")
        return (self.image, self.question, *options, self.answer)


OPENMM_MEDICAL = McqVQAFields(prefix="openmm_medical", image="image_path", question="question", options=None,
                              answer="answer", id="index", hint="hint")


def _letter_columns(row: Mapping[str, Any]) -> dict[str, str]:
    options = {}
    for letter in LETTERS:
        if is_missing(row.get(letter)):
            break
        options[letter] = str(row[letter]).strip()
    if any(not is_missing(row.get(letter)) for letter in LETTERS[len(options):]):
        raise SkipRow("options are not lettered A, B, ... in order")
    return mcq_options(options)


def convert_mcq_vqa(fields: McqVQAFields, row: Mapping[str, Any], index: int) -> list[dict]:
    image = text(row, fields.image)
    question = text(row, fields.question)
    if fields.hint and not is_missing(row.get(fields.hint)):
        question = f"{text(row, fields.hint)}\n{question}"
    options = _letter_columns(row) if fields.options is None else mcq_options(row.get(fields.options))
    letter = answer_letter(text(row, fields.answer), options)
    key = text(row, fields.id) if fields.id and not is_missing(row.get(fields.id)) else str(index)
    turns = [human(with_images(format_mcq_prompt(question, options), 1)), gpt(format_mcq_answer(letter, options))]
    return [make_record(f"{fields.prefix}-{key}", turns, [image])]
