"""Vision geometry from the tower's config: token counts per encoder, the odd-grid rule, and every tiny encoder
trained one step and generating through the processor."""

import pytest
import torch
from PIL import Image

from llava_medgpt.data.dataset import image_tokens_estimate_of
from llava_medgpt.model.backbones import TINY_VISION_CONFIGS, VISION_BACKBONES, VISION_ENCODERS
from llava_medgpt.model.builder import build_from_parts
from llava_medgpt.model.configuration import MedGptConfig
from llava_medgpt.model.modeling import pad_patch_grid, pixel_shuffle
from llava_medgpt.model.tiny import create_tiny_parts
from llava_medgpt.model.tokenizer import build_tiny_tokenizer
from llava_medgpt.processing.geometry import DEFAULT_GEOMETRY, VisionGeometry
from llava_medgpt.processing.image_processor import MedGptImageProcessor
from llava_medgpt.processing.processor import MedGptProcessor

# Hand-computed: (tile px, patch px) -> patches per side (floor), padded side, tokens per side, tokens per tile.
EXPECTED = {
    "clip": (336, 14, 24, 24, 12, 144),  # 336 / 14 = 24 -> 12x12
    "clip-224": (224, 14, 16, 16, 8, 64),  # 224 / 14 = 16 -> 8x8
    "siglip": (384, 14, 27, 28, 14, 196),  # 384 / 14 = 27.4 -> 27 (6 px unseen), odd: pad to 28 -> 14x14
    "medsiglip": (448, 14, 32, 32, 16, 256),  # 448 / 14 = 32 -> 16x16
    "biomedclip": (224, 16, 14, 14, 7, 49),  # 224 / 16 = 14 -> 7x7
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_token_counts_of_each_encoder_geometry(name):
    tile, patch, grid, padded, side, tokens = EXPECTED[name]
    encoder = VISION_ENCODERS[name]
    assert (encoder.image_size, encoder.patch_size) == (tile, patch)
    for config in (encoder.tiny_config(), TINY_VISION_CONFIGS[name]()):  # the tiny tower keeps the real geometry
        geometry = VisionGeometry.from_vision_config(config, 0.5)
        assert (geometry.tile_size, geometry.patch_size) == (tile, patch)
        assert (geometry.patch_grid, geometry.padded_grid, geometry.token_grid) == (grid, padded, side)
        assert geometry.tokens_per_tile == tokens


def test_other_ratios_and_the_unseen_pixels():
    assert VisionGeometry(384, 14, 1.0).tokens_per_tile == 729  # no shuffle: SigLIP's 27x27 patches
    assert VisionGeometry(448, 14, 0.25).tokens_per_tile == 64  # 32 / 4 = 8
    assert VisionGeometry(384, 14, 0.25).tokens_per_tile == 49  # 27 -> pad 28 -> 7x7
    assert VisionGeometry(384, 14).unseen_pixels == 6 and VisionGeometry(448, 14).unseen_pixels == 0
    assert VisionGeometry(384, 14).describe() == (
        "384 px / 14 px patches -> 27x27 (6 px unseen) -> pad 28x28 -> 14x14 = 196 tokens per tile")
    assert DEFAULT_GEOMETRY.tokens_per_tile == 144


@pytest.mark.parametrize("kwargs,reason", [
    ({"tile_size": 336, "patch_size": 14, "downsample_ratio": 0.4}, "not 1/b"),
    ({"tile_size": 14, "patch_size": 16}, "cannot hold"),
    ({"tile_size": 336, "patch_size": 14, "downsample_ratio": 0.0}, "must be in"),
    ({"tile_size": 336.5, "patch_size": 14}, "whole pixels"),
])
def test_unusable_geometries_are_refused_with_the_reason(kwargs, reason):
    with pytest.raises(ValueError, match=reason):
        VisionGeometry(**kwargs)


def test_non_square_towers_are_refused_by_the_model_config():
    from transformers import SiglipVisionConfig

    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=(448, 336), patch_size=14)
    with pytest.raises(ValueError, match="non-square image_size"):
        MedGptConfig(vision_config=vision, text_config={"model_type": "qwen2"})
    with pytest.raises(ValueError, match="not 1/b"):
        MedGptConfig(vision_config=TINY_VISION_CONFIGS["clip"](), text_config={"model_type": "qwen2"},
                     downsample_ratio=0.3)


def test_odd_grid_is_zero_padded_at_the_bottom_and_right_before_the_shuffle():
    # A 3x3 grid of 1-channel patches numbered 1..9 -> padded 4x4 -> 2x2 tokens of 4 channels (2x2 blocks).
    grid = torch.arange(1, 10, dtype=torch.float32).reshape(1, 3, 3, 1)
    tokens = pixel_shuffle(pad_patch_grid(grid, 4), 0.5)
    assert tokens.shape == (1, 2, 2, 4)
    assert tokens[0, 0, 0].tolist() == [1, 2, 4, 5]
    assert tokens[0, 0, 1].tolist() == [3, 0, 6, 0]  # right edge: real patches 3 and 6, then padding
    assert tokens[0, 1, 0].tolist() == [7, 8, 0, 0]
    assert tokens[0, 1, 1].tolist() == [9, 0, 0, 0]


