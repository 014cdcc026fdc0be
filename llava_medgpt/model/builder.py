"""Assemble a MedGPT model from separately pretrained parts, the way stage 0 starts.

    model, processor = build_from_parts("openai/gpt-oss-20b", "openai/clip-vit-large-patch14-336")

The language model is loaded with its own `from_pretrained` (under ZeRO-3 partitioned as it loads), the vision tower
likewise, and only the projector is new. An MXFP4 checkpoint (openai/gpt-oss-20b as published) loads unpartitioned
even under ZeRO-3, so it is refused there: `python -m llava_medgpt.model.dequantize` converts it once to bf16
(stage 0 does it itself). Without ZeRO-3 it is dequantised at load.
"""

from contextlib import contextmanager

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Mxfp4Config, PreTrainedTokenizerBase
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from ..constants import IMAGE_SPECIAL_TOKENS, IMAGE_TOKEN
from .backbones import text_backbone, vision_backbone, vision_config_of
from .configuration import MedGptConfig
from .modeling import MedGptForConditionalGeneration, MedGptProjector


def resolve_attn_implementation(text_config, requested: str | None, on_gpu: bool | None = None) -> str:
    """The requested attention implementation, or the backbone's default for this machine (on_gpu: default
    torch.cuda.is_available()); refuses known-bad ones."""
    backbone = text_backbone(text_config)
    if requested is None:
        on_gpu = torch.cuda.is_available() if on_gpu is None else on_gpu
        return backbone.gpu_attn_implementation if on_gpu else backbone.cpu_attn_implementation
    if requested in backbone.refused_attn_implementations:
        raise ValueError(
            f"attn_implementation={requested!r} cannot be used with {backbone.model_type}: "
            f"{backbone.refused_attn_implementations[requested]}. Use {backbone.gpu_attn_implementation!r} on GPU "
            f"or {backbone.cpu_attn_implementation!r} on CPU."
        )
    return requested


def add_image_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add the image special tokens the tokenizer lacks; returns how many were added."""
    missing = [token for token in IMAGE_SPECIAL_TOKENS if token not in tokenizer.get_vocab()]
    if not missing:
        return 0
    return tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)


# Embedding tables are padded to a multiple of 64 rows (GPT-oss: 200,019 tokenizer entries, 201,088 rows), which
# keeps the head's matmul aligned for tensor cores.
EMBEDDING_ROW_MULTIPLE = 64


@contextmanager
def _writable(weight: torch.Tensor):
    """Gather a ZeRO-3-partitioned weight to modify it; rank 0's values are partitioned back (no-op otherwise)."""
    if not hasattr(weight, "ds_id"):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters([weight], modifier_rank=0):
        yield


def _rows(weight: torch.Tensor) -> int:
    return getattr(weight, "ds_shape", weight.shape)[0]  # a ZeRO-3 partition's full shape


