"""LLM-assisted filter (paper 3.2): "remove clinically irrelevant pairs and misleading numeric content".

A vision-language model sees each image with the prompt `prompt` (default: prompts/relevance_numeric.txt, the
caption substituted for {caption}) and must answer exactly

    RELEVANT: yes|no
    MISLEADING_NUMBERS: yes|no

(case-insensitive yes/no, nothing else but surrounding whitespace; GPT-oss outputs are read from their final
channel). Anything else is `unparseable_verdict`, which removes the record and is counted: a judge that did not
answer has not vouched for the pair. Reasons: clinically_irrelevant (checked first), misleading_numeric.

The model is any `llava_medgpt.inference.GenerationBackend`: `HFBackend(load_chat_model(path))` for a
transformers checkpoint (batched greedy decoding), or an OpenAI-compatible server backend for a large judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Sequence

from ...constants import IMAGE_MARKER
from ...inference.harmony import answer_text
from ...processing.image_io import ImageLoadError, load_image, resolve_image_path
from ...processing.records import record_images
from .base import KEEP, BatchStep, RecordContext, Verdict, reject
from .dedup import record_caption


def default_prompt() -> str:
    return resources.files(__package__).joinpath("prompts/relevance_numeric.txt").read_text(encoding="utf-8")


_VERDICT_RE = re.compile(r"\ARELEVANT:[ \t]*(yes|no)[ \t]*\r?\nMISLEADING_NUMBERS:[ \t]*(yes|no)\Z", re.IGNORECASE)


@dataclass(frozen=True)
class LlmVerdict:
    relevant: bool
    misleading_numbers: bool


def parse_verdict(output: str) -> LlmVerdict | None:
    """The judge's verdict, or None when the output is not exactly the two verdict lines."""
    text = answer_text(output)
    if text is None:
        return None
    match = _VERDICT_RE.match(text.strip())
    if match is None:
        return None
    return LlmVerdict(match.group(1).lower() == "yes", match.group(2).lower() == "yes")


@dataclass(frozen=True)
class LlmRelevanceParams:
    prompt: str = field(default_factory=default_prompt)
    batch_size: int = 8
    max_new_tokens: int = 32
    image_max_side: int = 768  # images are downscaled before the judge's own preprocessing (bounded memory)


class LlmRelevance(BatchStep):
    name = "llm_relevance"
    Params = LlmRelevanceParams

    def __init__(self, params):
        super().__init__(params)
        if "{caption}" not in params.prompt:
            raise ValueError("curation step 'llm_relevance': the prompt must contain {caption}")
        self.backend = None

    def conversation(self, ctx: RecordContext) -> list[dict]:
        markers = "".join(IMAGE_MARKER + "\n" for _ in record_images(ctx.record))
        text = self.params.prompt.replace("{caption}", record_caption(ctx.record).strip())
        return [{"role": "user", "content": markers + text}]

    def _images(self, ctx: RecordContext) -> list:
        images = []
        for relative in record_images(ctx.record):
            image = load_image(resolve_image_path(ctx.image_folder, relative))
            image.thumbnail((self.params.image_max_side, self.params.image_max_side))
            images.append(image)
        return images

    def check_batch(self, items: Sequence[RecordContext]) -> list[Verdict]:
        if self.backend is None:
            raise RuntimeError("curation step 'llm_relevance' has no model: pass --llm-model (or remove the step)")
        verdicts: list[Verdict | None] = [None] * len(items)
        ready = []  # (index, conversation, images) of the records whose images load
        for i, ctx in enumerate(items):
            try:
                ready.append((i, self.conversation(ctx), self._images(ctx)))
            except ImageLoadError as e:
                verdicts[i] = reject("image_unreadable", 0.0, str(e))
        for start in range(0, len(ready), self.params.batch_size):
            batch = ready[start:start + self.params.batch_size]
            outputs = self.backend.generate([c for _, c, _ in batch], [im for _, _, im in batch],
                                            self.params.max_new_tokens)
            if len(outputs) != len(batch):
                raise RuntimeError(f"the judge returned {len(outputs)} outputs for {len(batch)} conversations")
            for (i, _, _), output in zip(batch, outputs):
                verdicts[i] = verdict_for(output)
        return verdicts


def verdict_for(output: str) -> Verdict:
    verdict = parse_verdict(output)
    raw = " ".join(output.split())[:200]
    if verdict is None:
        return reject("unparseable_verdict", 0.0, f"judge said: {raw!r}")
    if not verdict.relevant:
        return reject("clinically_irrelevant", 1.0, f"judge said: {raw!r}")
    if verdict.misleading_numbers:
        return reject("misleading_numeric", 1.0, f"judge said: {raw!r}")
    return KEEP
