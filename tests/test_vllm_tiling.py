"""The vLLM plugin's tile rule (vllm_plugin/medgpt_vllm/tiling.py, pure Python, vLLM's environment) against
llava_medgpt's (llava_medgpt/processing/tiling.py): the same grids over a table of sizes, settings and multi-image
budgets, so the two copies of the rule cannot drift apart. Runs in the project venv; needs no vLLM."""

import importlib.util
import random
from pathlib import Path

import pytest

from llava_medgpt.processing import tiling as ours

PLUGIN_TILING = Path(__file__).parents[1] / "vllm_plugin" / "medgpt_vllm" / "tiling.py"


def _load_plugin_tiling():
    # Loaded from its file: the plugin package's __init__ registers with vLLM, which this venv does not have.
    spec = importlib.util.spec_from_file_location("medgpt_vllm_tiling", PLUGIN_TILING)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = _load_plugin_tiling()

# Hand-picked sizes at the rule's edges (tie thresholds, extreme aspect ratios, tiny images) + a seeded spread.
EDGE_SIZES = [(336, 336), (672, 336), (640, 480), (2048, 1536), (100, 3000), (3000, 100), (700, 700), (800, 800),
              (950, 475), (952, 476), (2400, 3200), (1500, 1000), (1600, 1000), (1, 1), (1, 5000), (5000, 1),
              (335, 337), (1008, 1008), (1009, 1009), (4000, 4000), (512, 512), (224, 224), (3072, 2048)]
_rng = random.Random(16)
SIZES = EDGE_SIZES + [(_rng.randint(1, 4096), _rng.randint(1, 4096)) for _ in range(300)]
SETTINGS = [  # (min_tiles, max_tiles, tile_size)
    (1, 12, 336), (1, 6, 336), (2, 12, 336), (3, 9, 448), (1, 1, 336), (4, 4, 224),
]


@pytest.mark.parametrize("min_tiles, max_tiles, tile_size", SETTINGS)
def test_single_image_grids_match(min_tiles, max_tiles, tile_size):
    assert plugin.candidate_grids(min_tiles, max_tiles) == ours.candidate_grids(min_tiles, max_tiles)
    for width, height in SIZES:
        expected = ours.select_tile_grid(width, height, min_tiles, max_tiles, tile_size)
        assert plugin.select_tile_grid(width, height, min_tiles, max_tiles, tile_size) == expected, (width, height)


@pytest.mark.parametrize("use_thumbnail", [True, False])
@pytest.mark.parametrize("budget", [1, 2, 3, 7, 13, 26, 40])
def test_multi_image_budgets_match(budget, use_thumbnail):
    rng = random.Random(budget)
    checked = 0
    for _ in range(60):
        sizes = rng.sample(SIZES, rng.randint(1, 5))
        for min_tiles, max_tiles, tile_size in SETTINGS[:3]:
            args = (budget, min_tiles, max_tiles, tile_size, use_thumbnail)
            if len(sizes) > budget:
                with pytest.raises(ValueError, match="cannot fit"):
                    ours.plan_sample_tiles(sizes, *args)
                with pytest.raises(ValueError, match="cannot fit"):
                    plugin.plan_sample_tiles(sizes, *args)
                continue
            grids = ours.plan_sample_tiles(sizes, *args)
            assert plugin.plan_sample_tiles(sizes, *args) == grids, (sizes, args)
            assert sum(plugin.tiles_for_grid(c, r, use_thumbnail) for c, r in grids) <= budget
            checked += 1
    assert checked > 0


