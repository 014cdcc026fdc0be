"""Examples per second of the harness's batched greedy generation, batch 8 vs batch 1, in one run.

Run as: python bench/bench_eval_generation.py [--backbone gpt_oss] [--examples 32] [--max-new-tokens 16]

Uses a tiny random checkpoint and the MedQA + MedMCQA + MMLU-Med fixtures (text prompts of realistic shape),
repeated with distinct ids to --examples items. Exits non-zero when batch 8 is not at least --min-speedup
times faster than batch 1.
"""

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from llava_medgpt.eval.generation import GenerationSettings, PredictionFile, run_generation
from llava_medgpt.inference.generate import HFBackend
from llava_medgpt.inference.models import load_chat_model
from llava_medgpt.eval.tasks import load_task
from llava_medgpt.model.tiny import create_tiny_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "eval"


def bench_items(count: int):
    tasks = [load_task(name, FIXTURES) for name in ("medqa", "medmcqa", "mmlu_med")]
    pool = [(task.config, item) for task in tasks for item in task.items]
    config = tasks[0].config
    return config, [dataclasses.replace(pool[n % len(pool)][1], id=f"bench-{n}") for n in range(count)]


def time_run(chat, config, items, batch_size: int, max_new_tokens: int, folder: Path) -> float:
    settings = GenerationSettings(model="bench", max_new_tokens=max_new_tokens, batch_size=batch_size, seed=0,
                                  template_kwargs={})
    store = PredictionFile(folder / f"batch{batch_size}.jsonl", settings)
    start = time.perf_counter()
    run_generation(HFBackend(chat), items, config, store, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="gpt_oss", choices=["gpt_oss", "qwen2", "llama"])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-speedup", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = create_tiny_checkpoint(Path(tmp) / "tiny", text_backbone=args.backbone)
        chat = load_chat_model(str(path))
        config, items = bench_items(args.examples)
        time_run(chat, config, items[:2], 2, 2, Path(tmp) / "warmup")  # first-call allocations
        seconds = {b: time_run(chat, config, items, b, args.max_new_tokens, Path(tmp)) for b in (1, 8)}
    rate = {b: args.examples / s for b, s in seconds.items()}
    report = {"backbone": args.backbone, "examples": args.examples, "max_new_tokens": args.max_new_tokens,
              "threads": args.threads, "examples_per_s_batch1": round(rate[1], 3),
              "examples_per_s_batch8": round(rate[8], 3), "speedup": round(rate[8] / rate[1], 2)}
    print(json.dumps(report, indent=2))
    if report["speedup"] < args.min_speedup:
        print(f"FAIL: batch 8 is {report['speedup']}x batch 1, below {args.min_speedup}x", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
