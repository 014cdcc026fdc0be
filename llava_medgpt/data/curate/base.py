"""What a curation step is: a verdict per record, three ways to run, and the registry of named steps.

A step is configured by a frozen dataclass of thresholds (`Params`) and runs in one of three places:

    ImageStep    `check(views, record) -> Verdict` on the decoded images, in the worker processes (one per core).
    OrderedStep  `fingerprint(views, record)` in the workers, then `check(...)` in the main process in record
                 order, because the answer depends on what came before (duplicates). Its accepted records are
                 written to an append-only log, so a resumed run rebuilds the same state.
    BatchStep    `check_batch(items) -> [Verdict]` in the main process on batches (the LLM judge).

A record leaves at its first rejecting step (steps run in config order); later steps never see it, so the
report reads as a funnel: records in and out of each step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from .views import ImageView


@dataclass(frozen=True)
class Verdict:
    """keep, or a reason key (one contact sheet and one report line per reason), a score and a detail."""

    keep: bool
    reason: str = ""
    score: float = 0.0
    detail: str = ""


KEEP = Verdict(True)


def reject(reason: str, score: float = 0.0, detail: str = "") -> Verdict:
    return Verdict(False, reason, float(score), detail)


@dataclass(frozen=True)
class RecordContext:
    """What a step may know about a record besides its images: its source and where its images live."""

    record: dict
    source: str
    image_folder: str | None


class Step:
    """Base of all steps. Subclasses set `name`, `kind` and a frozen `Params` dataclass."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "image" | "ordered" | "batch"
    Params: ClassVar[type]
    needs_images: ClassVar[bool] = True

    def __init__(self, params):
        self.params = params

    @classmethod
    def from_config(cls, options: dict[str, Any]) -> "Step":
        return cls(build_params(cls, options))


class ImageStep(Step):
    kind = "image"

    def check(self, views: Sequence[ImageView], ctx: RecordContext) -> Verdict:
        raise NotImplementedError


class OrderedStep(Step):
    kind = "ordered"

    def setup(self) -> None:
        """Load what the step needs in the main process (e.g. the evaluation index); called once per run."""

    def fingerprint(self, views: Sequence[ImageView], ctx: RecordContext) -> Any:
        """Picklable features computed in a worker (hashes)."""
        return None

    def check(self, fingerprint: Any, ctx: RecordContext) -> tuple[Verdict, str | None]:
        """(verdict, log line to append when the record is accepted into the step's state, or None)."""
        raise NotImplementedError

    def replay(self, line: str) -> None:
        """Re-apply one log line written by `check` (resume)."""


class BatchStep(Step):
    kind = "batch"
    needs_images = False  # the batch step loads its own images, in the main process

    def bind(self, backend) -> None:
        self.backend = backend

    def check_batch(self, items: Sequence[RecordContext]) -> list[Verdict]:
        raise NotImplementedError


def build_params(step: type[Step], options: dict[str, Any]):
    """The step's Params from a config mapping; unknown keys and wrong types are errors naming the step."""
    fields = {f.name: f for f in dataclasses.fields(step.Params)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"curation step {step.name!r}: unknown options {unknown}; known: {sorted(fields)}")
    values = {}
    for key, value in options.items():
        default = getattr(step.Params(), key) if _has_default(fields[key]) else None
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"curation step {step.name!r}: {key} must be true or false, got {value!r}")
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"curation step {step.name!r}: {key} must be a number, got {value!r}")
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        values[key] = value
    return step.Params(**values)


def _has_default(field: dataclasses.Field) -> bool:
    return field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def params_dict(params) -> dict[str, Any]:
    """Params as plain YAML-able values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()}