def fit_embeddings_to_tokenizer(language_model, tokenizer_size: int, original_size: int) -> list[int]:
    """Give every token id a row, never removing one; returns the rows that were (re)initialised.

    Ids below the table's row count already have a row: GPT-oss's tokenizer ends at 200,018 and its table has
    201,088 rows, so the image tokens (ids 200,019-200,021) take reserved padding rows and the size stays. A tokenizer
    longer than the table grows it to the next multiple of 64. The rows of the tokens added after `original_size`
    and every row the table gains start at the mean of the original tokens' rows (input and output embeddings): the
    reserved rows of a trained model are untrained (about zero), and a mean row neither dominates nor vanishes.
    """
    embeddings = language_model.get_input_embeddings()
    rows = _rows(embeddings.weight)
    target = max(rows, -(-tokenizer_size // EMBEDDING_ROW_MULTIPLE) * EMBEDDING_ROW_MULTIPLE)
    if target > rows:
        language_model.resize_token_embeddings(target, mean_resizing=False)
    initialised = sorted(set(range(original_size, tokenizer_size)) | set(range(rows, target)))
    weights = [language_model.get_input_embeddings().weight]
    head = language_model.get_output_embeddings()
    if head is not None and head.weight is not weights[0]:  # untied
        weights.append(head.weight)
    with torch.no_grad():
        for weight in weights:
            with _writable(weight):
                weight[initialised] = weight[:original_size].float().mean(dim=0).to(weight.dtype)
    return initialised


def load_language_model(model_name_or_path: str, attn_implementation: str | None = None, dtype=None):
    text_config = AutoConfig.from_pretrained(model_name_or_path)
    kwargs = {"attn_implementation": resolve_attn_implementation(text_config, attn_implementation)}
    if dtype is not None:
        kwargs["dtype"] = dtype
    quantization = getattr(text_config, "quantization_config", None) or {}
    if quantization.get("quant_method") == "mxfp4":
        if is_deepspeed_zero3_enabled():
            raise ValueError(
                f"{model_name_or_path} is an MXFP4 checkpoint. transformers loads a quantised checkpoint without ZeRO-3 "
                "partitioning, so every rank would hold the whole dequantised model. Convert it once and train from "
                f"the bf16 copy: python -m llava_medgpt.model.dequantize {model_name_or_path} DST (stage 0 does this "
                "itself: scripts/_launch.sh)"
            )
        # Training on MXFP4 weights is refused by transformers; without ZeRO-3, dequantise at load.
        kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
    return AutoModelForCausalLM.from_pretrained(model_name_or_path, use_safetensors=True, **kwargs)


def tower_normalization(vision_tower: str, vision_config) -> tuple[list[float], list[float]]:
    """(image_mean, image_std) from the tower's own preprocessor_config.json, else its family's default."""
    from transformers.image_processing_base import ImageProcessingMixin

    try:
        saved, _ = ImageProcessingMixin.get_image_processor_dict(vision_tower)
    except OSError:  # no preprocessor_config.json (e.g. a tiny random tower)
        saved = {}
    backbone = vision_backbone(vision_config)
    return list(saved.get("image_mean", backbone.image_mean)), list(saved.get("image_std", backbone.image_std))


def load_vision_tower(vision_tower: str, dtype=None):
    vision_config = vision_config_of(AutoConfig.from_pretrained(vision_tower))
    model_class = MODEL_MAPPING[type(vision_config)]
    kwargs = {} if dtype is None else {"dtype": dtype}
    # A two-tower checkpoint (CLIP, SigLIP) loads into its vision model: the text tower's weights are skipped.
    return model_class.from_pretrained(vision_tower, use_safetensors=True, **kwargs)


@contextmanager
def _without_zero3_init():
    """Build a module shell outside DeepSpeed's ZeRO-3 partitioned init.

    With a live ZeRO-3 config, transformers constructs modules under `deepspeed.zero.Init`, which cannot partition
    meta tensors ("Cannot copy out of meta tensor"). The shell's towers are replaced by the loaded (partitioned)
    ones right after, so nothing of the shell is ever trained.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def build_from_parts(
    model_name_or_path: str,
    vision_tower: str,
    attn_implementation: str | None = None,
    dtype=None,
    downsample_ratio: float = 0.5,
    image_processor_kwargs: dict | None = None,
):
    """Returns (MedGptForConditionalGeneration, MedGptProcessor) with a freshly initialised projector."""
    from ..processing.image_processor import MedGptImageProcessor
    from ..processing.processor import MedGptProcessor

    language_model = load_language_model(model_name_or_path, attn_implementation, dtype)
    vision_model = load_vision_tower(vision_tower, dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    original_size = len(tokenizer)
    if add_image_tokens(tokenizer):
        fit_embeddings_to_tokenizer(language_model, len(tokenizer), original_size)

    backbone = vision_backbone(vision_model.config)
    config = MedGptConfig(
        vision_config=vision_model.config,
        text_config=language_model.config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        downsample_ratio=downsample_ratio,
        vision_feature_layer=backbone.feature_layer,
        vision_feature_select_strategy=backbone.feature_select_strategy,
    )
    with _without_zero3_init(), torch.device("meta"):  # skip allocating a second random copy of both towers
        model = MedGptForConditionalGeneration(config)
    model.vision_tower = vision_model
    model.language_model = language_model
    model.multi_modal_projector = MedGptProjector(config).to(dtype=language_model.dtype)
    model.config.text_config = language_model.config
    model.config.vision_config = vision_model.config
    model.generation_config = language_model.generation_config

    image_mean, image_std = tower_normalization(vision_tower, vision_model.config)
    image_processor = MedGptImageProcessor.from_geometry(
        config.vision_geometry, **{"image_mean": image_mean, "image_std": image_std, **(image_processor_kwargs or {})}
    )
    processor = MedGptProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        conversation_template=text_backbone(language_model.config).conversation_template,
    )
    return model, processor
