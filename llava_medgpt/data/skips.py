"""Bad-sample accounting: samples that cannot be trained on are skipped, counted by reason, and reported.

A bad sample is never replaced by another one. The dataset returns a `SkippedSample` instead of a tokenized
sample; the collator drops it and carries it in the batch's `BatchMeta`, so the counts reach the training
process even when the sample was read inside a DataLoader worker (worker-local counters would be lost).

    report = SkipReport(max_fraction=0.01)
    for batch in loader:
        meta = batch.pop("meta")          # never pass it to the model
        report.update(meta)               # raises TooManyBadSamplesError above the threshold
    report.write_json(output_dir / "skipped_samples.json")
"""

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import atomic_write


class TooManyBadSamplesError(RuntimeError):
    """More than the allowed fraction of the samples seen so far were skipped."""


@dataclass(frozen=True)
class SkippedSample:
    """What the dataset returns in place of a sample it could not prepare."""

    sample_id: str  # the record's id, or "<manifest>#<line>" when the line could not be parsed
    reason: str  # e.g. malformed_json, invalid_record, image_load, too_long (see dataset.SKIPPED_ERRORS)
    detail: str  # the error message (names the record id or the file)


@dataclass
class BatchMeta:
    """Per-batch bookkeeping the collator attaches under batch["meta"]; not a model input."""

    num_samples: int  # samples requested for this batch, including skipped ones
    skipped: list[SkippedSample] = field(default_factory=list)
    sample_ids: list[str] = field(default_factory=list)  # ids of the samples that made it into the batch


class SkipReport:
    """Counts skipped samples per reason across a run, keeps example ids, and enforces a maximum fraction.

    The check only starts once `min_samples` samples were seen (a 1% limit means nothing after 8 samples);
    `finalize()` checks regardless, at the end of an epoch or run.
    """

    def __init__(self, max_fraction: float = 0.01, min_samples: int = 1000, max_ids_per_reason: int = 1000):
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be in [0, 1], got {max_fraction}")
        self.max_fraction = max_fraction
        self.min_samples = min_samples
        self.max_ids_per_reason = max_ids_per_reason
        self.num_seen = 0
        self.counts: Counter[str] = Counter()
        self.ids: dict[str, list[str]] = {}
        self.examples: dict[str, str] = {}  # reason -> first error message, to show what went wrong

    @property
    def num_skipped(self) -> int:
        return sum(self.counts.values())

    @property
    def fraction(self) -> float:
        return self.num_skipped / self.num_seen if self.num_seen else 0.0

    def update(self, meta: BatchMeta) -> None:
        self.add(meta.num_samples, meta.skipped)

    def add(self, num_seen: int, skipped: list[SkippedSample]) -> None:
        self.record(num_seen, skipped)
        if self.num_seen >= self.min_samples:
            self.check()

    def record(self, num_seen: int, skipped: list[SkippedSample]) -> None:
        """Count without checking (training checks the sum over all ranks instead: train.bad_samples)."""
        self.num_seen += num_seen
        for sample in skipped:
            self.counts[sample.reason] += 1
            ids = self.ids.setdefault(sample.reason, [])
            if len(ids) < self.max_ids_per_reason:
                ids.append(sample.sample_id)
            self.examples.setdefault(sample.reason, sample.detail)

    def merge(self, other: "SkipReport") -> None:
        """Add another report's counts (e.g. another rank's); ids and first errors keep this report's first."""
        self.num_seen += other.num_seen
        self.counts.update(other.counts)
        for reason, ids in other.ids.items():
            mine = self.ids.setdefault(reason, [])
            mine.extend(ids[: max(0, self.max_ids_per_reason - len(mine))])
        for reason, example in other.examples.items():
            self.examples.setdefault(reason, example)

    @classmethod
    def from_dict(cls, data: dict, **settings) -> "SkipReport":
        """The report `to_dict()` wrote (settings: max_fraction, min_samples, ... of the new report)."""
        report = cls(**settings)
        report.num_seen = int(data["num_seen"])
        report.counts = Counter({reason: int(n) for reason, n in data["counts"].items()})
        report.ids = {reason: list(ids) for reason, ids in data["ids"].items()}
        report.examples = dict(data["first_error"])
        return report

    def check(self) -> None:
        if self.num_seen and self.fraction > self.max_fraction:
            raise TooManyBadSamplesError(self.summary())

    def finalize(self) -> None:
        """The end-of-run check, whatever the number of samples seen."""
        self.check()

    def summary(self) -> str:
        lines = [
            f"{self.num_skipped} of {self.num_seen} samples skipped ({self.fraction:.2%}; "
            f"limit {self.max_fraction:.2%}):"
        ]
        for reason, count in self.counts.most_common():
            example_ids = ", ".join(self.ids[reason][:5])
            lines.append(f"  {reason}: {count} (e.g. {example_ids}) - first error: {self.examples[reason]}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "num_seen": self.num_seen,
            "num_skipped": self.num_skipped,
            "fraction": self.fraction,
            "max_fraction": self.max_fraction,
            "counts": dict(self.counts),
            "ids": self.ids,
            "first_error": self.examples,
        }

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write to_dict() as JSON, atomically (a kill never leaves half a report)."""
        path = Path(path)
        with atomic_write(path) as f:
            f.write(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


__all__ = ["BatchMeta", "SkipReport", "SkippedSample", "TooManyBadSamplesError"]
