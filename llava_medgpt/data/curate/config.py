"""Curation config: which steps run, in which order, with which thresholds (configuration as data).

    chunk_size: 256            # records per unit of work and per checkpoint
    analysis_max_side: 512     # image filters look at images scaled to this long side
    contact_sheet_images: 24   # removed images shown per (source, step, reason)
    ocr: {det_max_side: 512, min_confidence: 0.5}
    steps:
      - step: single_panel      # a key of STEPS
        min_gutter_px: 2        # any field of the step's Params; the rest keep their defaults
      - step: narrator
        sources: ["Quilt-1M (filtered)"]   # optional: only these sources (recipe names)

The run writes the resolved config (every threshold, defaults included) to <output>/curate_config.yaml, which
loads back to the same config; a resumed run must be given the same config.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from .artifacts import Narrator, OverlaidText, SoftwareInterface
from .base import Step, params_dict
from .dedup import DuplicateCaption, DuplicateImage, EvalOverlap
from .llm import LlmRelevance
from .panels import SinglePanel
from .views import OcrSettings

STEPS: dict[str, type[Step]] = {step.name: step for step in (
    SoftwareInterface, SinglePanel, OverlaidText, Narrator, DuplicateImage, DuplicateCaption, EvalOverlap, LlmRelevance,
)}

_TOP_LEVEL = {"chunk_size", "analysis_max_side", "contact_sheet_images", "ocr", "steps"}


@dataclass(frozen=True)
class StepConfig:
    step: str
    params: Any  # the step's frozen Params dataclass
    sources: tuple[str, ...] | None = None  # None: every source

    def applies_to(self, source: str) -> bool:
        return self.sources is None or source in self.sources

    def build(self) -> Step:
        return STEPS[self.step](self.params)


@dataclass(frozen=True)
class CurateConfig:
    steps: tuple[StepConfig, ...]
    chunk_size: int = 256
    analysis_max_side: int = 512
    contact_sheet_images: int = 24
    ocr: OcrSettings = field(default_factory=OcrSettings)


def default_config_path() -> str:
    return str(resources.files(__package__).joinpath("configs/stage0.yaml"))


def parse_config(raw: Any, where: str = "curation config") -> CurateConfig:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a mapping with 'steps' expected")
    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(_TOP_LEVEL)}")
    entries = raw.get("steps")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: 'steps' must be a non-empty list")
    steps = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "step" not in entry:
            raise ValueError(f"{where}: steps[{i}] must be a mapping with a 'step' key")
        options = dict(entry)
        name = options.pop("step")
        if name not in STEPS:
            raise ValueError(f"{where}: steps[{i}]: unknown step {name!r}; known: {sorted(STEPS)}")
        sources = options.pop("sources", None)
        if sources is not None and (not isinstance(sources, list) or not all(isinstance(s, str) for s in sources)):
            raise ValueError(f"{where}: steps[{i}] ({name}): 'sources' must be a list of source names")
        try:
            params = STEPS[name].from_config(options).params
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: steps[{i}]: {e}") from e
        steps.append(StepConfig(name, params, tuple(sources) if sources is not None else None))
    names = [s.step for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: a step may appear once, got {names}")
    ocr = raw.get("ocr") or {}
    if not isinstance(ocr, dict) or set(ocr) - {f.name for f in dataclasses.fields(OcrSettings)}:
        raise ValueError(f"{where}: 'ocr' takes det_max_side and min_confidence")
    kwargs = {k: raw[k] for k in ("chunk_size", "analysis_max_side", "contact_sheet_images") if k in raw}
    for key, value in kwargs.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}: {key} must be a positive integer, got {value!r}")
    return CurateConfig(steps=tuple(steps), ocr=OcrSettings(**ocr), **kwargs)


def load_config(path: str | os.PathLike) -> CurateConfig:
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    return parse_config(raw, str(path))


def config_to_dict(config: CurateConfig) -> dict:
    steps = []
    for s in config.steps:
        entry = {"step": s.step}
        if s.sources is not None:
            entry["sources"] = list(s.sources)
        entry.update(params_dict(s.params))
        steps.append(entry)
    return {"chunk_size": config.chunk_size, "analysis_max_side": config.analysis_max_side,
            "contact_sheet_images": config.contact_sheet_images, "ocr": dataclasses.asdict(config.ocr),
            "steps": steps}


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the LLM prompt) as literal blocks, so the saved config reads like the prompt file."""


def _str_representer(dumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def dump_config(config: CurateConfig) -> str:
    """The resolved config as YAML text (deterministic: a resumed run compares it byte for byte)."""
    header = "# Resolved curation config (every threshold used); rerun with --config on this file.\n"
    return header + yaml.dump(config_to_dict(config), Dumper=_BlockDumper, sort_keys=False, allow_unicode=True,
                              width=120)
