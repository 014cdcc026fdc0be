"""`MedGptConfig`: a vision config, a causal-LM config and the projector between them."""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec

from ..processing.geometry import DEFAULT_GEOMETRY, VisionGeometry
from ..constants import IMAGE_SPECIAL_TOKENS, IMAGE_TOKEN
from .backbones import GPT_OSS_20B_TEXT_CONFIG, GPT_OSS_TOKENIZER_SIZE
from .loss import DEFAULT_TOKEN_CHUNK, DEFAULT_VOCAB_BLOCK, LOSS_IMPLEMENTATIONS


@strict
class MedGptConfig(PreTrainedConfig):
    r"""
    Configuration of [`MedGptForConditionalGeneration`].

    vision_config: any transformers vision config (default: CLIP-ViT-L/14@336's vision tower; SigLIP works too).
    text_config: any causal-LM config (default: GPT-oss-20b, the paper's model; Qwen2 and Llama work too).
    image_token_id: id of the placeholder token that image features replace (default: GPT-oss's, 200,020).
    downsample_ratio: pixel-shuffle ratio; 0.5 turns a 24x24 patch grid into 12x12 = 144 tokens
        of 4x the channel width (`vision_geometry` derives tile size and token counts from it and the
        vision config; odd grids are zero-padded first, see processing/geometry.py).
    vision_feature_layer: hidden-state index of the vision tower that feeds the projector
        (-2, the penultimate layer, as in LLaVA).
    vision_feature_select_strategy: "default" drops the CLS token (CLIP), "full" keeps every token
        (SigLIP has no CLS token).
    loss_implementation: how the training loss is computed (llava_medgpt.model.loss): "auto" (Liger's fused kernel
        when installed and on a GPU, else "chunked"), "chunked" (plain torch, no full-vocabulary logits), "liger",
        or "full" (transformers' loss on full logits). Evaluation and generation always return logits.
    loss_token_chunk, loss_vocab_block: tile of the chunked loss (tokens x vocabulary rows); its fp32 logits are
        the loss's working memory.
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
                "patch_size": DEFAULT_GEOMETRY.patch_size,
                "image_size": DEFAULT_GEOMETRY.tile_size,
                "projection_dim": 768,
            },
        ),
        # GPT-oss-20b (transformers' GptOssConfig() defaults are the 120b shape).
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="gpt_oss", init_kwargs=GPT_OSS_20B_TEXT_CONFIG),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    # The builder appends IMAGE_SPECIAL_TOKENS to the tokenizer: with GPT-oss's, <|image_pad|> is id 200,020.
    image_token_id: int = GPT_OSS_TOKENIZER_SIZE + IMAGE_SPECIAL_TOKENS.index(IMAGE_TOKEN)
    downsample_ratio: float = 0.5
    vision_feature_layer: int = -2
    vision_feature_select_strategy: str = "default"
    projector_hidden_act: str = "gelu"
    tie_word_embeddings: bool = False
    loss_implementation: str = "auto"
    loss_token_chunk: int = DEFAULT_TOKEN_CHUNK
    loss_vocab_block: int = DEFAULT_VOCAB_BLOCK

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.vision_feature_select_strategy not in ("default", "full"):
            raise ValueError(
                f"vision_feature_select_strategy must be 'default' or 'full', got {self.vision_feature_select_strategy!r}"
            )
        if self.loss_implementation not in LOSS_IMPLEMENTATIONS:
            raise ValueError(f"loss_implementation must be one of {LOSS_IMPLEMENTATIONS}, got {self.loss_implementation!r}")
        self.vision_geometry  # refuse an unusable tower geometry now, with the reason

    @property
    def vision_geometry(self) -> VisionGeometry:
        """Tile size, patch grid and tokens per tile of this model's vision tower."""
        return VisionGeometry.from_vision_config(self.vision_config, self.downsample_ratio)

    @property
    def tokens_per_tile(self) -> int:
        """Language-model tokens one vision tile becomes after pixel shuffle."""
        return self.vision_geometry.tokens_per_tile

    def check_image_processor(self, image_processor) -> None:
        """Refuse an image processor whose tiles or placeholder counts differ from this model's vision tower."""
        ours = self.vision_geometry
        theirs = getattr(image_processor, "geometry", None)
        if theirs is None or (theirs.tile_size, theirs.tokens_per_tile) != (ours.tile_size, ours.tokens_per_tile):
            described = theirs.describe() if theirs is not None else type(image_processor).__name__
            raise ValueError(
                f"the image processor ({described}) does not match the vision tower ({ours.describe()}); "
                "rebuild it with MedGptImageProcessor.from_geometry(config.vision_geometry)"
            )


__all__ = ["MedGptConfig"]
