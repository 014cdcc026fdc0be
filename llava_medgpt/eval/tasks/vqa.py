"""Medical VQA benchmarks (paper Table 4): record in its official release schema -> EvalItem.

Each converter's docstring shows a raw record beside what it becomes.
"""

import ast
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...benchmarks import slake
from ...rows import read_rows
from .base import MCQ, OPEN, BadRecord, EvalItem, TaskConfig, letter_options, mcq_item
from .sources import glob_files, image_ref, is_missing

# MedXpertQA appends the options to the question text; we render options ourselves.
_ANSWER_CHOICES_RE = re.compile(r"\s*Answer Choices:.*\Z", re.DOTALL)


def _images(values: Iterable[Any], root: Path | None) -> list:
    refs = [image_ref(value, root) for value in values]
    return [ref for ref in refs if ref is not None]


def _as_list(value: Any) -> list:
    """Option lists arrive as lists, numpy arrays (parquet) or Python-literal strings (MMMU)."""
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError) as err:
            raise BadRecord(f"options string is not a list literal: {value[:60]!r}") from err
        value = parsed
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise BadRecord(f"options of type {type(value).__name__}, expected a list")
    return list(value)


def local_records(config: TaskConfig, root: Path) -> list[dict]:
    """Records of every file matching the task's `files` patterns, in file order."""
    records = []
    for path in glob_files(root, config.options["files"]):
        records.extend(read_rows(path, strict=True))
    return records


def convert_medxpertqa(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """MedXpertQA (Text or MM subset).

    {"id": "MM-26", "question": "A 45-year-old ...\\nAnswer Choices: (A) ... (E) ...",
     "options": {"A": "...", ..., "E": "..."}, "label": "C", "images": ["MM-26-a.jpeg"],
     "medical_task": "Diagnosis", "body_system": "Skeletal", "question_type": "Reasoning"}
    -> EvalItem(id="MM-26", question="A 45-year-old ...", options={"A".."E"}, answer="C", images=[...])
    """
    options = {str(k).upper(): str(v).strip() for k, v in (record.get("options") or {}).items() if not is_missing(v)}
    image_root = root / config.options["image_dir"] if root is not None and "image_dir" in config.options else root
    return EvalItem(
        task=config.name,
        id=str(record["id"]),
        question=_ANSWER_CHOICES_RE.sub("", record["question"]).strip(),
        kind=MCQ,
        answer=str(record["label"]).strip().upper(),
        options=dict(sorted(options.items())),
        images=_images(record.get("images") or [], image_root),
        metadata={k: record.get(k) for k in ("medical_task", "body_system", "question_type")},
    )


def slake_selection(record: dict, config: TaskConfig) -> bool:
    """The task setting's languages (q_lang) and answer types: paper = CLOSED questions of both languages."""
    languages = config.options.get("languages", list(slake.LANGUAGES))
    answer_types = config.options.get("answer_types", list(slake.ANSWER_TYPES))
    return record.get("q_lang") in languages and str(record.get("answer_type", "")).upper() in answer_types


def convert_slake(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """SLAKE test.json: `llava_medgpt.benchmarks.slake` (the setting selects languages and answer types).

    {"img_id": 102, "img_name": "xmlab102/source.jpg", "question": "Is the lung healthy?", "answer": "No",
     "q_lang": "en", "answer_type": "CLOSED", "content_type": "Abnormality", "qid": 11934, ...}
    -> closed yes/no questions become a two-option MCQ in the question's language (A. Yes, B. No; answer
       "B"; Chinese 是 / 否 ...); every other question is OPEN, scored by normalised exact match.
    """
    question = slake.parse(record)
    image_root = root / config.options.get("image_dir", "imgs") if root is not None else None
    metadata = {**question.metadata, "answer_type": question.answer_type, "language": question.language}
    images = _images([question.image], image_root)
    mcq = slake.yes_no_mcq(question)
    if mcq is not None:
        return mcq_item(mcq, config, images=images, metadata=metadata)
    return EvalItem(task=config.name, id=question.id, question=question.question, kind=OPEN, answer=question.answer,
                    images=images, metadata=metadata)


def convert_medframeqa(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """MedFrameQA (2,851 multi-image questions from medical videos).

    {"question_id": "...", "question": "...", "options": ["...", "...", ...], "correct_answer": "B",
     "image_1": {...}, ..., "image_5": None, "system": "...", "organ": "...", "modality": "..."}
    (the OctoMed re-upload names the answer "answer" and the images a list "image"; both are read)
    """
    answer = record.get("correct_answer", record.get("answer"))
    if is_missing(answer):
        raise BadRecord("no correct_answer")
    if "image" in record and not is_missing(record["image"]) and not isinstance(record["image"], str | dict):
        image_values = list(record["image"])
    else:
        image_values = [record.get(f"image_{i}") for i in range(1, 6)]
    images = _images(image_values, root)
    if not images:
        raise BadRecord("no image")
    return EvalItem(
        task=config.name,
        id=str(record["question_id"]),
        question=record["question"].strip(),
        kind=MCQ,
        answer=str(answer).strip().upper(),
        options=letter_options(_as_list(record["options"])),
        images=images,
        metadata={k: record.get(k) for k in ("system", "organ", "modality")},
    )


def convert_mmmu(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """MMMU / MMMU-Pro (standard 4 or 10 options), medical subjects.

    {"id": "validation_Clinical_Medicine_3", "question": "<image 1> The most likely diagnosis is", "options":
     "['Gout', 'Pseudogout', 'Septic arthritis', 'Psoriatic arthritis']", "answer": "B", "image_1": {...},
     ..., "image_7": None, "question_type": "multiple-choice", "subfield": "..."}
    -> MCQ with options A-D (or A-J for MMMU-Pro 10 options). MMMU "open" questions (no options) are OPEN.
    "<image k>" stays in the text as a reference; the images are given in image_1..image_7 order.
    """
    subject = record.get("subject") or str(record["id"]).split("_", 1)[-1].rsplit("_", 1)[0]
    images = _images([record.get(f"image_{i}") for i in range(1, 8)], root)
    common = dict(task=config.name, id=str(record["id"]), question=record["question"].strip(), images=images,
                  metadata={"subject": subject, "subfield": record.get("subfield")})
    options = _as_list(record.get("options") or "[]")
    answer = record["answer"]
    if record.get("question_type") == "open" or not options:
        return EvalItem(kind=OPEN, answer=str(answer).strip(), **common)
    return EvalItem(kind=MCQ, options=letter_options(options), answer=str(answer).strip().upper(), **common)


def mmmu_subject_filter(record: dict, config: TaskConfig) -> bool:
    """MMMU-Pro mixes all 30 subjects in one file: keep the configured medical ones."""
    subjects = {s.replace(" ", "_").lower() for s in config.options["subjects"]}
    return str(record.get("subject", "")).replace(" ", "_").lower() in subjects
