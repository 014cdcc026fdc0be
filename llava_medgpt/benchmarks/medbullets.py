"""Medbullets (Chen et al. 2024, HanjieChen/ChallengeClinicalQA): medbullets/medbullets_op4.csv and
medbullets_op5.csv, 308 rows each (USMLE Step 2/3 style; op5 adds a fifth option).

    link,question,opa,opb,opc,opd,ope,answer_idx,answer,explanation
    https://...,"A 35-year-old ...","...","...","...","...","...",B,"...","..."
    -> McqQuestion(id="<row index>", options A-E (A-D for op4), answer="B")

The 308 rows hold 298 distinct questions: ten appear twice, identical in question, options, answer and
explanation, once with a step2.medbullets.com link and once with a bit.ly short link. `unique_rows` keeps the
first of each (the paper's 298, docs/evaluation.md).
"""

from collections.abc import Iterable
from typing import Any, Mapping

from .base import LETTERS, BadRow, McqQuestion, field_text, is_missing

OPTION_FIELDS = ("opa", "opb", "opc", "opd", "ope")


def parse(row: Mapping[str, Any], index: int) -> McqQuestion:
    options = {}
    for letter, name in zip(LETTERS, OPTION_FIELDS):
        if not is_missing(row.get(name)):
            options[letter] = str(row[name]).strip()
    if list(options) != list(LETTERS[: len(options)]) or len(options) < 2:
        raise BadRow("options are not lettered A, B, ... in order")
    record_id = str(row["id"]) if not is_missing(row.get("id")) else str(index)
    return McqQuestion(id=record_id, question=field_text(row, "question"), options=options,
                       answer=field_text(row, "answer_idx").upper(), metadata={"link": row.get("link")})


def _question_key(row: Mapping[str, Any]) -> tuple:
    return tuple(str(row.get(name) or "").strip() for name in ("question", *OPTION_FIELDS, "answer_idx"))


def unique_rows(rows: Iterable[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], int]:
    """Rows with repeated questions (same question, options and answer; the link may differ) dropped after
    their first occurrence, and how many were dropped."""
    seen: set[tuple] = set()
    kept, dropped = [], 0
    for row in rows:
        key = _question_key(row)
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(row)
    return kept, dropped
