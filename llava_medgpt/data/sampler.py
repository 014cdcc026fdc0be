"""Batch samplers: the same global order on every rank, then sharded; deterministic per (seed, epoch); resumable.

Two orders, both yielding one list of dataset indices per step and rank:

- `ModalityLengthGroupedBatchSampler` (padded batches): LLaVA-OneVision's `group_by_modality_length`. Image and
  text-only samples never share a step (except in the leftover steps at the end of the epoch). Samples of one
  modality are shuffled, sorted by length within groups of `megabatch_mult` steps and cut into steps of
  world_size * batch_size, so a step holds samples of similar length and padding stays small
  (megabatch_mult=1 sorts within a single step, as LLaVA-OneVision does); each step is dealt to the ranks
  so that their token totals are balanced.
- `PackedBatchSampler` (packed rows): random order; each step's samples are chosen so that, by their estimated
  lengths, they fill `rows_per_batch` rows of `max_length` tokens (best-fit-decreasing inside a shuffled buffer).
  The collator packs the real lengths again, so a wrong estimate costs padding, never correctness.

Every rank computes the whole epoch's order from (seed, epoch) and the lengths array, which are identical on all
ranks, and keeps its own slice: no communication, no shared RNG state. A resumed epoch is re-planned from the same
(seed, epoch) and the Trainer skips the steps already trained.

When the number of samples does not fill the last step on every rank, drop_last=False wraps around to the start of
the epoch's order (as torch's DistributedSampler does): a few samples are seen twice, and every rank runs the same
number of steps, which ZeRO-3 requires.
"""

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from .packing import best_fit_decreasing


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def _deal_to_ranks(step: np.ndarray, lengths: np.ndarray, world_size: int) -> list[np.ndarray]:
    """Split one step's samples into `world_size` batches of similar total length (one per rank).

    Longest first, dealt in snake order (0, 1, .., W-1, W-1, .., 0, ...), so no rank gets all the long samples of
    a step and keeps the others waiting. Batch sizes differ by at most one.
    """
    order = step[np.argsort(-lengths[step], kind="stable")]
    position = np.arange(len(order))
    lap, seat = np.divmod(position, world_size)
    rank = np.where(lap % 2 == 0, seat, world_size - 1 - seat)
    by_rank = order[np.argsort(rank, kind="stable")]
    return np.split(by_rank, np.cumsum(np.bincount(rank, minlength=world_size))[:-1])


def modality_length_grouped_order(
    lengths: np.ndarray,
    has_image: np.ndarray,
    batch_size: int,
    world_size: int,
    seed: int,
    epoch: int,
    megabatch_mult: int = 8,
) -> list[list[np.ndarray]]:
    """The epoch's steps; each step is a list of `world_size` batches (rank r takes element r).

    Per modality: shuffle, cut into groups of megabatch_mult steps, sort each group by length and cut it into
    consecutive steps, so a step holds samples of similar length (megabatch_mult=1 is LLaVA-OneVision's
    grouping, which sorts inside one step only). Full steps of both modalities are shuffled together; the
    leftovers of both modalities (less than a step each) form the last step(s).
    """
    rng = _epoch_rng(seed, epoch)
    step_size = batch_size * world_size
    group_size = step_size * megabatch_mult
    steps: list[np.ndarray] = []
    leftovers = []
    for modality in (True, False):
        members = np.flatnonzero(has_image == modality)
        members = members[rng.permutation(len(members))]
        n_full = len(members) // step_size * step_size
        for start in range(0, n_full, group_size):
            group = members[start : min(start + group_size, n_full)]
            group = group[np.argsort(-lengths[group], kind="stable")]
            steps.extend(group[k : k + step_size] for k in range(0, len(group), step_size))
        leftovers.append(members[n_full:])
    steps = [steps[i] for i in rng.permutation(len(steps))]
    rest = np.concatenate(leftovers)
    steps.extend(rest[k : k + step_size] for k in range(0, len(rest), step_size))
    return [_deal_to_ranks(step, lengths, world_size) for step in steps]


