"""Packing: several tokenized samples in one row, trained exactly as if each were alone.

A packed row of samples A (length 3) and B (length 2), padded to 6:

    input_ids     a0 a1 a2 b0 b1 pad
    position_ids   0  1  2  0  1   0      restart at 0 per sample (the padding is a sequence of its own)
    labels        -100 l1 l2 -100 l1 -100

Three things keep samples apart:
1. Labels. transformers' causal-LM loss shifts labels left (the logit at t is scored against labels[t + 1]), so
   the logit at A's last token would be trained to predict B's first token. Each sample's first label is set to
   IGNORE_INDEX; run alone, that label is never scored either (nothing precedes it), so the packed loss is the
   token-weighted mean of the samples' own losses.
2. Positions restart at 0, so rotary embeddings see each sample at its own positions.
3. Attention. transformers turns restarting position_ids into a block-diagonal mask only when
   attention_mask is None AND past_key_values is None AND the model passes position_ids to its mask builder:
   Qwen2 and Llama do (with use_cache=False; the default use_cache=True creates a cache and silently disables
   the detection), GPT-oss does NOT (GptOssModel builds its masks without position_ids), so a packed GPT-oss row
   would attend across samples (tests/test_data_packing.py pins this). `model.packed_masks.packed_attention_masks`
   (the model calls it when a batch has restarting position ids and no mask) builds the per-layer-type masks with
   transformers' own builders (float masks for eager, bool for sdpa, BlockMask for flex attention, and the
   sliding window applied within each sample), to pass as `attention_mask={"full_attention": ..., ...}`.

Pixel tiles of a batch are concatenated in the order the samples appear, row after row, which is the order in
which the model fills image placeholders.
"""

import bisect
from collections.abc import Sequence

import torch

from ..constants import IGNORE_INDEX


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins (lists of positions into `lengths`) whose total length is at most `capacity`.

    Longest first, each item goes to the fullest bin it still fits in (O(n log n) with a sorted list of free
    space), which packs as tightly as first-fit-decreasing (both within 11/9 of optimal).
    """
    too_long = [i for i, n in enumerate(lengths) if n > capacity]
    if too_long:
        raise ValueError(f"items {too_long[:5]} are longer than the capacity {capacity}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (free space, bin number)
    for i in order:
        slot = bisect.bisect_left(free, (lengths[i], -1))
        if slot == len(free):
            bins.append([i])
            space, b = capacity - lengths[i], len(bins) - 1
        else:
            space, b = free.pop(slot)
            bins[b].append(i)
            space -= lengths[i]
        bisect.insort(free, (space, b))
    return bins


def balanced_bins(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """As few bins as best-fit-decreasing needs at `capacity`, but as level as possible.

    Rows of a batch are padded to the longest one, so three rows of 4096, 4096 and 300 tokens waste more than
    three rows of about 2900. Binary search for the smallest capacity that still packs into the same number of
    bins; every probe is a valid packing, and `capacity` itself always is.
    """
    best = best_fit_decreasing(lengths, capacity)
    target = len(best)
    if target <= 1:
        return best
    low, high = max(max(lengths), -(-sum(lengths) // target)), capacity
    while low < high:
        middle = (low + high) // 2
        candidate = best_fit_decreasing(lengths, middle)
        if len(candidate) <= target:
            high, best = middle, candidate
        else:
            low = middle + 1
    return best


def pack_rows(
    samples: Sequence[dict], bins: Sequence[Sequence[int]], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """Concatenate the samples of each bin into one row; rows are right-padded to the longest row.

    samples: dicts with input_ids [T_i] and labels [T_i] (LongTensor). Returns input_ids, labels and position_ids
    [R, T_max]; no attention_mask (see the module docstring for the masks).
    """
    rows = [[samples[i] for i in b] for b in bins]
    width = max(sum(len(s["input_ids"]) for s in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)  # [R, T]
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)  # [R, T]
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)  # [R, T]
    for r, row in enumerate(rows):
        start = 0
        for sample in row:
            n = len(sample["input_ids"])
            input_ids[r, start : start + n] = sample["input_ids"]
            labels[r, start : start + n] = sample["labels"]
            labels[r, start] = IGNORE_INDEX  # never predicted from the previous sample's last token
            position_ids[r, start : start + n] = torch.arange(n)
            start += n
        position_ids[r, start:] = torch.arange(width - start)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


def sequence_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """[B, T] number of the packed sequence each token belongs to: a new one starts where positions do not step +1."""
    step = torch.diff(position_ids, prepend=position_ids[:, :1] - 1, dim=-1)
    return (step != 1).cumsum(-1)


__all__ = ["balanced_bins", "best_fit_decreasing", "pack_rows", "sequence_ids"]
