"""Peak memory of loading one large 16-bit grayscale PNG (a scanner export under PIL's pixel limit).

Writes a SIDE x SIDE 16-bit PNG of random 12-bit values (default 9400 x 9400 = 88.4 M pixels, below
PIL.Image.MAX_IMAGE_PIXELS = 89.5 M, so the loader accepts it), then loads it with `load_image` in a fresh
interpreter and reports that process's peak resident memory and the load time. Every DataLoader worker that meets
such an image pays this peak. Run with PYTHONPATH pointing at another checkout to compare versions:

    python bench/bench_high_bit_depth_memory.py [--side 9400]
    PYTHONPATH=/path/to/other/checkout python bench/bench_high_bit_depth_memory.py
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = """
import resource, sys, time
from llava_medgpt.processing.image_io import load_image
start = time.perf_counter()
image = load_image(sys.argv[1])
seconds = time.perf_counter() - start
print(f"{image.size[0]}x{image.size[1]} {image.mode}: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
      f"load {seconds:.1f} s")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=9400)
    args = parser.parse_args()
    import numpy as np
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scan16.png"
        values = np.random.default_rng(0).integers(0, 4096, size=(args.side, args.side), dtype=np.uint16)
        Image.fromarray(values).save(path, compress_level=1)
        del values
        print(f"{path.stat().st_size / 1e6:.0f} MB PNG written", flush=True)
        # cwd: the temporary folder, so that "-c" imports llava_medgpt from PYTHONPATH / the installed package
        subprocess.run([sys.executable, "-c", MEASURE, str(path)], check=True, cwd=folder)


if __name__ == "__main__":
    main()
