"""`MedGptProcessor`: LLaVA-style records or chat prompts -> token ids, labels and image tiles.

Training, one record at a time (the dataset calls this in loader workers):

    sample = processor.tokenize_conversation(record, image_root="/data/pmc_vqa")
    # {"input_ids": LongTensor [T], "labels": LongTensor [T], "pixel_values": [tiles, 3, S, S] | None (S = tile size),
    #  "num_tiles": [tiles per image], "id": record id}

Inference and evaluation:

    prompt = processor.apply_chat_template([{"role": "user", "content": "<image>\\nWhat is shown?"}])
    inputs = processor(text=[prompt], images=[[image]])  # input_ids, attention_mask, pixel_values
    # or, as in transformers (images from the content items):
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "What?"}]}],
        add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")

`processor.chat_template` is the template as jinja (saved as chat_template.jinja by save_pretrained), rendering
the same text through transformers' or vLLM's jinja path (processing/jinja.py).

Both paths expand each "<image>" marker into IMAGE_START_TOKEN + IMAGE_TOKEN * num_image_tokens + IMAGE_END_TOKEN,
with num_image_tokens from the image processor, and both render text with the same conversation template
(llava_medgpt.processing.templates), chosen by name and saved in processor_config.json with its options.

Label rule (details in docs/conversation_templates.md): the template marks the character spans the assistant must
generate; the text is tokenised once with offsets and exactly the tokens inside those spans keep their id, every
other token (system, developer, user turns, assistant headers, image tokens) is IGNORE_INDEX.
"""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import BatchFeature, ProcessorMixin

from ..constants import (
    IGNORE_INDEX,
    IMAGE_END_TOKEN,
    IMAGE_MARKER,
    IMAGE_SPECIAL_TOKENS,
    IMAGE_START_TOKEN,
    IMAGE_TOKEN,
)
from . import harmony
from .image_io import ImageLoadError, resolve_image_path
from .records import ImageCountError, RecordError, messages_from_record, record_images, validate_record
from .templates import MedicalHarmonyTemplate, TemplateError, build_template
from .tiling import TooManyImagesError

logger = logging.getLogger(__name__)

TRUNCATION_MODES = ("error", "drop_trailing_turns")

class SampleError(ValueError):
    """A record that cannot become a training sample; the dataset skips it and counts it under `reason`."""

    reason = "invalid"

    def __init__(self, record_id: Any, problem: str):
        self.record_id = record_id
        self.problem = problem
        super().__init__(f"record {record_id!r}: {problem}")


class ImageCountMismatchError(SampleError):
    reason = "image_count_mismatch"


class SampleTooLongError(SampleError):
    reason = "too_long"

    def __init__(self, record_id: Any, length: int, max_length: int):
        self.length = length
        self.max_length = max_length
        super().__init__(record_id, f"{length} tokens exceed max_length {max_length}")


class SampleImageError(SampleError):
    reason = "image_load"


class SampleTooManyImagesError(SampleError):
    """More images than the sample's tile budget (max_tiles_per_sample): every image needs at least one tile."""

    reason = "too_many_images"


class NoTargetError(SampleError):
    reason = "no_target"


class SampleTemplateError(SampleError):
    reason = "template"


class InvalidRecordError(SampleError):
    """The record breaks the schema (processing.records.validate_record); the message says how."""

    reason = "invalid_record"


def image_placeholder(num_image_tokens: int) -> str:
    return IMAGE_START_TOKEN + IMAGE_TOKEN * num_image_tokens + IMAGE_END_TOKEN


def expand_image_markers(text: str, num_image_tokens: Sequence[int]) -> str:
    """Replace the i-th "<image>" marker of `text` by the placeholder for num_image_tokens[i] tokens."""
    parts = text.split(IMAGE_MARKER)
    if len(parts) - 1 != len(num_image_tokens):
        raise ValueError(f"text has {len(parts) - 1} {IMAGE_MARKER} markers but {len(num_image_tokens)} images")
    pieces = [parts[0]]
    for count, part in zip(num_image_tokens, parts[1:]):
        pieces.append(image_placeholder(int(count)))
        pieces.append(part)
    return "".join(pieces)


