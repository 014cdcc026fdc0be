"""Export a MedGPT checkpoint as a stock transformers InternVL checkpoint (`--to transformers-internvl`).

Our architecture is InternVL's: vision tower -> pixel shuffle (0.5) -> LayerNorm(4C) -> Linear -> GELU -> Linear ->
causal LM, with image features written into placeholder tokens. transformers' `InternVLForConditionalGeneration`
accepts a CLIP/SigLIP vision config and any causal-LM text config (GPT-oss included), so the export is a renaming
of weights plus the projector's input channels permuted from our pixel-shuffle order to InternVL's (the
permutation is computed from both shuffles on an index grid, so it stays exact whatever either order is; today
the two orders agree and it is the identity). Nothing is retrained or approximated.

What maps exactly (checked by tests/test_export_internvl.py in a process that cannot import llava_medgpt):
- weights: every tensor, bit-identical except the permuted projector input (a permutation, so still exact);
  logits equal ours within float tolerance for the same input ids and pixel values.
- prompt tokens: the tokenizer is ours; the image placeholder is ours (InternVL's processor writes
  start + context * (144 * tiles) + end, and its start/context/end tokens are set to ours); chat_template.jinja is
  our template, rendering image content items as the context token, so prompts are the same ids.
- tiles: transformers' GotOcr2 image processor (InternVL's) uses our grid rule (the same candidate grids, the same
  closest-aspect-ratio choice and area tie-break, thumbnail when more than one tile), tile size, normalisation and
  bicubic filter.

Limits (refused, or documented where the export is still exact for what it writes):
- refused: min_tiles > 1 (within one tile count our candidate order is InternVL's set order, GotOcr2's is
  width-major; they can pick different grids), use_thumbnail=False (GotOcr2 always adds the thumbnail), a
  SigLIP tower read at layer -1 (InternVL takes its post-layernormed last_hidden_state, we take the encoder
  output), other vision towers, a tokenizer without our image tokens, a pixel shuffle that is not a per-position
  permutation of channels.
- multi-image tile budget: ours shares max_tiles_per_sample between a sample's images; GotOcr2 tiles each image
  alone. Samples within the budget (e.g. two images at full resolution, the default budget of 26) tile
  identically; for more, pass the common cap our rule picks (`max_patches=`, see docs/inference.md).
- resampling: GotOcr2's PIL backend resizes with PIL's bicubic; our processor with torch's antialiased bicubic
  (the same filter, another implementation): resized tiles differ by at most 2/255 on about 1% of pixels
  (measured), tiles that need no resize are identical. PIL's tiles equal our plain-PIL reference `tile_image`.
- videos: not supported (InternVL's video token is set to the padding token, which prompts never contain).
"""

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..constants import IMAGE_END_TOKEN, IMAGE_START_TOKEN, IMAGE_TOKEN

SUPPORTED_VISION_TOWERS = ("clip_vision_model", "siglip_vision_model")


class ExportRefused(ValueError):
    """The checkpoint has a part transformers' InternVL cannot reproduce exactly; the message says which."""


@dataclass(frozen=True)
class ExportReport:
    output: Path
    permuted_channels: int  # projector input channels that moved (0: the shuffles agree)
    tensors: int


VISION_CONFIG_PROBLEM = (
    "transformers' InternVLConfig reads the vision_config of config.json as its own InternVLVisionConfig whatever its "
    "model_type (a fixed sub-config class), so AutoModelForImageTextToText.from_pretrained(OUT) would build an "
    "InternViT tower and leave the {tower} weights unused (a log line, no error); InternViT cannot reproduce {tower} "
    "exactly ({why}). With --vision-config-override the export writes the exact folder, which loads in stock "
    "transformers when the vision config is passed: from_pretrained(OUT, vision_config=CLIPVisionConfig(...)) "
    "(README.md in the folder)"
)
WHY_NOT_INTERNVIT = {
    "clip_vision_model": "CLIP applies a LayerNorm to the embeddings before the first layer; InternViT has none",
    "siglip_vision_model": "SigLIP has no CLS token; InternViT always prepends one, which every patch attends to",
}