def test_image_processor_round_trips_its_geometry_and_refuses_a_contradiction(tmp_path):
    processor = MedGptImageProcessor.from_geometry(VisionGeometry(448, 14), image_mean=[0.5] * 3, image_std=[0.5] * 3)
    out = processor([Image.new("RGB", (900, 450), (10, 20, 30))])
    # 900x450 at 448 px: aspect 2 -> 2x1 grid + thumbnail = 3 tiles of 256 tokens.
    assert out["pixel_values"].shape == (3, 3, 448, 448)
    assert out["num_image_tokens"].tolist() == [3 * 256]
    assert processor.max_image_tokens_per_sample == 26 * 256
    processor.save_pretrained(tmp_path)
    loaded = MedGptImageProcessor.from_pretrained(tmp_path)
    assert loaded.geometry == VisionGeometry(448, 14) and loaded.tokens_per_tile == 256
    assert loaded.to_dict() == processor.to_dict()
    with pytest.raises(ValueError, match="contradicts the geometry"):
        MedGptImageProcessor(tile_size=448, patch_size=14, tokens_per_tile=144)
    with pytest.raises(ValueError, match="does not support the argument 'tile_size'"):
        processor([Image.new("RGB", (64, 64))], tile_size=336)  # a tile size the tower was not built for


@pytest.mark.parametrize("name,expected", [
    ("clip", 5 * 144),  # 512x512 at 336 px: 2x2 + thumbnail
    ("clip-224", 10 * 64),  # at 224 px: 3x3 + thumbnail (area 262144 > 0.5 * 224^2 * 9)
    ("siglip", 196),  # at 384 px: one tile (262144 < 0.5 * 384^2 * 4)
    ("medsiglip", 256),  # at 448 px: one tile
])
def test_dataset_length_estimate_follows_the_geometry(name, expected):
    image_processor = MedGptImageProcessor.from_geometry(
        VisionGeometry.from_vision_config(TINY_VISION_CONFIGS[name]()))
    processor = MedGptProcessor(image_processor, build_tiny_tokenizer("gpt_oss"))
    assert image_tokens_estimate_of(processor) == expected


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """One tiny GPT-oss + tiny tower model per encoder, assembled by the stage-0 builder."""
    built = {}

    def get(name):
        if name not in built:
            folder = tmp_path_factory.mktemp(f"parts-{name}")
            language_model, vision_tower = create_tiny_parts(folder, "gpt_oss", name)
            torch.manual_seed(0)
            built[name] = build_from_parts(str(language_model), str(vision_tower))
        return built[name]

    return get


RECORD = {"id": "r1", "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"},
                                        {"from": "gpt", "value": "A chest radiograph."}]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_tiny_encoder_trains_one_step_and_generates(tiny_models, name):
    model, processor = tiny_models(name)
    tile, tokens = EXPECTED[name][0], EXPECTED[name][-1]
    family = VISION_BACKBONES[VISION_ENCODERS[name].model_type]
    assert (model.config.vision_feature_layer, model.config.vision_feature_select_strategy) == (
        family.feature_layer, family.feature_select_strategy)
    assert processor.image_processor.tile_size == tile and processor.image_processor.tokens_per_tile == tokens
    model.config.check_image_processor(processor.image_processor)

    image = Image.new("RGB", (tile, tile), (120, 60, 30))  # exactly one tile
    sample = processor.tokenize_conversation(RECORD, images=[image])
    assert sample["pixel_values"].shape == (1, 3, tile, tile)
    assert int((sample["input_ids"] == model.config.image_token_id).sum()) == tokens

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = {n: p.detach().clone() for n, p in model.multi_modal_projector.named_parameters()}
    tower_before = next(model.vision_tower.parameters()).detach().clone()
    loss = model(input_ids=sample["input_ids"][None], labels=sample["labels"][None],
                 pixel_values=sample["pixel_values"]).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert model.multi_modal_projector.linear_1.weight.grad.abs().sum() > 0
    optimizer.step()
    optimizer.zero_grad()
    assert all(not torch.equal(before[n], p) for n, p in model.multi_modal_projector.named_parameters())
    assert not torch.equal(tower_before, next(model.vision_tower.parameters()))  # gradients reached the tower

    model.eval()
    prompt = processor.apply_chat_template([{"role": "user", "content": "<image>\nWhat is shown?"}])
    inputs = processor(text=[prompt], images=[[image]])
    calls = []
    hook = model.vision_tower.register_forward_hook(lambda *args: calls.append(1))
    try:
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    finally:
        hook.remove()
    assert generated.shape == (1, inputs["input_ids"].shape[1] + 3)
    assert len(calls) == 1  # images at prefill only
