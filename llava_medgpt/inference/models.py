"""Any transformers checkpoint -> a chat model the harness can prompt: the model, its processor or
tokenizer, and an adapter that renders our messages through the checkpoint's own chat template.

Adapters are chosen by `config.model_type` (an explicit registry, no name matching):
    llava_medgpt                      our processor: "<image>" markers in string content
    gemma3, qwen2_5_vl, qwen2_vl,
    llava_onevision, llava, ...       HF processors: structured content [{"type": "image"}, {"type": "text"}]
    anything else                     a causal LM with its tokenizer (text-only tasks)

HF processors are loaded image-only: the registry names the processor class, which is built from the
checkpoint's PIL image processor, tokenizer and processor config/chat template, without a video processor.
Evaluation never passes videos, and transformers' Qwen2-VL-family and LLaVA-OneVision video processors import
torchvision (not installable beside the pinned CPU torch). The PIL backend is pinned so
pixel values do not depend on whether torchvision happens to be installed.
"""

import functools
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    Gemma3Processor,
    LlavaNextProcessor,
    LlavaOnevisionProcessor,
    LlavaProcessor,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
    Qwen3VLProcessor,
)

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
    nested_images: the processor wants one list of images per sample (Gemma 3; LLaVA-OneVision, whose
        multi-image samples skip anyres tiling) instead of a flat list.
    multimodal: False for text-only causal LMs.
    processor_class: the transformers processor, loaded image-only (`load_image_processor_only`);
        None for our own processor (AutoProcessor) and for text-only models (AutoTokenizer).
    """

    structured: bool = False
    nested_images: bool = False
    multimodal: bool = True
    processor_class: type[ProcessorMixin] | None = None

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
ADAPTERS: dict[str, ChatAdapter] = {
    "llava_medgpt": MEDGPT,
    "gemma3": ChatAdapter(structured=True, nested_images=True, processor_class=Gemma3Processor),
    "qwen2_5_vl": ChatAdapter(structured=True, processor_class=Qwen2_5_VLProcessor),
    "qwen2_vl": ChatAdapter(structured=True, processor_class=Qwen2VLProcessor),
    "qwen3_vl": ChatAdapter(structured=True, processor_class=Qwen3VLProcessor),
    "llava_onevision": ChatAdapter(structured=True, nested_images=True, processor_class=LlavaOnevisionProcessor),
    "llava": ChatAdapter(structured=True, processor_class=LlavaProcessor),
    "llava_next": ChatAdapter(structured=True, processor_class=LlavaNextProcessor),
}
TEXT_ONLY = ChatAdapter(multimodal=False)


@functools.cache
def without_video(processor_class: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """`processor_class` with no video processor among its sub-processors (unchanged if it has none).

    ProcessorMixin loads, type-checks and sets exactly the sub-processors `get_attributes()` lists, pairing the
    positional arguments its subclasses forward with that list, so the `video_processor=None` they forward is
    dropped; nothing reads the video processor unless videos are passed.
    """
    attributes = processor_class.get_attributes()
    if "video_processor" not in attributes:
        return processor_class
    image_only = [name for name in attributes if name != "video_processor"]
    return type(f"{processor_class.__name__}ImageOnly", (processor_class,),
                {"get_attributes": classmethod(lambda cls: list(image_only)), "__module__": __name__})


# trust_remote_code=False, not the default None: with None, transformers asks on stdin whether to run a
# checkpoint's custom code (Hulu-Med ships custom code), and a "y" would run it.
NO_REMOTE_CODE = {"trust_remote_code": False}

SUB_PROCESSOR_LOADERS = {
    "image_processor": lambda path: AutoImageProcessor.from_pretrained(path, backend="pil", **NO_REMOTE_CODE),
    "tokenizer": lambda path: AutoTokenizer.from_pretrained(path, **NO_REMOTE_CODE),
}


def load_image_processor_only(processor_class: type[ProcessorMixin], path: str) -> ProcessorMixin:
    """What `processor_class.from_pretrained(path)` builds, minus the video processor, with PIL image processing.

    The processor config (processor_config.json, e.g. LLaVA-OneVision's num_image_tokens) and the chat
    template come from the checkpoint through transformers' own `get_processor_dict`.
    """
    cls = without_video(processor_class)
    missing = [name for name in cls.get_attributes() if name not in SUB_PROCESSOR_LOADERS]
    if missing:
        raise ValueError(f"{path}: {processor_class.__name__} needs sub-processors {missing}, which evaluation "
                         "cannot load")
    components = [SUB_PROCESSOR_LOADERS[name](path) for name in cls.get_attributes()]
    processor_dict, _ = cls.get_processor_dict(path)
    return cls.from_args_and_dict(components, processor_dict)


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
                    template_kwargs: dict | None = None, device_map: str | None = None) -> ChatModel:
    """Load a checkpoint folder (or hub id) with its processor/tokenizer; never trust_remote_code.

    device_map: passed to from_pretrained ("cuda" loads the weights straight onto the GPU).
    """
    from ..model.auto import register_auto_classes

    register_auto_classes()  # model_type "llava_medgpt" for the Auto classes below
    config = AutoConfig.from_pretrained(path, **NO_REMOTE_CODE)
    kwargs = dict(NO_REMOTE_CODE)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    adapter = ADAPTERS.get(config.model_type)
    if adapter is not None:
        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        if adapter.processor_class is None:
            processor = AutoProcessor.from_pretrained(path, **NO_REMOTE_CODE)
            if hasattr(model.config, "check_image_processor"):  # ours: tiles and placeholders fit the tower
                model.config.check_image_processor(processor.image_processor)
        else:
            processor = load_image_processor_only(adapter.processor_class, path)
    else:
        adapter = TEXT_ONLY
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        processor = AutoTokenizer.from_pretrained(path, **NO_REMOTE_CODE)
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"  # batched generation appends after the last real token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    harmony = HARMONY_CHANNEL in tokenizer.get_vocab()
    return ChatModel(model=model, processor=processor, model_type=config.model_type, adapter=adapter,
                     harmony=harmony, template_kwargs=dict(template_kwargs or {}))
