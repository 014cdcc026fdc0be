"""Explicit registries of supported backbones, keyed by the transformers config `model_type`.

Swapping `model_name_or_path` picks the entry by the checkpoint's config, never by substrings of a path.
"""

from dataclasses import dataclass, field

from transformers import CLIPVisionConfig, GptOssConfig, LlamaConfig, PreTrainedConfig, Qwen2Config, SiglipVisionConfig


@dataclass(frozen=True)
class TextBackbone:
    model_type: str
    conversation_template: str  # name in llava_medgpt.processing.templates
    moe_block_class: str | None  # module class to register as a ZeRO-3 leaf (MoE routing is data dependent)
    cpu_attn_implementation: str
    gpu_attn_implementation: str
    refused_attn_implementations: dict[str, str] = field(default_factory=dict)  # name -> why


@dataclass(frozen=True)
class VisionBackbone:
    model_type: str  # of the vision sub-config, e.g. clip_vision_model
    feature_layer: int
    feature_select_strategy: str  # "default" drops the CLS token, "full" keeps all tokens


TEXT_BACKBONES = {
    "gpt_oss": TextBackbone(
        model_type="gpt_oss",
        conversation_template="medical_harmony",
        moe_block_class="GptOssMLP",
        cpu_attn_implementation="eager",  # flex attention with sinks raises on CPU; sdpa drops the sinks
        gpu_attn_implementation="flex_attention",
        refused_attn_implementations={
            "sdpa": "GPT-oss attention sinks are not supported by SDPA (transformers refuses it)",
            "flash_attention_2": "flash-attention 2 does not support GPT-oss attention sinks",
        },
    ),
    "qwen2": TextBackbone("qwen2", "generic", None, "sdpa", "sdpa"),
    "llama": TextBackbone("llama", "generic", None, "sdpa", "sdpa"),
}

VISION_BACKBONES = {
    "clip_vision_model": VisionBackbone("clip_vision_model", feature_layer=-2, feature_select_strategy="default"),
    "siglip_vision_model": VisionBackbone("siglip_vision_model", feature_layer=-1, feature_select_strategy="full"),
}

# A full two-tower checkpoint (e.g. openai/clip-vit-large-patch14-336) -> the vision sub-config inside it.
VISION_CONFIG_OF_TWO_TOWER = {"clip": "vision_config", "siglip": "vision_config"}


def text_backbone(config: PreTrainedConfig) -> TextBackbone:
    if config.model_type not in TEXT_BACKBONES:
        raise ValueError(
            f"Unsupported language backbone model_type {config.model_type!r}; supported: {sorted(TEXT_BACKBONES)}. "
            "Add an entry to llava_medgpt.model.backbones.TEXT_BACKBONES."
        )
    return TEXT_BACKBONES[config.model_type]


def vision_config_of(config: PreTrainedConfig) -> PreTrainedConfig:
    """The vision-tower config, given either a vision config or a two-tower (CLIP/SigLIP) config."""
    if config.model_type in VISION_CONFIG_OF_TWO_TOWER:
        config = getattr(config, VISION_CONFIG_OF_TWO_TOWER[config.model_type])
    if config.model_type not in VISION_BACKBONES:
        raise ValueError(
            f"Unsupported vision backbone model_type {config.model_type!r}; supported: {sorted(VISION_BACKBONES)}"
        )
    return config


def vision_backbone(config: PreTrainedConfig) -> VisionBackbone:
    return VISION_BACKBONES[vision_config_of(config).model_type]


# Tiny random configs: the same architectures with toy sizes, for tests, demos and benchmarks.
TINY_VISION_CONFIGS = {
    # 336-px tiles of 14-px patches keep the real 24x24 grid, so tiling and token counts are the real ones.
    "clip": lambda: CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=336, patch_size=14, projection_dim=32,
    ),
    "siglip": lambda: SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=336, patch_size=14, vision_use_head=False,
    ),
}

TINY_TEXT_CONFIGS = {
    # Keeps GPT-oss's features: top-k routed MoE, attention sinks, alternating sliding/full layers, YaRN rope.
    "gpt_oss": lambda vocab_size: GptOssConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=64, head_dim=16,
        num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
        layer_types=["sliding_attention", "full_attention"], sliding_window=128,
        num_local_experts=4, num_experts_per_tok=2, router_aux_loss_coef=0.01,
        max_position_embeddings=131072,
    ),
    "qwen2": lambda vocab_size: Qwen2Config(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, num_hidden_layers=2, max_position_embeddings=4096, tie_word_embeddings=False,
    ),
    "llama": lambda vocab_size: LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, num_hidden_layers=2, max_position_embeddings=4096,
    ),
}
