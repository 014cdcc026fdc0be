"""vLLM's multimodal processing for MedGPT-oss: the same tiles and prompt token ids as llava_medgpt's processor.

- Settings: every image-processor setting saved in the checkpoint's processor_config.json (tile size, tile range,
  thumbnail, per-sample tile budget, normalisation, JPEG draft), overridable per server (`--mm-processor-kwargs`)
  or per request (`mm_processor_kwargs`) like any HF processor kwarg.
- Tiles: all images of one request are one sample and share its tile budget (tiling.plan_sample_tiles). The grid
  of an image therefore depends on the other images of its request, so it is part of the image's cache identity
  (`_get_mm_hashes`) and is handed to the processor for the images that miss the cache.
- Prompt: each "<image>" marker becomes IMAGE_START + IMAGE_PAD * (tiles * tokens_per_tile) + IMAGE_END, replaced
  in text and then encoded in one pass, exactly as our processor encodes its expanded prompt. (Matching the marker's
  tokens instead would keep BPE merges across the marker, e.g. ">\\n", that our processor never produces.)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path

import torch
from PIL import Image
from transformers import BatchFeature
from transformers.utils import cached_file

from vllm.multimodal.hasher import MultiModalHasher
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.media import MediaWithBytes
from vllm.multimodal.parse import ImageProcessorItems, MultiModalDataItems
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
    PromptUpdateDetails,
    cached_encode,
)
from vllm.multimodal.processing.processor import HFMultiModalInputs

from . import images as image_ops
from .tiling import plan_sample_tiles, tiles_for_grid

# llava_medgpt.constants
IMAGE_MARKER = "<image>"
IMAGE_TOKEN = "<|image_pad|>"
IMAGE_START_TOKEN = "<|image_start|>"
IMAGE_END_TOKEN = "<|image_end|>"
PROCESSOR_CONFIG = "processor_config.json"
# Processor kwarg carrying the planned grids of the images that missed the cache (never set by users).
GRIDS_KWARG = "_medgpt_tile_grids"


@dataclasses.dataclass(frozen=True)
class ImageSettings:
    """MedGptImageProcessor's saved settings (processor_config.json, key "image_processor")."""

    tile_size: int
    min_tiles: int
    max_tiles: int
    use_thumbnail: bool
    max_tiles_per_sample: int
    tokens_per_tile: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    use_jpeg_draft: bool

    @classmethod
    def from_processor_config(cls, path: str | Path) -> ImageSettings:
        saved = json.loads(Path(path).read_text(encoding="utf-8")).get("image_processor")
        if not isinstance(saved, dict):
            raise ValueError(f"{path} has no image_processor settings; save the checkpoint's MedGptProcessor")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in saved]
        if missing:
            raise ValueError(f"{path}: image_processor lacks {missing}")
        return cls(**{f.name: _as_field(f.name, saved[f.name]) for f in dataclasses.fields(cls)})

    def overridden(self, kwargs: Mapping[str, object]) -> ImageSettings:
        """Settings with the overridable fields found in processor kwargs (flat or under images_kwargs)."""
        scoped = kwargs.get("images_kwargs") or {}
        changes = {}
        for name in OVERRIDABLE:
            value = scoped.get(name, kwargs.get(name))
            if value is not None:
                changes[name] = _as_field(name, value)
        return dataclasses.replace(self, **changes) if changes else self


# What a request may change; tokens_per_tile is fixed by the model, mean/std by its training.
OVERRIDABLE = ("tile_size", "min_tiles", "max_tiles", "use_thumbnail", "max_tiles_per_sample", "use_jpeg_draft")


def _as_field(name: str, value):
    if name in ("image_mean", "image_std"):
        return tuple(float(v) for v in value)
    if name in ("use_thumbnail", "use_jpeg_draft"):
        return bool(value)
    return int(value)


def _pil(item) -> Image.Image:
    return item.media if isinstance(item, MediaWithBytes) else item


