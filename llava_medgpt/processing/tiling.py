"""Dynamic tiling: which grid of tiles (at the vision tower's input size) an image becomes, and how a sample's
images share a tile budget.

The grid rule is InternVL's dynamic high-resolution rule (InternVL 1.5, `dynamic_preprocess` /
`find_closest_aspect_ratio`), the scheme the paper's "up to 12 dynamic patches ... and thumbnails"
(section 3.3) refers to:

1. Candidate grids are all (cols, rows) with min_tiles <= cols * rows <= max_tiles, visited in order of
   tile count. Within one tile count the order is the iteration order of the Python set InternVL builds
   (we build the same set the same way); it only matters when min_tiles > 1, because with (1, 1) among the
   candidates two grids of equal tile count never tie for the best aspect ratio.
2. The grid whose aspect ratio cols / rows is closest to width / height wins; the first one visited
   keeps the place unless a later one ties exactly and the image's area exceeds half the later grid's
   pixel area (0.5 * tile_size**2 * cols * rows). So with 336-px tiles a square 800x800 image takes 3x3 tiles,
   while a square 336x336 image stays at 1x1.
3. The image is resized (aspect ratio not kept) to (cols * tile_size, rows * tile_size) and cut row by row;
   when more than one tile results and thumbnails are on, a tile_size x tile_size thumbnail of the whole
   image is appended.

Everything here is a pure function of sizes and settings, except `tile_image` which works on a PIL image.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import Image

from ..constants import MAX_TILES, MIN_TILES
from .geometry import DEFAULT_GEOMETRY



@lru_cache(maxsize=64)
def candidate_grids(min_tiles: int = MIN_TILES, max_tiles: int = MAX_TILES) -> tuple[tuple[int, int], ...]:
    """All (cols, rows) with min_tiles <= cols * rows <= max_tiles, in InternVL's visiting order."""
    if min_tiles < 1 or max_tiles < min_tiles:
        raise ValueError(f"need 1 <= min_tiles <= max_tiles, got min_tiles={min_tiles}, max_tiles={max_tiles}")
    # Same insertions into a set as InternVL, so the (hash-defined) order within one tile count matches too.
    grids = set()
    for n in range(min_tiles, max_tiles + 1):
        for cols in range(1, n + 1):
            for rows in range(1, n + 1):
                if min_tiles <= cols * rows <= max_tiles:
                    grids.add((cols, rows))
    return tuple(sorted(grids, key=lambda grid: grid[0] * grid[1]))


def select_tile_grid(
    width: int,
    height: int,
    min_tiles: int = MIN_TILES,
    max_tiles: int = MAX_TILES,
    tile_size: int = DEFAULT_GEOMETRY.tile_size,
) -> tuple[int, int]:
    """(cols, rows) of the tile grid for a width x height image (rule in the module docstring)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    aspect_ratio = width / height
    area = width * height
    best_grid = (1, 1)
    best_diff = float("inf")
    for cols, rows in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect_ratio - cols / rows)
        if diff < best_diff:
            best_diff, best_grid = diff, (cols, rows)
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * cols * rows:
            # Exact tie: a larger grid only pays off when the image has the pixels to fill it.
            best_grid = (cols, rows)
    return best_grid


def tiles_for_grid(cols: int, rows: int, use_thumbnail: bool = True) -> int:
    """Tiles an image with this grid costs, the thumbnail included."""
    grid_tiles = cols * rows
    return grid_tiles + 1 if use_thumbnail and grid_tiles > 1 else grid_tiles


def tile_image(
    image: Image.Image,
    cols: int,
    rows: int,
    tile_size: int = DEFAULT_GEOMETRY.tile_size,
    use_thumbnail: bool = True,
) -> list[Image.Image]:
    """Resize `image` to the grid (bicubic), cut it left-to-right, top-to-bottom, append the thumbnail.

    This is the plain-PIL reference; `MedGptImageProcessor` produces the same tiles as arrays with a faster
    resampler (see docs/preprocessing.md).
    """
    resized = image.resize((cols * tile_size, rows * tile_size), Image.Resampling.BICUBIC)
    tiles = [
        resized.crop((c * tile_size, r * tile_size, (c + 1) * tile_size, (r + 1) * tile_size))
        for r in range(rows)
        for c in range(cols)
    ]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(image.resize((tile_size, tile_size), Image.Resampling.BICUBIC))
    return tiles


class TooManyImagesError(ValueError):
    """A sample has more images than its tile budget: no grid can fit, since every image needs one tile."""

    def __init__(self, num_images: int, max_tiles_per_sample: int):
        self.num_images = num_images
        self.max_tiles_per_sample = max_tiles_per_sample
        super().__init__(
            f"{num_images} images cannot fit max_tiles_per_sample={max_tiles_per_sample} "
            "(every image needs at least one tile)"
        )


def check_image_count(num_images: int, max_tiles_per_sample: int) -> None:
    """Raise TooManyImagesError when a sample's images cannot all get a tile (cheap: no image is read)."""
    if num_images > max_tiles_per_sample:
        raise TooManyImagesError(num_images, max_tiles_per_sample)


def plan_sample_tiles(
    image_sizes: list[tuple[int, int]],
    max_tiles_per_sample: int,
    min_tiles: int = MIN_TILES,
    max_tiles: int = MAX_TILES,
    tile_size: int = DEFAULT_GEOMETRY.tile_size,
    use_thumbnail: bool = True,
) -> list[tuple[int, int]]:
    """Grids for the images of one sample so that their tiles (thumbnails included) fit the sample budget.

    Rule ("water-filling" with one shared cap): every image is tiled as it would be alone, with its
    max_tiles lowered to a common cap; the cap is the largest value whose total fits
    `max_tiles_per_sample`. Images that need few tiles (small or square-ish ones) keep their own grid and
    leave the rest of the budget to the others. Under a per-image budget of b tiles an image may use a grid
    of up to b - 1 tiles plus its thumbnail, or a single tile with no thumbnail when b < 3. Every image keeps
    at least one tile; a sample with more images than `max_tiles_per_sample` raises TooManyImagesError, since
    no grid can make it fit (the processor turns it into a SampleError the data pipeline skips and counts).
    """
    check_image_count(len(image_sizes), max_tiles_per_sample)

    def grids_with_budget(per_image_budget: int) -> list[tuple[int, int]]:
        grid_cap = per_image_budget - 1 if use_thumbnail else per_image_budget
        grid_cap = min(max_tiles, grid_cap if grid_cap >= 2 else 1)
        lowest = min(min_tiles, grid_cap)
        return [select_tile_grid(w, h, lowest, grid_cap, tile_size) for w, h in image_sizes]

    full_budget = tiles_for_grid(max_tiles, 1, use_thumbnail)
    for per_image_budget in range(full_budget, 0, -1):
        grids = grids_with_budget(per_image_budget)
        if sum(tiles_for_grid(c, r, use_thumbnail) for c, r in grids) <= max_tiles_per_sample:
            return grids
    raise AssertionError("unreachable: a budget of one tile per image always fits")


__all__ = [
    "TooManyImagesError",
    "candidate_grids",
    "check_image_count",
    "plan_sample_tiles",
    "select_tile_grid",
    "tile_image",
    "tiles_for_grid",
]
