"""Benchmark registry: task definitions (llava_medgpt/eval/tasks/configs/*.yaml) -> EvalItems.

    from llava_medgpt.eval.tasks import load_task, iter_eval_items
    task = load_task("slake", data_dir="/data/benchmarks")     # LoadedTask(config, items, skipped)
    task = load_task("slake", "/data/benchmarks", setting="release")   # the release's full item set
    for item in iter_eval_items(["slake", "medqa"], "/data/benchmarks"): ...

A task's data is read from `<data_dir>/<data_subdir>` (or an explicit per-task path) in the benchmark's
official release layout; when that folder does not exist and the task has a public hub id, from the hub.
Releases shared with the training converters (MedQA, MedMCQA, PubMedQA, SLAKE, Medbullets) are parsed by
`llava_medgpt.benchmarks`. Each task's `settings` select items: "paper" (default) reproduces Table 3's count.
"""

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ...benchmarks import BadRow
from .base import (
    ACCURACY,
    GENERATION,
    MCQ,
    OPEN,
    PAPER_SETTING,
    RELEASE_SETTING,
    REPORT,
    BadRecord,
    EvalItem,
    ImageRef,
    TaskConfig,
)
from .mimic import convert_mimic, mimic_records
from .omnimedvqa import convert_omnimedvqa, omnimedvqa_records
from .sources import MissingData, hub_records
from .text_qa import (
    convert_medbullets,
    convert_medmcqa,
    convert_medqa,
    convert_mmlu,
    convert_pubmedqa,
    medbullets_records,
    medmcqa_records,
    mmlu_records,
    pubmedqa_hub_allowed,
    pubmedqa_records,
)
from .trials import convert_trial, trial_records
from .vqa import (
    convert_medframeqa,
    convert_medxpertqa,
    convert_mmmu,
    convert_slake,
    local_records,
    mmmu_subject_filter,
    slake_selection,
)

logger = logging.getLogger(__name__)
# Shipped inside the package (package data), so an installed copy finds its tasks.
TASK_DIR = Path(__file__).resolve().parent / "configs"

Records = Callable[[TaskConfig, Path, str], list[dict]]
Convert = Callable[[dict, TaskConfig, Path | None], EvalItem]


def _files_for_split(config: TaskConfig, root: Path, split: str) -> list[dict]:
    patterns = [p.format(split=split) for p in config.options["files"]]
    return local_records(TaskConfig(**{**config.__dict__, "options": {**config.options, "files": patterns}}), root)


@dataclass(frozen=True)
class Benchmark:
    """How to read one benchmark's release (`records`) and convert one record (`convert`).

    keep: optional record filter applied before conversion (e.g. MMMU-Pro's medical subjects).
    user_supplied: no public hub copy; the data folder must be given.
    hub_allowed: raises MissingData when the task's setting cannot be read from the hub copy.
    """

    records: Records
    convert: Convert
    keep: Callable[[dict, TaskConfig], bool] | None = None
    user_supplied: bool = False
    hub_allowed: Callable[[TaskConfig], None] | None = None


BENCHMARKS: dict[str, Benchmark] = {
    "medxpertqa": Benchmark(_files_for_split, convert_medxpertqa),
    "slake": Benchmark(_files_for_split, convert_slake, keep=slake_selection),
    "medframeqa": Benchmark(_files_for_split, convert_medframeqa),
    "mmmu": Benchmark(_files_for_split, convert_mmmu),
    "mmmu_pro": Benchmark(_files_for_split, convert_mmmu, keep=mmmu_subject_filter),
    "medqa": Benchmark(_files_for_split, convert_medqa),
    "medmcqa": Benchmark(medmcqa_records, convert_medmcqa),
    "pubmedqa": Benchmark(lambda c, root, split: pubmedqa_records(c, root), convert_pubmedqa,
                          hub_allowed=pubmedqa_hub_allowed),
    "mmlu": Benchmark(lambda c, root, split: mmlu_records(c, root), convert_mmlu),
    "medbullets": Benchmark(medbullets_records, convert_medbullets),
    "mimic_cxr": Benchmark(mimic_records, convert_mimic, user_supplied=True),
    "omnimedvqa": Benchmark(omnimedvqa_records, convert_omnimedvqa, user_supplied=True),
    "patient_trial": Benchmark(lambda c, root, split: trial_records(c, root), convert_trial, user_supplied=True),
}