class MedGptProcessingInfo(BaseProcessingInfo):
    @cached_property
    def image_settings(self) -> ImageSettings:
        model_config = self.ctx.model_config
        path = cached_file(model_config.model, PROCESSOR_CONFIG, revision=model_config.revision)
        if path is None:
            raise ValueError(f"{model_config.model} has no {PROCESSOR_CONFIG}; save the MedGptProcessor with it")
        settings = ImageSettings.from_processor_config(path)
        expected = self.get_hf_config().tokens_per_tile
        if settings.tokens_per_tile != expected:
            raise ValueError(f"{path}: tokens_per_tile {settings.tokens_per_tile} disagrees with the model config "
                             f"({expected} from the vision tower and downsample_ratio)")
        return settings

    def settings_for(self, hf_kwargs: Mapping[str, object]) -> ImageSettings:
        return self.image_settings.overridden(self.ctx.get_merged_mm_kwargs(dict(hf_kwargs)))

    def plan_grids(self, sizes: list[tuple[int, int]], settings: ImageSettings) -> list[tuple[int, int]]:
        return plan_sample_tiles(sizes, settings.max_tiles_per_sample, settings.min_tiles, settings.max_tiles,
                                 settings.tile_size, settings.use_thumbnail)

    def image_token_ids(self) -> tuple[int, int, int]:
        """(start, pad, end) ids; the checkpoint's tokenizer must have them (llava_medgpt adds them)."""
        tokenizer = self.get_tokenizer()
        vocab = tokenizer.get_vocab()
        missing = [t for t in (IMAGE_START_TOKEN, IMAGE_TOKEN, IMAGE_END_TOKEN) if t not in vocab]
        if missing:
            raise ValueError(f"{self.ctx.model_config.model}: tokenizer lacks the image tokens {missing}")
        return vocab[IMAGE_START_TOKEN], vocab[IMAGE_TOKEN], vocab[IMAGE_END_TOKEN]

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"image": None}

    def get_supported_mm_processor_kwargs(self) -> dict[str, set[str]]:
        return {"text_kwargs": set(), "images_kwargs": set(OVERRIDABLE)}

    def max_tiles_per_image(self) -> int:
        s = self.image_settings
        return min(tiles_for_grid(s.max_tiles, 1, s.use_thumbnail), s.max_tiles_per_sample)

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        return {"image": self.max_tiles_per_image() * self.image_settings.tokens_per_tile}


class MedGptDummyInputsBuilder(BaseDummyInputsBuilder[MedGptProcessingInfo]):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return IMAGE_MARKER * mm_counts.get("image", 0)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options):
        # A max_tiles x 1 strip takes the widest grid, hence the most tiles one image can have.
        s = self.info.image_settings
        return {"image": self._get_dummy_images(width=s.max_tiles * s.tile_size, height=s.tile_size,
                                                num_images=mm_counts.get("image", 0),
                                                overrides=(mm_options or {}).get("image"))}


