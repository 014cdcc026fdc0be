"""Reading GPT-oss (harmony) output: the channels of a whole completion, or of a reply as it streams.

Generation starts after the prompt's `<|start|>assistant`, so a reply looks like

    <|channel|>analysis<|message|>reasoning<|end|><|start|>assistant<|channel|>final<|message|>answer<|return|>

`parse_harmony` / `answer_text` read a whole completion (only the final channel is ever scored; the analysis is
kept for inspection; text outside any message is not an answer). `HarmonyParser` reads a reply as it streams, as
pieces that are either one whole special token or plain text (what a token-level streamer produces; `split_pieces`
cuts a decoded string the same way), and returns (channel, text) deltas. For display, text outside any header or
message (a model that ignores the format, e.g. an untrained one) is reported on the final channel rather than
hidden, so a user always sees what the model wrote.
"""

import re
from dataclasses import dataclass, field

from ..constants import (
    HARMONY_CALL,
    HARMONY_CHANNEL,
    HARMONY_CONSTRAIN,
    HARMONY_END,
    HARMONY_ENDOFTEXT,
    HARMONY_MESSAGE,
    HARMONY_RETURN,
    HARMONY_SPECIAL_TOKENS,
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


FINAL = "final"
ANALYSIS = "analysis"
STOP_TOKENS = (HARMONY_RETURN, HARMONY_CALL)
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(token) for token in HARMONY_SPECIAL_TOKENS) + ")")


def split_pieces(text: str) -> list[str]:
    """Decoded text (special tokens kept) -> alternating plain-text pieces and whole special tokens."""
    return [piece for piece in _SPECIAL_RE.split(text) if piece]


@dataclass
class HarmonyParser:
    """Incremental harmony reader: `feed(piece)` -> [(channel, text)]; `done` once the reply has ended.

    A message's channel is its `<|channel|>` name, else its role (system, developer, user), else final, so a
    whole rendered conversation parses too (its prompt messages land on their role's channel).
    `<|endoftext|>` is padding here and ignored; `<|return|>` and `<|call|>` end the reply.
    """

    done: bool = False
    _state: str = "reply"  # "reply": outside any header or message; "header"; "message"
    _channel: str = FINAL
    _header: list[str] = field(default_factory=list)

    def feed(self, piece: str) -> list[tuple[str, str]]:
        if self.done or not piece or piece == HARMONY_ENDOFTEXT:
            return []
        if piece in STOP_TOKENS:
            self.done = True
            return []
        if piece == HARMONY_START:
            self._state, self._header = "header", []
        elif piece == HARMONY_END:
            self._state = "reply"
        elif piece in (HARMONY_CHANNEL, HARMONY_CONSTRAIN):
            if self._state != "header":
                self._state, self._header = "header", []
            self._header.append(piece)
        elif piece == HARMONY_MESSAGE:
            self._channel = self._channel_from_header() if self._state == "header" else FINAL
            self._state = "message"
        elif self._state == "header":
            self._header.append(piece)
        else:
            # Message text, or text where a header belongs (a model not following harmony: shown as its answer).
            return [(self._channel if self._state == "message" else FINAL, piece)]
        return []

    def feed_text(self, text: str) -> list[tuple[str, str]]:
        events = []
        for piece in split_pieces(text):
            events.extend(self.feed(piece))
        return events

    def _channel_from_header(self) -> str:
        header = "".join(self._header)
        if HARMONY_CHANNEL in header:
            name = header.split(HARMONY_CHANNEL, 1)[1].split(HARMONY_CONSTRAIN, 1)[0].split()
        else:
            name = header.split()
            name = [] if name[:1] == ["assistant"] else name
        return name[0].lower() if name else FINAL


_PROMPT_MESSAGE_RE = re.compile(re.escape(HARMONY_START) + r"(?:user|system|developer)\b.*?(?:" + re.escape(HARMONY_END)
                                + r"|\Z)", re.DOTALL)


def reply_answer(text: str) -> str:
    """The answer a reader sees in `text`, a reply or a decoded prompt + reply: the final channel of the reply to
    the conversation's last user, system or developer message, read as HarmonyParser shows it (text outside any
    message counts as final); "" for a prompt alone. An earlier turn's answer in the prompt is not this reply's."""
    start = 0
    for match in _PROMPT_MESSAGE_RE.finditer(text):
        start = match.end()
    events = HarmonyParser().feed_text(text[start:])
    return "".join(delta for channel, delta in events if channel == FINAL).strip()


__all__ = ["ANALYSIS", "FINAL", "HarmonyParser", "answer_text", "is_harmony", "parse_harmony", "reply_answer",
           "split_pieces"]
