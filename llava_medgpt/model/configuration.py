"""`MedGptConfig`: a vision config, a causal-LM config and the projector between them."""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec


@strict
class MedGptConfig(PreTrainedConfig):
    r"""
    Configuration of [`MedGptForConditionalGeneration`].

    vision_config: any transformers vision config (CLIP by default; SigLIP works too).
    text_config: any causal-LM config (GPT-oss by default; Qwen2 and Llama work too).
    image_token_id: id of the placeholder token that image features replace.
    downsample_ratio: pixel-shuffle ratio; 0.5 turns a 24x24 patch grid into 12x12 = 144 tokens
        of 4x the channel width.
    vision_feature_layer: hidden-state index of the vision tower that feeds the projector
        (-2, the penultimate layer, as in LLaVA).
    vision_feature_select_strategy: "default" drops the CLS token (CLIP), "full" keeps every token
        (SigLIP has no CLS token).
    """

    model_type = "llava_medgpt"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="clip_vision_model",
            init_kwargs={  # CLIP-ViT-L/14@336
                "hidden_size": 1024,
                "intermediate_size": 4096,
                "num_hidden_layers": 24,
                "num_attention_heads": 16,
                "patch_size": 14,
                "image_size": 336,
                "projection_dim": 768,
            },
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="gpt_oss"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 0
    downsample_ratio: float = 0.5
    vision_feature_layer: int = -2
    vision_feature_select_strategy: str = "default"
    projector_hidden_act: str = "gelu"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.vision_feature_select_strategy not in ("default", "full"):
            raise ValueError(
                f"vision_feature_select_strategy must be 'default' or 'full', got {self.vision_feature_select_strategy!r}"
            )
        grid = self.vision_config.image_size // self.vision_config.patch_size
        shuffled = grid * self.downsample_ratio
        if shuffled != int(shuffled) or int(1 / self.downsample_ratio) != 1 / self.downsample_ratio:
            raise ValueError(
                f"downsample_ratio {self.downsample_ratio} does not divide the {grid}x{grid} patch grid evenly"
            )

    @property
    def tokens_per_tile(self) -> int:
        """Language-model tokens one vision tile becomes after pixel shuffle."""
        grid = self.vision_config.image_size // self.vision_config.patch_size
        return int(grid * self.downsample_ratio) ** 2


__all__ = ["MedGptConfig"]
