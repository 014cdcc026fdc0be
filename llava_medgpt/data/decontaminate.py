"""Find (and optionally drop) training records that overlap the evaluation benchmarks.

Run as: python -m llava_medgpt.data.decontaminate RECIPE --eval-data DIR [--tasks all|table4|medqa,...]
                                                  [--drop --output DIR]

Without --tasks, every eval task whose data is found under DIR is checked; the command prints how many eval
items it checked per task and fails when it checked none (unless --allow-empty), so a wrong folder can never
pass as "clean".

A training record overlaps an eval item when
  * image: one of its images has the same content hash as one of the eval item's images. The hash is
    sha256 of the file bytes (default), or with --pixel-hash sha256 of the decoded RGB pixels plus the size
    (catches the same picture re-saved with other metadata or a lossless container change; neither catches a
    re-compressed or resized copy). Only files whose size (bytes mode) or dimensions (pixel mode) equal some
    eval image's are hashed, so the training set is read only where a match is possible.
  * text: a prompt turn's normalised question (lowercase, punctuation to spaces, whitespace collapsed,
    <image> markers and the shared MCQ option block removed) equals an eval question's normalised text; or,
    for eval items without images whose question has at least --min-contained-words words (default 10), the
    prompt turn contains the whole normalised question (a benchmark question after a case preface or an
    abstract, or followed by the source's own option list); or, with --ngram N, shares a word N-gram with it.
    Eval questions shorter than --min-words words (default 6: generic VQA questions like "is this an mri")
    are matched by image only, because the same short question on another image is not a leak; the
    questions of image items are matched exactly only, since their text is often generic and the image
    carries the item.
Eval items come from JSONL files in --eval-data ({"task", "id", "question", "images"}, images relative to
the file's folder) or, when there are none, from the benchmark folders the eval harness reads
(llava_medgpt.eval.tasks, release layouts under DIR/<data_subdir>, or --task-path NAME=PATH). Only local data
is read: unlike the eval CLI, decontamination never falls back to a benchmark's hub copy.
With --drop, manifests without the overlapping records are written to --output (same file names, atomically),
with decontamination_report.json beside them.

Exit status: 0 no overlap (or overlaps dropped), 1 overlaps found and not dropped, 2 nothing checked or a
named task without data.

Library API (also used by curation's near-duplicate checks): normalize_question, word_ngrams, hash_image,
collect_eval_items / load_eval_items, build_eval_index -> EvalIndex, find_overlap(record, index, ...) ->
Overlap | None, decontaminate(recipe, items, ...) -> [SourceReport].
"""

import argparse
import hashlib
import io
import json
import os
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence

from ..constants import IMAGE_MARKER
from ..fileio import atomic_write
from ..rows import read_rows
from .converters.mcq import mcq_question_stem
from .recipes import Recipe, RecipeError, load_recipe
from ..processing.records import PROMPT_ROLES, record_images, record_turns

DEFAULT_MIN_WORDS = 6
DEFAULT_MIN_CONTAINED_WORDS = 10

ImageInput = str | bytes  # a file path, or the bytes of an image embedded in a release (parquet / hub rows)


class EvalItem(Protocol):
    """What decontamination reads of an eval item. Images: `images` (ImageRef-like objects with .path/.root/
    .data, the eval harness's items) or `image_paths` (file paths)."""

    task: str
    id: str
    question: str


@dataclass(frozen=True)
class JsonlEvalItem:
    task: str
    id: str
    question: str
    image_paths: list[str]


class NoEvalData(RuntimeError):
    """Nothing to check against: no eval items were found (or a named task has no data)."""


_NON_WORD_RE = re.compile(r"[^\w]+", re.UNICODE)


