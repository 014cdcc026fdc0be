"""Any transformers checkpoint -> a chat model the harness can prompt: the model, its processor or
tokenizer, and an adapter that renders our messages through the checkpoint's own chat template.

Adapters are chosen by `config.model_type` (an explicit registry, no name matching):
    llava_medgpt                      our processor: "<image>" markers in string content
    gemma3, qwen2_5_vl, qwen2_vl,
    llava_onevision, llava, ...       HF processors: structured content [{"type": "image"}, {"type": "text"}]
    anything else                     a causal LM with its tokenizer (text-only tasks)
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from ..constants import HARMONY_CHANNEL, IMAGE_MARKER


class TextOnlyModel(ValueError):
    """A multimodal item was given to a model without a vision tower."""


def split_image_markers(content: str) -> list[dict[str, str]]:
    """"<image>\\nWhat is shown?" -> [{"type": "image"}, {"type": "text", "text": "What is shown?"}]."""
    parts: list[dict[str, str]] = []
    for n, text in enumerate(content.split(IMAGE_MARKER)):
        if n > 0:
            parts.append({"type": "image"})
        text = text.strip("\n") if n > 0 else text
        if text:
            parts.append({"type": "text", "text": text})
    return parts


@dataclass(frozen=True)
class ChatAdapter:
    """How one family of checkpoints turns (messages, images) into model inputs.

    structured: messages need HF structured content (the processor's template places image tokens).
    nested_images: the processor wants one list of images per sample (Gemma 3) instead of a flat list.
    multimodal: False for text-only causal LMs.
    """

    structured: bool = False
    nested_images: bool = False
    multimodal: bool = True

    def render(self, chat: "ChatModel", messages: list[dict], template_kwargs: dict) -> str:
        """The prompt string, through the checkpoint's own chat template, ending in the generation prompt."""
        if not self.multimodal:
            return chat.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                      **template_kwargs)
        if self.structured:
            messages = [{"role": m["role"], "content": split_image_markers(m["content"])} for m in messages]
            return chat.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                      **template_kwargs)
        return chat.processor.apply_chat_template(messages, add_generation_prompt=True, **template_kwargs)

    def encode(self, chat: "ChatModel", prompts: list[str], images: list[list[Image.Image]]) -> dict[str, Any]:
        """Left-padded input tensors for a batch of prompts and their images (in marker order)."""
        if not self.multimodal:
            if any(images):
                raise TextOnlyModel("text-only model given images")
            return chat.tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
        if not any(images):
            return chat.processor(text=prompts, padding=True, return_tensors="pt")
        batch_images = images if self.nested_images else [image for sample in images for image in sample]
        return chat.processor(text=prompts, images=batch_images, padding=True, return_tensors="pt")


MEDGPT = ChatAdapter(nested_images=True)
HF_VLM = ChatAdapter(structured=True)
ADAPTERS: dict[str, ChatAdapter] = {
    "llava_medgpt": MEDGPT,
    "gemma3": ChatAdapter(structured=True, nested_images=True),
    "qwen2_5_vl": HF_VLM,
    "qwen2_vl": HF_VLM,
    "qwen3_vl": HF_VLM,
    "llava_onevision": HF_VLM,
    "llava": HF_VLM,
    "llava_next": HF_VLM,
}
TEXT_ONLY = ChatAdapter(multimodal=False)


@dataclass
class ChatModel:
    model: Any
    processor: Any  # the processor (VLMs) or the tokenizer (causal LMs)
    model_type: str
    adapter: ChatAdapter
    harmony: bool = False  # GPT-oss chat format: decode with special tokens, score the final channel
    template_kwargs: dict = field(default_factory=dict)

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def multimodal(self) -> bool:
        return self.adapter.multimodal


def load_chat_model(path: str, dtype: torch.dtype | None = None, attn_implementation: str | None = None,
                    template_kwargs: dict | None = None) -> ChatModel:
    """Load a checkpoint folder (or hub id) with its processor/tokenizer; never trust_remote_code."""
    import llava_medgpt  # noqa: F401  registers the llava_medgpt Auto classes

    config = AutoConfig.from_pretrained(path)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    adapter = ADAPTERS.get(config.model_type)
    if adapter is not None:
        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        processor = AutoProcessor.from_pretrained(path)
    else:
        adapter = TEXT_ONLY
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        processor = AutoTokenizer.from_pretrained(path)
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"  # batched generation appends after the last real token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    harmony = HARMONY_CHANNEL in tokenizer.get_vocab()
    return ChatModel(model=model, processor=processor, model_type=config.model_type, adapter=adapter,
                     harmony=harmony, template_kwargs=dict(template_kwargs or {}))
