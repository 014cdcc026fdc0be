"""Text multiple-choice exams (MedQA, MedMCQA, PubMedQA, MedExpQA) in the shared format of `mcq.py`.

MedQA, MedMCQA and PubMedQA are parsed by their release readers in `llava_medgpt.benchmarks`, the same ones
the evaluation tasks use. MedMCQA's answer numbering is a property of the file (official train.json 1-4, hub
parquet 0-3): `medmcqa_file_facts` reads it from the file before its rows are converted.

MedMCQA (openlifescienceai/medmcqa train parquet, `cop` 0-based as in the hub's ClassLabel a/b/c/d):
    raw:    {"id": "e9ad821a-c438-4965-9f77-760819dfa155", "question": "Chronic urethral obstruction due to
             benign prismatic hyperplasia can lead to the following change in kidney parenchyma",
             "opa": "Hyperplasia", "opb": "Hyperophy", "opc": "Atrophy", "opd": "Dyplasia", "cop": 2,
             "choice_type": "single", "exp": "...", "subject_name": "Anatomy", "topic_name": "Urinary tract"}
    record: {"id": "medmcqa-e9ad821a-c438-4965-9f77-760819dfa155",
             "conversations": [{"from": "human", "value": "Chronic urethral obstruction ... parenchyma\\n"
                                "A. Hyperplasia\\nB. Hyperophy\\nC. Atrophy\\nD. Dyplasia\\n"
                                "Answer with the option's letter and text, e.g. \\"A. ...\\"."},
                               {"from": "gpt", "value": "C. Atrophy"}]}
"""

from collections.abc import Iterable
from typing import Any, Mapping

from ...benchmarks import medmcqa, medqa, pubmedqa
from .common import SkipRow, gpt, human, is_missing, make_record, release_row, text
from .mcq import LETTERS, format_mcq_answer, format_mcq_prompt


# Input columns a row needs, per source (shown when nothing converts).
MEDQA_COLUMNS = ("question", "options", "answer_idx")
MEDMCQA_COLUMNS = ("id", "question", "opa", "opb", "opc", "opd", "cop")
PUBMEDQA_COLUMNS = ("QUESTION", "CONTEXTS", "final_decision")
MEDEXPQA_COLUMNS = ("full_question", "options", "correct_option")


def _mcq_record(record_id: str, question: str, options: dict[str, str], letter: str) -> list[dict]:
    turns = [human(format_mcq_prompt(question, options)), gpt(format_mcq_answer(letter, options))]
    return [make_record(record_id, turns)]


def convert_medqa(row: Mapping[str, Any], index: int) -> list[dict]:
    """MedQA-USMLE (GBaker/MedQA-USMLE-4-options, phrases_no_exclude_train.jsonl): `benchmarks.medqa`."""
    with release_row():
        question = medqa.parse(row, index)
    return _mcq_record(f"medqa-{index}", question.question, question.options, question.answer)


def medmcqa_file_facts(path: str, rows: Iterable[Any]) -> dict:
    """The file's cop numbering (`benchmarks.medmcqa.cop_base`; refused when its values show the other)."""
    return {"_cop_base": medmcqa.cop_base(path, rows)}


def convert_medmcqa(row: Mapping[str, Any], index: int) -> list[dict]:
    if "_cop_base" not in row:
        raise ValueError("MedMCQA rows need their file's cop numbering (converted through medmcqa_file_facts)")
    with release_row():
        question = medmcqa.parse(row, row["_cop_base"])
    return _mcq_record(f"medmcqa-{question.id}", question.question, question.options, question.answer)


PUBMEDQA_OPTIONS = pubmedqa.OPTIONS


def convert_pubmedqa(row: Mapping[str, Any], index: int) -> list[dict]:
    """PubMedQA PQA-L (ori_pqal.json: {PMID: {QUESTION, CONTEXTS, LABELS, MESHES, YEAR, final_decision,
    LONG_ANSWER, ...}}; the reader puts the PMID in row["_key"]): `benchmarks.pubmedqa`. The question is asked
    over the abstract, one "LABEL: sentence" line per context as in evaluation, as a yes/no/maybe choice.
    """
    if is_missing(row.get("_key")) and "QUESTION" in row:
        row = {**row, "_key": str(index)}
    with release_row():
        question = pubmedqa.parse(row)
    prompt_question = f"Context: {question.context}\nQuestion: {question.question}"
    return _mcq_record(f"pubmedqa-{question.id}", prompt_question, question.options, question.answer)


def convert_medexpqa(row: Mapping[str, Any], index: int) -> list[dict]:
    """MedExpQA (HiTZ/MedExpQA, config en, data/en/train.en.casimedicos.rag.jsonl, 434 rows): {"id": 274,
    "year", "question_id_specific", "full_question", "full_answer", "full_answer_no_ref", "type",
    "options": {"1": ..., "5": null}, "correct_option": 1, "explanations": {...}, "lang", "rag": {...}}.
    Options are numbered from 1 and correct_option is that number; null options (4-option exams) are dropped
    and the rest lettered A, B, ... in number order.
    """
    question = text(row, "full_question")
    raw_options = row.get("options")
    if not isinstance(raw_options, dict):
        raise SkipRow("missing field 'options'")
    if not all(isinstance(k, str) and k.isdigit() for k in raw_options):
        raise SkipRow("option keys are not numbers")
    numbered = sorted(((int(k), str(v).strip()) for k, v in raw_options.items() if not is_missing(v)))
    options = {LETTERS[i]: option for i, (_, option) in enumerate(numbered)}
    correct = row.get("correct_option")
    number = int(correct) if isinstance(correct, str) and correct.strip().isdigit() else correct
    if isinstance(number, bool):  # True == 1 in Python; a flag is not an option number
        number = None
    positions = [i for i, (n, _) in enumerate(numbered) if n == number]
    if len(positions) != 1:
        raise SkipRow(f"correct_option {correct!r} is not an option")
    key = text(row, "id") if not is_missing(row.get("id")) else str(index)
    return _mcq_record(f"medexpqa-{key}", question, options, LETTERS[positions[0]])