def check_exportable(config, processor, vision_config_override: bool = False) -> None:
    """Raise ExportRefused listing every part that cannot map exactly."""
    problems = []
    vision = config.vision_config
    image_processor = processor.image_processor
    if vision.model_type in WHY_NOT_INTERNVIT and not vision_config_override:
        problems.append(VISION_CONFIG_PROBLEM.format(tower=vision.model_type, why=WHY_NOT_INTERNVIT[vision.model_type]))
    if vision.model_type not in SUPPORTED_VISION_TOWERS:
        problems.append(f"vision tower {vision.model_type!r}: the export knows {SUPPORTED_VISION_TOWERS}")
    if vision.model_type == "siglip_vision_model" and config.vision_feature_layer == -1:
        problems.append("a SigLIP tower read at layer -1: InternVL uses its post-layernormed last_hidden_state, "
                        "we use the encoder output (hidden_states[-1])")
    if image_processor.min_tiles > 1:
        problems.append(f"min_tiles={image_processor.min_tiles}: above 1, grids of one tile count are visited in "
                        "a different order by GotOcr2's image processor")
    if not image_processor.use_thumbnail:
        problems.append("use_thumbnail=False: GotOcr2's image processor always adds the thumbnail")
    if image_processor.tile_size != vision.image_size:
        problems.append(f"tile_size {image_processor.tile_size} != vision image_size {vision.image_size}")
    if image_processor.tokens_per_tile != config.tokens_per_tile:
        problems.append(f"processor tokens_per_tile {image_processor.tokens_per_tile} != model "
                        f"{config.tokens_per_tile}")
    vocab = processor.tokenizer.get_vocab()
    missing = [t for t in (IMAGE_START_TOKEN, IMAGE_TOKEN, IMAGE_END_TOKEN) if t not in vocab]
    if missing:
        problems.append(f"tokenizer lacks {missing}")
    elif vocab[IMAGE_TOKEN] != config.image_token_id:
        problems.append(f"image_token_id {config.image_token_id} is not the tokenizer's {IMAGE_TOKEN}")
    if problems:
        raise ExportRefused("cannot export exactly to transformers InternVL: " + "; ".join(problems))


def internvl_config(config):
    from transformers import InternVLConfig

    return InternVLConfig(
        # Config objects, not dicts: a dict vision config would be read as InternVL's own vision tower.
        vision_config=copy.deepcopy(config.vision_config),
        text_config=copy.deepcopy(config.text_config),
        image_token_id=config.image_token_id,
        image_seq_length=config.tokens_per_tile,
        downsample_ratio=config.downsample_ratio,
        projector_hidden_act=config.projector_hidden_act,
        vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        tie_word_embeddings=bool(getattr(config.text_config, "tie_word_embeddings", False)),
    )


def projector_input_permutation(stock_model, config) -> torch.Tensor:
    """perm with stock_features[..., m] == our_features[..., perm[m]] for every patch grid position.

    Both pixel shuffles run on a grid whose entries are their own flat index; a position's channel lists must hold
    the same source entries, in some order, or the two shuffles are not related by a channel permutation.
    """
    from ..model.modeling import pixel_shuffle

    side = config.vision_config.image_size // config.vision_config.patch_size
    channels = config.vision_config.hidden_size
    grid = torch.arange(side * side * channels, dtype=torch.float64).reshape(1, side, side, channels)
    ours = pixel_shuffle(grid, config.downsample_ratio)[0]  # [s, s, 4C]
    stock = stock_model.model.pixel_shuffle(grid, scale_factor=config.downsample_ratio)[0]
    if ours.shape != stock.shape:
        raise ExportRefused(f"pixel shuffle shapes differ: ours {tuple(ours.shape)}, InternVL {tuple(stock.shape)}")
    position = {int(v): i for i, v in enumerate(ours[0, 0].tolist())}
    if set(position) != {int(v) for v in stock[0, 0].tolist()}:
        raise ExportRefused("InternVL's pixel shuffle groups other patches into a token than ours")
    perm = torch.tensor([position[int(v)] for v in stock[0, 0].tolist()])
    if not torch.equal(ours[..., perm], stock):
        raise ExportRefused("the channel order of InternVL's pixel shuffle depends on the position")
    return perm


def internvl_state_dict(our_state: dict, perm: torch.Tensor) -> dict:
    """Our parameter names -> InternVLForConditionalGeneration's; the projector's input channels permuted."""
    renames = (
        ("vision_tower.", "model.vision_tower."),
        ("multi_modal_projector.norm.", "model.multi_modal_projector.layer_norm."),
        ("multi_modal_projector.linear_1.", "model.multi_modal_projector.linear_1."),
        ("multi_modal_projector.linear_2.", "model.multi_modal_projector.linear_2."),
        ("language_model.model.", "model.language_model."),
        ("language_model.lm_head.", "lm_head."),
    )
    out = {}
    for name, tensor in our_state.items():
        new = next((target + name[len(source):] for source, target in renames if name.startswith(source)), None)
        if new is None:
            raise ExportRefused(f"no InternVL name for our parameter {name!r}")
        if new.startswith("model.multi_modal_projector.layer_norm."):
            tensor = tensor[perm]
        elif new == "model.multi_modal_projector.linear_1.weight":
            tensor = tensor[:, perm]
        out[new] = tensor
    return out


