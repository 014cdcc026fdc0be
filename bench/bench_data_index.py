"""Peak memory of the on-disk record index vs json.load of the same manifest (LLaVA-OneVision's way).

Generates a manifest of N records (default 2,000,000) as JSONL and as one JSON list in a temporary folder, then
measures in separate subprocesses, so each peak RSS (VmHWM) is clean:

    index-build   RecordIndex.open (one streaming pass, writes the cache) + read 10,000 random records
    index-load    RecordIndex.open of the cached index (what every rank does) + the same 10,000 reads
    json-load     json.load of the JSON list + the same 10,000 reads

All three import the same modules first; the figure that matters is the growth over that common start
(peak - RSS after imports). Target: index growth <= 1/10 of json.load growth. The temporary folder is removed.

Run as: python bench/bench_data_index.py [--records 2000000] [--reads 10000]
"""

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = r"""
import json, random, sys, time
from llava_medgpt.data.index import RecordIndex  # same imports in every mode

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
mode, manifest, cache_dir, n_reads, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
start_rss = status("VmRSS")
t0 = time.perf_counter()
if mode.startswith("index"):
    index = RecordIndex.open(manifest, cache_dir)
    n = len(index)
    read = index.read
else:
    with open(manifest, encoding="utf-8") as f:
        records = json.load(f)
    n = len(records)
    read = records.__getitem__
t_open = time.perf_counter() - t0
rng = random.Random(seed)
t0 = time.perf_counter()
checksum = 0
for _ in range(n_reads):
    i = rng.randrange(n)
    record = read(i)
    assert record["id"] == f"r{i}", (i, record["id"])
    checksum += len(record["conversations"])
t_read = time.perf_counter() - t0
print(json.dumps({"mode": mode, "records": n, "start_rss": start_rss, "peak_rss": status("VmHWM"),
                  "open_s": t_open, "read_s": t_read, "checksum": checksum}))
"""


def make_record(i: int, rng: random.Random) -> dict:
    words = ["effusion", "consolidation", "the", "left", "lower", "lobe", "no", "acute", "finding", "mass",
             "nodule", "patient", "history", "shows", "with", "and", "of", "in"]
    question = " ".join(rng.choice(words) for _ in range(rng.randint(8, 40)))
    answer = " ".join(rng.choice(words) for _ in range(rng.randint(4, 60)))
    record = {"id": f"r{i}", "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}
    if i % 2 == 0:
        record["image"] = f"images/{i // 1000:04d}/{i}.jpg"
        record["conversations"][0]["value"] = "<image>\n" + question
    return record


def generate(folder: Path, n: int) -> tuple[Path, Path]:
    rng = random.Random(0)
    jsonl, json_list = folder / "manifest.jsonl", folder / "manifest.json"
    with open(jsonl, "w", encoding="utf-8") as a, open(json_list, "w", encoding="utf-8") as b:
        b.write("[\n")
        for i in range(n):
            line = json.dumps(make_record(i, rng))
            a.write(line + "\n")
            b.write(line + (",\n" if i + 1 < n else "\n"))
        b.write("]\n")
    return jsonl, json_list


def measure(mode: str, manifest: Path, cache_dir: Path, reads: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", WORKER, mode, str(manifest), str(cache_dir), str(reads), "1"],
        check=True, capture_output=True, text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000, help="records in the generated manifest")
    parser.add_argument("--reads", type=int, default=10_000, help="random records read after opening")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_data_index_"))
    try:
        t0 = time.perf_counter()
        jsonl, json_list = generate(folder, args.records)
        print(f"generated {args.records:,} records in {time.perf_counter() - t0:.0f} s: "
              f"JSONL {jsonl.stat().st_size / 2**20:,.0f} MiB, JSON list {json_list.stat().st_size / 2**20:,.0f} MiB")
        cache = folder / "cache"
        results = [
            measure("index-build", jsonl, cache, args.reads),
            measure("index-load", jsonl, cache, args.reads),
            measure("json-load", json_list, cache, args.reads),
        ]
        print(f"{'mode':<12} {'peak MiB':>9} {'growth MiB':>11} {'B/record':>9} {'open s':>8} {'reads s':>8}")
        for r in results:
            growth = r["peak_rss"] - r["start_rss"]
            print(f"{r['mode']:<12} {r['peak_rss'] / 2**20:>9.1f} {growth / 2**20:>11.1f} "
                  f"{growth / r['records']:>9.1f} {r['open_s']:>8.2f} {r['read_s']:>8.2f}")
        growth = {r["mode"]: r["peak_rss"] - r["start_rss"] for r in results}
        index_files = sum(p.stat().st_size for p in cache.rglob("*.npy"))
        print(f"index files on disk: {index_files / 2**20:.1f} MiB ({index_files / args.records:.1f} B/record)")
        for mode in ("index-build", "index-load"):
            ratio = growth[mode] / growth["json-load"]
            verdict = "PASS" if ratio <= 0.1 else "FAIL"
            print(f"{mode} growth / json-load growth = {ratio:.4f} (target <= 0.1): {verdict}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
