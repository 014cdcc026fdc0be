"""Image bytes or a PIL image -> the uint8/float tiles MedGPT-oss's processor makes, with PIL, numpy and torch only.

Restates llava_medgpt's decoding conventions (processing/image_io.py: EXIF upright, 16-bit stretch, transparency on
white, JPEG draft decoding) and tile cutting (processing/image_processor.py: torch antialiased bicubic, row-major
tiles, thumbnail last, CLIP normalisation), because vLLM's environment cannot import llava_medgpt.
tests/test_vllm_tiling.py checks pixels against llava_medgpt's processor so the two cannot drift.

vLLM decodes request images itself (convert("RGB"), no draft, no 16-bit stretch); when it kept the request's
original bytes, `decode` starts again from them, so a served JPEG gives the same tiles as our processor given
the same file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

EXIF_ORIENTATION_TAG = 0x0112
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _orientation(image: Image.Image) -> int:
    return int(image.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) once EXIF orientation is applied."""
    width, height = image.size
    return (height, width) if _orientation(image) in TRANSPOSING_ORIENTATIONS else (width, height)


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint(np.clip((values - low) / (high - low) * 255.0, 0.0, 255.0)).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB: 16/32-bit grey stretched by its own min/max, transparency composited on white."""
    if _orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in HIGH_BIT_DEPTH_MODES:
        return Image.fromarray(_stretch_to_uint8(np.asarray(image)), mode="L").convert("RGB")
    if image.mode in TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode(data: bytes, draft_size: tuple[int, int] | None) -> Image.Image:
    """File bytes -> upright RGB; a JPEG is decoded at 1/2, 1/4 or 1/8 scale when that still covers draft_size
    (upright width, height)."""
    with Image.open(io.BytesIO(data)) as image:
        if draft_size is not None and image.format == "JPEG":
            width, height = draft_size
            if _orientation(image) in TRANSPOSING_ORIENTATIONS:
                width, height = height, width
            image.draft("RGB", (width, height))
        image.load()
        return to_rgb(image)


TALL_IMAGE_RATIO = 100


def _resize(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bicubic (PIL's BICUBIC); very tall thin images that shrink vertically take the vertical pass
    first, as PIL does (llava_medgpt.processing.image_processor.resize_pixels)."""
    in_height, in_width = pixels.shape[-2:]
    if (in_height, in_width) == (height, width):
        return pixels
    if in_height > TALL_IMAGE_RATIO * in_width and height < in_height:
        pixels = torch.nn.functional.interpolate(pixels, size=(height, in_width), mode="bicubic", antialias=True)
    return torch.nn.functional.interpolate(pixels, size=(height, width), mode="bicubic", antialias=True)


def tile_pixels(image: Image.Image, cols: int, rows: int, tile_size: int, use_thumbnail: bool) -> torch.Tensor:
    """RGB image -> uint8 tiles [cols * rows (+1 thumbnail), 3, T, T], row by row, thumbnail last."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0)  # [1, 3, H, W]
    grid = _resize(pixels, rows * tile_size, cols * tile_size)[0]  # [3, rows*T, cols*T]
    tiles = grid.unflatten(1, (rows, tile_size)).unflatten(3, (cols, tile_size)).permute(1, 3, 0, 2, 4)
    tiles = tiles.reshape(rows * cols, 3, tile_size, tile_size)
    if use_thumbnail and rows * cols > 1:
        tiles = torch.cat([tiles, _resize(pixels, tile_size, tile_size)])
    return tiles


def normalize(tiles: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 tiles -> (x / 255 - mean) / std in float32, with the same float32 operations as our processor."""
    mean_t = torch.tensor(list(mean), dtype=torch.float32)
    std_t = torch.tensor(list(std), dtype=torch.float32)
    scale = (1.0 / (255.0 * std_t)).view(3, 1, 1)
    shift = (-mean_t / std_t).view(3, 1, 1)
    return tiles.to(torch.float32).mul_(scale).add_(shift)
