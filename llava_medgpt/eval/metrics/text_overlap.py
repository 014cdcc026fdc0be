"""Built-in n-gram metrics for generated report text: corpus BLEU-4 and mean ROUGE-L F1.

Tokens are lower-cased alphanumeric runs, so punctuation and case do not count.
"""

import re
from collections import Counter

import numpy as np

_TOKEN_RE = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_statistics(predictions: list[str], references: list[str], max_n: int = 4) -> np.ndarray:
    """Per-item sufficient statistics of corpus BLEU: [matches_1..n, totals_1..n, prediction length,
    reference length] (shape [items, 2 * max_n + 2]). Corpus BLEU is a function of their column sums."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions vs {len(references)} references")
    rows = np.zeros((len(predictions), 2 * max_n + 2))
    for i, (prediction, reference) in enumerate(zip(predictions, references)):
        pred, ref = tokenize(prediction), tokenize(reference)
        for n in range(1, max_n + 1):
            pred_ngrams, ref_ngrams = _ngrams(pred, n), _ngrams(ref, n)
            rows[i, n - 1] = sum(min(count, ref_ngrams[g]) for g, count in pred_ngrams.items())
            rows[i, max_n + n - 1] = max(len(pred) - n + 1, 0)
        rows[i, -2:] = len(pred), len(ref)
    return rows


def bleu_from_sums(sums: np.ndarray, max_n: int = 4) -> np.ndarray:
    """Corpus BLEU from summed statistics (shape [..., 2 * max_n + 2]); 0 where an order has no match."""
    sums = np.asarray(sums, dtype=np.float64)
    matches, totals = sums[..., :max_n], sums[..., max_n:2 * max_n]
    pred_len, ref_len = sums[..., -2], sums[..., -1]
    defined = (pred_len > 0) & (matches.min(axis=-1) > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_precision = np.log(np.where(defined[..., None], matches / np.maximum(totals, 1), 1.0)).mean(axis=-1)
        brevity = np.where(pred_len > ref_len, 1.0, np.exp(1 - ref_len / np.maximum(pred_len, 1)))
    return np.where(defined, brevity * np.exp(log_precision), 0.0)


def corpus_bleu(predictions: list[str], references: list[str], max_n: int = 4) -> float:
    """Papineni et al. corpus BLEU with uniform weights and the brevity penalty, no smoothing.

    Returns 0.0 when any n-gram order has no match over the whole corpus.
    """
    stats = bleu_statistics(predictions, references, max_n)
    return float(bleu_from_sums(stats.sum(axis=0), max_n))


def _lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence) of one prediction against one reference."""
    pred, ref = tokenize(prediction), tokenize(reference)
    if not pred or not ref:
        return 0.0
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def mean_rouge_l(predictions: list[str], references: list[str]) -> float:
    if not predictions:
        return 0.0
    return sum(rouge_l(p, r) for p, r in zip(predictions, references, strict=True)) / len(predictions)