def labels_from_spans(input_ids: torch.Tensor, offsets: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Token labels [T]: the token id where the token's characters lie inside a target span, else IGNORE_INDEX.

    input_ids [T], offsets [T, 2] (character start, end of each token), spans: sorted half-open character ranges.
    A token that crosses a span boundary (a BPE merge of target and non-target characters) raises ValueError:
    labelling it would train on prompt text or drop target text, so the template must be fixed instead.
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)  # [T]
    if not spans or len(input_ids) == 0:
        return labels
    span_starts = torch.tensor([start for start, _ in spans])  # [S]
    span_ends = torch.tensor([end for _, end in spans])  # [S]
    starts, ends = offsets[:, 0].contiguous(), offsets[:, 1].contiguous()  # [T]
    # The first span ending after the token's start is the only one the token can overlap.
    index = torch.searchsorted(span_ends, starts, right=True).clamp(max=len(spans) - 1)  # [T]
    overlaps = (starts < span_ends[index]) & (ends > span_starts[index]) & (ends > starts)  # zero-width: no text
    inside = overlaps & (starts >= span_starts[index]) & (ends <= span_ends[index])
    crossing = (overlaps & ~inside).nonzero()
    if len(crossing):
        position = crossing[0].item()
        raise ValueError(
            f"token {position} (characters {starts[position].item()}-{ends[position].item()}) crosses the target "
            f"span {span_starts[index[position]].item()}-{span_ends[index[position]].item()}"
        )
    labels[inside] = input_ids[inside]
    return labels


