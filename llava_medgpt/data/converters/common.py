"""Shared pieces of the converters: the skip signal, field access, turns, reasoning-trace splitting.

A converter is a pure function `(row, index) -> list[record]`: `row` is one raw row of a source in its
published schema (a dict), `index` its 0-based position in the input (used only when the source has no id).
A row that cannot be converted raises SkipRow(reason); the driver counts it with its row number.
"""

import math
import re
from contextlib import contextmanager
from typing import Any, Mapping

from ...benchmarks import BadRow
from ...constants import IMAGE_MARKER


class SkipRow(Exception):
    """This raw row cannot become a record; `reason` says why (short, stable: it is used as a counter key).

    `detail` is the row's own part of the story (e.g. the full image path tried), kept out of the counter key.
    """

    def __init__(self, reason: str, detail: str | None = None):
        self.reason = reason
        self.detail = detail
        super().__init__(reason if detail is None else f"{reason}: {detail}")


def any_of(keys: tuple[str, ...]) -> str:
    """How an expected column with alternatives is shown: "image_name|image"."""
    return "|".join(keys)


@contextmanager
def release_row():
    """Rows the shared benchmark-release readers (llava_medgpt.benchmarks) refuse become counted skips."""
    try:
        yield
    except BadRow as err:
        raise SkipRow(err.reason) from None


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def text(row: Mapping[str, Any], key: str) -> str:
    """row[key] as a stripped string; SkipRow if absent or empty. Numbers (VQA answers like 2) become text."""
    value = row.get(key)
    if is_missing(value):
        raise SkipRow(f"missing field '{key}'")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else str(value)
    if not isinstance(value, str):
        raise SkipRow(f"field '{key}' is {type(value).__name__}, expected text")
    return value.strip()


def first_key(row: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """The first of `keys` present (non-empty) in the row; SkipRow if none is."""
    for key in keys:
        if not is_missing(row.get(key)):
            return key
    raise SkipRow(f"missing field '{keys[0]}'")


def human(value: str) -> dict:
    return {"from": "human", "value": value}


def gpt(value: str, reasoning: str | None = None) -> dict:
    turn = {"from": "gpt", "value": value}
    if reasoning:
        turn["reasoning"] = reasoning
    return turn


def with_images(question: str, n_images: int) -> str:
    """Prefix a prompt with one image marker per image, each on its own line (LLaVA convention)."""
    return f"{IMAGE_MARKER}\n" * n_images + question


def make_record(record_id: str, turns: list[dict], images: list[str] | None = None) -> dict:
    record: dict[str, Any] = {"id": record_id}
    if images:
        record["image"] = images[0] if len(images) == 1 else list(images)
    record["conversations"] = turns
    return record


_THINK_RE = re.compile(r"^\s*<think>(.*?)</think>(.*)$", re.DOTALL)
_ANSWER_TAG_RE = re.compile(r"^\s*<answer>(.*?)</answer>\s*$", re.DOTALL)


def split_think(output: str) -> tuple[str | None, str]:
    """Split a distilled output into (reasoning trace, final answer).

    "<think>T</think>A" -> (T, A); "T</think>A" (R1 style, opener in the prompt template) -> (T, A);
    text without a closing tag -> (None, text). A final answer wrapped in <answer>...</answer> is unwrapped.
    """
    match = _THINK_RE.match(output)
    if match:
        reasoning, answer = match.group(1), match.group(2)
    elif "</think>" in output:
        reasoning, _, answer = output.partition("</think>")
    else:
        reasoning, answer = None, output
    tag = _ANSWER_TAG_RE.match(answer)
    if tag:
        answer = tag.group(1)
    reasoning = reasoning.strip() if reasoning is not None else None
    return (reasoning or None), answer.strip()
