"""Share of real (non-padding) tokens in the batches the collators build: packed rows vs padded batches.

Sample lengths are drawn from a log-normal distribution shaped like SFT data (median ~600 tokens, a long tail,
clipped to [32, max_length]). Batches come from the real samplers and the real MedGptCollator; a sample is a row
of zeros of its length (no tokenizer or model involved). Compared, in one run:

    padded-random    random batches of --batch-size samples, padded to the longest
    padded-grouped   ModalityLengthGroupedBatchSampler batches, padded to the longest
    packed           PackedBatchSampler batches (rows_per_batch rows of max_length), packed by the collator
    packed-noisy     the same, but the sampler only knows a noisy estimate of each length (x lognormal(0, 0.25)),
                     as with the index's characters/4 estimate; the collator packs the true lengths

Real-token share = real tokens / (rows x row width), summed over all batches. Target: packed >= 95%.

Run as: python bench/bench_packing.py [--samples 20000] [--max-length 4096] [--batch-size 8] [--rows-per-batch 2]
"""

import argparse

import numpy as np
import torch

from llava_medgpt.data.collator import MedGptCollator
from llava_medgpt.data.sampler import ModalityLengthGroupedBatchSampler, PackedBatchSampler


def sft_lengths(n: int, max_length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(600), 0.9, n), 32, max_length).astype(np.int64)


def real_token_share(batches, lengths: np.ndarray, collate: MedGptCollator) -> tuple[float, float]:
    """(real / total slots, mean rows per batch) over the collated batches."""
    real = slots = rows = 0
    for batch_indices in batches:
        samples = [{"input_ids": torch.zeros(int(lengths[i]), dtype=torch.long),
                    "labels": torch.zeros(int(lengths[i]), dtype=torch.long), "pixel_values": None, "id": str(i)}
                   for i in batch_indices]
        batch = collate(samples)
        real += int(lengths[batch_indices].sum())
        slots += batch["input_ids"].numel()
        rows += batch["input_ids"].shape[0]
    return real / slots, rows / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--max-length", type=int, default=4096, help="model_max_length: the packed row capacity")
    parser.add_argument("--batch-size", type=int, default=8, help="samples per padded batch")
    parser.add_argument("--rows-per-batch", type=int, default=2, help="rows per packed batch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    lengths = sft_lengths(args.samples, args.max_length, args.seed)
    has_image = np.random.default_rng(args.seed + 1).random(args.samples) < 0.5
    print(f"{args.samples:,} samples, lengths median {int(np.median(lengths))}, mean {lengths.mean():.0f}, "
          f"p99 {int(np.percentile(lengths, 99))}, max_length {args.max_length}")

    padded = MedGptCollator(pad_token_id=0, layout="padded")
    packed = MedGptCollator(pad_token_id=0, layout="packed", max_length=args.max_length)
    rng = np.random.default_rng(args.seed)
    random_batches = [b for b in np.array_split(rng.permutation(args.samples), args.samples // args.batch_size)]
    grouped = list(ModalityLengthGroupedBatchSampler(lengths, has_image, args.batch_size, seed=args.seed))
    packed_batches = list(PackedBatchSampler(lengths, args.max_length, args.rows_per_batch, seed=args.seed))
    noisy = np.maximum(1, lengths * rng.lognormal(0.0, 0.25, args.samples)).astype(np.int64)
    noisy_batches = list(PackedBatchSampler(noisy, args.max_length, args.rows_per_batch, seed=args.seed))

    results = {
        "padded-random": real_token_share(random_batches, lengths, padded),
        "padded-grouped": real_token_share(grouped, lengths, padded),
        "packed": real_token_share(packed_batches, lengths, packed),
        "packed-noisy": real_token_share(noisy_batches, lengths, packed),
    }
    print(f"{'layout':<15} {'real tokens':>11} {'rows/batch':>10}")
    for name, (share, rows) in results.items():
        print(f"{name:<15} {share:>11.2%} {rows:>10.2f}")
    share = results["packed"][0]
    print(f"packed real-token share {share:.2%} (target >= 95%): {'PASS' if share >= 0.95 else 'FAIL'}")


if __name__ == "__main__":
    main()
