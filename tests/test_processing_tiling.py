"""Tile grids, tile cutting and per-sample tile budgets (llava_medgpt/processing/tiling.py).

Expected grids are worked out by hand from the rule (closest aspect ratio among grids of 1..12 tiles, visited
in order of tile count; an exact tie goes to the later grid only if the image area exceeds
0.5 * 336**2 * cols * rows), not computed by the code under test.
"""

import random

import numpy as np
import pytest
from PIL import Image

from llava_medgpt.processing.image_processor import MedGptImageProcessor
from llava_medgpt.processing.tiling import (
    TooManyImagesError,
    candidate_grids,
    plan_sample_tiles,
    select_tile_grid,
    tile_image,
    tiles_for_grid,
)

T = 336
HALF_TILE_AREA = 0.5 * T * T  # 56448: a tie goes to a grid of n tiles only if the area exceeds n * this

# (width, height) -> (grid, tiles incl. thumbnail, image tokens at 144 per tile)
SIZE_TABLE = [
    # Aspect 1 ties 1x1, 2x2 and 3x3; area 112896 does not exceed 4 * 56448 = 225792, so 1x1, no thumbnail.
    ((336, 336), (1, 1), 1, 144),
    # Aspect 2 ties 2x1 and 4x2; area 225792 does not exceed 8 * 56448 = 451584: 2 tiles + thumbnail.
    ((672, 336), (2, 1), 3, 432),
    # Aspect 4/3: only 4x3 (12 tiles) has it exactly, so the small image is upscaled to 12 tiles + thumbnail.
    ((640, 480), (4, 3), 13, 1872),
    ((2048, 1536), (4, 3), 13, 1872),
    # Aspect 1/30: the narrowest grid within 12 tiles is 1x12 (1/12, off by 0.05; 1x11 is off by 0.058).
    ((100, 3000), (1, 12), 13, 1872),
    # Aspect 30: 12x1 is off by 18, 11x1 by 19.
    ((3000, 100), (12, 1), 13, 1872),
    # Aspect 1 again: 490000 > 225792 takes 2x2, but not > 9 * 56448 = 508032, so not 3x3.
    ((700, 700), (2, 2), 5, 720),
    # 640000 > 508032: 3x3 (4x4 = 16 tiles is over the maximum).
    ((800, 800), (3, 3), 10, 1440),
    # Aspect 2 around the 4x2 threshold 451584: 950x475 = 451250 stays 2x1, 952x476 = 453152 moves to 4x2.
    ((950, 475), (2, 1), 3, 432),
    ((952, 476), (4, 2), 9, 1296),
    # Aspect 0.75 (portrait 3:4, a chest X-ray shape): 3x4.
    ((2400, 3200), (3, 4), 13, 1872),
    # Aspect 1.5: 3x2 (6 tiles) first; 6x4 would be 24 tiles. 1500x1000 = 1.5e6 > 56448 * 6.
    ((1500, 1000), (3, 2), 7, 1008),
    # Aspect 1.6: 3x2 (1.5, off by 0.1) beats 2x1 (off 0.4) and 5x3 (15 tiles, not allowed); 8x5 neither.
    ((1600, 1000), (3, 2), 7, 1008),
]


@pytest.mark.parametrize("size, grid, tiles, tokens", SIZE_TABLE)
def test_grid_table(size, grid, tiles, tokens):
    assert select_tile_grid(*size) == grid
    assert tiles_for_grid(*grid) == tiles
    processor = MedGptImageProcessor()
    assert processor.tile_grid_for_size(*size) == grid
    assert processor.num_tiles_for_size(*size) == tiles
    assert processor.num_image_tokens_for_size(*size) == tokens


@pytest.mark.parametrize("size, grid, tiles, tokens", [row for row in SIZE_TABLE if row[0] != (100, 3000)][:6])
def test_processor_output_counts_match_table(size, grid, tiles, tokens):
    image = Image.new("RGB", size, (10, 20, 30))
    out = MedGptImageProcessor()([image], return_uint8=True)
    assert out["num_tiles"].tolist() == [tiles]
    assert out["num_image_tokens"].tolist() == [tokens]
    assert tuple(out["pixel_values"].shape) == (tiles, 3, T, T)


