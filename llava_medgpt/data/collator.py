"""Collators: a list of dataset items (tokenized samples or SkippedSample markers) -> one batch of model inputs.

Two layouts (registry COLLATE_LAYOUTS):

    padded  input_ids / labels / attention_mask [B, T_max], right padding; one sample per row
    packed  input_ids / labels / position_ids [R, T <= max_length], several samples per row (see packing.py);
            no attention_mask: MedGptForConditionalGeneration builds block-diagonal masks from position_ids
            (model.packed_masks.packed_attention_masks)

Both put `pixel_values` (all tiles of the batch, in reading order, uint8 as the workers made them, or None) and
`meta` (a skips.BatchMeta: samples requested, skipped markers, ids). `meta` is bookkeeping, not a model input:
the training loop pops it and feeds a SkipReport.

A batch whose samples were all skipped becomes one padding row with no trained label, so every rank still runs
the same forward and backward (ZeRO-3 would hang otherwise); its loss contribution is zero when the loss is
normalised by the number of label tokens across the step (num_items_in_batch).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..constants import IGNORE_INDEX
from .packing import balanced_bins, pack_rows
from .skips import BatchMeta, SkippedSample


def pad_rows(samples: Sequence[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """One sample per row, right-padded to the longest: input_ids, labels, attention_mask [B, T_max]."""
    width = max(len(s["input_ids"]) for s in samples)
    input_ids = torch.full((len(samples), width), pad_token_id, dtype=torch.long)  # [B, T]
    labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)  # [B, T]
    attention_mask = torch.zeros((len(samples), width), dtype=torch.long)  # [B, T]
    for b, sample in enumerate(samples):
        n = len(sample["input_ids"])
        input_ids[b, :n] = sample["input_ids"]
        labels[b, :n] = sample["labels"]
        attention_mask[b, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def _padded(samples: Sequence[dict], pad_token_id: int, max_length: int | None):
    return list(samples), pad_rows(samples, pad_token_id)


def _packed(samples: Sequence[dict], pad_token_id: int, max_length: int | None):
    if max_length is None:
        raise ValueError("the packed layout needs max_length (the model_max_length of a row)")
    bins = balanced_bins([len(s["input_ids"]) for s in samples], max_length)
    ordered = [samples[i] for b in bins for i in b]  # the order samples take in the rows, row after row
    return ordered, pack_rows(samples, bins, pad_token_id)


COLLATE_LAYOUTS = {"padded": _padded, "packed": _packed}


@dataclass
class MedGptCollator:
    """Drops and records skipped samples, then lays out the rest as `layout` ("padded" or "packed")."""

    pad_token_id: int
    layout: str = "padded"
    max_length: int | None = None  # row capacity for "packed"

    def __post_init__(self):
        if self.layout not in COLLATE_LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; known: {sorted(COLLATE_LAYOUTS)}")

    def __call__(self, items: Sequence[dict | SkippedSample]) -> dict:
        skipped = [item for item in items if isinstance(item, SkippedSample)]
        samples = [item for item in items if not isinstance(item, SkippedSample)]
        if not samples:
            batch = self._empty_batch()
            batch["meta"] = BatchMeta(num_samples=len(items), skipped=skipped)
            return batch
        ordered, batch = COLLATE_LAYOUTS[self.layout](samples, self.pad_token_id, self.max_length)
        tiles = [s["pixel_values"] for s in ordered if s.get("pixel_values") is not None]
        batch["pixel_values"] = torch.cat(tiles) if tiles else None  # [N_tiles, 3, H, W]
        batch["meta"] = BatchMeta(
            num_samples=len(items), skipped=skipped, sample_ids=[str(s.get("id")) for s in ordered]
        )
        return batch

    def _empty_batch(self) -> dict:
        batch = {
            "input_ids": torch.full((1, 1), self.pad_token_id, dtype=torch.long),
            "labels": torch.full((1, 1), IGNORE_INDEX, dtype=torch.long),
            "pixel_values": None,
        }
        if self.layout == "padded":
            batch["attention_mask"] = torch.ones((1, 1), dtype=torch.long)
        else:
            batch["position_ids"] = torch.zeros((1, 1), dtype=torch.long)
        return batch


__all__ = ["COLLATE_LAYOUTS", "MedGptCollator", "pad_rows"]
