"""95% intervals printed beside every score: Wilson for accuracies, a seeded percentile bootstrap for
generation metrics.

Wilson rather than the normal approximation because benchmark subsets are small and accuracies sit near
0 or 100 % (the normal interval leaves [0, 100] there). The bootstrap resamples items with replacement and
recomputes the corpus statistic, so corpus BLEU keeps its corpus-level brevity penalty.
"""

import math
from collections.abc import Callable

import numpy as np

Z_95 = 1.959963984540054  # standard normal 97.5 % quantile
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion correct / n, as fractions in [0, 1]; None when n == 0."""
    if n == 0:
        return None
    if not 0 <= correct <= n:
        raise ValueError(f"correct={correct} outside 0..{n}")
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 and n the bounds are exactly 0 and 1; the formula leaves rounding noise there.
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high


def bootstrap_interval(
    statistic: Callable[[np.ndarray], np.ndarray], per_item: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap of a corpus statistic over items.

    per_item: one row of sufficient statistics per item (shape [n, k]). `statistic` maps their sums over a
    resample (shape [resamples, k]) to one value per resample. None for fewer than two items.
    """
    per_item = np.asarray(per_item, dtype=np.float64)
    if per_item.ndim == 1:
        per_item = per_item[:, None]
    n = per_item.shape[0]
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(resamples, n))
    sums = per_item[index].sum(axis=1)  # [resamples, k]
    values = statistic(sums)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