def test_candidate_order_follows_tile_count_with_internvl_order_inside():
    grids = candidate_grids(1, 12)
    assert len(grids) == 35  # sum over n=1..12 of the number of divisors of n
    counts = [c * r for c, r in grids]
    assert counts == sorted(counts)
    assert grids[0] == (1, 1)
    assert set(grids[-6:]) == {(3, 4), (4, 3), (1, 12), (12, 1), (6, 2), (2, 6)}
    # InternVL visits 2-tile grids as (1, 2) then (2, 1): the order its Python set gives.
    assert candidate_grids(2, 2) == ((1, 2), (2, 1))


def test_tie_between_equal_tile_counts_needs_min_tiles_above_one():
    # With min_tiles = max_tiles = 2 the candidates are (1, 2), (2, 1); aspect 1.25 is 0.75 from both.
    # The later one, (2, 1), wins only when the area exceeds 0.5 * 336**2 * 2 = 112896.
    assert select_tile_grid(10, 8, min_tiles=2, max_tiles=2) == (1, 2)  # area 80
    assert select_tile_grid(1035, 828, min_tiles=2, max_tiles=2) == (2, 1)  # area 856980
    # With min_tiles = 1 the 1x1 grid (off by 0.25) wins outright; with up to 12 tiles, 4x3 (off by 0.083).
    assert select_tile_grid(1035, 828, min_tiles=1, max_tiles=2) == (1, 1)
    assert select_tile_grid(1035, 828) == (4, 3)


def test_min_tiles_forces_a_grid():
    # min_tiles 4 on a square image: 2x2 is the only exact grid (3x3 needs area > 508032).
    assert select_tile_grid(336, 336, min_tiles=4, max_tiles=12) == (2, 2)
    with pytest.raises(ValueError):
        select_tile_grid(0, 10)
    with pytest.raises(ValueError):
        candidate_grids(3, 2)


