"""Reading GPT-oss (harmony) output as it streams: which channel each piece of text belongs to.

Generation starts after the prompt's `<|start|>assistant`, so a reply looks like

    <|channel|>analysis<|message|>reasoning<|end|><|start|>assistant<|channel|>final<|message|>answer<|return|>

`HarmonyParser` takes the reply as pieces that are either one whole special token or plain text (a token-level
streamer produces exactly that; `split_pieces` cuts a decoded string the same way) and returns
(channel, text) deltas. Text outside any header or message (a model that ignores the format, e.g. an untrained
one) is reported on the final channel rather than hidden, so a user always sees what the model wrote.
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


def parse_channels(text: str) -> dict[str, str]:
    """A whole decoded reply -> {channel: text} (messages of one channel concatenated)."""
    channels: dict[str, str] = {}
    for channel, piece in HarmonyParser().feed_text(text):
        channels[channel] = channels.get(channel, "") + piece
    return channels


def final_answer(text: str) -> str:
    """The final-channel text of a decoded reply; a reply without harmony markup is its own answer."""
    if not any(token in text for token in HARMONY_SPECIAL_TOKENS):
        return text
    return parse_channels(text).get(FINAL, "")


__all__ = ["ANALYSIS", "FINAL", "HarmonyParser", "final_answer", "parse_channels", "split_pieces"]
