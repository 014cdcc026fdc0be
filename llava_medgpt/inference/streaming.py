"""Streaming generation: a reply as (channel, text) deltas while transformers' `generate` is still running.

    for delta in stream_reply(chat, messages, images, GenerationSettings(max_new_tokens=256)):
        print(delta.text, end="", flush=True)   # delta.channel: "analysis" | "final" | ...

`ChannelStreamer` receives token ids from `generate` one step at a time. Harmony special tokens are fed to a
`HarmonyParser` whole; the plain tokens between them are decoded as one run, and each new token emits only the
text it adds (held back while it ends inside a multi-byte character). Models without harmony stream everything on
the final channel, special tokens skipped. Generation runs in a worker thread; its exceptions re-raise in the
consumer, and `stop` (a threading.Event) ends it early, e.g. on Ctrl-C.
"""

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from PIL import Image
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ..constants import HARMONY_SPECIAL_TOKENS
from ..processing.harmony import FINAL, HarmonyParser
from .models import ChatModel


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings. Greedy by default; do_sample=True uses temperature / top_p / top_k and the seed."""

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    def generate_kwargs(self) -> dict:
        if not self.do_sample:
            return {"do_sample": False, "num_beams": 1, "temperature": None, "top_p": None, "top_k": None,
                    "max_new_tokens": self.max_new_tokens}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k or None, "max_new_tokens": self.max_new_tokens}


@dataclass(frozen=True)
class Delta:
    channel: str
    text: str
    tokens: int  # tokens generated when this text became known


@dataclass
class StreamStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    first_token_s: float | None = None  # from the call to the first generated token
    total_s: float = 0.0

    @property
    def tokens_per_s(self) -> float | None:
        """Decoding speed after the first token (the prompt's prefill is in first_token_s)."""
        if self.first_token_s is None or self.new_tokens < 2 or self.total_s <= self.first_token_s:
            return None
        return (self.new_tokens - 1) / (self.total_s - self.first_token_s)


_DONE = object()


class ChannelStreamer(BaseStreamer):
    """`generate(streamer=...)` target: token ids -> Delta objects on `self.queue` (None-terminated)."""

    def __init__(self, tokenizer, harmony: bool, started: float | None = None):
        self.tokenizer = tokenizer
        self.parser = HarmonyParser() if harmony else None
        vocab = tokenizer.get_vocab()
        self.special_ids = {vocab[t]: t for t in HARMONY_SPECIAL_TOKENS if t in vocab} if harmony else {}
        self.queue: queue.Queue = queue.Queue()
        self.stats = StreamStats()
        self._started = time.perf_counter() if started is None else started
        self._prompt_seen = False
        self._run: list[int] = []
        self._run_text = ""

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate's first call passes the prompt
            self._prompt_seen = True
            self.stats.prompt_tokens = int(value.shape[-1])
            return
        if value.dim() > 1 and value.shape[0] != 1:
            raise ValueError("ChannelStreamer streams one sequence at a time")
        for token_id in value.flatten().tolist():
            self.stats.new_tokens += 1
            if self.stats.first_token_s is None:
                self.stats.first_token_s = time.perf_counter() - self._started
            if token_id in self.special_ids:
                self._flush_run()
                self._emit(self.parser.feed(self.special_ids[token_id]))
            else:
                self._run.append(token_id)
                self._decode_run(final=False)

    def end(self) -> None:
        self._flush_run()
        self.stats.total_s = time.perf_counter() - self._started
        self.queue.put(None)

    def _decode_run(self, final: bool) -> None:
        text = self.tokenizer.decode(self._run, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            return  # the token ends inside a multi-byte character; wait for the rest
        new, self._run_text = text[len(self._run_text):], text
        if new:
            self._emit(self.parser.feed(new) if self.parser else [(FINAL, new)])

    def _flush_run(self) -> None:
        if self._run:
            self._decode_run(final=True)
        self._run, self._run_text = [], ""

    def _emit(self, events) -> None:
        for channel, text in events:
            self.queue.put(Delta(channel, text, self.stats.new_tokens))


class _StopOnEvent(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


@dataclass
class ReplyStream:
    """Iterate for Delta objects; `stats` is complete once iteration ends."""

    streamer: ChannelStreamer
    thread: threading.Thread
    stop: threading.Event
    _error: list = field(default_factory=list)

    @property
    def stats(self) -> StreamStats:
        return self.streamer.stats

    def __iter__(self) -> Iterator[Delta]:
        while True:
            item = self.streamer.queue.get()
            if item is None:
                break
            yield item
        self.thread.join()
        if self._error:
            raise self._error[0]


def stream_reply(chat: ChatModel, messages: list[dict], images: list[Image.Image],
                 settings: GenerationSettings = GenerationSettings(), template_kwargs: dict | None = None,
                 stop: threading.Event | None = None) -> ReplyStream:
    """Start generating the assistant reply to `messages` ("<image>" markers, `images` in marker order)."""
    started = time.perf_counter()
    prompt = chat.adapter.render(chat, messages, {**chat.template_kwargs, **(template_kwargs or {})})
    inputs = chat.adapter.encode(chat, [prompt], [list(images)])
    inputs = {k: v.to(chat.model.device) if hasattr(v, "to") else v for k, v in inputs.items()}
    if "pixel_values" in inputs and torch.is_floating_point(inputs["pixel_values"]):
        inputs["pixel_values"] = inputs["pixel_values"].to(chat.model.dtype)
    streamer = ChannelStreamer(chat.tokenizer, chat.harmony, started)
    stop = stop or threading.Event()
    errors: list = []

    def run():
        try:
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            with torch.inference_mode():
                chat.model.generate(
                    **inputs, **settings.generate_kwargs(), streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_StopOnEvent(stop)]),
                    pad_token_id=chat.tokenizer.pad_token_id,
                )
        except BaseException as err:  # re-raised in the consumer
            errors.append(err)
            streamer.end()

    thread = threading.Thread(target=run, name="generate", daemon=True)
    thread.start()
    return ReplyStream(streamer, thread, stop, errors)


__all__ = ["ChannelStreamer", "Delta", "GenerationSettings", "ReplyStream", "StreamStats", "stream_reply"]
