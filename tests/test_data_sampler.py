"""Batch samplers: determinism, modality separation, exact sharding, resumption, packing budgets."""

import numpy as np
import pytest

from llava_medgpt.data.packing import best_fit_decreasing
from llava_medgpt.data.sampler import (
    ModalityLengthGroupedBatchSampler,
    PackedBatchSampler,
    modality_length_grouped_order,
)


def corpus(n=1000, seed=0, image_share=0.4):
    rng = np.random.default_rng(seed)
    lengths = (rng.lognormal(6.0, 0.8, n) + 1).astype(np.int64)
    has_image = rng.random(n) < image_share
    return lengths, has_image


def per_rank(make, world_size):
    return [list(make(rank)) for rank in range(world_size)]


def test_same_seed_and_epoch_give_the_same_batches_and_another_epoch_reshuffles():
    lengths, has_image = corpus()
    a = ModalityLengthGroupedBatchSampler(lengths, has_image, 4, num_replicas=2, rank=1, seed=3)
    b = ModalityLengthGroupedBatchSampler(lengths, has_image, 4, num_replicas=2, rank=1, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(b) != list(a) and len(list(b)) == len(list(a))
    c = ModalityLengthGroupedBatchSampler(lengths, has_image, 4, num_replicas=2, rank=1, seed=4)
    assert list(c) != list(a)


@pytest.mark.parametrize("world_size,batch_size", [(1, 8), (2, 4), (3, 5)])
def test_modalities_share_at_most_the_leftover_steps(world_size, batch_size):
    lengths, has_image = corpus()
    ranks = per_rank(lambda r: ModalityLengthGroupedBatchSampler(lengths, has_image, batch_size, world_size, r, 0),
                     world_size)
    steps = list(zip(*ranks))
    mixed = [k for k, step in enumerate(steps) if len({bool(has_image[i]) for batch in step for i in batch}) > 1]
    # Less than a step of each modality is left over: they meet in the last two steps at most.
    assert all(k >= len(steps) - 2 for k in mixed)


def test_sharding_is_exact_when_the_data_fills_every_step():
    lengths, has_image = corpus(n=960)
    world_size, batch_size = 4, 6
    # Make each modality a multiple of a step (24) so that no step is incomplete.
    has_image = np.zeros(960, bool)
    has_image[:480] = True
    ranks = per_rank(lambda r: ModalityLengthGroupedBatchSampler(lengths, has_image, batch_size, world_size, r, 0),
                     world_size)
    assert {len(batches) for batches in ranks} == {960 // (world_size * batch_size)}
    seen = [i for batches in ranks for batch in batches for i in batch]
    assert sorted(seen) == list(range(960))  # every sample exactly once across ranks
    assert all(len(batch) == batch_size for batches in ranks for batch in batches)
    steps = list(zip(*ranks))
    assert all(len({bool(has_image[i]) for batch in step for i in batch}) == 1 for step in steps)


def test_ranks_take_disjoint_slices_of_one_global_order_and_wrap_around_at_the_end():
    lengths, has_image = corpus(n=1003)
    world_size, batch_size = 3, 4
    global_steps = modality_length_grouped_order(lengths, has_image, batch_size, world_size, seed=5, epoch=0)
    ranks = per_rank(lambda r: ModalityLengthGroupedBatchSampler(lengths, has_image, batch_size, world_size, r, 5),
                     world_size)
    assert {len(batches) for batches in ranks} == {len(global_steps)}  # same number of steps on every rank
    for r, batches in enumerate(ranks):
        for k, batch in enumerate(batches[:-1]):
            assert batch == global_steps[k][r].tolist()
    seen = [i for batches in ranks for batch in batches for i in batch]
    assert set(seen) == set(range(1003))
    padded = len(global_steps) * world_size * batch_size
    assert len(seen) == padded and padded - 1003 == len(seen) - len(set(seen))  # only the fill-up is repeated
    dropped = per_rank(
        lambda r: ModalityLengthGroupedBatchSampler(lengths, has_image, batch_size, world_size, r, 5, drop_last=True),
        world_size,
    )
    seen = [i for batches in dropped for batch in batches for i in batch]
    complete = [step for step in global_steps if sum(len(b) for b in step) == world_size * batch_size]
    assert len(seen) == len(set(seen)) == len(complete) * world_size * batch_size


def test_each_step_is_balanced_across_ranks_and_grouped_by_length():
    lengths, has_image = corpus(n=4096, seed=1)
    world_size, batch_size = 4, 8
    steps = modality_length_grouped_order(lengths, has_image, batch_size, world_size, seed=0, epoch=0)
    full = [step for step in steps if sum(len(b) for b in step) == world_size * batch_size]
    spread = [max(lengths[b].sum() for b in step) / min(lengths[b].sum() for b in step) for step in full]
    assert np.median(spread) < 1.1  # snake dealing balances per-rank tokens

    def padding_waste(batches):
        padding = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)
        return padding / sum(lengths[b].sum() for b in batches)

    grouped = [b for step in full for b in step]
    rng = np.random.default_rng(0)
    random_batches = np.array_split(rng.permutation(len(lengths)), len(lengths) // batch_size)
    assert padding_waste(grouped) < 0.5 * padding_waste(random_batches)


def test_packed_sampler_fills_rows_and_covers_every_sample_once():
    max_length, rows = 2048, 2
    lengths = np.minimum(corpus(n=3000, seed=2)[0], max_length)  # longer samples never reach a batch
    ranks = per_rank(lambda r: PackedBatchSampler(lengths, max_length, rows, num_replicas=2, rank=r, seed=0,
                                                  drop_last=True), 2)
    assert len(ranks[0]) == len(ranks[1])
    seen = [i for batches in ranks for batch in batches for i in batch]
    assert len(seen) == len(set(seen))
    everything = PackedBatchSampler(lengths, max_length, rows, num_replicas=1, rank=0, seed=0)
    assert sorted(i for batch in everything for i in batch) == list(range(3000))
    # Each batch packs into at most rows_per_batch rows, and the rows are nearly full.
    fills = []
    for batch in everything:
        bins = best_fit_decreasing(lengths[batch].tolist(), max_length)
        assert len(bins) <= rows
        fills.append(lengths[batch].sum() / (rows * max_length))
    assert np.mean(fills[:-1]) > 0.95