def normalize_question(text: str) -> str:
    """Lowercase, NFKC, drop <image> markers, punctuation and underscores to spaces, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text.replace(IMAGE_MARKER, " ")).lower()
    return " ".join(_NON_WORD_RE.sub(" ", text).replace("_", " ").split())


def word_ngrams(normalized: str, n: int) -> set[tuple[str, ...]]:
    words = normalized.split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def hash_image(image: str | os.PathLike | bytes, pixels: bool = False) -> str:
    """sha256 of an image file's bytes (or of given bytes); with pixels=True of its decoded RGB pixels + size."""
    if not pixels:
        if isinstance(image, bytes):
            return hashlib.sha256(image).hexdigest()
        digest = hashlib.sha256()
        with open(image, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    from PIL import Image

    with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
        rgb = opened.convert("RGB")
        return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def _image_key(image: str | os.PathLike | bytes, pixels: bool):
    """Cheap pre-filter key: file size (bytes mode) or image dimensions (pixel mode, header read only)."""
    if not pixels:
        return len(image) if isinstance(image, bytes) else os.path.getsize(image)
    from PIL import Image

    with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
        return opened.size


def eval_item_images(item: EvalItem) -> list[ImageInput | None]:
    """The item's images as paths or bytes; None for a path that leaves its root folder (never read)."""
    refs = getattr(item, "images", None)
    if refs is None:
        return [str(p) for p in getattr(item, "image_paths", ()) or ()]
    images: list[ImageInput | None] = []
    for ref in refs:
        if getattr(ref, "data", None) is not None:
            images.append(bytes(ref.data))
        elif ref.root is None:
            images.append(str(ref.path))
        else:
            root = Path(ref.root).resolve()
            path = (root / ref.path).resolve()
            images.append(str(path) if path.is_relative_to(root) else None)
    return images


# ------------------------------------------------------------------------------------------ eval items


@dataclass
class TaskCoverage:
    """How much of one eval task was checked. `found` False: the task's data was not found (`detail` says why)."""

    task: str
    source: str = ""
    found: bool = True
    detail: str = ""
    items: int = 0
    skipped_records: int = 0  # release records the task loader could not convert (not checked)
    questions: int = 0  # questions long enough to be matched by text (>= min_words words)
    images: int = 0  # images hashed
    missing_images: int = 0  # images named by an item but not found (not checked)


@dataclass
class EvalData:
    """Eval items to check and what each task contributed; `mode` is "jsonl" or "benchmarks"."""

    items: list[EvalItem]
    tasks: dict[str, TaskCoverage]
    mode: str
    location: str


def _jsonl_files(eval_data: Path) -> list[Path]:
    return [eval_data] if eval_data.is_file() else sorted(eval_data.glob("*.jsonl"))


def _read_jsonl_items(files: list[Path]) -> list[JsonlEvalItem]:
    items = []
    for path in files:
        for n, raw in enumerate(read_rows(path, strict=True), 1):
            missing = {"task", "id", "question"} - set(raw)
            if missing:
                raise ValueError(f"{path}: item {n} lacks {sorted(missing)}")
            images = [str(path.parent / p) for p in raw.get("images") or []]
            items.append(JsonlEvalItem(raw["task"], str(raw["id"]), raw["question"], images))
    return items


def _task_spec(tasks: Sequence[str] | str | None) -> str | None:
    """--tasks as given ("a,b", ["a", "b"], ["a,b"]) -> "a,b"; None or empty -> None (every task found)."""
    if tasks is None:
        return None
    if isinstance(tasks, str):
        tasks = [tasks]
    spec = ",".join(part.strip() for t in tasks for part in t.split(",") if part.strip())
    return spec or None


def collect_eval_items(eval_data: str | os.PathLike, tasks: Sequence[str] | str | None = None,
                       task_paths: dict[str, str] | None = None, task_dir: Path | None = None) -> EvalData:
    """Eval items of `tasks` ("all", a group such as "table4", names; None: every task whose data is found).

    From JSONL files in eval_data when there are any, else from the benchmark folders under eval_data. A task
    named explicitly (also through "all" or a group) whose data is absent is reported with found=False.
    """
    eval_data = Path(eval_data)
    spec = _task_spec(tasks)
    files = _jsonl_files(eval_data)
    if files:
        return _collect_jsonl(eval_data, files, spec, task_dir)
    return _collect_benchmarks(eval_data, spec, task_paths or {}, task_dir)


def _collect_jsonl(eval_data: Path, files: list[Path], spec: str | None, task_dir: Path | None) -> EvalData:
    items = _read_jsonl_items(files)
    wanted: list[str] | None = None
    if spec is not None and spec != "all":
        wanted = []
        for part in spec.split(","):
            if part.startswith("table") or part == "figure2":  # a paper group: the eval registry's task names
                from ..eval.tasks import TASK_DIR, parse_tasks

                wanted += parse_tasks(part, task_dir or TASK_DIR)
            else:
                wanted.append(part)  # JSONL files may hold tasks the registry does not define
        wanted = list(dict.fromkeys(wanted))
        items = [item for item in items if item.task in wanted]
    tasks: dict[str, TaskCoverage] = {}
    for item in items:
        tasks.setdefault(item.task, TaskCoverage(item.task, source=str(eval_data))).items += 1
    for name in wanted or ():
        if name not in tasks:
            tasks[name] = TaskCoverage(name, found=False, detail=f"no items of this task in {eval_data}")
    return EvalData(items, tasks, "jsonl", str(eval_data))


def _collect_benchmarks(eval_data: Path, spec: str | None, task_paths: dict[str, str],
                        task_dir: Path | None) -> EvalData:
    try:
        from ..eval.tasks import (
            TASK_DIR,
            MissingData,
            load_config,
            load_task,
            parse_tasks,
            task_names,
            widest_setting,
        )
    except ImportError as e:
        raise NoEvalData(f"{eval_data}: no *.jsonl eval items and the eval harness is unavailable ({e})") from e
    task_dir = task_dir or TASK_DIR
    explicit = spec is not None
    names = parse_tasks(spec, task_dir) if explicit else task_names(task_dir)
    items: list[EvalItem] = []
    tasks: dict[str, TaskCoverage] = {}
    for name in names:
        config = load_config(name, task_dir)
        folder = Path(task_paths[name]) if name in task_paths else eval_data / config.data_subdir
        if not folder.is_dir():  # local data only: the hub copy is never fetched for a leakage check
            if explicit:
                tasks[name] = TaskCoverage(name, source=str(folder), found=False,
                                           detail=f"data folder {folder} not found")
            continue
        try:
            # Every item a run may score (SLAKE's open questions, PubMedQA's 1,000), not only the paper's selection.
            loaded = load_task(config, path=folder, task_dir=task_dir, setting=widest_setting(config))
        except MissingData as err:
            tasks[name] = TaskCoverage(name, source=str(folder), found=False, detail=str(err))
            continue
        tasks[name] = TaskCoverage(name, source=loaded.source, items=len(loaded.items),
                                   skipped_records=sum(loaded.skipped.values()))
        items.extend(loaded.items)
    return EvalData(items, tasks, "benchmarks", str(eval_data))


def load_eval_items(eval_data: str | os.PathLike, tasks: Sequence[str] | str | None = None) -> list[EvalItem]:
    """The eval items of collect_eval_items (without the per-task coverage)."""
    return collect_eval_items(eval_data, tasks).items


# ------------------------------------------------------------------------------------------ the index


@dataclass
class EvalIndex:
    """Eval questions and image hashes, keyed for lookup; values are lists of "task/id".

    texts: normalised question -> items (exact match); contained: first `anchor` words -> [(question words,
    items)] for questions matched anywhere inside a prompt turn; ngrams: word N-gram -> items (--ngram);
    hashes: image hash -> items; image_keys: the pre-filter keys of the eval images.
    """

    texts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    contained: dict[tuple[str, ...], list[tuple[tuple[str, ...], str]]] = field(
        default_factory=lambda: defaultdict(list))
    anchor: int = DEFAULT_MIN_CONTAINED_WORDS
    ngrams: dict[tuple[str, ...], list[str]] = field(default_factory=lambda: defaultdict(list))
    hashes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    image_keys: set = field(default_factory=set)
    missing_images: int = 0
    questions_by_task: Counter = field(default_factory=Counter)
    images_by_task: Counter = field(default_factory=Counter)
    missing_images_by_task: Counter = field(default_factory=Counter)


def build_eval_index(items: Iterable[EvalItem], ngram: int = 0, min_words: int = DEFAULT_MIN_WORDS,
                     pixels: bool = False,
                     min_contained_words: int | None = DEFAULT_MIN_CONTAINED_WORDS) -> EvalIndex:
    """Index eval items for find_overlap. min_contained_words=None turns the containment match off."""
    if min_contained_words is not None and min_contained_words < 1:
        raise ValueError(f"min_contained_words must be >= 1 (or None), got {min_contained_words}")
    index = EvalIndex(anchor=min_contained_words or 0)
    for item in items:
        name = f"{item.task}/{item.id}"
        images = eval_item_images(item)
        question = normalize_question(mcq_question_stem(item.question))
        words = tuple(question.split())
        if len(words) >= min_words:
            index.questions_by_task[item.task] += 1
            index.texts[question].append(name)
            if min_contained_words is not None and not images and len(words) >= min_contained_words:
                index.contained[words[:min_contained_words]].append((words, name))
            if ngram:
                for gram in word_ngrams(question, ngram):
                    index.ngrams[gram].append(name)
        for image in images:
            if image is None or (isinstance(image, str) and not os.path.isfile(image)):
                index.missing_images += 1
                index.missing_images_by_task[item.task] += 1
                continue
            index.hashes[hash_image(image, pixels)].append(name)
            index.image_keys.add(_image_key(image, pixels))
            index.images_by_task[item.task] += 1
    return index


def record_questions(record: dict) -> list[str]:
    """Normalised questions of a record's prompt turns (MCQ option blocks removed)."""
    return [normalize_question(mcq_question_stem(turn["value"]))
            for turn in record_turns(record) if turn.get("from") in PROMPT_ROLES]


@dataclass(frozen=True)
class Overlap:
    record_id: str
    kind: str  # "text" | "image" | "text+image"
    eval_items: tuple[str, ...]


def _contained_hits(question: str, index: EvalIndex) -> set[str]:
    hits: set[str] = set()
    words = question.split()
    n = index.anchor
    for i in range(len(words) - n + 1):
        candidates = index.contained.get(tuple(words[i:i + n]))
        if candidates:
            for eval_words, name in candidates:
                if tuple(words[i:i + len(eval_words)]) == eval_words:
                    hits.add(name)
    return hits


def find_overlap(record: dict, index: EvalIndex, image_folder: str | None, ngram: int = 0,
                 pixels: bool = False) -> Overlap | None:
    text_hits: set[str] = set()
    for question in record_questions(record):
        text_hits.update(index.texts.get(question, ()))
        if index.contained:
            text_hits |= _contained_hits(question, index)
        if ngram:
            for gram in word_ngrams(question, ngram):
                text_hits.update(index.ngrams.get(gram, ()))
    image_hits: set[str] = set()
    if index.hashes and image_folder:
        for relative in record_images(record):
            path = os.path.join(image_folder, relative)
            if not os.path.isfile(path) or _image_key(path, pixels) not in index.image_keys:
                continue
            image_hits.update(index.hashes.get(hash_image(path, pixels), ()))
    if not text_hits and not image_hits:
        return None
    kind = "text+image" if text_hits and image_hits else ("text" if text_hits else "image")
    return Overlap(str(record.get("id")), kind, tuple(sorted(text_hits | image_hits)))


def iter_manifest(path: str) -> Iterator[tuple[str, dict]]:
    """(raw line, record) pairs of a JSONL manifest, or (json, record) of a JSON list."""
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield line.rstrip("\n"), json.loads(line)
    elif path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            for record in json.load(f):
                yield json.dumps(record, ensure_ascii=False), record
    else:
        raise ValueError(f"{path}: decontamination reads .jsonl or .json manifests")


# ------------------------------------------------------------------------------------------ the scan


@dataclass
class SourceReport:
    source: str
    records: int = 0
    text: int = 0
    image: int = 0
    both: int = 0
    missing: bool = False
    examples: list[Overlap] = field(default_factory=list)
    by_task: Counter = field(default_factory=Counter)  # eval task -> overlapping records of this source

    @property
    def overlapping(self) -> int:
        return self.text + self.image + self.both


def decontaminate(recipe: Recipe, items: Sequence[EvalItem], ngram: int = 0, min_words: int = DEFAULT_MIN_WORDS,
                  pixels: bool = False, output: str | os.PathLike | None = None,
                  min_contained_words: int | None = DEFAULT_MIN_CONTAINED_WORDS,
                  index: EvalIndex | None = None) -> list[SourceReport]:
    """Scan every manifest of the recipe; with `output`, write filtered manifests there (atomically)."""
    if index is None:
        index = build_eval_index(items, ngram, min_words, pixels, min_contained_words)
    reports = []
    for entry in recipe.datasets:
        report = SourceReport(entry.name)
        reports.append(report)
        if not os.path.isfile(entry.json_path):
            report.missing = True
            continue
        if output is None:
            _scan(entry, index, ngram, pixels, report, None)
        else:
            with atomic_write(Path(output) / Path(entry.json_path).name) as out:
                _scan(entry, index, ngram, pixels, report, out)
    if output is not None:
        with atomic_write(Path(output) / "decontamination_report.json") as f:
            json.dump([_report_json(r) for r in reports], f, indent=1)
    return reports


def _scan(entry, index: EvalIndex, ngram: int, pixels: bool, report: SourceReport, out) -> None:
    for line, record in iter_manifest(entry.json_path):
        report.records += 1
        overlap = find_overlap(record, index, entry.image_folder, ngram, pixels)
        if overlap is None:
            if out is not None:
                out.write(line + "\n")
            continue
        if overlap.kind == "text":
            report.text += 1
        elif overlap.kind == "image":
            report.image += 1
        else:
            report.both += 1
        report.by_task.update({name.partition("/")[0] for name in overlap.eval_items})
        if len(report.examples) < 20:
            report.examples.append(overlap)


def _report_json(r: SourceReport) -> dict:
    return {"source": r.source, "records": r.records, "text": r.text, "image": r.image, "text+image": r.both,
            "missing": r.missing, "by_task": dict(sorted(r.by_task.items())),
            "examples": [o.__dict__ for o in r.examples]}


# ------------------------------------------------------------------------------------------ reports


def fill_coverage(data: EvalData, index: EvalIndex) -> None:
    """Copy the index's per-task question / image counts into the task coverage."""
    for name, task in data.tasks.items():
        task.questions = index.questions_by_task[name]
        task.images = index.images_by_task[name]
        task.missing_images = index.missing_images_by_task[name]


def format_coverage(data: EvalData) -> str:
    """Per-task table of what was checked, then the tasks that were not found."""
    found = [t for t in data.tasks.values() if t.found]
    absent = [t for t in data.tasks.values() if not t.found]
    lines = []
    if found:
        width = max(len("task"), *(len(t.task) for t in found))
        lines.append(f"{'task':<{width}}  {'items':>8}  {'questions':>9}  {'images':>7}  {'not checked':>11}  source")
        for t in found:
            unchecked = t.skipped_records + t.missing_images
            lines.append(f"{t.task:<{width}}  {t.items:>8,}  {t.questions:>9,}  {t.images:>7,}  {unchecked:>11,}  "
                         f"{t.source}")
    for t in absent:
        lines.append(f"not found: {t.task}: {t.detail}")
    total = sum(t.items for t in found)
    lines.append(f"{total:,} eval items checked from {len(found)} task(s)"
                 + (f"; {len(absent)} task(s) not found" if absent else ""))
    return "\n".join(lines)


def format_reports(reports: Sequence[SourceReport]) -> str:
    width = max(len("source"), *(len(r.source) for r in reports))
    lines = [f"{'source':<{width}}  {'records':>10}  {'text':>7}  {'image':>7}  {'both':>7}  {'overlap':>8}"]
    for r in reports:
        if r.missing:
            lines.append(f"{r.source:<{width}}  {'missing':>10}")
            continue
        lines.append(f"{r.source:<{width}}  {r.records:>10,}  {r.text:>7,}  {r.image:>7,}  {r.both:>7,}  "
                     f"{r.overlapping:>8,}")
        for o in r.examples[:3]:
            lines.append(f"    {o.record_id} ({o.kind}) ~ {', '.join(o.eval_items[:3])}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llava_medgpt.data.decontaminate",
        description="Report (and drop) training records that overlap eval data. Exit status: 0 no overlap "
                    "(or overlaps dropped), 1 overlaps found, 2 nothing checked / a named task without data.")
    parser.add_argument("recipe", help="data recipe YAML whose manifests are checked")
    parser.add_argument("--eval-data", required=True, help="folder (or file) of eval items *.jsonl, or the folder "
                        "holding each benchmark in its release layout (the eval CLI's --data-dir)")
    parser.add_argument("--tasks", nargs="*", help="eval tasks as in the eval CLI: names (comma- or space-"
                        "separated), 'all', or table4 / table5 / table6 / figure2 (default: every task whose data "
                        "is found under --eval-data)")
    parser.add_argument("--task-path", action="append", default=[], metavar="NAME=PATH",
                        help="data folder for one task (MIMIC-CXR, patient-trial collections)")
    parser.add_argument("--ngram", type=int, default=0, help="also flag shared word N-grams (0 = off)")
    parser.add_argument("--min-words", type=int, default=DEFAULT_MIN_WORDS,
                        help="eval questions shorter than this are matched by image only")
    parser.add_argument("--min-contained-words", type=int, default=DEFAULT_MIN_CONTAINED_WORDS,
                        help="questions of text-only eval items with at least this many words are also found "
                             "inside longer prompts (0 = exact matches only)")
    parser.add_argument("--pixel-hash", action="store_true", help="hash decoded pixels instead of file bytes")
    parser.add_argument("--drop", action="store_true", help="write manifests without the overlapping records")
    parser.add_argument("--output", help="folder for the filtered manifests (required with --drop)")
    parser.add_argument("--allow-unset", action="store_true", help="tolerate unset ${VARS} in the recipe")
    parser.add_argument("--allow-missing", action="store_true",
                        help="check the named tasks whose data is found instead of failing on the others")
    parser.add_argument("--allow-empty", action="store_true",
                        help="exit 0 even when no eval item was checked")
    args = parser.parse_args(argv)
    if args.drop and not args.output:
        parser.error("--drop needs --output")

    try:
        recipe = load_recipe(args.recipe, strict=not args.allow_unset)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from ..eval.tasks import parse_task_paths  # light: the registry, not the model code

    try:
        data = collect_eval_items(args.eval_data, args.tasks, parse_task_paths(args.task_path))
    except (KeyError, NoEvalData) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    index = build_eval_index(data.items, args.ngram, args.min_words, args.pixel_hash,
                             args.min_contained_words or None)
    fill_coverage(data, index)
    where = "eval item files" if data.mode == "jsonl" else "benchmark folders"
    which = f"tasks {_task_spec(args.tasks)}" if _task_spec(args.tasks) else "every task whose data is found"
    print(f"eval data: {where} in {data.location} ({which})")
    print(format_coverage(data))
    absent = [t.task for t in data.tasks.values() if not t.found]
    if absent and not args.allow_missing:
        print(f"error: no eval data for {', '.join(absent)} under {data.location}; give its folder with "
              "--task-path NAME=PATH, or pass --allow-missing to check only the tasks found", file=sys.stderr)
        return 2
    if not data.items and not args.allow_empty:
        print(f"error: 0 eval items checked: nothing under {data.location} is eval data of a known task "
              f"(expected *.jsonl eval items or benchmark folders such as MedQA/, Slake1.0/); pass --allow-empty "
              "to accept an empty check", file=sys.stderr)
        return 2

    reports = decontaminate(recipe, data.items, args.ngram, args.min_words, args.pixel_hash,
                            args.output if args.drop else None, index=index)
    print(f"\ntraining records of {args.recipe}:")
    print(format_reports(reports))
    overlapping = sum(r.overlapping for r in reports)
    by_task = sum((r.by_task for r in reports), Counter())
    if not overlapping:
        print(f"\nresult: no training record overlaps the {len(data.items):,} eval items checked")
        return 0
    per_task = ", ".join(f"{task} {n:,}" for task, n in sorted(by_task.items()))
    if args.drop:
        print(f"\nresult: {overlapping:,} overlapping training records dropped (by eval task: {per_task}); "
              f"clean manifests in {args.output}")
        return 0
    print(f"\nresult: {overlapping:,} training records overlap eval items (by eval task: {per_task}); "
          "rerun with --drop --output DIR to write manifests without them")
    return 1


if __name__ == "__main__":
    sys.exit(main())
