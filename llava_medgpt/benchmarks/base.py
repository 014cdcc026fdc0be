"""The parsed form of a multiple-choice benchmark question, the bad-row signal, the two answer formats."""

import math
import string
from dataclasses import dataclass, field
from typing import Any, Mapping

LETTERS = string.ascii_uppercase

# The two multiple-choice answer formats, one name each. Evaluation prompts ask for the letter alone (the
# LLaVA / lmms-eval convention the paper's harness follows); training targets are "B. option text", so a model
# trained on them answers in a form the strict scorer reads either way.
ANSWER_WITH_LETTER = "Answer with the option's letter from the given choices directly."
ANSWER_WITH_LETTER_AND_TEXT = 'Answer with the option\'s letter and text, e.g. "A. ...".'


class BadRow(ValueError):
    """A release row that cannot be parsed; `reason` is short and stable (it is used as a counter key)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class McqQuestion:
    """One multiple-choice question as its release states it.

    id: the release's own id (MedMCQA uuid, PubMedQA PMID, ...) or the row's 0-based index when it has none.
    options: letter -> option text, in display order. answer: the gold letter, one of `options`.
    context: text shown before the question (PubMedQA: the abstract, "LABEL: sentence" per line).
    """

    id: str
    question: str
    options: dict[str, str]
    answer: str
    context: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.answer not in self.options:
            raise BadRow(f"answer {self.answer!r} is not one of the options {sorted(self.options)}")


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())


def field_text(row: Mapping[str, Any], key: str) -> str:
    """row[key] as stripped text (numbers such as a VQA answer 2 become "2"); BadRow if absent or empty."""
    value = row.get(key)
    if is_missing(value):
        raise BadRow(f"missing field '{key}'")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    if not isinstance(value, str):
        raise BadRow(f"field '{key}' is {type(value).__name__}, expected text")
    return value.strip()


def lettered(texts: list[str]) -> dict[str, str]:
    """Option texts in order -> {"A": text0, "B": text1, ...}."""
    if not 1 <= len(texts) <= len(LETTERS):
        raise BadRow(f"{len(texts)} options cannot be lettered A-Z")
    return {LETTERS[i]: str(t).strip() for i, t in enumerate(texts)}