class MedGptProcessor(ProcessorMixin):
    r"""
    Tokenizer + MedGptImageProcessor + a named conversation template.

    conversation_template: key of llava_medgpt.processing.templates.CONVERSATION_TEMPLATES
        ("medical_harmony" for GPT-oss, "generic" for backbones with their own jinja chat template).
    template_options: the template's options as a JSON dict (HarmonyOptions / GenericOptions fields, e.g.
        {"reasoning_effort": "high", "developer_instructions": "..."}), saved in processor_config.json.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        conversation_template: str = "medical_harmony",
        template_options: dict | None = None,
        chat_template=None,
        **kwargs,
    ):
        self.conversation_template = conversation_template
        self.template_options = dict(template_options or {})
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)
        missing = [token for token in IMAGE_SPECIAL_TOKENS if token not in tokenizer.get_vocab()]
        if missing:
            raise ValueError(
                f"The tokenizer lacks the image tokens {missing}; add them (model.builder.add_image_tokens)"
            )
        # Prompts are padded on the left for generation (our __call__'s default); transformers' pipeline pads its
        # batches itself with the tokenizer's side, so the processor's tokenizer says left too. Training never pads
        # with the tokenizer (the collator builds its rows).
        tokenizer.padding_side = "left"
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self._image_token_ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(IMAGE_SPECIAL_TOKENS)))
        self.template()  # fail at construction on an unknown template name or option
        loaded = self.__dict__.pop("_loaded_chat_template", None)
        if loaded is not None and loaded != self.chat_template:
            logger.warning(
                "chat_template.jinja differs from the one generated from conversation_template=%r and its "
                "template_options; llava_medgpt renders with its Python template (the file is rewritten on save)",
                self.conversation_template,
            )

    @property
    def chat_template(self) -> str:
        """The conversation template as jinja (saved as chat_template.jinja), generated from the Python template.

        transformers' and vLLM's own rendering of it equals `apply_chat_template` here (tested), so engines that
        only read the checkpoint's files format prompts exactly as training did.
        """
        return self.template().chat_template()

    @chat_template.setter
    def chat_template(self, value) -> None:
        if "tokenizer" not in self.__dict__:  # ProcessorMixin.__init__ passes the loaded chat_template.jinja
            self.__dict__["_loaded_chat_template"] = value
            return
        if value != self.chat_template:
            raise AttributeError(
                "MedGptProcessor.chat_template is generated from conversation_template and template_options; "
                "set those instead"
            )

    def template(self, **option_overrides):
        """The conversation template object, with per-call option overrides (e.g. reasoning_effort="high")."""
        # Built on demand, not stored: ProcessorMixin.to_dict deep-copies every attribute.
        return build_template(self.conversation_template, self.tokenizer, {**self.template_options, **option_overrides})

    # ------------------------------------------------------------------------------------------------ training

    def tokenize_conversation(
        self,
        record: Mapping[str, Any],
        images: Sequence[Any] | None = None,
        image_root: str | None = None,
        max_length: int | None = None,
        return_uint8: bool = False,
        truncation: str = "error",
    ) -> dict[str, Any]:
        """One LLaVA JSON record -> input_ids [T], labels [T], pixel_values [tiles, 3, S, S] or None, num_tiles, id.

        images: decoded images (or paths/bytes) in marker order; default: the record's "image" paths, resolved
            inside image_root (paths leaving it are refused).
        max_length: default tokenizer.model_max_length.
        truncation: what to do with a sample longer than max_length. "error" (default): SampleTooLongError.
            "drop_trailing_turns": drop whole trailing exchanges (everything after an earlier assistant turn) while
            that keeps at least one assistant turn and removes no image marker; SampleTooLongError if that is not
            enough. Tokens are never cut mid-turn, so image placeholders and targets stay whole.
        Raises a SampleError subclass naming the record id for every problem with the record.
        """
        if truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {TRUNCATION_MODES}, got {truncation!r}")
        try:
            # Absolute paths are accepted: resolve_image_path keeps every path inside image_root.
            validate_record(record, allow_absolute_paths=True, image_count=None if images is None else len(images))
        except ImageCountError as err:
            raise ImageCountMismatchError(err.record_id, err.problem) from err
        except RecordError as err:
            raise InvalidRecordError(err.record_id, err.problem) from err
        record_id = record["id"]
        messages = messages_from_record(record)
        sources = list(images) if images is not None else list(record_images(record))

        pixel_values, num_tiles, num_image_tokens = None, [], []
        if sources:
            try:
                if images is None and image_root is not None:
                    sources = [resolve_image_path(image_root, path) for path in sources]
                vision = self.image_processor(sources, return_uint8=return_uint8, return_tensors="pt")
            except ImageLoadError as err:
                raise SampleImageError(record_id, str(err)) from err
            except TooManyImagesError as err:
                raise SampleTooManyImagesError(record_id, str(err)) from err
            pixel_values = vision["pixel_values"]  # [total_tiles, 3, S, S]
            num_tiles = vision["num_tiles"].tolist()
            num_image_tokens = vision["num_image_tokens"].tolist()

        max_length = max_length or self.tokenizer.model_max_length
        # Each marker becomes a one-token placeholder for rendering and tokenising; the image tokens are
        # multiplied out on the ids afterwards (thousands of identical special tokens need no tokeniser).
        messages = _expand_markers_in_messages(messages, [1] * len(num_image_tokens))
        input_ids, labels = self._encode_messages(record_id, messages, num_image_tokens)
        full_length = len(input_ids)
        while len(input_ids) > max_length and truncation == "drop_trailing_turns":
            shorter = _without_last_exchange(messages)
            if shorter is None:
                break
            messages = shorter
            input_ids, labels = self._encode_messages(record_id, messages, num_image_tokens)
        if len(input_ids) > max_length:
            raise SampleTooLongError(record_id, full_length, max_length)
        if bool((labels == IGNORE_INDEX).all()):
            raise NoTargetError(record_id, "no assistant turn to train on")
        return {
            "input_ids": input_ids,  # [T]
            "labels": labels,  # [T]
            "pixel_values": pixel_values,
            "num_tiles": num_tiles,
            "id": record_id,
        }

    def _encode_messages(
        self, record_id: Any, messages: list[dict[str, Any]], num_image_tokens: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            rendered = self.template().render(messages, add_generation_prompt=False)
            _check_encodable(rendered.text)
            return self._tokenize_with_labels(rendered, num_image_tokens)
        except ValueError as err:  # TemplateError, text that is not Unicode, a token crossing a target boundary
            raise SampleTemplateError(record_id, str(err)) from err

    def _tokenize_with_labels(self, rendered, num_image_tokens: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rendered text with one IMAGE_TOKEN per image -> input_ids [T], labels [T] with images multiplied out."""
        # add_special_tokens=False: the template already wrote every special token (BOS included, if any).
        encoding = self.tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
        input_ids = torch.tensor(encoding["input_ids"], dtype=torch.long)  # [t]
        offsets = torch.tensor(encoding["offset_mapping"], dtype=torch.long).reshape(-1, 2)  # [t, 2]
        labels = labels_from_spans(input_ids, offsets, rendered.target_spans)  # [t]
        # Image tokens only come from user/system turns; the guard keeps that true whatever a template does.
        labels[torch.isin(input_ids, self._image_token_ids)] = IGNORE_INDEX
        pads = (input_ids == self.image_token_id).nonzero().flatten()  # one per image, in order
        if len(pads) != len(num_image_tokens):
            raise ValueError(
                f"the rendered text holds {len(pads)} {IMAGE_TOKEN} tokens for {len(num_image_tokens)} images"
            )
        repeats = torch.ones_like(input_ids)
        repeats[pads] = torch.tensor(list(num_image_tokens), dtype=torch.long)
        return input_ids.repeat_interleave(repeats), labels.repeat_interleave(repeats)  # [T], [T]

    # ----------------------------------------------------------------------------------------------- inference

    def apply_chat_template(
        self,
        conversation,
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        return_dict: bool = False,
        return_tensors: str | None = "auto",
        continue_final_message: bool = False,
        processor_kwargs: dict | None = None,
        tools=None,
        documents=None,
        return_assistant_tokens_mask: bool = False,
        **template_kwargs,
    ):
        """Chat messages -> prompt text (markers kept), or with tokenize=True model inputs, as in transformers.

        conversation: one list of messages or a batch of them. Content is a string with "<image>" markers or a
            list of content items ({"type": "text", "text": ...}, {"type": "image", "image": PIL image | path}).
        add_generation_prompt: True by default here (this method serves inference; training renders through
            `tokenize_conversation`). transformers' pipeline passes it explicitly.
        tokenize: False -> the prompt string(s). True -> input_ids, or with return_dict=True the processor's
            BatchFeature (input_ids, attention_mask, pixel_values) for the images of the content items, in order
            (or `processor_kwargs["images"]` for string content with markers).
        template_kwargs: template options for this call (HarmonyOptions / GenericOptions fields, e.g.
            reasoning_effort="high"); unknown names raise TemplateError.
        chat_template: an explicit jinja template renders through transformers' own implementation instead.
        """
        if chat_template is not None:
            return super().apply_chat_template(
                conversation, chat_template=chat_template, add_generation_prompt=add_generation_prompt,
                tokenize=tokenize, return_dict=return_dict, return_tensors=return_tensors,
                continue_final_message=continue_final_message, processor_kwargs=processor_kwargs, tools=tools,
                documents=documents, return_assistant_tokens_mask=return_assistant_tokens_mask, **template_kwargs,
            )
        unsupported = {
            "tools": tools is not None, "documents": documents is not None,
            "continue_final_message": bool(continue_final_message),
            "return_assistant_tokens_mask": bool(return_assistant_tokens_mask),
        }
        if any(unsupported.values()):
            raise TemplateError(
                f"MedGptProcessor.apply_chat_template does not support {[k for k, v in unsupported.items() if v]}"
                " (training labels come from tokenize_conversation)"
            )
        batched = bool(conversation) and isinstance(conversation[0], (list, tuple))
        conversations = [list(c) for c in conversation] if batched else [list(conversation)]
        template = self.template(**template_kwargs)
        prompts = [template.render(messages, add_generation_prompt=add_generation_prompt).text
                   for messages in conversations]
        if not tokenize:
            return prompts if batched else prompts[0]

        processor_kwargs = dict(processor_kwargs or {})
        images = processor_kwargs.pop("images", None)
        if images is None:
            images = [content_images(messages) for messages in conversations]
        elif not batched:
            images = [images]
        inputs = self(
            text=prompts,
            images=images if any(images) else None,
            return_tensors="pt" if return_tensors == "auto" else return_tensors,
            **processor_kwargs,
        )
        return inputs if return_dict else inputs["input_ids"]

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens: bool = True, **kwargs):
        """Token ids -> text. Harmony outputs with skip_special_tokens=True give the final channel of the reply to the
        last user message, as the `image-text-to-text` pipeline expects of a reply (the analysis channel is not the
        answer)."""
        texts = self.tokenizer.batch_decode(
            generated_outputs, skip_special_tokens=skip_special_tokens and not self._is_harmony, **kwargs
        )
        if skip_special_tokens and self._is_harmony:
            # The pipeline decodes prompt + reply and the prompt alone, then removes the second from the first: each
            # gives the final channel of its last reply only ("" for a prompt), never an earlier turn's answer.
            texts = [harmony.reply_answer(text) for text in texts]
        return texts

    @property
    def _is_harmony(self) -> bool:
        return self.conversation_template == MedicalHarmonyTemplate.name

    def __call__(
        self,
        text: str | list[str] | None = None,
        images=None,
        padding: bool | str = "longest",
        padding_side: str = "left",
        return_tensors: str | None = "pt",
        return_uint8: bool = False,
        **kwargs,
    ) -> BatchFeature:
        """Prompt text(s) with "<image>" markers + images per text -> input_ids, attention_mask, pixel_values.

        images, in the order of the "<image>" markers:
            - a list of lists: one list per text (possibly empty); a single text counts as a list of one;
            - a flat list (or one image): all images of all texts, which the texts take in turn, as many as each
              has markers (transformers' LLaVA / InternVL convention; `text=[prompt], images=[image]` and one
              image per single-marker prompt are the common cases).
            The number of images must equal the number of markers; a list mixing images and lists is refused.
        An image is a path, file bytes or a PIL image. Left padding by default, as generation appends on the right.
        """
        if text is None:
            raise ValueError("MedGptProcessor needs text (a prompt, e.g. from apply_chat_template)")
        if kwargs:
            raise TypeError(f"Unexpected arguments {sorted(kwargs)}")
        texts = [text] if isinstance(text, str) else list(text)
        per_text_images = _images_per_text(images, texts)

        data = {}
        tokens_per_image: list[int] = []
        if any(per_text_images):
            vision = self.image_processor(per_text_images, return_uint8=return_uint8, return_tensors="pt")
            data["pixel_values"] = vision["pixel_values"]  # [total_tiles, 3, S, S]
            tokens_per_image = vision["num_image_tokens"].tolist()

        expanded, cursor = [], 0
        for index, (prompt, sample_images) in enumerate(zip(texts, per_text_images)):
            if prompt.count(IMAGE_MARKER) != len(sample_images):
                raise ValueError(
                    f"text {index} has {prompt.count(IMAGE_MARKER)} {IMAGE_MARKER} markers but "
                    f"{len(sample_images)} images"
                )
            expanded.append(expand_image_markers(prompt, tokens_per_image[cursor : cursor + len(sample_images)]))
            cursor += len(sample_images)

        encoding = self.tokenizer(
            expanded,
            padding=padding,
            padding_side=padding_side,
            add_special_tokens=False,
            return_tensors=return_tensors,
        )
        data.update(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"])
        return BatchFeature(data=data, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def content_images(messages: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The images of HF content items ({"type": "image", "image" | "path" | "url": ...}) in reading order.

    Local only: a http(s) URL is refused (nothing here downloads; fetch it and pass the image).
    """
    images = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) or content is None:
            continue
        for item in content:
            if item.get("type") != "image":
                continue
            source = next((item[key] for key in ("image", "path", "url") if item.get(key) is not None), None)
            if source is None:
                raise ValueError("An image content item needs an 'image' (PIL image, path or bytes), 'path' or 'url'")
            if isinstance(source, str) and source.startswith(("http://", "https://")):
                raise ValueError(f"Remote image {source!r}: llava_medgpt does not download; pass a local file")
            images.append(source)
    return images


def _check_encodable(text: str) -> None:
    """ValueError for text the tokenizer cannot take: JSON may carry lone surrogates ("\\ud800"), which are not
    Unicode scalar values (the Rust tokenizer fails on them with a TypeError)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"the text holds {text[err.start:err.end]!r} at character {err.start}, which is not valid "
                         "Unicode (a lone surrogate); fix the manifest's text") from None


def _expand_markers_in_messages(messages: list[dict[str, Any]], num_image_tokens: Sequence[int]) -> list[dict]:
    expanded, cursor = [], 0
    for message in messages:
        count = message["content"].count(IMAGE_MARKER)
        content = expand_image_markers(message["content"], num_image_tokens[cursor : cursor + count])
        expanded.append({**message, "content": content})
        cursor += count
    return expanded


def _without_last_exchange(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Messages up to and including the second-to-last assistant turn, or None if that would drop an image
    placeholder or leave no assistant turn."""
    assistant_positions = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    if len(assistant_positions) < 2:
        return None
    kept, dropped = messages[: assistant_positions[-2] + 1], messages[assistant_positions[-2] + 1 :]
    if any(IMAGE_START_TOKEN in message["content"] for message in dropped):
        return None
    return kept


def _images_per_text(images, texts: Sequence[str]) -> list[list[Any]]:
    """Split `images` into one list per text (rules in MedGptProcessor.__call__)."""
    if images is None:
        return [[] for _ in texts]
    if not isinstance(images, (list, tuple)):
        images = [images]
    nested = [isinstance(item, (list, tuple)) for item in images]
    if images and all(nested):
        if len(images) != len(texts):
            raise ValueError(f"images is a list of {len(images)} lists for {len(texts)} texts; give one list per "
                             "text, or a flat list of all images in marker order")
        return [list(sample) for sample in images]
    if any(nested):
        raise ValueError("images mixes lists and single images; give one list per text, or a flat list of all "
                         "images in marker order")
    counts = [prompt.count(IMAGE_MARKER) for prompt in texts]
    if sum(counts) != len(images):
        raise ValueError(f"{len(images)} images for {sum(counts)} {IMAGE_MARKER} markers in {len(texts)} texts "
                         f"(markers per text: {counts})")
    per_text, cursor = [], 0
    for count in counts:
        per_text.append(list(images[cursor : cursor + count]))
        cursor += count
    return per_text


__all__ = [
    "ImageCountMismatchError",
    "InvalidRecordError",
    "MedGptProcessor",
    "NoTargetError",
    "SampleError",
    "SampleImageError",
    "SampleTemplateError",
    "SampleTooLongError",
    "SampleTooManyImagesError",
    "expand_image_markers",
    "labels_from_spans",
]