def export_internvl(checkpoint: str | Path, output: str | Path, overwrite: bool = False,
                    vision_config_override: bool = False) -> ExportReport:
    """Write `output`; ExportRefused (nothing written) when a part cannot map exactly.

    vision_config_override: write the folder although a plain from_pretrained(OUT) would not build our vision
    tower (see VISION_CONFIG_PROBLEM); it then loads exactly with `vision_config=` passed to from_pretrained.
    """
    import llava_medgpt  # noqa: F401  registers our classes
    from transformers import AutoModelForImageTextToText, AutoProcessor, InternVLForConditionalGeneration

    checkpoint, output = Path(checkpoint), Path(output)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output} exists and is not empty (use --overwrite)")
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, trust_remote_code=False, use_safetensors=True)
    processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=False)
    if model.config.model_type != "llava_medgpt":
        raise ExportRefused(f"{checkpoint} is a {model.config.model_type!r} checkpoint, not a MedGPT one")
    check_exportable(model.config, processor, vision_config_override)

    stock_config = internvl_config(model.config)
    with torch.device("meta"):
        shell = InternVLForConditionalGeneration(stock_config)
    perm = projector_input_permutation(shell, model.config)
    state = internvl_state_dict(model.state_dict(), perm)
    expected = dict(shell.state_dict())
    if set(state) != set(expected):
        raise ExportRefused(f"parameter names differ from InternVL's: ours only {sorted(set(state) - set(expected))}"
                            f", InternVL only {sorted(set(expected) - set(state))}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ExportRefused(f"{name}: shape {tuple(tensor.shape)} vs InternVL {tuple(expected[name].shape)}")
    # Our tensors become the stock model's parameters (assign): no second copy, no random init. Buffers that are
    # not saved (rotary frequencies, position ids) stay on the meta device; loading recomputes them.
    shell.load_state_dict(state, strict=True, assign=True)
    shell.config.dtype = model.dtype
    shell.generation_config = model.generation_config

    partial = output.with_name(output.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    shell.save_pretrained(partial)
    _save_processor(checkpoint, processor, stock_config, partial)
    from ..model.card import write_model_card

    write_model_card(partial, model.config, processor, exported_from=checkpoint)
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)
    return ExportReport(output, int((perm != torch.arange(len(perm))).sum()), len(state))


def _save_processor(checkpoint: Path, processor, stock_config, folder: Path) -> None:
    """InternVL's processor files: our tokenizer with InternVL's named image tokens set to ours, GotOcr2's tiler
    with our settings, our chat template with image items as the context token."""
    from transformers import AutoTokenizer
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    # InternVL's processor needs a video token; the padding token never occurs in prompt text, so no text is
    # ever read as a video (videos are not supported by the export).
    video_token = processor.tokenizer.pad_token or processor.tokenizer.eos_token
    named = {"start_image_token": IMAGE_START_TOKEN, "end_image_token": IMAGE_END_TOKEN,
             "context_image_token": IMAGE_TOKEN, "video_token": video_token}
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, extra_special_tokens=named, trust_remote_code=False)
    if len(tokenizer) != len(processor.tokenizer):
        raise ExportRefused("naming the image tokens for InternVL added tokens to the vocabulary")
    tokenizer.save_pretrained(folder)
    ours = processor.image_processor
    tiler = GotOcr2ImageProcessorPil(
        crop_to_patches=True, min_patches=ours.min_tiles, max_patches=ours.max_tiles,
        size={"height": ours.tile_size, "width": ours.tile_size}, image_mean=ours.image_mean,
        image_std=ours.image_std, do_convert_rgb=True,
    )
    tiler.save_pretrained(folder)
    chat_template = processor.template().chat_template(image_placeholder=IMAGE_TOKEN)
    (folder / "chat_template.jinja").write_text(chat_template, encoding="utf-8")
    processor_config = {"processor_class": "InternVLProcessor", "image_seq_length": stock_config.image_seq_length}
    (folder / "processor_config.json").write_text(json.dumps(processor_config, indent=2) + "\n", encoding="utf-8")


__all__ = ["ExportRefused", "ExportReport", "check_exportable", "export_internvl", "internvl_state_dict",
           "projector_input_permutation"]
