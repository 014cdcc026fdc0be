"""`MedGptVllmConfig`: reads a llava_medgpt checkpoint's config.json (model_type "llava_medgpt") in vLLM's
environment, whose transformers cannot import llava_medgpt's `MedGptConfig`. Same fields, same defaults."""

import math

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.models.auto import CONFIG_MAPPING

MODEL_TYPE = "llava_medgpt"


@strict
class MedGptVllmConfig(PreTrainedConfig):
    model_type = MODEL_TYPE
    sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig}

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 0
    downsample_ratio: float = 0.5
    vision_feature_layer: int = -2
    vision_feature_select_strategy: str = "default"
    projector_hidden_act: str = "gelu"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        # transformers also builds the class with no arguments (to diff a config against its defaults).
        for name, default_type in (("vision_config", "clip_vision_model"), ("text_config", "gpt_oss")):
            value = getattr(self, name)
            if value is None:
                setattr(self, name, CONFIG_MAPPING[default_type]())
            elif isinstance(value, dict):
                setattr(self, name, CONFIG_MAPPING[value.get("model_type", default_type)](**value))
        super().__post_init__(**kwargs)

    # llava_medgpt.processing.geometry.VisionGeometry: floor(tile / patch) patches per side, zero-padded up to a
    # multiple of the shuffle block (SigLIP-384: 27 -> 28), then one token per block.
    @property
    def shuffle_block(self) -> int:
        return int(round(1 / self.downsample_ratio))

    @property
    def patch_grid(self) -> int:
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def padded_grid(self) -> int:
        return math.ceil(self.patch_grid / self.shuffle_block) * self.shuffle_block

    @property
    def tokens_per_tile(self) -> int:
        """Language-model tokens per vision tile after the pixel shuffle."""
        return (self.padded_grid // self.shuffle_block) ** 2
