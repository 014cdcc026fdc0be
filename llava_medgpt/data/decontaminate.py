"""Find (and optionally drop) training records that overlap the evaluation benchmarks.

Run as: python -m llava_medgpt.data.decontaminate RECIPE --eval-data DIR [--tasks ...] [--drop --output DIR]

A training record overlaps an eval item when
  * image: one of its images has the same content hash as one of the eval item's images. The hash is
    sha256 of the file bytes (default), or with --pixel-hash sha256 of the decoded RGB pixels plus the size
    (catches the same picture re-saved with other metadata or a lossless container change; neither catches a
    re-compressed or resized copy). Only files whose size (bytes mode) or dimensions (pixel mode) equal some
    eval image's are hashed, so the training set is read only where a match is possible.
  * text: a prompt turn's normalised question (lowercase, punctuation to spaces, whitespace collapsed,
    <image> markers and the shared MCQ option block removed) equals an eval question's normalised text, or,
    with --ngram N, shares a word N-gram with it. Eval questions shorter than --min-words words (default 6:
    generic VQA questions like "is this an mri") are matched by image only, because the same short question
    on another image is not a leak.
Eval items come from JSONL files in --eval-data ({"task", "id", "question", "images"}, images relative to
the file's folder) or, when there are none, from llava_medgpt.eval.tasks.iter_eval_items(--tasks, DIR).
With --drop, manifests without the overlapping records are written to --output (same file names), with
decontamination_report.json beside them.
"""

import argparse
import hashlib
import json
import os
import re
import sys
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence

from ..constants import IMAGE_MARKER
from .converters.mcq import mcq_question_stem
from .recipes import Recipe, load_recipe
from .records import record_images

DEFAULT_MIN_WORDS = 6


class EvalItem(Protocol):
    task: str
    id: str
    question: str
    image_paths: list[str]


@dataclass(frozen=True)
class JsonlEvalItem:
    task: str
    id: str
    question: str
    image_paths: list[str]


_NON_WORD_RE = re.compile(r"[^\w]+", re.UNICODE)


def normalize_question(text: str) -> str:
    """Lowercase, NFKC, drop <image> markers, punctuation and underscores to spaces, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text.replace(IMAGE_MARKER, " ")).lower()
    return " ".join(_NON_WORD_RE.sub(" ", text).replace("_", " ").split())


def word_ngrams(normalized: str, n: int) -> set[tuple[str, ...]]:
    words = normalized.split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def hash_image(path: str | os.PathLike, pixels: bool = False) -> str:
    if not pixels:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def _image_key(path: str | os.PathLike, pixels: bool):
    """Cheap pre-filter key: file size (bytes mode) or image dimensions (pixel mode, header read only)."""
    if not pixels:
        return os.path.getsize(path)
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def load_eval_items(eval_data: str | os.PathLike, tasks: Sequence[str] | None = None) -> list[EvalItem]:
    eval_data = Path(eval_data)
    files = [eval_data] if eval_data.is_file() else sorted(eval_data.glob("*.jsonl"))
    if files:
        items = []
        for path in files:
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    raw = json.loads(line)
                    missing = {"task", "id", "question"} - set(raw)
                    if missing:
                        raise ValueError(f"{path}:{n}: eval item lacks {sorted(missing)}")
                    if tasks and raw["task"] not in tasks:
                        continue
                    images = [str(path.parent / p) for p in raw.get("images") or []]
                    items.append(JsonlEvalItem(raw["task"], str(raw["id"]), raw["question"], images))
        return items
    try:
        from ..eval.tasks import iter_eval_items
    except ImportError as e:
        raise RuntimeError(f"{eval_data}: no *.jsonl eval items and the eval harness is unavailable ({e})") from e
    return list(iter_eval_items(list(tasks or []), str(eval_data)))


@dataclass
class EvalIndex:
    """Eval questions and image hashes, keyed for lookup: value = list of "task/id"."""

    texts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    ngrams: dict[tuple[str, ...], list[str]] = field(default_factory=lambda: defaultdict(list))
    hashes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    image_keys: set = field(default_factory=set)
    missing_images: int = 0


def build_eval_index(items: Iterable[EvalItem], ngram: int = 0, min_words: int = DEFAULT_MIN_WORDS,
                     pixels: bool = False) -> EvalIndex:
    index = EvalIndex()
    for item in items:
        name = f"{item.task}/{item.id}"
        question = normalize_question(mcq_question_stem(item.question))
        if len(question.split()) >= min_words:
            index.texts[question].append(name)
            if ngram:
                for gram in word_ngrams(question, ngram):
                    index.ngrams[gram].append(name)
        for path in item.image_paths:
            if not os.path.isfile(path):
                index.missing_images += 1
                continue
            index.hashes[hash_image(path, pixels)].append(name)
            index.image_keys.add(_image_key(path, pixels))
    return index


def record_questions(record: dict) -> list[str]:
    """Normalised questions of a record's prompt turns (MCQ option blocks removed)."""
    return [normalize_question(mcq_question_stem(turn["value"]))
            for turn in record.get("conversations", []) if turn.get("from") in ("human", "system")]


