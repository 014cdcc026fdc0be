"""SLAKE (Liu et al. 2021): Slake1.0/{train,validation,test}.json (JSON lists) + imgs/xmlab<N>/source.jpg;
the hub copy BoKelvin/SLAKE has the same files. Each question is asked in English or Chinese (`q_lang`) and
typed OPEN or CLOSED (`answer_type`).

    {"img_id": 102, "img_name": "xmlab102/source.jpg", "question": "Is the lung healthy?", "answer": "No",
     "q_lang": "en", "answer_type": "CLOSED", "content_type": "Abnormality", "modality": "X-Ray",
     "location": "Lung", "base_type": "vqa", "triple": [...], "qid": 11934}
    -> SlakeQuestion(id="11934", image="xmlab102/source.jpg", answer="No", closed=True, language="en")

A closed question answered with one word of a yes/no pair ("Yes"/"No", "是"/"否", ...) is a two-option
multiple choice in that pair's words (`yes_no_mcq`); other closed questions ("Which is bigger, liver or
spleen?") and open ones are answered freely.
"""

from dataclasses import dataclass, field
from typing import Any, Mapping

from .base import BadRow, McqQuestion, field_text

# (yes word, no word) per language, in the form SLAKE answers use; matched case-insensitively.
YES_NO_PAIRS = (("Yes", "No"), ("是", "否"), ("是", "不是"), ("有", "没有"))
LANGUAGES = ("en", "zh")
ANSWER_TYPES = ("OPEN", "CLOSED")


@dataclass(frozen=True)
class SlakeQuestion:
    id: str  # qid
    image: str  # img_name, relative to imgs/
    question: str
    answer: str
    answer_type: str  # OPEN | CLOSED
    language: str  # en | zh
    metadata: dict[str, Any] = field(default_factory=dict)


def parse(row: Mapping[str, Any]) -> SlakeQuestion:
    answer_type = str(row.get("answer_type", "")).strip().upper()
    if answer_type not in ANSWER_TYPES:
        raise BadRow(f"answer_type {row.get('answer_type')!r} is not OPEN/CLOSED")
    language = str(row.get("q_lang", "")).strip()
    if language not in LANGUAGES:
        raise BadRow(f"q_lang {row.get('q_lang')!r} is not en/zh")
    return SlakeQuestion(id=field_text(row, "qid"), image=field_text(row, "img_name"),
                         question=field_text(row, "question"), answer=field_text(row, "answer"),
                         answer_type=answer_type, language=language,
                         metadata={k: row.get(k) for k in ("content_type", "modality", "location")})


def yes_no_mcq(question: SlakeQuestion) -> McqQuestion | None:
    """A closed yes/no question as options {"A": yes word, "B": no word} with the gold letter; else None."""
    if question.answer_type != "CLOSED":
        return None
    answer = question.answer.strip().lower()
    for yes, no in YES_NO_PAIRS:
        if answer in (yes.lower(), no.lower()):
            return McqQuestion(id=question.id, question=question.question, options={"A": yes, "B": no},
                               answer="A" if answer == yes.lower() else "B", metadata=question.metadata)
    return None
