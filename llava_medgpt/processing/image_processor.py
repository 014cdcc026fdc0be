"""`MedGptImageProcessor`: images of a batch of samples -> tiles at the vision tower's input size.

Each image becomes a grid of tiles plus a thumbnail (rule in `tiling.py`); the images of one sample share a
budget of `max_tiles_per_sample` tiles. Output, for all tiles of all images of all samples in reading order:

    pixel_values      [total_tiles, 3, tile_size, tile_size]  float32 normalised, or uint8 with return_uint8
    num_tiles         [num_images]  tiles per image, thumbnail included
    num_image_tokens  [num_images]  num_tiles * tokens_per_tile

Tile size and tokens per tile come from the vision geometry (`tile_size`, `patch_size`, `downsample_ratio`, the
tower's own numbers; see processing/geometry.py), saved in preprocessor_config.json so a checkpoint round-trips.

Training can ship uint8 tiles from the loader workers (4x less memory and pinned-copy traffic) and normalise
on the GPU with `normalize_on_device`.

Speed: resizing uses torch's antialiased bicubic on uint8 tensors, the same filter as PIL's BICUBIC (at most
2/255 from PIL on 440 test images, thin and extreme aspect ratios included: bench/bench_pixel_bounds.py), several
times faster than PIL on this kind of CPU; JPEGs are decoded at reduced scale when the target is much smaller
(`use_jpeg_draft`), which changes pixels by more (up to 28/255 on scikit-image's samples, 101/255 on noise;
docs/preprocessing.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.processing_utils import ImagesKwargs

try:  # zero-copy PIL -> numpy (pyarrow comes with `datasets`); without it one copy more
    import pyarrow
except ImportError:  # pragma: no cover
    pyarrow = None

from ..constants import MAX_TILES, MIN_TILES
from .geometry import DEFAULT_GEOMETRY, VisionGeometry
from .image_io import ImageSource, load_image, read_image_size
from .tiling import check_image_count, plan_sample_tiles, tiles_for_grid

# Two images at full resolution (12 tiles + thumbnail each); samples with more images share the budget.
DEFAULT_MAX_TILES_PER_SAMPLE = 2 * (MAX_TILES + 1)


class MedGptImagesKwargs(ImagesKwargs, total=False):
    tile_size: int
    patch_size: int
    downsample_ratio: float
    min_tiles: int
    max_tiles: int
    use_thumbnail: bool
    max_tiles_per_sample: int
    tokens_per_tile: int
    use_jpeg_draft: bool
    return_uint8: bool


# Settings a call may override; everything else in ImagesKwargs (do_resize, size, ...) does not apply here. The
# geometry (tile_size, patch_size, downsample_ratio) is the vision tower's and is fixed per processor: tiles of
# another size would not match the tower nor the placeholder counts.
_TILING_SETTINGS = ("min_tiles", "max_tiles", "use_thumbnail", "max_tiles_per_sample")


class MedGptImageProcessor(BaseImageProcessor):
    r"""
    Dynamic-resolution tiler for MedGPT-oss (InternVL-style grid of up to `max_tiles` tiles plus a thumbnail).

    tile_size / patch_size / downsample_ratio: the vision geometry (the tower's image_size and patch_size, the
        projector's pixel-shuffle ratio); `tokens_per_tile` is derived from them (`geometry`). The builder sets
        them from the tower's config; the defaults are CLIP-ViT-L/14@336's (144 tokens per tile).
    min_tiles / max_tiles: range of grid sizes an image may take (thumbnail not counted).
    use_thumbnail: append a tile_size thumbnail of the whole image when the grid has more than one tile.
    max_tiles_per_sample: budget for all images of one sample, thumbnails included (see `plan_sample_tiles`).
    image_mean / image_std: per-channel normalisation (the tower family's; CLIP's by default).
    use_jpeg_draft: decode JPEG paths/bytes at 1/2, 1/4 or 1/8 scale when that still covers the target size.
    """

    model_input_names: ClassVar[list[str]] = ["pixel_values"]
    valid_kwargs = MedGptImagesKwargs

    def __init__(
        self,
        tile_size: int = DEFAULT_GEOMETRY.tile_size,
        patch_size: int = DEFAULT_GEOMETRY.patch_size,
        downsample_ratio: float = DEFAULT_GEOMETRY.downsample_ratio,
        min_tiles: int = MIN_TILES,
        max_tiles: int = MAX_TILES,
        use_thumbnail: bool = True,
        max_tiles_per_sample: int = DEFAULT_MAX_TILES_PER_SAMPLE,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
        use_jpeg_draft: bool = True,
        tokens_per_tile: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.geometry = VisionGeometry(int(tile_size), int(patch_size), float(downsample_ratio))
        if tokens_per_tile is not None and int(tokens_per_tile) != self.geometry.tokens_per_tile:
            # preprocessor_config.json records the derived count for readers (exporters, serving); a file whose
            # count disagrees with its own geometry was edited by hand or written by other code.
            raise ValueError(
                f"tokens_per_tile={tokens_per_tile} contradicts the geometry {self.geometry.describe()}; "
                "tokens per tile are derived from tile_size, patch_size and downsample_ratio"
            )
        self.tile_size = self.geometry.tile_size
        self.patch_size = self.geometry.patch_size
        self.downsample_ratio = self.geometry.downsample_ratio
        self.min_tiles = int(min_tiles)
        self.max_tiles = int(max_tiles)
        self.use_thumbnail = bool(use_thumbnail)
        self.max_tiles_per_sample = int(max_tiles_per_sample)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.use_jpeg_draft = bool(use_jpeg_draft)
        self._valid_kwargs_names = list(MedGptImagesKwargs.__annotations__)
        self._check_settings(self.__dict__)

    @classmethod
    def from_geometry(cls, geometry: VisionGeometry, **kwargs) -> "MedGptImageProcessor":
        return cls(geometry.tile_size, geometry.patch_size, geometry.downsample_ratio, **kwargs)

    @property
    def tokens_per_tile(self) -> int:
        """Language-model tokens one tile becomes (VisionGeometry.tokens_per_tile)."""
        return self.geometry.tokens_per_tile

    @property
    def max_image_tokens_per_sample(self) -> int:
        """Image placeholder tokens one sample can reach: its tile budget times tokens per tile."""
        return self.max_tiles_per_sample * self.tokens_per_tile

    def to_dict(self) -> dict:
        output = super().to_dict()
        output.pop("geometry", None)  # saved as its three fields
        output["tokens_per_tile"] = self.tokens_per_tile  # for readers of the file; checked on load
        return output

    # ------------------------------------------------------------------------------------ public API

    def __call__(self, images, return_uint8: bool = False, return_tensors="pt", **kwargs) -> BatchFeature:
        return self.preprocess(images, return_uint8=return_uint8, return_tensors=return_tensors, **kwargs)

    def preprocess(self, images, return_uint8: bool = False, return_tensors="pt", **kwargs) -> BatchFeature:
        """Tile `images`: one image, a list of images (one sample) or a list of lists (one per sample).

        An image is a path, file bytes or a PIL image. Settings in `_TILING_SETTINGS` may be overridden per call.
        """
        settings = self._call_settings(kwargs)
        samples = _as_samples(images)
        tile_size = self.tile_size

        tiles, num_tiles = [], []
        for sample in samples:
            check_image_count(len(sample), settings["max_tiles_per_sample"])  # before any file is opened
            grids = plan_sample_tiles(
                [read_image_size(source) for source in sample],
                settings["max_tiles_per_sample"],
                settings["min_tiles"],
                settings["max_tiles"],
                tile_size,
                settings["use_thumbnail"],
            )
            for source, (cols, rows) in zip(sample, grids):
                draft_size = (cols * tile_size, rows * tile_size) if self.use_jpeg_draft else None
                image = load_image(source, draft_size=draft_size)
                image_tiles = tile_pixels(image, cols, rows, tile_size, settings["use_thumbnail"])
                tiles.append(image_tiles)
                num_tiles.append(image_tiles.shape[0])

        if len(tiles) == 1:
            pixel_values = tiles[0]  # [total_tiles, 3, T, T] uint8
        elif tiles:
            pixel_values = torch.cat(tiles)
        else:
            pixel_values = torch.zeros(0, 3, tile_size, tile_size, dtype=torch.uint8)
        if not return_uint8:
            pixel_values = self.normalize_on_device(pixel_values)
        num_tiles = torch.tensor(num_tiles, dtype=torch.long)
        data = {
            "pixel_values": pixel_values,
            "num_tiles": num_tiles,
            "num_image_tokens": num_tiles * self.tokens_per_tile,
        }
        if return_tensors == "np":
            data = {key: value.numpy() for key, value in data.items()}
        elif return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        return BatchFeature(data=data)

    def normalize_on_device(self, pixel_values: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 tiles [..., 3, H, W] -> (x / 255 - mean) / std in `dtype`, on the tiles' own device."""
        if pixel_values.dtype != torch.uint8:
            raise ValueError(
                f"normalize_on_device expects uint8 pixels, got {pixel_values.dtype} (already normalised?)"
            )
        mean = torch.tensor(self.image_mean, dtype=torch.float32, device=pixel_values.device)
        std = torch.tensor(self.image_std, dtype=torch.float32, device=pixel_values.device)
        scale = (1.0 / (255.0 * std)).view(3, 1, 1)  # [3, 1, 1]
        shift = (-mean / std).view(3, 1, 1)
        # One fresh float32 copy, then in place: about half the time of `x * scale + shift` on CPU.
        return pixel_values.to(torch.float32).mul_(scale).add_(shift).to(dtype)

    def tile_grid_for_size(self, width: int, height: int) -> tuple[int, int]:
        """(cols, rows) a width x height image gets when it is alone in its sample."""
        return self.tile_grids_for_sample([(width, height)])[0]

    def tile_grids_for_sample(self, image_sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """(cols, rows) for each image of one sample, under the sample's tile budget."""
        return plan_sample_tiles(
            image_sizes, self.max_tiles_per_sample, self.min_tiles, self.max_tiles, self.tile_size, self.use_thumbnail
        )

    def num_tiles_for_size(self, width: int, height: int) -> int:
        return tiles_for_grid(*self.tile_grid_for_size(width, height), self.use_thumbnail)

    def num_image_tokens_for_size(self, width: int, height: int) -> int:
        """Placeholder tokens a width x height image (alone in its sample) expands to."""
        return self.num_tiles_for_size(width, height) * self.tokens_per_tile

    def num_image_tokens_for_sample(self, image_sizes: list[tuple[int, int]]) -> list[int]:
        """Placeholder tokens for each image of one sample, e.g. to measure lengths before decoding pixels."""
        return [
            tiles_for_grid(cols, rows, self.use_thumbnail) * self.tokens_per_tile
            for cols, rows in self.tile_grids_for_sample(image_sizes)
        ]

    # ------------------------------------------------------------------------------------ internals

    def _call_settings(self, overrides: dict) -> dict:
        settings = {name: getattr(self, name) for name in _TILING_SETTINGS}
        for key, value in overrides.items():
            if value is None:
                continue  # processors pass every ImagesKwargs key, mostly unset
            if key not in _TILING_SETTINGS:
                raise ValueError(f"MedGptImageProcessor does not support the argument {key!r}={value!r}")
            settings[key] = value
        self._check_settings(settings)
        return settings

    @staticmethod
    def _check_settings(settings: dict) -> None:
        if not 1 <= settings["min_tiles"] <= settings["max_tiles"]:
            raise ValueError(
                f"need 1 <= min_tiles <= max_tiles, got min_tiles={settings['min_tiles']}, "
                f"max_tiles={settings['max_tiles']}"
            )
        if settings["max_tiles_per_sample"] < 1:
            raise ValueError(f"max_tiles_per_sample must be >= 1, got {settings['max_tiles_per_sample']}")


# PIL resizes images taller than this many times their width vertically first, when it shrinks them vertically.
TALL_IMAGE_RATIO = 100


def resize_pixels(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bicubic resize of uint8 [1, C, H, W] pixels (PIL's BICUBIC filter, a = -0.5).

    The filter is separable and each pass rounds to uint8, so the order of the passes shows where bicubic
    overshoot is clipped. One interpolate call runs the horizontal pass first, as PIL does, except for very tall
    thin images that shrink vertically, which PIL (12.x) resizes vertically first; doing the same keeps those
    within PIL's pixels too (the other order is up to 18/255 off, on a 3x1000 noise image's thumbnail).
    """
    in_height, in_width = pixels.shape[-2:]
    if (in_height, in_width) == (height, width):
        return pixels
    if in_height > TALL_IMAGE_RATIO * in_width and height < in_height:
        pixels = torch.nn.functional.interpolate(pixels, size=(height, in_width), mode="bicubic", antialias=True)
    return torch.nn.functional.interpolate(pixels, size=(height, width), mode="bicubic", antialias=True)


def image_to_pixels(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 [1, C, H, W] channels-last tensor sharing the image's memory when possible.

    C is 4 (RGB plus PIL's padding byte) when the image exports zero-copy through the Arrow C data interface
    (Pillow >= 11.2 with pyarrow, image in one memory block); otherwise 3, through one copy (`np.asarray`).
    The 4-channel layout is also the one torch's uint8 resize works in, so it skips a repacking pass.
    Callers use channels [:3]; nothing writes to the result.
    """
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode}")
    width, height = image.size
    with warnings.catch_warnings():
        # Both paths give read-only numpy arrays; torch warns about that once. Nothing writes to them.
        warnings.simplefilter("ignore", UserWarning)
        if pyarrow is not None:
            try:
                flat = pyarrow.array(image).flatten().to_numpy(zero_copy_only=True)  # [H * W * 4]
                return torch.from_numpy(flat).view(height, width, 4).permute(2, 0, 1).unsqueeze(0)
            except (ValueError, TypeError, NotImplementedError, pyarrow.ArrowException):
                pass  # e.g. a large image spread over several PIL memory blocks
        return torch.from_numpy(np.asarray(image)).permute(2, 0, 1).unsqueeze(0)


def tile_pixels(image: Image.Image, cols: int, rows: int, tile_size: int, use_thumbnail: bool) -> torch.Tensor:
    """RGB image -> uint8 tiles [cols * rows (+1 thumbnail), 3, T, T], row by row, thumbnail last."""
    pixels = image_to_pixels(image)  # [1, C, H, W]
    grid_tiles = cols * rows
    num_tiles = grid_tiles + 1 if use_thumbnail and grid_tiles > 1 else grid_tiles
    tiles = torch.empty(num_tiles, 3, tile_size, tile_size, dtype=torch.uint8)
    grid = resize_pixels(pixels, rows * tile_size, cols * tile_size)[0, :3]  # [3, rows*T, cols*T]
    tiles[:grid_tiles].view(rows, cols, 3, tile_size, tile_size).copy_(
        grid.unflatten(1, (rows, tile_size))  # [3, rows, T, cols*T]
        .unflatten(3, (cols, tile_size))  # [3, rows, T, cols, T]
        .permute(1, 3, 0, 2, 4)  # [rows, cols, 3, T, T]
    )
    if num_tiles > grid_tiles:
        tiles[grid_tiles].copy_(resize_pixels(pixels, tile_size, tile_size)[0, :3])
    return tiles


def _as_samples(images) -> list[list[ImageSource]]:
    if images is None:
        return []
    if not isinstance(images, (list, tuple)):
        return [[images]]
    if any(isinstance(item, (list, tuple)) for item in images):
        if not all(isinstance(item, (list, tuple)) for item in images):
            raise ValueError("images must be one image, a list of images, or a list of lists of images")
        return [list(sample) for sample in images]
    return [list(images)]


__all__ = [
    "DEFAULT_MAX_TILES_PER_SAMPLE",
    "MedGptImageProcessor",
    "image_to_pixels",
    "resize_pixels",
    "tile_pixels",
]
