"""BiomedCLIP's timm ViT trunk -> transformers ViTModel: the converted tower computes what the timm network
computes, and stage 0 builds a MedGPT model from it (49 tokens per 224-px tile, CLS dropped, CLIP mean/std)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from llava_medgpt.model.builder import build_from_parts
from llava_medgpt.model.convert_biomedclip import BIOMEDCLIP_MEAN, convert
from llava_medgpt.model.tiny import create_tiny_language_model

HIDDEN, HEADS, DEPTH, PATCH, SIZE = 32, 2, 3, 16, 224


def timm_state(seed: int = 0) -> dict:
    """Random tensors under timm's vit_base_patch16_224 names (as open_clip stores them: visual.trunk.*)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.2  # noqa: E731
    state = {"cls_token": r(1, 1, HIDDEN), "pos_embed": r(1, 1 + (SIZE // PATCH) ** 2, HIDDEN),
             "patch_embed.proj.weight": r(HIDDEN, 3, PATCH, PATCH), "patch_embed.proj.bias": r(HIDDEN),
             "norm.weight": 1 + r(HIDDEN), "norm.bias": r(HIDDEN)}
    for i in range(DEPTH):
        state |= {f"blocks.{i}.norm1.weight": 1 + r(HIDDEN), f"blocks.{i}.norm1.bias": r(HIDDEN),
                  f"blocks.{i}.attn.qkv.weight": r(3 * HIDDEN, HIDDEN), f"blocks.{i}.attn.qkv.bias": r(3 * HIDDEN),
                  f"blocks.{i}.attn.proj.weight": r(HIDDEN, HIDDEN), f"blocks.{i}.attn.proj.bias": r(HIDDEN),
                  f"blocks.{i}.norm2.weight": 1 + r(HIDDEN), f"blocks.{i}.norm2.bias": r(HIDDEN),
                  f"blocks.{i}.mlp.fc1.weight": r(4 * HIDDEN, HIDDEN), f"blocks.{i}.mlp.fc1.bias": r(4 * HIDDEN),
                  f"blocks.{i}.mlp.fc2.weight": r(HIDDEN, 4 * HIDDEN), f"blocks.{i}.mlp.fc2.bias": r(HIDDEN)}
    return state


def reference_vit(state: dict, pixels: torch.Tensor) -> list[torch.Tensor]:
    """timm's pre-norm ViT written out from its tensors: the hidden state after each block, then the final norm."""
    f = torch.nn.functional
    x = f.conv2d(pixels, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=PATCH)
    x = torch.cat([state["cls_token"].expand(len(x), -1, -1), x.flatten(2).transpose(1, 2)], 1) + state["pos_embed"]
    states = [x]
    for i in range(DEPTH):
        p = lambda name: state[f"blocks.{i}.{name}"]  # noqa: E731
        h = f.layer_norm(x, (HIDDEN,), p("norm1.weight"), p("norm1.bias"), eps=1e-6)
        q, k, v = f.linear(h, p("attn.qkv.weight"), p("attn.qkv.bias")).chunk(3, dim=-1)
        split = lambda t: t.unflatten(-1, (HEADS, HIDDEN // HEADS)).transpose(1, 2)  # noqa: E731
        attention = f.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).flatten(2)
        x = x + f.linear(attention, p("attn.proj.weight"), p("attn.proj.bias"))
        h = f.layer_norm(x, (HIDDEN,), p("norm2.weight"), p("norm2.bias"), eps=1e-6)
        x = x + f.linear(f.gelu(f.linear(h, p("mlp.fc1.weight"), p("mlp.fc1.bias"))), p("mlp.fc2.weight"),
                         p("mlp.fc2.bias"))
        states.append(x)
    return states + [f.layer_norm(x, (HIDDEN,), state["norm.weight"], state["norm.bias"], eps=1e-6)]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("biomedclip")
    state = timm_state()
    open_clip = {f"visual.trunk.{k}": v for k, v in state.items()} | {"visual.head.proj.weight": torch.zeros(8, 32),
                                                                       "text.transformer.x": torch.zeros(2)}
    save_file(open_clip, folder / "open_clip_model.safetensors")
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": {"vision_cfg": {"timm_model_name": "vit_base_patch16_224", "image_size": 224}},
        "preprocess_cfg": {"mean": list(BIOMEDCLIP_MEAN), "std": [0.26862954, 0.26130258, 0.27577711]}}))
    out = convert(folder / "open_clip_model.safetensors", folder / "vit", folder / "open_clip_config.json",
                  num_attention_heads=HEADS)
    return state, out


def test_converted_tower_matches_the_timm_network(converted):
    from transformers import ViTModel

    state, folder = converted
    model = ViTModel.from_pretrained(folder, add_pooling_layer=False).eval()
    pixels = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(pixel_values=pixels, output_hidden_states=True)
        expected = reference_vit(state, pixels)
    torch.testing.assert_close(ours.hidden_states[-2], expected[-3], atol=1e-5, rtol=1e-5)  # what the projector reads
    torch.testing.assert_close(ours.last_hidden_state, expected[-1], atol=1e-5, rtol=1e-5)


def test_pickles_are_refused(tmp_path):
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(SystemExit, match="only .safetensors"):
        convert(tmp_path / "open_clip_pytorch_model.bin", tmp_path / "out")


def test_stage0_builds_from_the_converted_tower(converted, tmp_path):
    _, tower = converted
    language_model = create_tiny_language_model(tmp_path / "lm", "gpt_oss")
    model, processor = build_from_parts(str(language_model), str(tower))
    assert model.config.vision_config.model_type == "vit"
    assert (model.config.vision_feature_layer, model.config.vision_feature_select_strategy) == (-2, "default")
    assert processor.image_processor.tokens_per_tile == 49  # 224 / 16 = 14x14 patches -> 7x7
    assert processor.image_processor.image_mean == list(BIOMEDCLIP_MEAN)  # from the converted preprocessor file
    features = model.get_image_features(torch.zeros(1, 3, SIZE, SIZE))
    assert features.shape == (49, model.config.text_config.hidden_size)