class _StepShardedBatchSampler(Sampler[list[int]]):
    """Shared plumbing: build the epoch's steps (same on all ranks), make them rectangular, yield this rank's part."""

    def __init__(self, num_replicas: int, rank: int, seed: int, drop_last: bool):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order."""
        self.epoch = epoch

    def _steps(self) -> list[list[np.ndarray]]:
        raise NotImplementedError

    def epoch_steps(self) -> list[list[np.ndarray]]:
        """All steps of the current epoch for all ranks, after drop_last / wrap-around."""
        steps = self._steps()
        complete = [s for s in steps if self._is_complete(s)]
        if self.drop_last or len(complete) == len(steps):
            return complete
        # Wrap around: refill incomplete steps with samples from the start of the epoch's order.
        flat = np.concatenate([b for step in complete for b in step]) if complete else np.concatenate(steps[0])
        cursor = 0
        fixed = list(complete)
        for step in steps:
            if self._is_complete(step):
                continue
            refilled = []
            for batch in step:
                need = self._target_size(batch) - len(batch)
                extra = flat[np.arange(cursor, cursor + need) % len(flat)]
                cursor += need
                refilled.append(np.concatenate([batch, extra]))
            fixed.append(refilled)
        return fixed

    def _is_complete(self, step: list[np.ndarray]) -> bool:
        return all(len(batch) == self._target_size(batch) for batch in step)

    def _target_size(self, batch: np.ndarray) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        for step in self.epoch_steps():
            yield step[self.rank].tolist()

    def __len__(self) -> int:
        return len(self.epoch_steps())


class ModalityLengthGroupedBatchSampler(_StepShardedBatchSampler):
    """`batch_size` samples per rank and step, grouped by modality and length (see module docstring).

    lengths: [N] estimated tokens per sample; has_image: [N] bool.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        has_image: np.ndarray,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        drop_last: bool = False,
        megabatch_mult: int = 8,
    ):
        super().__init__(num_replicas, rank, seed, drop_last)
        self.megabatch_mult = megabatch_mult
        self.lengths = np.asarray(lengths)
        self.has_image = np.asarray(has_image, dtype=bool)
        if self.lengths.shape != self.has_image.shape:
            raise ValueError(f"lengths {self.lengths.shape} and has_image {self.has_image.shape} differ in shape")
        self.batch_size = batch_size
        self._cache: tuple[int, list] | None = None

    def _steps(self) -> list[list[np.ndarray]]:
        if self._cache is None or self._cache[0] != self.epoch:
            steps = modality_length_grouped_order(
                self.lengths, self.has_image, self.batch_size, self.num_replicas, self.seed, self.epoch,
                self.megabatch_mult,
            )
            self._cache = (self.epoch, steps)
        return self._cache[1]

    def _target_size(self, batch: np.ndarray) -> int:
        return self.batch_size


def packed_order(
    lengths: np.ndarray, max_length: int, rows_per_batch: int, world_size: int, seed: int, epoch: int,
    buffer_rows: int = 64,
) -> list[list[np.ndarray]]:
    """Steps of `world_size` batches, each batch the samples of `rows_per_batch` best-fit-decreasing rows.

    Samples are shuffled, then packed buffer by buffer (a buffer holds about `buffer_rows` rows' worth of tokens)
    so packing sees a mix of lengths; the rows of a buffer are shuffled before being grouped into batches.
    """
    rng = _epoch_rng(seed, epoch)
    clipped = np.minimum(np.asarray(lengths, dtype=np.int64), max_length)  # over-long ones fail in the processor
    order = rng.permutation(len(clipped))
    cumulative = np.cumsum(clipped[order])  # tokens up to and including each sample of the shuffled order
    rows: list[np.ndarray] = []
    budget = buffer_rows * max_length
    start = 0
    while start < len(order):
        before = cumulative[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(cumulative, before + budget, side="right")))
        buffer = order[start:stop]
        bins = best_fit_decreasing(clipped[buffer].tolist(), max_length)
        rows.extend(buffer[np.asarray(b, dtype=np.int64)] for b in (bins[i] for i in rng.permutation(len(bins))))
        start = stop
    batches = [np.concatenate(rows[k : k + rows_per_batch]) for k in range(0, len(rows), rows_per_batch)]
    return [batches[k : k + world_size] for k in range(0, len(batches), world_size)]


class PackedBatchSampler(_StepShardedBatchSampler):
    """Per rank and step, the samples that fill about `rows_per_batch` packed rows of `max_length` tokens.

    Batches hold different numbers of samples; an incomplete last step (fewer batches than ranks) is dropped or,
    with drop_last=False, completed with batches from the start of the epoch.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        max_length: int,
        rows_per_batch: int = 1,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        drop_last: bool = False,
        buffer_rows: int = 64,
    ):
        super().__init__(num_replicas, rank, seed, drop_last)
        self.lengths = np.asarray(lengths)
        self.max_length = max_length
        self.rows_per_batch = rows_per_batch
        self.buffer_rows = buffer_rows
        self._cache: tuple[int, list] | None = None

    def _steps(self) -> list[list[np.ndarray]]:
        if self._cache is None or self._cache[0] != self.epoch:
            steps = packed_order(
                self.lengths, self.max_length, self.rows_per_batch, self.num_replicas, self.seed, self.epoch,
                self.buffer_rows,
            )
            self._cache = (self.epoch, steps)
        return self._cache[1]

    def epoch_steps(self) -> list[list[np.ndarray]]:
        steps = self._steps()
        if not steps or len(steps[-1]) == self.num_replicas:
            return steps
        if self.drop_last:
            return steps[:-1]
        last = steps[-1]
        pool = [batch for step in steps for batch in step]  # wrap around to the start of the epoch
        return steps[:-1] + [last + [pool[i % len(pool)] for i in range(self.num_replicas - len(last))]]


__all__ = [
    "ModalityLengthGroupedBatchSampler",
    "PackedBatchSampler",
    "modality_length_grouped_order",
    "packed_order",
]
