"""MedQA (USMLE, Jin et al. 2021): data_clean/questions/US/4_options/phrases_no_exclude_{train,dev,test}.jsonl,
also the hub copy GBaker/MedQA-USMLE-4-options (same fields).

    {"question": "A 23-year-old pregnant woman ...", "answer": "Nitrofurantoin",
     "options": {"A": "Ampicillin", "B": "Ceftriaxone", "C": "Doxycycline", "D": "Nitrofurantoin"},
     "meta_info": "step1", "answer_idx": "D", "metamap_phrases": [...]}
    -> McqQuestion(id="<row index>", options A-D, answer="D")
"""

from typing import Any, Mapping

from .base import LETTERS, BadRow, McqQuestion, field_text, is_missing


def parse(row: Mapping[str, Any], index: int) -> McqQuestion:
    question = field_text(row, "question")
    raw = row.get("options")
    if not isinstance(raw, Mapping) or not raw:
        raise BadRow("missing field 'options'")
    options = dict(sorted((str(k).strip().upper(), str(v).strip()) for k, v in raw.items() if not is_missing(v)))
    if list(options) != list(LETTERS[: len(options)]):
        raise BadRow("options are not lettered A, B, ... in order")
    letter = field_text(row, "answer_idx").upper()
    if letter not in options:
        raise BadRow(f"answer_idx {letter!r} is not an option")
    answer = row.get("answer")
    if isinstance(answer, str) and answer.strip() and answer.strip() != options[letter]:
        raise BadRow("answer text disagrees with answer_idx")
    record_id = str(row["id"]) if not is_missing(row.get("id")) else str(index)
    return McqQuestion(id=record_id, question=question, options=options, answer=letter,
                       metadata={"meta_info": row.get("meta_info")})