@dataclass(frozen=True)
class Overlap:
    record_id: str
    kind: str  # "text" | "image" | "text+image"
    eval_items: tuple[str, ...]


def find_overlap(record: dict, index: EvalIndex, image_folder: str | None, ngram: int = 0,
                 pixels: bool = False) -> Overlap | None:
    text_hits: set[str] = set()
    for question in record_questions(record):
        text_hits.update(index.texts.get(question, ()))
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


@dataclass
class SourceReport:
    source: str
    records: int = 0
    text: int = 0
    image: int = 0
    both: int = 0
    missing: bool = False
    examples: list[Overlap] = field(default_factory=list)

    @property
    def overlapping(self) -> int:
        return self.text + self.image + self.both


def decontaminate(recipe: Recipe, items: Sequence[EvalItem], ngram: int = 0, min_words: int = DEFAULT_MIN_WORDS,
                  pixels: bool = False, output: str | os.PathLike | None = None) -> list[SourceReport]:
    """Scan every manifest of the recipe; with `output`, write filtered manifests there."""
    index = build_eval_index(items, ngram, min_words, pixels)
    reports = []
    if output is not None:
        Path(output).mkdir(parents=True, exist_ok=True)
    for entry in recipe.datasets:
        report = SourceReport(entry.name)
        reports.append(report)
        if not os.path.isfile(entry.json_path):
            report.missing = True
            continue
        out = open(Path(output) / Path(entry.json_path).name, "w", encoding="utf-8") if output is not None else None
        try:
            for line, record in iter_manifest(entry.json_path):
                report.records += 1
                overlap = find_overlap(record, index, entry.image_folder, ngram, pixels)
                if overlap is None:
                    if out:
                        out.write(line + "\n")
                    continue
                if overlap.kind == "text":
                    report.text += 1
                elif overlap.kind == "image":
                    report.image += 1
                else:
                    report.both += 1
                if len(report.examples) < 20:
                    report.examples.append(overlap)
        finally:
            if out:
                out.close()
    if output is not None:
        with open(Path(output) / "decontamination_report.json", "w", encoding="utf-8") as f:
            json.dump([_report_json(r) for r in reports], f, indent=1)
    return reports


def _report_json(r: SourceReport) -> dict:
    return {"source": r.source, "records": r.records, "text": r.text, "image": r.image, "text+image": r.both,
            "missing": r.missing, "examples": [o.__dict__ for o in r.examples]}


def format_reports(reports: Sequence[SourceReport]) -> str:
    width = max(len(r.source) for r in reports)
    lines = [f"{'source':<{width}}  {'records':>10}  {'text':>7}  {'image':>7}  {'both':>7}  {'dropped':>8}"]
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
    parser = argparse.ArgumentParser(description="Report (and drop) training records that overlap eval data.")
    parser.add_argument("recipe", help="data recipe YAML whose manifests are checked")
    parser.add_argument("--eval-data", required=True, help="folder (or file) of eval items *.jsonl, or the eval "
                        "harness data folder")
    parser.add_argument("--tasks", nargs="*", help="eval task names (default: all found)")
    parser.add_argument("--ngram", type=int, default=0, help="also flag shared word N-grams (0 = exact match only)")
    parser.add_argument("--min-words", type=int, default=DEFAULT_MIN_WORDS,
                        help="eval questions shorter than this are matched by image only")
    parser.add_argument("--pixel-hash", action="store_true", help="hash decoded pixels instead of file bytes")
    parser.add_argument("--drop", action="store_true", help="write manifests without the overlapping records")
    parser.add_argument("--output", help="folder for the filtered manifests (required with --drop)")
    parser.add_argument("--allow-unset", action="store_true", help="tolerate unset ${VARS} in the recipe")
    args = parser.parse_args(argv)
    if args.drop and not args.output:
        parser.error("--drop needs --output")
    recipe = load_recipe(args.recipe, strict=not args.allow_unset)
    items = load_eval_items(args.eval_data, args.tasks)
    reports = decontaminate(recipe, items, args.ngram, args.min_words, args.pixel_hash,
                            args.output if args.drop else None)
    print(f"{len(items)} eval items checked against {args.recipe}")
    print(format_reports(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
