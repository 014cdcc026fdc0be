"""Pretraining-data curation (paper 3.2): the stage-0 filters as a resumable pipeline with a per-reason report.

    from llava_medgpt.data.curate import curate, load_config, SourceSpec
    report = curate([SourceSpec("ROCOv2", "rocov2.jsonl", "images/rocov2", "rocov2.jsonl")],
                    load_config(default_config_path()), "out/", workers=8)

Modules: views (decoded image + shared OCR/hash), base (step kinds, Verdict), panels, artifacts, dedup, llm
(the filters), config (STEPS registry, YAML), pipeline (streaming, workers, resume), report. The CLI is
`python -m llava_medgpt.data.curate` (__main__.py). Layering: imports processing, inference and data below it.
"""

from .base import KEEP, Verdict
from .config import STEPS, CurateConfig, StepConfig, default_config_path, dump_config, load_config, parse_config
from .pipeline import SourceSpec, curate, sources_from_recipe

__all__ = ["KEEP", "STEPS", "CurateConfig", "SourceSpec", "StepConfig", "Verdict", "curate", "default_config_path",
           "dump_config", "load_config", "parse_config", "sources_from_recipe"]