class MedGptMultiModalProcessor(BaseMultiModalProcessor[MedGptProcessingInfo]):
    def _request_grids(self, mm_items: MultiModalDataItems, hf_kwargs: Mapping[str, object]):
        if "image" not in mm_items:
            return []
        items = mm_items.get_items("image", ImageProcessorItems).data
        if any(item is None for item in items):
            raise ValueError("MedGPT-oss needs every image of a request: an image's tile grid depends on the "
                             "other images sharing the request's tile budget")
        sizes = [image_ops.upright_size(_pil(item)) for item in items]
        return self.info.plan_grids(sizes, self.info.settings_for(hf_kwargs))

    def _get_mm_hashes(self, inputs):
        hashes = super()._get_mm_hashes(inputs)
        if "image" in hashes:
            grids = self._request_grids(inputs.mm_data_items, inputs.hf_processor_mm_kwargs)
            algorithm = self.info.ctx.get_mm_config().mm_hasher_algorithm
            hashes["image"] = [MultiModalHasher.hash_kwargs(algorithm, image_hash=h, tile_grid=list(grid))
                               for h, grid in zip(hashes["image"], grids, strict=True)]
        return hashes

    def _get_cache_missing_processor_kwargs(self, inputs, mm_is_cached):
        grids = self._request_grids(inputs.mm_data_items, inputs.hf_processor_mm_kwargs)
        missing = [grid for grid, cached in zip(grids, mm_is_cached.get("image", []), strict=True) if not cached]
        return {**inputs.hf_processor_mm_kwargs, GRIDS_KWARG: missing}

    def _get_cache_missing_items(self, cache, mm_data_items: MultiModalDataItems, mm_hashes):
        mm_is_cached, missing = super()._get_cache_missing_items(cache, mm_data_items, mm_hashes)
        if "image" in missing:  # super() unwraps MediaWithBytes: keep the request's bytes for the JPEG draft rule
            raw = mm_data_items.get_items("image", ImageProcessorItems).data
            kept = [item for item, cached in zip(raw, mm_is_cached["image"], strict=True) if not cached]
            missing = self.info.parse_mm_data({"image": kept}, validate=False)
        return mm_is_cached, missing

    def _get_hf_mm_inputs(self, mm_items: MultiModalDataItems, hf_kwargs: Mapping[str, object]):
        # The raw items: MediaWithBytes keeps the request's file bytes, which `_call_hf_processor` decodes itself.
        if "image" not in mm_items:
            return HFMultiModalInputs({}, hf_kwargs, {})
        return HFMultiModalInputs({"images": list(mm_items.get_items("image", ImageProcessorItems).data)},
                                  hf_kwargs, {})

    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> BatchFeature:
        settings = self.info.settings_for({k: v for k, v in hf_kwargs.items() if k != GRIDS_KWARG})
        items = hf_data["images"]
        grids = hf_kwargs.get(GRIDS_KWARG)
        if grids is None:  # the whole request is being processed
            grids = self.info.plan_grids([image_ops.upright_size(_pil(item)) for item in items], settings)
        size = settings.tile_size
        tiles = []
        for item, (cols, rows) in zip(items, grids, strict=True):
            if isinstance(item, MediaWithBytes):
                draft = (cols * size, rows * size) if settings.use_jpeg_draft else None
                image = image_ops.decode(item.original_bytes, draft)
            else:
                image = image_ops.to_rgb(item)
            tiles.append(image_ops.tile_pixels(image, cols, rows, size, settings.use_thumbnail))
        pixel_values = image_ops.normalize(torch.cat(tiles), settings.image_mean, settings.image_std)
        return BatchFeature({"pixel_values": pixel_values,  # [total_tiles, 3, T, T]
                             "num_tiles": torch.tensor([len(t) for t in tiles])})

    def _get_mm_fields_config(self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]):
        num_tiles = hf_inputs.get("num_tiles", torch.empty(0, dtype=torch.long))
        return {"pixel_values": MultiModalFieldConfig.flat_from_sizes("image", num_tiles),
                "num_tiles": MultiModalFieldConfig.batched("image", keep_on_cpu=True)}

    def _get_prompt_updates(self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs: Mapping[str, object],
                            out_mm_kwargs: MultiModalKwargsItems) -> Sequence[PromptUpdate]:
        start, pad, end = self.info.image_token_ids()
        tokens_per_tile = self.info.image_settings.tokens_per_tile
        num_tiles = out_mm_kwargs.get_data().get("num_tiles", torch.empty(0, dtype=torch.long)).tolist()

        def replacement(item_idx: int) -> PromptUpdateDetails:
            ids = [start] + [pad] * (int(num_tiles[item_idx]) * tokens_per_tile) + [end]
            return PromptUpdateDetails.select_token_id(ids, pad)  # only the pads take image features

        target = cached_encode(self.info.get_tokenizer(), IMAGE_MARKER, add_special_tokens=False)
        return [PromptReplacement(modality="image", target=target, replacement=replacement)]

    def _apply_prompt_updates(self, token_ids: list[int], mm_prompt_updates):
        new_token_ids, match_result = self._apply_prompt_updates_via_text(token_ids, mm_prompt_updates)
        placeholders = self._find_mm_placeholders(
            new_token_ids, self._matched_updates_from_result(mm_prompt_updates, match_result))
        return new_token_ids, placeholders
