"""How far MedGptImageProcessor's pixels are from plain PIL: the torch resampler, and JPEG draft decoding.

1. Resampler: for every test image, the processor's uint8 tiles (torch antialiased bicubic; PIL images in, so no
   JPEG draft) against `tiling.tile_image` (PIL's BICUBIC, the reference), same grid. Reported: the largest
   absolute difference in grey levels (0-255) over all tiles, split into grid tiles and thumbnail, the share of
   images whose largest difference exceeds 2, and the images where the worst values occur.
2. JPEG draft: the same images written as JPEG (quality 90 and 75) at sizes where libjpeg's reduced-scale decode
   applies; tiles with use_jpeg_draft=True against a full decode (use_jpeg_draft=False) of the same file.

Test images: scikit-image's bundled samples (photos, microscopy, fundus, text, textures, binary shapes), resized
(PIL bicubic) to every size in SIZES, and generated patterns drawn at each size (uniform noise, a one-pixel
checkerboard, a gradient, a 16-px grid of lines). SIZES holds common photo and scan sizes and thin or extreme
aspect ratios (up to 1000:3).

Run as: python bench/bench_pixel_bounds.py [--quick]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata

from llava_medgpt.processing.image_processor import MedGptImageProcessor
from llava_medgpt.processing.tiling import select_tile_grid, tile_image

SIZES = [
    (336, 336), (512, 512), (640, 480), (480, 640), (800, 600), (1024, 768), (1500, 1000), (2048, 1536),
    (336, 30), (30, 336), (100, 3000), (3000, 100), (50, 2000), (2000, 50), (20, 1000), (1000, 20),
    (8, 1200), (1200, 8), (3, 1000), (1000, 3),
]
DRAFT_SIZES = [(2048, 2048), (3000, 2500), (2500, 3000), (4000, 3000), (4000, 4000), (5000, 1500)]
SKIMAGE = ["astronaut", "camera", "coffee", "chelsea", "coins", "rocket", "retina", "immunohistochemistry", "moon",
           "page", "text", "hubble_deep_field", "brick", "cell", "clock", "colorwheel", "horse", "binary_blobs"]


def generated(name: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A synthetic image drawn at its final size (no resize smooths it): high-frequency content at any aspect."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    if name == "noise":
        array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    elif name == "checker":
        array = (((y + x) % 2) * 255).astype(np.uint8)
    elif name == "gradient":
        array = (255 * (x / max(width - 1, 1) + y / max(height - 1, 1)) / 2).astype(np.uint8)
    elif name == "lines":
        array = np.where((y % 16 == 0) | (x % 16 == 0), 0, 255).astype(np.uint8)
    else:
        raise KeyError(name)
    return Image.fromarray(array).convert("RGB")


GENERATED = ("noise", "checker", "gradient", "lines")


def sources() -> dict[str, object]:
    """name -> a scikit-image sample (resized to each size) or the name of a generated pattern."""
    images: dict[str, object] = {}
    for name in SKIMAGE:
        array = skdata.binary_blobs(rng=0) if name == "binary_blobs" else getattr(skdata, name)()  # seeded
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        images[name] = Image.fromarray(array[..., :3] if array.ndim == 3 else array).convert("RGB")
    for name in GENERATED:
        images[name] = name
    return images


def at_size(source, size: tuple[int, int]) -> Image.Image:
    if isinstance(source, str):
        return generated(source, size)
    return source.resize(size, Image.Resampling.BICUBIC)


def reference_tiles(image: Image.Image) -> tuple[np.ndarray, int]:
    cols, rows = select_tile_grid(*image.size)
    tiles = tile_image(image, cols, rows)
    return np.stack([np.asarray(t).transpose(2, 0, 1) for t in tiles]).astype(np.int16), cols * rows


def resampler(images: dict[str, Image.Image], sizes) -> list[dict]:
    processor = MedGptImageProcessor(use_jpeg_draft=False)
    rows = []
    for name, source in images.items():
        for size in sizes:
            image = at_size(source, size)
            reference, grid_tiles = reference_tiles(image)
            ours = processor([image], return_uint8=True)["pixel_values"].numpy().astype(np.int16)
            diff = np.abs(ours - reference)
            rows.append({"image": name, "size": size, "max": int(diff.max()),
                         "grid_max": int(diff[:grid_tiles].max()),
                         "thumb_max": int(diff[grid_tiles:].max()) if len(diff) > grid_tiles else None,
                         "mean": float(diff.mean()), "tall": size[1] > 100 * size[0]})
    return rows


def jpeg_draft(images: dict[str, Image.Image], sizes, qualities=(90, 75)) -> list[dict]:
    draft, full = MedGptImageProcessor(use_jpeg_draft=True), MedGptImageProcessor(use_jpeg_draft=False)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, source in images.items():
            for size in sizes:
                resized = at_size(source, size)
                for quality in qualities:
                    path = Path(folder) / f"{name}_{size[0]}x{size[1]}_q{quality}.jpg"
                    resized.save(path, "JPEG", quality=quality)
                    with Image.open(path) as opened:
                        cols, rows_ = select_tile_grid(*opened.size)
                        scale = opened.draft("RGB", (cols * 336, rows_ * 336))
                        decoded = opened.size
                    if decoded == size:
                        continue  # no reduced-scale decode for this size
                    a = draft([str(path)], return_uint8=True)["pixel_values"].numpy().astype(np.int16)
                    b = full([str(path)], return_uint8=True)["pixel_values"].numpy().astype(np.int16)
                    diff = np.abs(a - b)
                    rows.append({"image": name, "size": size, "quality": quality, "decoded": decoded,
                                 "max": int(diff.max()), "mean": float(diff.mean()), "scale": scale is not None})
    return rows


def summarise(title: str, rows: list[dict]) -> None:
    print(f"\n{title}: {len(rows)} images")
    worst = max(r["max"] for r in rows)
    over = [r for r in rows if r["max"] > 2]
    print(f"  largest difference: {worst}/255; images above 2/255: {len(over)} ({len(over) / len(rows):.1%}); "
          f"mean absolute difference over all images: {np.mean([r['mean'] for r in rows]):.3f}")
    for label, group in (("scikit-image samples", [r for r in rows if r["image"] not in GENERATED]),
                         ("generated patterns", [r for r in rows if r["image"] in GENERATED])):
        if group:
            maxima = np.array([r["max"] for r in group])
            print(f"  {label}: {len(group)} images, largest {maxima.max()}/255, median of the per-image largest "
                  f"{np.median(maxima):g}, above 2: {int((maxima > 2).sum())}, mean absolute difference "
                  f"{np.mean([r['mean'] for r in group]):.3f}")
            for r in sorted(group, key=lambda r: -r["max"])[:5]:
                extra = {k: r[k] for k in r if k not in ("image", "size", "max", "mean")}
                print(f"    {r['max']:>3}/255  {r['image']:<22} {r['size'][0]}x{r['size'][1]}  mean {r['mean']:.3f}  "
                      f"{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 images, fewer sizes (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import PIL

    print(f"Pillow {PIL.__version__}, torch {torch.__version__}")
    images = sources()
    sizes, draft_sizes = SIZES, DRAFT_SIZES
    if args.quick:
        images = {k: images[k] for k in ("astronaut", "camera", "noise", "text")}
        sizes, draft_sizes = [(640, 480), (100, 3000), (3, 1000)], [(3000, 2500)]
    rows = resampler(images, sizes)
    summarise("torch resampler vs PIL (tiling.tile_image)", rows)
    tall = [r for r in rows if r["tall"]]
    rest = [r for r in rows if not r["tall"]]
    for label, group in (("taller than 100x their width", tall), ("all other sizes", rest)):
        if group:
            grid = max(r["grid_max"] for r in group)
            thumbs = [r["thumb_max"] for r in group if r["thumb_max"] is not None]
            print(f"  {label}: {len(group)} images, largest {max(r['max'] for r in group)}/255 "
                  f"(grid tiles {grid}, thumbnails {max(thumbs) if thumbs else '-'}), "
                  f"above 2: {sum(r['max'] > 2 for r in group)}")
    summarise("JPEG draft decode vs full decode", jpeg_draft(images, draft_sizes))


if __name__ == "__main__":
    main()