def _striped_image(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_tile_image_cuts_row_by_row_and_appends_thumbnail():
    image = _striped_image(50, 31)
    tiles = tile_image(image, cols=3, rows=2, tile_size=8, use_thumbnail=True)
    assert len(tiles) == 7
    resized = np.asarray(image.resize((24, 16), Image.Resampling.BICUBIC))
    for index, tile in enumerate(tiles[:6]):
        row, col = divmod(index, 3)
        np.testing.assert_array_equal(np.asarray(tile), resized[row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8])
    thumbnail = np.asarray(image.resize((8, 8), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(np.asarray(tiles[6]), thumbnail)


def test_tile_image_single_tile_has_no_thumbnail():
    image = _striped_image(20, 20)
    tiles = tile_image(image, 1, 1, tile_size=8, use_thumbnail=True)
    assert len(tiles) == 1
    np.testing.assert_array_equal(np.asarray(tiles[0]), np.asarray(image.resize((8, 8), Image.Resampling.BICUBIC)))
    assert len(tile_image(image, 2, 1, tile_size=8, use_thumbnail=False)) == 2


# ------------------------------------------------------------------------------------ sample budget


def test_budget_two_full_images_fit_the_default():
    assert plan_sample_tiles([(2048, 1536), (2048, 1536)], 26) == [(4, 3), (4, 3)]


def test_budget_three_large_images_share_a_lower_cap():
    # Per-image budget 13 would cost 39 > 26. Budget 12 allows grids of <= 11 tiles: for aspect 4/3 the best
    # is 3x2 (1.5, off by 0.167; 2x2 and 1x1 are off by 0.333), i.e. 7 tiles each, 21 in all.
    grids = plan_sample_tiles([(2048, 1536)] * 3, 26)
    assert grids == [(3, 2)] * 3
    assert sum(tiles_for_grid(*g) for g in grids) == 21


def test_budget_small_image_keeps_its_grid_and_leaves_room():
    # 336x336 costs 1 tile at any cap, so a 14-tile budget leaves 13 for the large image.
    assert plan_sample_tiles([(336, 336), (2048, 1536)], 14) == [(1, 1), (4, 3)]
    # With 13 left over only 12: cap 12 -> 3x2 + thumbnail = 7 for the large image.
    assert plan_sample_tiles([(336, 336), (2048, 1536)], 13) == [(1, 1), (3, 2)]


def test_budget_tight_budget_falls_to_single_tiles():
    # 4 images, 8 tiles: a per-image budget of 3-5 still gives 5 tiles each (2x2 + thumb) or more = 20 > 8;
    # at budget 4 the cap is 3 tiles and 4:3 prefers 1x1 (off 0.333) over 2x1 / 3x1: 1 tile each.
    assert plan_sample_tiles([(2048, 1536)] * 4, 8) == [(1, 1)] * 4
    assert plan_sample_tiles([(2048, 1536)] * 3, 3) == [(1, 1)] * 3
    with pytest.raises(ValueError, match="5 images"):
        plan_sample_tiles([(100, 100)] * 5, 4)


def test_budget_without_thumbnails():
    # No thumbnails: per-image budget b allows b grid tiles. Two 4:3 images in 12 tiles: 4x3 each would be
    # 24; cap 6 gives 3x2 each = 12.
    assert plan_sample_tiles([(2048, 1536)] * 2, 12, use_thumbnail=False) == [(3, 2)] * 2


def test_budget_is_never_exceeded_and_unconstrained_samples_keep_their_grids():
    rng = random.Random(0)
    for _ in range(300):
        sizes = [(rng.randint(1, 4000), rng.randint(1, 4000)) for _ in range(rng.randint(1, 6))]
        budget = rng.randint(len(sizes), 40)
        grids = plan_sample_tiles(sizes, budget)
        assert sum(tiles_for_grid(*g) for g in grids) <= budget
        alone = [select_tile_grid(w, h) for w, h in sizes]
        if sum(tiles_for_grid(*g) for g in alone) <= budget:
            assert grids == alone


def test_processor_applies_budget_and_orders_tiles_by_sample_then_image():
    processor = MedGptImageProcessor(max_tiles_per_sample=26)
    big = Image.new("RGB", (2048, 1536), (200, 0, 0))
    small = Image.new("RGB", (336, 336), (0, 200, 0))
    out = processor([[big, big, big], [small]], return_uint8=True)
    assert out["num_tiles"].tolist() == [7, 7, 7, 1]
    assert out["num_image_tokens"].tolist() == [1008, 1008, 1008, 144]
    assert out["pixel_values"].shape[0] == 22
    # The last tile is the green image of the second sample; the first 21 are red.
    assert out["pixel_values"][21, 1].float().mean() == pytest.approx(200, abs=1)
    assert out["pixel_values"][:21, 0].float().mean() == pytest.approx(200, abs=1)
    assert processor.num_image_tokens_for_sample([(2048, 1536)] * 3) == [1008] * 3


def test_too_many_images_is_a_typed_error_raised_before_any_image_is_read():
    with pytest.raises(TooManyImagesError, match=r"27 images cannot fit max_tiles_per_sample=26") as caught:
        plan_sample_tiles([(336, 336)] * 27, 26)
    assert (caught.value.num_images, caught.value.max_tiles_per_sample) == (27, 26)
    # The image processor checks the count before opening files: these paths do not exist.
    with pytest.raises(TooManyImagesError, match="300 images"):
        MedGptImageProcessor()([[f"/nonexistent/{i}.png" for i in range(300)]])


def test_public_processing_api_imports_from_the_package_without_torch():
    # A fresh interpreter: `from llava_medgpt.processing import select_tile_grid` must not need the processor
    # modules (the package's heavy parts are loaded on first use).
    import subprocess
    import sys

    code = ("import sys, importlib.util, types\n"
            "spec = importlib.util.find_spec('llava_medgpt')\n"
            # Load the subpackage without running llava_medgpt/__init__ (which registers Auto classes).
            "pkg = types.ModuleType('llava_medgpt'); pkg.__path__ = list(spec.submodule_search_locations)\n"
            "sys.modules['llava_medgpt'] = pkg\n"
            "from llava_medgpt.processing import select_tile_grid, plan_sample_tiles\n"
            "assert select_tile_grid(672, 336) == (2, 1)\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    import llava_medgpt.processing as processing
    from llava_medgpt.processing import MedGptProcessor, SampleTooManyImagesError, select_tile_grid as exported

    assert exported is select_tile_grid
    assert issubclass(SampleTooManyImagesError, processing.SampleError) and MedGptProcessor.__name__ == "MedGptProcessor"
    assert set(processing.__all__) <= set(dir(processing))
    with pytest.raises(AttributeError):
        processing.no_such_name
