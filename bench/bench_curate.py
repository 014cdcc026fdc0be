"""Curation benchmark: image-filter throughput per core, memory of the non-image steps at 1M records, and the
precision/recall of the single-panel and overlaid-text filters on a labelled generated set.

Run as: OMP_NUM_THREADS=1 python bench/bench_curate.py rate --images 1000
        python bench/bench_curate.py memory --records 1000000
        OMP_NUM_THREADS=1 python bench/bench_curate.py quality --images 240

rate     decodes each generated image (PNG) and runs every image filter on it in this one process, reporting
         images/s per filter and for all of them together (the per-core rate; the pipeline runs one such process
         per core), and the projected wall time of the 939,439 stage-0 pairs on a 64-core node.
memory   writes a JSONL of N caption records (one in ten repeats an earlier caption) and runs duplicate_caption
         over it in a child process, whose peak RSS (ru_maxrss) is reported with that of a child that only
         imports the pipeline (the baseline); also 1M perceptual hashes in the near-duplicate index.
quality  labelled_set(N) (llava_medgpt.data.curate.synthetic): precision and recall of single_panel (positives:
         compound figures; screenshots left out, the software_interface step runs first) and overlaid_text
         (positives: rendered text and screenshots).
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGE0_PAIRS = 939_439
NODE_CORES = 64
FILTERS = ("software_interface", "single_panel", "overlaid_text", "narrator")


def rate(n_images: int) -> None:
    from llava_medgpt.data.curate import STEPS
    from llava_medgpt.data.curate.base import RecordContext
    from llava_medgpt.data.curate.synthetic import labelled_set
    from llava_medgpt.data.curate.views import ImageView
    from llava_medgpt.processing.image_io import load_image

    folder = Path(tempfile.mkdtemp(prefix="bench_curate_"))
    paths = []
    for item in labelled_set(n_images, seed=1):
        path = folder / f"{item.name}.png"
        item.image.save(path)
        paths.append(path)
    steps = {name: STEPS[name].from_config({}) for name in FILTERS}
    ctx = RecordContext({}, "bench", None)
    seconds = dict.fromkeys(("decode",) + FILTERS, 0.0)
    for path in paths:
        start = time.perf_counter()
        view = ImageView(load_image(path), path.name)
        seconds["decode"] += time.perf_counter() - start
        for name, step in steps.items():
            start = time.perf_counter()
            step.check([view], ctx)
            seconds[name] += time.perf_counter() - start
    total = sum(seconds.values())
    print(f"{n_images} generated images (mean {sum(p.stat().st_size for p in paths) / n_images / 1e3:.0f} kB PNG), "
          "one process:")
    for name, s in seconds.items():
        print(f"  {name:<20} {n_images / s:8.1f} images/s")
    per_core = n_images / total
    print(f"  {'all (every filter)':<20} {per_core:8.1f} images/s per core")
    hours = STAGE0_PAIRS / (per_core * NODE_CORES) / 3600
    print(f"projected: {STAGE0_PAIRS:,} pairs on {NODE_CORES} cores = {hours:.2f} h (every filter on every image, "
          "linear scaling; a record leaves at its first rejecting filter, so this is an upper bound)")


def _child_peak(code: str) -> tuple[float, str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport resource, sys\n"
                          "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                         check=True, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = out.stdout.splitlines()
    peak = int(next(l for l in lines if l.startswith("PEAK")).split()[1]) / 1024
    return peak, "\n".join(l for l in lines if not l.startswith("PEAK"))


def memory(n_records: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench_curate_mem_"))
    manifest = folder / "captions.jsonl"
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    captions = []
    with open(manifest, "w", encoding="utf-8") as f:
        for i in range(n_records):
            if captions and i % 10 == 9:
                caption = captions[rng.randrange(len(captions))]
            else:
                caption = " ".join(rng.choice(words) for _ in range(rng.randrange(8, 30)))
                if len(captions) < 100_000:
                    captions.append(caption)
            f.write(json.dumps({"id": f"r{i}", "conversations": [
                {"from": "human", "value": "Describe the medical image."}, {"from": "gpt", "value": caption}]}) + "\n")
    size = manifest.stat().st_size
    base, _ = _child_peak("import llava_medgpt.data.curate.pipeline")
    run = (f"import time\nfrom llava_medgpt.data.curate import SourceSpec, curate, parse_config\n"
           f"t = time.perf_counter()\n"
           f"r = curate([SourceSpec('bench', {str(manifest)!r}, None, 'bench.jsonl')], parse_config("
           f"{{'chunk_size': 1024, 'steps': [{{'step': 'duplicate_caption'}}]}}), {str(folder / 'out')!r}, "
           f"progress=False, log=lambda _: None)\n"
           f"print(f'{{time.perf_counter() - t:.1f}} s, kept', r['total']['kept'])")
    peak, printed = _child_peak(run)
    print(f"duplicate_caption over {n_records:,} records ({size / 1e6:.0f} MB JSONL): {printed}; peak RSS "
          f"{peak:.0f} MiB (import-only baseline {base:.0f} MiB: +{peak - base:.0f} MiB, "
          f"{(peak - base) * 2**20 / n_records:.0f} B/record)")
    hashes = (f"import random\nfrom llava_medgpt.data.curate.dedup import HammingIndex\n"
              f"rng = random.Random(0); index = HammingIndex(4)\n"
              f"for i in range({n_records}): index.add(rng.getrandbits(64), f'bench\\tr{{i}}')\n")
    peak_h, _ = _child_peak(hashes)
    print(f"near-duplicate image index, {n_records:,} perceptual hashes: peak RSS {peak_h:.0f} MiB "
          f"(+{peak_h - base:.0f} MiB over the baseline, {(peak_h - base) * 2**20 / n_records:.0f} B/hash)")


def quality(n_images: int) -> None:
    from llava_medgpt.data.curate import STEPS
    from llava_medgpt.data.curate.base import RecordContext
    from llava_medgpt.data.curate.synthetic import labelled_set
    from llava_medgpt.data.curate.views import ImageView

    data = labelled_set(n_images, seed=0)
    ctx = RecordContext({}, "bench", None)
    panel, text = STEPS["single_panel"].from_config({}), STEPS["overlaid_text"].from_config({})
    rows = {"single_panel": [], "overlaid_text": []}
    for item in data:
        view = ImageView(item.image, item.name)
        if not item.screenshot:
            rows["single_panel"].append((item.compound, not panel.check([view], ctx).keep))
        rows["overlaid_text"].append((item.text, not text.check([view], ctx).keep))
    print(f"labelled_set({n_images}, seed=0): {sum(i.compound for i in data)} compound, "
          f"{sum(i.text and not i.screenshot for i in data)} text, {sum(i.screenshot for i in data)} screenshots, "
          f"{sum(not (i.compound or i.text) for i in data)} clean")
    for name, pairs in rows.items():
        tp = sum(t and p for t, p in pairs)
        fp = sum(p and not t for t, p in pairs)
        fn = sum(t and not p for t, p in pairs)
        print(f"  {name:<14} n={len(pairs)} tp={tp} fp={fp} fn={fn} precision={tp / max(1, tp + fp):.3f} "
              f"recall={tp / max(1, tp + fn):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["rate", "memory", "quality"])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.what == "rate":
        rate(args.images)
    elif args.what == "memory":
        memory(args.records)
    else:
        quality(args.images)


if __name__ == "__main__":
    main()
