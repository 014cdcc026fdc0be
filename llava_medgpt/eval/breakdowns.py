"""Accuracy of one task broken down by an item metadata field (OmniMedVQA: imaging modality, question type).

A task asks for breakdowns in its YAML (`options: {breakdowns: [modality, question_type]}`); each group gets
n, correct, accuracy (percent) and a Wilson 95% interval, like the task's own score. Items whose field is missing
are grouped under "unknown", so the groups always add up to the task.
"""

from collections import defaultdict

from .intervals import wilson_interval
from .tasks.base import EvalItem

UNKNOWN = "unknown"


def breakdown_scores(items: list[EvalItem], verdicts: list[dict], keys: list[str]) -> dict[str, dict[str, dict]]:
    """{key: {group value: {"n", "correct", "accuracy", "ci95"}}}, groups sorted by name."""
    breakdowns = {}
    for key in keys:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # value -> [n, correct]
        for item, verdict in zip(items, verdicts):
            value = item.metadata.get(key)
            group = counts[UNKNOWN if value in (None, "") else str(value)]
            group[0] += 1
            group[1] += int(bool(verdict["correct"]))
        breakdowns[key] = {}
        for value, (n, correct) in sorted(counts.items()):
            interval = wilson_interval(correct, n)
            breakdowns[key][value] = {"n": n, "correct": correct, "accuracy": 100.0 * correct / n,
                                      "ci95": None if interval is None else [100.0 * v for v in interval]}
    return breakdowns


__all__ = ["UNKNOWN", "breakdown_scores"]
