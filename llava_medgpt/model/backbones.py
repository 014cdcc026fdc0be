"""Explicit registries of supported backbones, keyed by the transformers config `model_type`.

Swapping `model_name_or_path` picks the entry by the checkpoint's config, never by substrings of a path.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from transformers import (
    CLIPVisionConfig,
    GptOssConfig,
    LlamaConfig,
    PreTrainedConfig,
    Qwen2Config,
    SiglipVisionConfig,
    ViTConfig,
)
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


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
    """How a family of vision towers feeds the projector.

    feature_layer: hidden-state index read (-2, the penultimate layer: LLaVA for CLIP, LLaVA-OneVision for SigLIP,
        which drops SigLIP's last layer and reads the output of the one before).
    feature_select_strategy: "default" drops the leading CLS token, "full" keeps every token (no CLS).
    image_mean / image_std: normalisation when the tower folder has no preprocessor_config.json of its own.
    """

    model_type: str  # of the vision sub-config, e.g. clip_vision_model
    feature_layer: int
    feature_select_strategy: str
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]


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
    "clip_vision_model": VisionBackbone(
        "clip_vision_model", -2, "default", tuple(OPENAI_CLIP_MEAN), tuple(OPENAI_CLIP_STD)
    ),
    "siglip_vision_model": VisionBackbone(
        "siglip_vision_model", -2, "full", tuple(IMAGENET_STANDARD_MEAN), tuple(IMAGENET_STANDARD_STD)
    ),
    # transformers' ViTModel: the BiomedCLIP image trunk converted from open_clip (model.convert_biomedclip).
    "vit": VisionBackbone("vit", -2, "default", tuple(IMAGENET_STANDARD_MEAN), tuple(IMAGENET_STANDARD_STD)),
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


@dataclass(frozen=True)
class VisionEncoder:
    """A published vision tower: where it lives, its real sizes and geometry, and the tiny stand-in for tests.

    The sizes are the tower's own config.json values (`source` says where they were read); the tiny config keeps
    image_size and patch_size, so tiling and token counts are the real ones, and shrinks everything else.
    `needs_conversion`: the published weights are not a transformers checkpoint (see the module it names).
    """

    name: str
    hub_id: str
    model_type: str
    image_size: int
    patch_size: int
    hidden_size: int
    num_hidden_layers: int
    source: str
    needs_conversion: str | None = None

    def tiny_config(self) -> PreTrainedConfig:
        return _TINY_FAMILY_CONFIGS[self.model_type](self.image_size, self.patch_size)


_TINY_FAMILY_CONFIGS: dict[str, Callable[[int, int], PreTrainedConfig]] = {
    "clip_vision_model": lambda image_size, patch_size: CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=patch_size, projection_dim=32,
    ),
    "siglip_vision_model": lambda image_size, patch_size: SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=patch_size, vision_use_head=False,
    ),
    "vit": lambda image_size, patch_size: ViTConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=patch_size, layer_norm_eps=1e-6, qkv_bias=True,
    ),
}

# Keyed by the names the ablation (scripts/ablate_encoders.sh) and `--vision-backbone` use.
VISION_ENCODERS: dict[str, VisionEncoder] = {
    encoder.name: encoder
    for encoder in (
        # The paper's tower: 336 / 14 -> 24x24 -> 12x12 = 144 tokens per tile.
        VisionEncoder("clip", "openai/clip-vit-large-patch14-336", "clip_vision_model", 336, 14, 1024, 24,
                      source="hub config.json of openai/clip-vit-large-patch14-336 (vision_config)"),
        # 224 / 14 -> 16x16 -> 8x8 = 64 tokens per tile.
        VisionEncoder("clip-224", "openai/clip-vit-large-patch14", "clip_vision_model", 224, 14, 1024, 24,
                      source="hub config.json of openai/clip-vit-large-patch14 (vision_config)"),
        # 384 / 14 -> 27x27 (6 px unseen) -> zero-pad 28x28 -> 14x14 = 196 tokens per tile.
        VisionEncoder("siglip", "google/siglip-so400m-patch14-384", "siglip_vision_model", 384, 14, 1152, 27,
                      source="hub config.json of google/siglip-so400m-patch14-384 (vision_config)"),
        # 448 / 14 -> 32x32 -> 16x16 = 256 tokens per tile.
        VisionEncoder("medsiglip", "google/medsiglip-448", "siglip_vision_model", 448, 14, 1152, 27,
                      source="model card (448x448, SigLIP-400M vision encoder) and google-health/medsiglip "
                             "notebooks (SiglipVisionModel, 1152-d embeddings, [-1, 1] pixels); the gated "
                             "config.json itself was not readable, patch 14 / 27 layers are SigLIP-400M's"),
        # 224 / 16 -> 14x14 -> 7x7 = 49 tokens per tile.
        VisionEncoder("biomedclip", "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", "vit", 224, 16,
                      768, 12, source="hub open_clip_config.json (timm vit_base_patch16_224, image_size 224)",
                      needs_conversion="llava_medgpt.model.convert_biomedclip"),
    )
}

# The paper's language model as published: openai/gpt-oss-20b's config.json (its `rope_scaling` and `rope_theta` are
# transformers 5's `rope_parameters`; the MXFP4 quantization_config is left out, the training copy is bf16). The
# default text config of MedGptConfig, and what the memory plan (bench/memory_plan.py) builds on the meta device.
GPT_OSS_TOKENIZER_SIZE = 200_019  # openai/gpt-oss-20b's tokenizer: ids 0-200,018 (the last, <|endofprompt|>)
GPT_OSS_20B_TEXT_CONFIG = {
    "vocab_size": 201_088,  # the tokenizer's 200,019 entries padded to a multiple of 64
    "hidden_size": 2880,
    "intermediate_size": 2880,
    "num_hidden_layers": 24,
    "layer_types": ["sliding_attention", "full_attention"] * 12,
    "sliding_window": 128,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "attention_bias": True,
    "attention_dropout": 0.0,
    "num_local_experts": 32,
    "num_experts_per_tok": 4,
    "router_aux_loss_coef": 0.9,
    "output_router_logits": False,
    "hidden_act": "silu",
    "swiglu_limit": 7.0,
    "rms_norm_eps": 1e-5,
    "initializer_range": 0.02,
    "max_position_embeddings": 131_072,
    "rope_parameters": {
        "rope_type": "yarn", "rope_theta": 150_000.0, "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
        "truncate": False, "original_max_position_embeddings": 4096,
    },
    "tie_word_embeddings": False,
    "pad_token_id": 199_999,  # <|endoftext|>
    "eos_token_id": 200_002,  # <|return|>
    "use_cache": True,
}

# Tiny random configs: the same architectures with toy sizes, for tests, demos and benchmarks.
TINY_VISION_CONFIGS: dict[str, Callable[[], PreTrainedConfig]] = {
    name: encoder.tiny_config for name, encoder in VISION_ENCODERS.items()
}

# Default tiny attention head width. vLLM's CPU attention only takes certain widths (32, 64, 80, ...), so the
# vLLM tests build their tiny checkpoints with head_dim=32; the default stays 16, which the other tests' expected
# numbers were computed with.
TINY_HEAD_DIM = 16
TINY_NUM_HEADS, TINY_NUM_KV_HEADS = 4, 2

TINY_TEXT_CONFIGS = {
    # Keeps GPT-oss's features: top-k routed MoE, attention sinks, alternating sliding/full layers, YaRN rope.
    "gpt_oss": lambda vocab_size, head_dim=TINY_HEAD_DIM: GptOssConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=64, head_dim=head_dim,
        num_attention_heads=TINY_NUM_HEADS, num_key_value_heads=TINY_NUM_KV_HEADS, num_hidden_layers=2,
        layer_types=["sliding_attention", "full_attention"], sliding_window=128,
        num_local_experts=4, num_experts_per_tok=2, router_aux_loss_coef=0.01,
        max_position_embeddings=131072,
    ),
    # hidden_size = heads * head_dim (64 at the default): these architectures tie the two.
    "qwen2": lambda vocab_size, head_dim=TINY_HEAD_DIM: Qwen2Config(
        vocab_size=vocab_size, hidden_size=TINY_NUM_HEADS * head_dim, intermediate_size=128,
        num_attention_heads=TINY_NUM_HEADS, num_key_value_heads=TINY_NUM_KV_HEADS, num_hidden_layers=2,
        max_position_embeddings=4096, tie_word_embeddings=False,
    ),
    "llama": lambda vocab_size, head_dim=TINY_HEAD_DIM: LlamaConfig(
        vocab_size=vocab_size, hidden_size=TINY_NUM_HEADS * head_dim, intermediate_size=128,
        num_attention_heads=TINY_NUM_HEADS, num_key_value_heads=TINY_NUM_KV_HEADS, num_hidden_layers=2,
        max_position_embeddings=4096,
    ),
}