def task_names(task_dir: Path = TASK_DIR) -> list[str]:
    return sorted(p.stem for p in task_dir.glob("*.yaml"))


def load_config(name: str, task_dir: Path = TASK_DIR) -> TaskConfig:
    path = task_dir / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown task {name!r}; defined tasks: {', '.join(task_names(task_dir))}")
    with path.open(encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if raw.get("name") != name:
        raise ValueError(f"{path}: name {raw.get('name')!r} does not match the file name")
    if raw["loader"] not in BENCHMARKS:
        raise ValueError(f"{path}: loader {raw['loader']!r} is not one of {sorted(BENCHMARKS)}")
    return TaskConfig(**raw)


def parse_tasks(spec: str, task_dir: Path = TASK_DIR) -> list[str]:
    """"slake,medqa" | "all" | "table4" / "table5" / "table6" / "figure2" (the paper's groups) -> task names.

    The one parser of task lists (the eval CLI and decontamination); unknown names raise KeyError.
    """
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part == "all":
            names += task_names(task_dir)
        elif part.startswith("table") or part == "figure2":
            group = part.removeprefix("table")
            names += [n for n in task_names(task_dir) if load_config(n, task_dir).paper.get("table") == group]
        else:
            load_config(part, task_dir)  # unknown names fail here, before anything is loaded
            names.append(part)
    return list(dict.fromkeys(names))


def parse_task_paths(pairs: list[str]) -> dict[str, str]:
    """["mimic_cxr_findings=/data/mimic", ...] -> {task name: data folder}."""
    paths = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep:
            raise SystemExit(f"--task-path expects NAME=PATH, got {pair!r}")
        paths[name] = path
    return paths


@dataclass
class LoadedTask:
    config: TaskConfig
    items: list[EvalItem]
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    source: str = ""


def _record_id(record: dict) -> str:
    for key in ("id", "qid", "question_id", "_key", "study_id", "nct_id", "_index"):
        if key in record:
            return str(record[key])
    return "?"


def _raw_records(config: TaskConfig, root: Path | None, split: str) -> tuple[list[dict], Path | None, str]:
    """Records of every split in `split` ("dev+validation" reads both), from disk or the hub."""
    benchmark = BENCHMARKS[config.loader]
    records: list[dict] = []
    if root is not None and root.is_dir():
        for part in split.split("+"):
            records.extend(benchmark.records(config, root, part))
        source = str(root)
    elif benchmark.user_supplied:
        raise MissingData(f"task {config.name}: data folder {root} not found "
                          "(this benchmark needs user-supplied files)")
    else:
        if benchmark.hub_allowed is not None:
            benchmark.hub_allowed(config)
        for part in split.split("+"):
            hub_split = config.options.get("hub_split", part)  # e.g. MedMCQA "dev" is "validation" on the hub
            records.extend({**r, "_source": "hub"} for r in hub_records(config, hub_split))
        root, source = None, f"hub:{config.hub_id}"
    for index, record in enumerate(records):
        record.setdefault("_index", index)
    if benchmark.keep is not None:
        records = [r for r in records if benchmark.keep(r, config)]
    return records, root, source


def _convert(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    try:
        return BENCHMARKS[config.loader].convert(record, config, root)
    except KeyError as err:
        raise BadRecord(f"missing field {err}") from err


def load_task(
    name: str | TaskConfig, data_dir: str | Path | None = None, path: str | Path | None = None,
    task_dir: Path = TASK_DIR, limit: int | None = None, setting: str | None = None,
) -> LoadedTask:
    """Load one task. `path` overrides `<data_dir>/<data_subdir>`. Bad records are skipped and counted.

    `setting` names one of the task's item selections (default: the paper's, or the given config's own).
    """
    config = name if isinstance(name, TaskConfig) else load_config(name, task_dir)
    if setting is not None or not isinstance(name, TaskConfig):
        config = config.with_setting(setting or PAPER_SETTING)
    root = Path(path) if path else (Path(data_dir) / config.data_subdir if data_dir else None)
    records, root, source = _raw_records(config, root, config.split)
    loaded = LoadedTask(config=config, items=[], source=source)
    seen: set[str] = set()
    for record in records:
        try:
            item = _convert(record, config, root)
        except BadRow as err:
            loaded.skipped[err.reason] += 1
            continue
        if item.id in seen:
            raise ValueError(f"task {config.name}: duplicate item id {item.id} in {source}")
        seen.add(item.id)
        loaded.items.append(item)
        if limit is not None and len(loaded.items) >= limit:
            break
    if config.shots:
        _attach_demos(loaded.items, config, root)
    return loaded


def _attach_demos(items: list[EvalItem], config: TaskConfig, root: Path | None) -> None:
    """Give each item one label-valid demonstration, drawn with a seed fixed per (task seed, item id).

    The pool is the `demo_split` of the same benchmark (default: the evaluated split); a demonstration is
    never the query itself nor from the same patient / topic (metadata["group"]).
    """
    demo_split = config.options.get("demo_split", config.split)
    pool, _, _ = _raw_records(config, root, demo_split)
    if not pool:
        raise ValueError(f"task {config.name}: demonstration pool ({demo_split}) is empty")
    converted: dict[int, EvalItem | None] = {}
    for item in items:
        rng = random.Random(f"{config.demo_seed}:{config.name}:{item.id}")
        for _ in range(100):
            index = rng.randrange(len(pool))
            if index not in converted:
                try:
                    converted[index] = _convert(pool[index], config, root)
                except BadRow:
                    converted[index] = None
            demo = converted[index]
            group = item.metadata.get("group")
            if demo is not None and demo.id != item.id and (group is None or demo.metadata.get("group") != group):
                item.demos = [demo]
                break
        else:
            raise ValueError(f"task {config.name}: no valid demonstration found for item {item.id} in 100 draws")


def widest_setting(config: TaskConfig) -> str:
    """The selection holding every item a run of this task may score: "release" where defined (all SLAKE test
    questions, all 1,000 PubMedQA), else the paper's. Decontamination checks training data against it."""
    return RELEASE_SETTING if RELEASE_SETTING in config.settings else PAPER_SETTING


def iter_eval_items(
    task_names: list[str], data_dir: str | Path, task_dir: Path = TASK_DIR
) -> Iterator[EvalItem]:
    """Every item of the named tasks (for the training-data decontamination check).

    Items expose .task, .id, .question, .image_paths. Each task's widest selection is used (its "release"
    setting where it defines one: all SLAKE test questions, all 1,000 PubMedQA), since any of them may be
    evaluated. Tasks whose data is absent are skipped.
    """
    for name in task_names:
        config = load_config(name, task_dir)
        try:
            loaded = load_task(config, data_dir, task_dir=task_dir, setting=widest_setting(config))
        except MissingData as err:
            logger.warning("decontamination: task %s skipped: %s", name, err)
            continue
        yield from loaded.items


__all__ = [
    "ACCURACY",
    "BENCHMARKS",
    "GENERATION",
    "MCQ",
    "OPEN",
    "PAPER_SETTING",
    "RELEASE_SETTING",
    "REPORT",
    "TASK_DIR",
    "BadRecord",
    "Benchmark",
    "EvalItem",
    "ImageRef",
    "LoadedTask",
    "MissingData",
    "TaskConfig",
    "iter_eval_items",
    "load_config",
    "load_task",
    "parse_task_paths",
    "parse_tasks",
    "task_names",
    "widest_setting",
]
