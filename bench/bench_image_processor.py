"""Speed of MedGptImageProcessor against a decode-only baseline and transformers' LLaVA-OneVision processor.

Images: photo / histology / fundus / grayscale samples bundled with scikit-image, resized to 512x512, 640x480,
2048x1536 and 3000x2500 and written as JPEG (quality 90) and PNG into a temporary folder. Every method starts
from the file path, so decoding is always included. Methods:

  decode        PIL open + load (the floor: no preprocessing at all)
  ours-uint8    MedGptImageProcessor, uint8 tiles (what loader workers ship; normalised later on the GPU)
  ours-float    MedGptImageProcessor, float32 normalised tiles
  pil-tiler     decode + tiling.tile_image (plain PIL bicubic resize and crops) + numpy stacking: the PIL path
  onevision     decode + transformers' LlavaOnevisionImageProcessorPil (the PIL variant; the default one needs
                torchvision), configured for 336-px tiles with grid pinpoints of up to 12 tiles

Reported: median over passes of the mean CPU ms per image (process time: the machine this was written on is
shared, and wall time there mostly measured other processes), torch limited to one thread (like a DataLoader
worker), so CPU time is the time one worker spends. Targets: ours-uint8 within 2x of decode for JPEGs up to 2048 px, and faster than onevision.

Run as: python bench/bench_image_processor.py [--passes 5] [--threads 1]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata
from transformers import LlavaOnevisionImageProcessorPil

from llava_medgpt.constants import MAX_TILES
from llava_medgpt.processing.geometry import DEFAULT_GEOMETRY
from llava_medgpt.processing.image_processor import MedGptImageProcessor
from llava_medgpt.processing.tiling import select_tile_grid, tile_image

SIZES = [(512, 512), (640, 480), (2048, 1536), (3000, 2500)]
FORMATS = {"JPEG": ".jpg", "PNG": ".png"}
CONTENT = {  # name -> loader of a bundled sample image
    "astronaut": skdata.astronaut,
    "histology": skdata.immunohistochemistry,
    "fundus": skdata.retina,
    "grayscale": skdata.camera,
}


def write_images(folder: Path) -> dict[tuple[str, tuple[int, int]], list[Path]]:
    """(format, size) -> files of every content image at that size."""
    files = {}
    for name, loader in CONTENT.items():
        source = Image.fromarray(loader())
        for size in SIZES:
            resized = source.resize(size, Image.Resampling.BICUBIC)
            for fmt, suffix in FORMATS.items():
                path = folder / f"{name}_{size[0]}x{size[1]}{suffix}"
                resized.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
                files.setdefault((fmt, size), []).append(path)
    return files


def decode(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return image


def pil_tiler(path: Path) -> np.ndarray:
    image = decode(path).convert("RGB")
    cols, rows = select_tile_grid(*image.size)
    tiles = tile_image(image, cols, rows, DEFAULT_GEOMETRY.tile_size, use_thumbnail=True)
    return np.stack([np.asarray(tile) for tile in tiles]).transpose(0, 3, 1, 2)  # [N, 3, T, T]


def onevision_processor() -> LlavaOnevisionImageProcessorPil:
    pinpoints = [
        [rows * DEFAULT_GEOMETRY.tile_size, cols * DEFAULT_GEOMETRY.tile_size]
        for cols in range(1, MAX_TILES + 1)
        for rows in range(1, MAX_TILES + 1)
        if cols * rows <= MAX_TILES
    ]  # (height, width)
    return LlavaOnevisionImageProcessorPil(
        size={"height": DEFAULT_GEOMETRY.tile_size, "width": DEFAULT_GEOMETRY.tile_size},
        image_grid_pinpoints=pinpoints,
    )


def time_per_image(function, paths: list[Path], passes: int) -> float:
    function(paths[0])  # warm-up (lazy imports, allocator)
    means = []
    for _ in range(passes):
        start = time.process_time()
        for path in paths:
            function(path)
        means.append((time.process_time() - start) / len(paths) * 1000)
    return statistics.median(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=5, help="timed passes over the image set (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 = a loader worker)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours = MedGptImageProcessor()
    onevision = onevision_processor()
    methods = {
        "decode": decode,
        "ours-uint8": lambda path: ours([path], return_uint8=True),
        "ours-float": lambda path: ours([path]),
        "pil-tiler": pil_tiler,
        "onevision": lambda path: onevision(decode(path).convert("RGB"), return_tensors="pt"),
    }

    with tempfile.TemporaryDirectory() as folder:
        files = write_images(Path(folder))
        header = f"{'format':6} {'size':>10} {'tiles':>5}" + "".join(f" {name:>11}" for name in methods)
        header += f" {'uint8/dec':>9} {'ovis/uint8':>10}"
        print(
            f"CPU ms per image (median of {args.passes} passes over {len(CONTENT)} images), torch threads={args.threads}"
        )
        print(header)
        for (fmt, size), paths in files.items():
            times = {name: time_per_image(function, paths, args.passes) for name, function in methods.items()}
            tiles = ours.num_tiles_for_size(*size)
            row = f"{fmt:6} {size[0]:>5}x{size[1]:<4} {tiles:>5}" + "".join(f" {times[n]:>11.1f}" for n in methods)
            row += f" {times['ours-uint8'] / times['decode']:>9.2f} {times['onevision'] / times['ours-uint8']:>10.2f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