def test_budget_shrinks_large_images_but_keeps_small_ones():
    # Worked out by hand: alone, a 4:3 image takes 4x3 + thumbnail = 13 tiles; three of them (39) plus a small
    # image exceed the budget of 26. Lowering the shared grid cap to 11 tiles gives each 4:3 image the closest
    # grid within 11 tiles, 3x2 (aspect 1.5, off by 0.17; 2x2 is off by 0.33), so 3 x 7 + 1 = 22 tiles fit.
    sizes = [(2048, 1536), (2048, 1536), (2048, 1536), (100, 100)]
    assert plugin.plan_sample_tiles(sizes, 26, 1, 12, 336, True) == [(3, 2), (3, 2), (3, 2), (1, 1)]


# ---------------------------------------------------------------------------------- pixels and decoding

PLUGIN_IMAGES = Path(__file__).parents[1] / "vllm_plugin" / "medgpt_vllm" / "images.py"


def _load_plugin_images():
    spec = importlib.util.spec_from_file_location("medgpt_vllm_images", PLUGIN_IMAGES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _image_files(tmp_path):
    """Files covering the decoding and resizing rules: a JPEG large enough for draft decoding, an EXIF-rotated JPEG,
    a transparent PNG, a 16-bit greyscale PNG, a 3 x 1000 strip."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (63, 84, 3), dtype=np.uint8), np.ones((32, 32, 1), dtype=np.uint8))
    files = {}
    jpeg = io.BytesIO()
    Image.fromarray(smooth).save(jpeg, "JPEG", quality=90)  # 2688 x 2016: 4x3 grid, draft at 1/2
    files["large.jpg"] = jpeg.getvalue()
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    Image.fromarray(smooth[:400, :700]).save(rotated, "JPEG", exif=exif)
    files["rotated.jpg"] = rotated.getvalue()
    rgba = rng.integers(0, 256, (300, 500, 4), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(png, "PNG")
    files["alpha.png"] = png.getvalue()
    deep = io.BytesIO()
    Image.fromarray(rng.integers(1000, 4000, (350, 360), dtype=np.uint16)).save(deep, "PNG")
    files["deep16.png"] = deep.getvalue()
    thin = io.BytesIO()  # taller than 100x its width: resized vertically first, as PIL does
    Image.fromarray(rng.integers(0, 256, (1000, 3, 3), dtype=np.uint8)).save(thin, "PNG")
    files["thin.png"] = thin.getvalue()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return files


def test_plugin_pixels_equal_our_processor(tmp_path):
    """Tiles from file bytes (JPEG draft, EXIF, alpha, 16-bit) and from decoded images, bit for bit."""
    import torch
    from PIL import Image

    from llava_medgpt.processing.image_io import load_image
    from llava_medgpt.processing.image_processor import MedGptImageProcessor

    images = _load_plugin_images()
    processor = MedGptImageProcessor()
    files = _image_files(tmp_path)
    sizes = {}
    for name, data in files.items():
        expected = processor([tmp_path / name], return_uint8=True)
        with Image.open(tmp_path / name) as opened:
            size = images.upright_size(opened)
        sizes[name] = size
        cols, rows = plugin.plan_sample_tiles([size], 26, 1, 12, 336, True)[0]
        draft = (cols * 336, rows * 336)
        tiles = images.tile_pixels(images.decode(data, draft), cols, rows, 336, True)
        assert torch.equal(tiles, expected["pixel_values"]), name
        decoded = images.tile_pixels(images.to_rgb(Image.open(tmp_path / name)), cols, rows, 336, True)
        from_pil = processor([load_image(tmp_path / name)], return_uint8=True)["pixel_values"]
        assert torch.equal(decoded, from_pil), name
        normalised = processor([tmp_path / name])["pixel_values"]
        assert torch.equal(images.normalize(tiles, processor.image_mean, processor.image_std), normalised), name
    assert sizes["rotated.jpg"] == (400, 700)
    # The draft path matters: the full-resolution decode of the large JPEG gives other tiles.
    full = images.tile_pixels(images.decode(files["large.jpg"], None), 4, 3, 336, True)
    assert not torch.equal(full, processor([tmp_path / "large.jpg"], return_uint8=True)["pixel_values"])
