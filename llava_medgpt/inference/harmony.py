"""Split a GPT-oss (harmony) completion into its analysis and final channels.

Generation starts after `<|start|>assistant`, so a completion looks like

    <|channel|>analysis<|message|>reasoning...<|end|><|start|>assistant<|channel|>final<|message|>answer<|return|>

Only the final channel is ever scored; the analysis channel is kept for inspection.
"""

import re

from ..constants import (
    HARMONY_CALL,
    HARMONY_CHANNEL,
    HARMONY_END,
    HARMONY_ENDOFTEXT,
    HARMONY_MESSAGE,
    HARMONY_RETURN,
    HARMONY_START,
)

_MESSAGE_TERMINATORS = (HARMONY_END, HARMONY_RETURN, HARMONY_CALL, HARMONY_ENDOFTEXT, HARMONY_START)
# `<|channel|>NAME [<|constrain|>...]<|message|>BODY` up to the next terminator (or the end of a truncated output).
_MESSAGE_RE = re.compile(
    re.escape(HARMONY_CHANNEL)
    + r"\s*(?P<channel>[A-Za-z_]+)[^<]*?(?:<\|constrain\|>[^<]*)?"
    + re.escape(HARMONY_MESSAGE)
    + r"(?P<body>.*?)(?="
    + "|".join(re.escape(t) for t in _MESSAGE_TERMINATORS)
    + r"|\Z)",
    re.DOTALL,
)


def is_harmony(text: str) -> bool:
    """True when the text carries harmony channel markup."""
    return HARMONY_CHANNEL in text


def parse_harmony(text: str) -> dict[str, str | None]:
    """Return {"analysis": str | None, "final": str | None} from a harmony completion.

    Several messages on one channel are joined with a newline. A completion with no final channel
    (e.g. cut off by max_new_tokens while reasoning) has final=None, which scores as no answer.
    """
    channels: dict[str, list[str]] = {}
    for match in _MESSAGE_RE.finditer(text):
        channels.setdefault(match.group("channel").lower(), []).append(match.group("body").strip())
    joined = {name: "\n".join(bodies) for name, bodies in channels.items()}
    return {"analysis": joined.get("analysis"), "final": joined.get("final")}


def answer_text(output: str) -> str | None:
    """The part of a raw completion that is scored: the final channel for harmony, else the whole text."""
    if is_harmony(output):
        return parse_harmony(output)["final"]
    return output
