"""Wrapper overhead: forward+backward of the VLM on a text-only batch vs the bare language model, same batch.

Run as: python bench/bench_model_overhead.py [--batch 2 --seq-len 512 --repeats 20]

Both are timed in the same process on the same weights (the VLM's own `language_model`), interleaved so that
machine noise hits both alike; the figure is the ratio of medians. One process: the blank-tile vision pass that keeps
ZeRO-3 ranks in step on text-only batches only runs with several ranks (docs/model.md), so it is not included.
"""

import argparse
import statistics
import tempfile
import time

import torch

import llava_medgpt
from transformers import AutoModelForImageTextToText


def time_step(module, input_ids) -> float:
    start = time.perf_counter()
    module(input_ids=input_ids, labels=input_ids).loss.backward()
    module.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        llava_medgpt.create_tiny_checkpoint(folder)
        model = AutoModelForImageTextToText.from_pretrained(folder).train()
    # Wrapper overhead only: the same loss as the bare LM (the chunked training loss has its own bench).
    model.config.loss_implementation = "full"
    vocab = model.config.text_config.vocab_size
    input_ids = torch.randint(0, vocab, (args.batch, args.seq_len), generator=torch.Generator().manual_seed(0))
    input_ids[input_ids == model.config.image_token_id] = 0

    for _ in range(3):  # warm-up
        time_step(model, input_ids)
        time_step(model.language_model, input_ids)
    vlm, bare = [], []
    for _ in range(args.repeats):
        vlm.append(time_step(model, input_ids))
        bare.append(time_step(model.language_model, input_ids))
    vlm_ms, bare_ms = statistics.median(vlm) * 1e3, statistics.median(bare) * 1e3
    print(f"tiny {model.config.text_config.model_type}, batch {args.batch} x {args.seq_len} tokens, "
          f"{args.threads} threads, median of {args.repeats}")
    print(f"bare language model fwd+bwd: {bare_ms:8.2f} ms")
    print(f"MedGPT VLM (text-only) fwd+bwd: {vlm_ms:8.2f} ms")
    print(f"overhead: {100 * (vlm_ms / bare_ms - 1):+.1f}% (target <= +5%)")


if __name__ == "__main__":
    main()
