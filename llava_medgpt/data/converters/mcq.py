"""The one multiple-choice format, shared by training converters and decontamination.

Prompt:                                   Answer (what the eval scorer reads as option B):
    {question}                                B. Focal uptake pattern
    A. Diffuse uptake pattern
    B. Focal uptake pattern
    ...
    Answer with the option's letter and text, e.g. "A. ...".

The instruction is `llava_medgpt.benchmarks.ANSWER_WITH_LETTER_AND_TEXT`; evaluation prompts ask for the
letter alone (`ANSWER_WITH_LETTER`).
"""

from ...benchmarks import ANSWER_WITH_LETTER_AND_TEXT
from ...benchmarks.base import LETTERS
from .common import SkipRow, is_missing, text


def format_mcq_prompt(question: str, options: dict[str, str]) -> str:
    """`options` maps letters (A, B, ...) to option texts, in display order."""
    lines = [question.strip()]
    lines += [f"{letter}. {option.strip()}" for letter, option in options.items()]
    lines.append(ANSWER_WITH_LETTER_AND_TEXT)
    return "\n".join(lines)


def format_mcq_answer(letter: str, options: dict[str, str]) -> str:
    if letter not in options:
        raise KeyError(letter)
    return f"{letter}. {options[letter].strip()}"


def mcq_question_stem(prompt: str) -> str:
    """Inverse of format_mcq_prompt for the question: the text before the first option line.

    Text without the MCQ instruction line is returned unchanged (it is not an MCQ prompt).
    """
    lines = prompt.split("\n")
    if not lines or lines[-1] != ANSWER_WITH_LETTER_AND_TEXT:
        return prompt
    for i, line in enumerate(lines):
        if line.startswith("A. "):
            return "\n".join(lines[:i])
    return prompt


def lettered(options: list[str]) -> dict[str, str]:
    """Assign letters A, B, ... to a list of option texts."""
    if len(options) > len(LETTERS):
        raise ValueError(f"too many options: {len(options)}")
    return {LETTERS[i]: text for i, text in enumerate(options)}


def read_lettered_options(row, options_field: str = "options", answer_field: str = "answer_idx"):
    """(options, answer letter) of a row whose options are a dict lettered A, B, ... (MedQA's layout).

    Raises SkipRow naming the problem.
    """
    raw_options = row.get(options_field)
    if not isinstance(raw_options, dict) or not raw_options:
        raise SkipRow(f"missing field {options_field!r}")
    options = {str(k).strip().upper(): str(v).strip() for k, v in raw_options.items() if not is_missing(v)}
    if list(options) != list(LETTERS[: len(options)]):
        raise SkipRow("options are not lettered A, B, ... in order")
    letter = text(row, answer_field).upper()
    if letter not in options:
        raise SkipRow(f"{answer_field} {letter!r} is not an option")
    return options, letter
