"""BiomedCLIP's image trunk (an open_clip model around timm's vit_base_patch16_224) -> a transformers ViTModel
folder that `--vision_tower` / `build_from_parts` load like any other tower, with no timm, open_clip or torchvision.

Run as: python -m llava_medgpt.model.convert_biomedclip WEIGHTS.safetensors OUTPUT_DIR [--open-clip-config JSON]

Why a conversion: timm and open_clip import torchvision at import time (timm/layers/create_norm.py,
open_clip/utils.py), and no torchvision build imports beside the pinned CPU torch 2.13.0 (PyPI's 0.28.0 fails
with "operator torchvision::nms does not exist"). timm's ViT is a plain pre-norm ViT, which transformers' ViTModel
computes exactly (same embeddings, fused qkv split into q/k/v, exact GELU, LayerNorm eps 1e-6), so the weights are
renamed, not re-implemented.

Input: a safetensors state dict of the open_clip model (keys `visual.trunk.*`, other towers ignored) or of the
trunk alone (`cls_token`, `pos_embed`, `patch_embed.*`, `blocks.N.*`, `norm.*`). The microsoft/BiomedCLIP-
PubMedBERT_256-vit_base_patch16_224 hub repository publishes only `open_clip_pytorch_model.bin`, a pickle, which
this project never unpickles: turn it into safetensors once where you trust the file, e.g. on a GPU box with
`pip install open_clip_torch` (it brings timm and a matching torchvision) and
`safetensors.torch.save_file(open_clip.create_model('hf-hub:microsoft/BiomedCLIP-...').state_dict(), path)`.

Output: config.json (model_type "vit", image_size 224, patch_size 16: 14x14 patches, 49 tokens per tile after
the 0.5 shuffle), model.safetensors, and preprocessor_config.json with the open_clip preprocessing mean/std
(OpenAI CLIP's for BiomedCLIP), which the builder reads.
"""

import argparse
import json
import re
from pathlib import Path

TRUNK_PREFIX = "visual.trunk."
# open_clip_config.json of microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 (preprocess_cfg).
BIOMEDCLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
BIOMEDCLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
# timm block module -> ViTModel `layers.N` module (the fused qkv is split apart).
_BLOCK_NAMES = {
    "norm1": "layernorm_before",
    "attn.proj": "attention.o_proj",
    "norm2": "layernorm_after",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_TOP_NAMES = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}


def trunk_state_dict(state: dict) -> dict:
    """The timm trunk's tensors, from an open_clip state dict or a trunk-only one."""
    if any(key.startswith(TRUNK_PREFIX) for key in state):
        return {key[len(TRUNK_PREFIX):]: value for key, value in state.items() if key.startswith(TRUNK_PREFIX)}
    return dict(state)


def timm_vit_to_transformers(trunk: dict) -> dict:
    """timm VisionTransformer tensor names -> transformers ViTModel names; unknown tensors raise."""
    converted = {}
    for key, value in trunk.items():
        if key in _TOP_NAMES:
            converted[_TOP_NAMES[key]] = value
            continue
        match = _BLOCK_RE.match(key)
        if match is None:
            raise ValueError(f"unexpected tensor {key!r} for timm's vit_base_patch16_224 trunk")
        layer, rest = f"layers.{match.group(1)}", match.group(2)
        module, _, kind = rest.rpartition(".")
        if module == "attn.qkv":
            # timm fuses [q; k; v] along the output dimension.
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                converted[f"{layer}.attention.{name}.{kind}"] = part.contiguous()
        elif module in _BLOCK_NAMES:
            converted[f"{layer}.{_BLOCK_NAMES[module]}.{kind}"] = value
        else:
            raise ValueError(f"unexpected tensor {key!r} for timm's vit_base_patch16_224 trunk")
    return converted


def vit_config_for(trunk: dict, image_size: int):
    """ViTConfig with the trunk's sizes (read from the tensors) and timm's ViT settings."""
    from transformers import ViTConfig

    hidden = trunk["cls_token"].shape[-1]
    patch = trunk["patch_embed.proj.weight"].shape[-1]
    layers = 1 + max(int(_BLOCK_RE.match(k).group(1)) for k in trunk if _BLOCK_RE.match(k))
    intermediate = trunk["blocks.0.mlp.fc1.weight"].shape[0]
    positions = trunk["pos_embed"].shape[1]
    if positions != 1 + (image_size // patch) ** 2:
        raise ValueError(f"pos_embed has {positions} positions, but {image_size}-px images of {patch}-px patches "
                         f"need {1 + (image_size // patch) ** 2}; pass the trunk's image size")
    heads = hidden // 64  # timm's ViT-B/16: 12 heads of 64
    return ViTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=intermediate, image_size=image_size, patch_size=patch, hidden_act="gelu",
                     layer_norm_eps=1e-6, qkv_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def convert(weights: str | Path, output: str | Path, open_clip_config: str | Path | None = None,
            num_attention_heads: int | None = None) -> Path:
    """Write OUTPUT as a transformers ViTModel folder; returns its path."""
    from safetensors.torch import load_file
    from transformers import ViTModel

    weights, output = Path(weights), Path(output)
    if weights.suffix != ".safetensors":
        raise SystemExit(f"{weights}: only .safetensors weights are read (pickled checkpoints are never loaded); "
                         "see this module's docstring for turning open_clip_pytorch_model.bin into safetensors")
    image_size, mean, std = 224, BIOMEDCLIP_MEAN, BIOMEDCLIP_STD
    if open_clip_config is not None:
        spec = json.loads(Path(open_clip_config).read_text(encoding="utf-8"))
        image_size = int(spec["model_cfg"]["vision_cfg"].get("image_size", image_size))
        mean = tuple(spec.get("preprocess_cfg", {}).get("mean", mean))
        std = tuple(spec.get("preprocess_cfg", {}).get("std", std))
    trunk = trunk_state_dict(load_file(weights))
    config = vit_config_for(trunk, image_size)
    if num_attention_heads is not None:
        config.num_attention_heads = num_attention_heads
    model = ViTModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(timm_vit_to_transformers(trunk), strict=False)
    if missing or unexpected:
        raise ValueError(f"conversion incomplete: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(output)
    preprocessor = {"image_mean": list(mean), "image_std": list(std), "size": {"height": image_size,
                    "width": image_size}, "source": f"converted from {weights.name} by {__name__}"}
    (output / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n", encoding="utf-8")
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="open_clip (or timm trunk) state dict as .safetensors")
    parser.add_argument("output_dir")
    parser.add_argument("--open-clip-config", help="the checkpoint's open_clip_config.json (image size, mean/std)")
    parser.add_argument("--num-attention-heads", type=int, help="default: hidden size / 64 (ViT-B/16: 12)")
    args = parser.parse_args(argv)
    print(convert(args.weights, args.output_dir, args.open_clip_config, args.num_attention_heads))


if __name__ == "__main__":
    main()
