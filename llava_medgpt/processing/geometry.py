"""`VisionGeometry`: the one place that turns a vision tower's config into tile size, patch grid and token counts.

    geometry = VisionGeometry.from_vision_config(model.config.vision_config, model.config.downsample_ratio)
    geometry.tile_size        # 448   side of a tile the tower sees (its config's image_size)
    geometry.patch_grid       # 32    patches per side (the tower's patch embedding: floor(448 / 14))
    geometry.token_grid       # 16    language-model tokens per side after the pixel shuffle
    geometry.tokens_per_tile  # 256

The image processor (placeholder counts, tile size), the model (projector width, pixel-shuffle grid, the blank
tile of the ZeRO-3 sync pass), the dataset's length estimates and any exporter read these numbers from here.

Rules, from the towers' own behaviour:
- The patch embedding is a stride-`patch_size` convolution without padding, so a tile of `tile_size` pixels gives
  `floor(tile_size / patch_size)` patches per side and the last `tile_size mod patch_size` pixel rows and columns
  are never seen. SigLIP-so400m at 384 px with 14-px patches therefore has a 27x27 grid (729 patches) and ignores
  6 px; tiles stay at the tower's own input size, which is what it was trained on.
- The pixel shuffle with ratio r = 1/b merges b x b neighbouring patches into one token. When the patch grid is not
  a multiple of b (27 with b = 2), the grid is padded with zero features at the bottom and the right up to the next
  multiple before the shuffle (VILA's rule for SigLIP-384): 27x27 -> 28x28 -> 14x14 = 196 tokens. The padded
  positions carry only zeros, so each edge token holds the real patches it covers and nothing else.
- Refused, with the reason: non-square tiles, a patch larger than the tile, and ratios that are not 1/b for a
  whole number b (a 0.4 shuffle has no block of whole patches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VisionGeometry:
    """Tile side, patch side and pixel-shuffle ratio of a vision tower, and everything derived from them."""

    tile_size: int
    patch_size: int
    downsample_ratio: float = 0.5

    def __post_init__(self):
        if not (isinstance(self.tile_size, int) and isinstance(self.patch_size, int)):
            raise ValueError(
                f"tile_size and patch_size must be whole pixels, got {self.tile_size!r} and {self.patch_size!r}"
            )
        if self.patch_size < 1 or self.tile_size < self.patch_size:
            raise ValueError(
                f"a {self.tile_size}-px tile cannot hold a {self.patch_size}-px patch (need 1 <= patch <= tile)"
            )
        if not 0 < self.downsample_ratio <= 1:
            raise ValueError(f"downsample_ratio must be in (0, 1], got {self.downsample_ratio}")
        block = 1 / self.downsample_ratio
        if abs(block - round(block)) > 1e-9:
            raise ValueError(
                f"downsample_ratio {self.downsample_ratio} is not 1/b for a whole number b: the pixel shuffle "
                "merges b x b patches into one token"
            )

    @classmethod
    def from_vision_config(cls, vision_config: Any, downsample_ratio: float = 0.5) -> VisionGeometry:
        """From any config with `image_size` and `patch_size` (CLIP, SigLIP, ViT, ...)."""
        name = getattr(vision_config, "model_type", type(vision_config).__name__)
        try:
            image_size, patch_size = vision_config.image_size, vision_config.patch_size
        except AttributeError as err:
            raise ValueError(f"vision config {name!r} has no image_size / patch_size") from err
        return cls(_square(image_size, name, "image_size"), _square(patch_size, name, "patch_size"), downsample_ratio)

    @property
    def block(self) -> int:
        """Patches per side merged into one token (2 for a 0.5 shuffle)."""
        return int(round(1 / self.downsample_ratio))

    @property
    def patch_grid(self) -> int:
        """Patches per side the tower produces for one tile."""
        return self.tile_size // self.patch_size

    @property
    def padded_grid(self) -> int:
        """Patch grid after zero padding to a multiple of `block` (equal to patch_grid when it divides)."""
        return math.ceil(self.patch_grid / self.block) * self.block

    @property
    def token_grid(self) -> int:
        """Language-model tokens per side of one tile."""
        return self.padded_grid // self.block

    @property
    def tokens_per_tile(self) -> int:
        return self.token_grid**2

    @property
    def patches_per_tile(self) -> int:
        return self.patch_grid**2

    @property
    def unseen_pixels(self) -> int:
        """Pixel rows (and columns) at the tile's bottom (right) edge that the patch embedding never reads."""
        return self.tile_size - self.patch_grid * self.patch_size

    def describe(self) -> str:
        """e.g. '384 px / 14 px patches -> 27x27 (6 px unseen) -> pad 28x28 -> 14x14 = 196 tokens per tile'."""
        text = f"{self.tile_size} px / {self.patch_size} px patches -> {self.patch_grid}x{self.patch_grid}"
        if self.unseen_pixels:
            text += f" ({self.unseen_pixels} px unseen)"
        if self.padded_grid != self.patch_grid:
            text += f" -> pad {self.padded_grid}x{self.padded_grid}"
        return text + f" -> {self.token_grid}x{self.token_grid} = {self.tokens_per_tile} tokens per tile"


def _square(value: Any, name: str, field: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"vision config {name!r}: non-square {field} {value!r} is not supported (square tiles)")
        value = value[0]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"vision config {name!r}: {field} must be a whole number of pixels, got {value!r}")
    return value


# The paper's tower, CLIP-ViT-L/14@336: 24x24 patches -> 12x12 = 144 tokens per tile. Default of the image
# processor and of MedGptConfig's vision config; a real checkpoint's geometry always comes from its tower's config.
DEFAULT_GEOMETRY = VisionGeometry(tile_size=336, patch_size=14, downsample_ratio=0.5)

__all__ = ["DEFAULT_GEOMETRY", "VisionGeometry"]
