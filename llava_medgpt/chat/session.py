"""A multi-turn conversation with one loaded checkpoint, images attached per turn.

    session = ChatSession(load_chat_model("outputs/stage2"), reasoning_effort="medium")
    for delta in session.ask("What does the image show?", images=["cxr.png"]):
        ...  # Delta(channel, text, tokens): "analysis" deltas first (harmony), then "final"
    session.history  # [{"role": "user", "content": "<image>\\nWhat..."}, {"role": "assistant", ...}]

A turn's images go before its text, one "<image>" marker each, in the order given (for longitudinal studies: prior
first, then current). Images are decoded with the project's loader (DICOM windowing, 16-bit stretch, EXIF), so a
.dcm file and a PNG export of it reach the model the same way. The assistant turn is stored with its final answer
as content and its analysis as "reasoning"; the template drops earlier reasoning from later prompts, as GPT-oss does.
"""

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image

from ..constants import IMAGE_MARKER
from ..inference.models import ChatModel, load_chat_model
from ..inference.streaming import Delta, GenerationSettings, StreamStats, stream_reply
from ..processing.harmony import ANALYSIS, FINAL
from ..processing.image_io import ImageSource, load_image


def user_message(text: str, num_images: int) -> dict:
    """The user turn for `text` with `num_images` images before it."""
    return {"role": "user", "content": (IMAGE_MARKER + "\n") * num_images + text}


@dataclass
class ChatSession:
    chat: ChatModel
    reasoning_effort: str | None = None  # harmony models only; None: the checkpoint's template option
    system: str | None = None  # a leading system message (harmony: the developer instructions)
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    history: list[dict] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)  # every image so far, in marker order
    last_stats: StreamStats | None = None

    def load_images(self, sources: list[ImageSource]) -> list[Image.Image]:
        images = [load_image(source) for source in sources]
        if images and not self.chat.multimodal:
            raise ValueError(f"{self.chat.model_type} is a text-only model; it cannot take images")
        return images

    def template_kwargs(self) -> dict:
        """Per-call template options: the reasoning effort, for harmony checkpoints (others have no such option)."""
        if self.reasoning_effort is None or not self.chat.harmony:
            return {}
        return {"reasoning_effort": self.reasoning_effort}

    def prompt(self, text: str, num_images: int = 0) -> str:
        """The prompt text `ask(text, <num_images images>)` sends now (image markers not yet expanded)."""
        messages = self.messages() + [user_message(text, num_images)]
        return self.chat.adapter.render(self.chat, messages, {**self.chat.template_kwargs, **self.template_kwargs()})

    def messages(self) -> list[dict]:
        lead = [{"role": "system", "content": self.system}] if self.system else []
        return lead + self.history

    def ask(self, text: str, images: list[ImageSource] = (), stop: threading.Event | None = None) -> Iterator[Delta]:
        """Stream the reply to `text` (+ `images`); the exchange joins the history once the reply is complete."""
        new_images = self.load_images(list(images))
        user = user_message(text, len(new_images))
        stream = stream_reply(self.chat, self.messages() + [user], self.images + new_images, self.settings,
                              self.template_kwargs(), stop)
        channels: dict[str, str] = {}
        for delta in stream:
            channels[delta.channel] = channels.get(delta.channel, "") + delta.text
            yield delta
        self.last_stats = stream.stats
        assistant = {"role": "assistant", "content": channels.get(FINAL, "").strip()}
        if channels.get(ANALYSIS):
            assistant["reasoning"] = channels[ANALYSIS].strip()
        self.history += [user, assistant]
        self.images += new_images

    def reset(self) -> None:
        self.history, self.images = [], []


DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def load_chat_session_model(path: str, device: str | None = None, dtype: str | None = None) -> ChatModel:
    """load_chat_model on `device` (default: cuda when available) in `dtype` (default: bf16 on GPU, fp32 on CPU)."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, DTYPES[dtype]) if dtype else (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    return load_chat_model(path, dtype=dtype, device_map=device)


def image_label(source: ImageSource) -> str:
    return os.path.basename(str(source)) if isinstance(source, (str, os.PathLike)) else type(source).__name__


__all__ = ["ChatSession", "image_label", "load_chat_session_model", "user_message"]
