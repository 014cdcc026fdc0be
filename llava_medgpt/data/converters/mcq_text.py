"""Text multiple-choice exams (MedQA, MedMCQA, PubMedQA, MedExpQA) in the shared format of `mcq.py`.

MedMCQA (openlifescienceai/medmcqa, train split; `cop` is 0-based as in the hub's ClassLabel a/b/c/d):
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

from typing import Any, Mapping

from .common import SkipRow, gpt, human, is_missing, make_record, text
from .mcq import LETTERS, format_mcq_answer, format_mcq_prompt, read_lettered_options


# Input columns a row needs, per source (shown when nothing converts).
MEDQA_COLUMNS = ("question", "options", "answer_idx")
MEDMCQA_COLUMNS = ("id", "question", "opa", "opb", "opc", "opd", "cop")
PUBMEDQA_COLUMNS = ("QUESTION", "CONTEXTS", "final_decision")
MEDEXPQA_COLUMNS = ("full_question", "options", "correct_option")


def _mcq_record(record_id: str, question: str, options: dict[str, str], letter: str) -> list[dict]:
    turns = [human(format_mcq_prompt(question, options)), gpt(format_mcq_answer(letter, options))]
    return [make_record(record_id, turns)]


def convert_medqa(row: Mapping[str, Any], index: int) -> list[dict]:
    """MedQA-USMLE (GBaker/MedQA-USMLE-4-options, phrases_no_exclude_train.jsonl):
    {"question": ..., "answer": "<text>", "options": {"A": ..., "D": ...}, "meta_info": "step1", "answer_idx": "A"}
    """
    question = text(row, "question")
    options, letter = read_lettered_options(row)
    answer = row.get("answer")
    if isinstance(answer, str) and answer.strip() and answer.strip() != options[letter]:
        raise SkipRow("answer text disagrees with answer_idx")
    return _mcq_record(f"medqa-{index}", question, options, letter)


def convert_medmcqa(row: Mapping[str, Any], index: int) -> list[dict]:
    question = text(row, "question")
    options = {letter: text(row, field) for letter, field in zip("ABCD", ("opa", "opb", "opc", "opd"))}
    cop = row.get("cop")
    if not isinstance(cop, int) or isinstance(cop, bool) or not 0 <= cop <= 3:
        raise SkipRow(f"cop {cop!r} is not 0-3")  # the hub's test split has cop = -1 (no key)
    return _mcq_record(f"medmcqa-{text(row, 'id')}", question, options, "ABCD"[cop])


PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}


def convert_pubmedqa(row: Mapping[str, Any], index: int) -> list[dict]:
    """PubMedQA PQA-L (ori_pqal.json: {PMID: {QUESTION, CONTEXTS, LABELS, MESHES, YEAR, final_decision,
    LONG_ANSWER, ...}}); the reader puts the PMID in row["_key"]. The question is asked over the abstract
    (CONTEXTS) as a yes/no/maybe multiple choice.
    """
    question = text(row, "QUESTION")
    contexts = row.get("CONTEXTS")
    if not isinstance(contexts, list) or not any(isinstance(c, str) and c.strip() for c in contexts):
        raise SkipRow("missing field 'CONTEXTS'")
    decision = text(row, "final_decision").lower()
    letters = {v: k for k, v in PUBMEDQA_OPTIONS.items()}
    if decision not in letters:
        raise SkipRow(f"final_decision {decision!r} is not yes/no/maybe")
    context = "\n".join(c.strip() for c in contexts if isinstance(c, str) and c.strip())
    prompt_question = f"Context: {context}\nQuestion: {question}"
    key = text(row, "_key") if not is_missing(row.get("_key")) else str(index)
    return _mcq_record(f"pubmedqa-{key}", prompt_question, PUBMEDQA_OPTIONS, letters[decision])


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
