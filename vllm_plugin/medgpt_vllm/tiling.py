"""MedGPT-oss's tile rule, in pure Python: which grid of tiles each image of a request becomes.

This is the rule of llava_medgpt.processing.tiling (InternVL's dynamic high-resolution grid plus the per-sample
tile budget shared by several images), restated here because the plugin runs in vLLM's environment, which cannot
import llava_medgpt. tests/test_vllm_tiling.py compares the two over a table of sizes so they cannot drift.

    select_tile_grid(w, h, min_tiles, max_tiles, tile_size)  -> (cols, rows) of one image
    plan_sample_tiles(sizes, max_tiles_per_sample, ...)      -> a grid per image, thumbnails included in the budget
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=64)
def candidate_grids(min_tiles: int, max_tiles: int) -> tuple[tuple[int, int], ...]:
    """All (cols, rows) with min_tiles <= cols * rows <= max_tiles, in InternVL's visiting order.

    The set is built with the same insertions as InternVL's, so ties within one tile count resolve the same way.
    """
    if min_tiles < 1 or max_tiles < min_tiles:
        raise ValueError(f"need 1 <= min_tiles <= max_tiles, got {min_tiles}, {max_tiles}")
    grids = {(c, r) for n in range(min_tiles, max_tiles + 1) for c in range(1, n + 1) for r in range(1, n + 1)
             if min_tiles <= c * r <= max_tiles}
    return tuple(sorted(grids, key=lambda grid: grid[0] * grid[1]))


def select_tile_grid(width: int, height: int, min_tiles: int, max_tiles: int, tile_size: int) -> tuple[int, int]:
    """The grid whose aspect ratio is closest to the image's; an exact tie goes to the larger grid only when the
    image has more than half its pixels."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    aspect_ratio, area = width / height, width * height
    best_grid, best_diff = (1, 1), float("inf")
    for cols, rows in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect_ratio - cols / rows)
        if diff < best_diff:
            best_diff, best_grid = diff, (cols, rows)
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * cols * rows:
            best_grid = (cols, rows)
    return best_grid


def tiles_for_grid(cols: int, rows: int, use_thumbnail: bool) -> int:
    """Tiles of one image, its thumbnail (added when the grid has more than one tile) included."""
    return cols * rows + 1 if use_thumbnail and cols * rows > 1 else cols * rows


def plan_sample_tiles(image_sizes: list[tuple[int, int]], max_tiles_per_sample: int, min_tiles: int,
                      max_tiles: int, tile_size: int, use_thumbnail: bool) -> list[tuple[int, int]]:
    """A grid per image of one request: every image tiled as if alone under one shared cap, the largest cap whose
    total (thumbnails included) fits max_tiles_per_sample. ValueError when there are more images than tiles."""
    if len(image_sizes) > max_tiles_per_sample:
        raise ValueError(f"a request with {len(image_sizes)} images cannot fit max_tiles_per_sample="
                         f"{max_tiles_per_sample} (every image needs at least one tile)")
    for budget in range(tiles_for_grid(max_tiles, 1, use_thumbnail), 0, -1):
        cap = budget - 1 if use_thumbnail else budget
        cap = min(max_tiles, cap if cap >= 2 else 1)
        grids = [select_tile_grid(w, h, min(min_tiles, cap), cap, tile_size) for w, h in image_sizes]
        if sum(tiles_for_grid(c, r, use_thumbnail) for c, r in grids) <= max_tiles_per_sample:
            return grids
    raise AssertionError("unreachable: one tile per image always fits")
