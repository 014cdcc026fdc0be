"""Run a curation config over converted manifests: streaming, parallel, resumable, deterministic.

    report = curate(sources, load_config(path), "out/", backend=None, workers=8)

Each source's manifest (JSONL of training records) is read front to back in chunks of `chunk_size` records.
A chunk's image work (decoding, image filters, fingerprints) is spread over `workers` processes, one chunk
ahead of the main process, which then applies the steps in config order: image verdicts from the workers,
ordered steps (duplicates) record by record, batch steps (the LLM judge) in batches. Memory stays at two chunks
plus the duplicate indexes.

Outputs in the output folder:
    <name>.jsonl             kept records, each line byte-identical to its input line, in input order
    <name>.removed.tsv       line, id, step, reason, score, detail of every removed record
    curate_config.yaml       the resolved config (every threshold used)
    curation_report.json/.md per source and step: records in/out, reasons with counts
    contact_sheets/<source>/<step>--<reason>.png   the first removed images of each reason
    recipe.yaml              (recipe input) the recipe with json_path pointing at the kept manifests

Resume: after every chunk the outputs are flushed and fsync'ed and `.curate_state/checkpoint.json` is replaced
atomically with the input offset, the output lengths and the counters. A killed run, restarted with the same
command, truncates the outputs to the checkpoint, rebuilds the duplicate indexes from their logs and goes on;
since chunks, batches and every step are deterministic, the outputs are byte-identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ...processing.records import RecordError, record_images, validate_record
from .base import RecordContext, Step, Verdict
from .config import CurateConfig, dump_config
from .views import ImageView

STATE_DIR = ".curate_state"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class SourceSpec:
    """One manifest to curate: its recipe name, the JSONL path, its image folder and the output file name."""

    name: str
    manifest: str
    image_folder: str | None
    output_name: str


def sources_from_recipe(recipe, names: Sequence[str] | None = None) -> list[SourceSpec]:
    entries = [e for e in recipe.datasets if not names or e.name in names]
    missing = sorted(set(names or ()) - {e.name for e in entries})
    if missing:
        raise ValueError(f"{recipe.path}: no datasets named {missing}")
    return [SourceSpec(e.name, e.json_path, e.image_folder, Path(e.json_path).name) for e in entries]


# ---------------------------------------------------------------------------------------------- worker side


def analyze_record(steps: Sequence[tuple[Step, Any]], config: CurateConfig, record: dict, source: str,
                   image_folder: str | None) -> tuple[Verdict | None, dict[int, Any]]:
    """Decode the record's images once, run its image steps (to the first rejection) and fingerprints.

    Returns (a read error verdict or None, {step index: image Verdict or ordered-step fingerprint}).
    """
    from ...processing.image_io import ImageLoadError, load_image, resolve_image_path
    from .base import reject

    ctx = RecordContext(record, source, image_folder)
    applicable = [(i, step) for i, (step, cfg) in enumerate(steps) if cfg.applies_to(source)]
    views: list[ImageView] = []
    if any(step.kind in ("image", "ordered") and step.needs_images for _, step in applicable):
        try:
            for relative in record_images(record):
                if image_folder is None:
                    raise ImageLoadError(relative, "the source has no image folder")
                path = resolve_image_path(image_folder, relative)
                views.append(ImageView(load_image(path), relative, config.analysis_max_side, config.ocr, str(path)))
        except ImageLoadError as e:
            return reject("image_unreadable", 0.0, str(e)), {}
    out: dict[int, Any] = {}
    for i, step in applicable:
        if step.kind == "image":
            if not views:
                continue  # text-only record: nothing to look at
            verdict = step.check(views, ctx)
            out[i] = verdict
            if not verdict.keep:
                break
        elif step.kind == "ordered":
            out[i] = step.fingerprint(views, ctx) if step.needs_images else None
    return None, out


_WORKER: dict[str, Any] = {}


def _init_worker(config_text: str) -> None:
    import yaml

    from .config import parse_config

    config = parse_config(yaml.safe_load(config_text))
    _WORKER["config"] = config
    _WORKER["steps"] = [(cfg.build(), cfg) for cfg in config.steps]


def _analyze_task(task: tuple[dict, str, str | None]):
    return analyze_record(_WORKER["steps"], _WORKER["config"], *task)


# ---------------------------------------------------------------------------------------------- state


@dataclass
class StepCounts:
    step: str
    records_in: int = 0
    records_out: int = 0
    reasons: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {"step": self.step, "in": self.records_in, "out": self.records_out,
                "reasons": dict(sorted(self.reasons.items()))}

    @classmethod
    def from_dict(cls, d: dict) -> "StepCounts":
        return cls(d["step"], d["in"], d["out"], Counter(d["reasons"]))


@dataclass
class SourceCounts:
    """Funnel of one source: "read" (JSON, schema, images) then each step in config order."""

    name: str
    records: int = 0
    kept: int = 0
    steps: list[StepCounts] = field(default_factory=list)
    samples: dict[str, list[dict]] = field(default_factory=dict)  # "step/reason" -> first removed records

    def to_dict(self) -> dict:
        return {"name": self.name, "records": self.records, "kept": self.kept,
                "steps": [s.to_dict() for s in self.steps], "samples": self.samples}

    @classmethod
    def from_dict(cls, d: dict) -> "SourceCounts":
        return cls(d["name"], d["records"], d["kept"], [StepCounts.from_dict(s) for s in d["steps"]], d["samples"])


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tsv_field(text: str) -> str:
    return re.sub(r"[\t\r\n]+", " ", text)


def read_chunks(path: str, offset: int, line_no: int, chunk_size: int) -> Iterator[tuple[list, int, int]]:
    """(chunk of (line number, raw line without its newline), offset after it, last line number) from `offset`."""
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = []
        for raw in f:
            line_no += 1
            offset += len(raw)
            if raw.strip():
                chunk.append((line_no, raw.rstrip(b"\n")))
            if len(chunk) == chunk_size:
                yield chunk, offset, line_no
                chunk = []
        if chunk:
            yield chunk, offset, line_no


@dataclass
class _Item:
    line_no: int
    raw: bytes
    record: dict | None
    ctx: RecordContext | None
    analysis: dict[int, Any] = field(default_factory=dict)
    removed: tuple[str, Verdict] | None = None
    record_id: str = ""


# ---------------------------------------------------------------------------------------------- the run


class Curator:
    """One run over several sources into one output folder (see the module docstring)."""

    def __init__(self, sources: Sequence[SourceSpec], config: CurateConfig, output: str | os.PathLike,
                 backend=None, workers: int = 1, progress: bool = True, log: Callable[[str], None] = print):
        names = [s.output_name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"two sources write the same output file: {names}")
        self.sources = list(sources)
        self.config = config
        self.config_text = dump_config(config)
        self.output = Path(output)
        self.state = self.output / STATE_DIR
        self.backend = backend
        self.workers = max(1, workers)
        self.progress = progress
        self.log = log
        self.steps = [(cfg.build(), cfg) for cfg in config.steps]

    # -- checkpoint

    def _inputs(self) -> list[dict]:
        out = []
        for s in self.sources:
            if not os.path.isfile(s.manifest):
                raise FileNotFoundError(f"source {s.name!r}: manifest {s.manifest} not found")
            if not s.manifest.endswith(".jsonl"):
                raise ValueError(f"source {s.name!r}: curation reads .jsonl manifests, got {s.manifest}")
            out.append({"name": s.name, "manifest": os.path.abspath(s.manifest), "size": os.path.getsize(s.manifest)})
        return out

    def _load_checkpoint(self, inputs: list[dict]) -> dict | None:
        path = self.state / "checkpoint.json"
        if not path.is_file():
            return None
        checkpoint = json.loads(path.read_text(encoding="utf-8"))
        saved = (self.output / "curate_config.yaml").read_text(encoding="utf-8")
        if checkpoint.get("version") != CHECKPOINT_VERSION or saved != self.config_text:
            raise ValueError(f"{self.output} holds a run with another config (curate_config.yaml); use a new "
                             "--output or the same config")
        if checkpoint["inputs"] != inputs:
            raise ValueError(f"{self.output} holds a run over other inputs: {checkpoint['inputs']}")
        return checkpoint

    def _save_checkpoint(self, checkpoint: dict) -> None:
        _atomic_write(self.state / "checkpoint.json", json.dumps(checkpoint, sort_keys=True).encode())

    # -- main

    def run(self) -> dict:
        inputs = self._inputs()
        self.output.mkdir(parents=True, exist_ok=True)
        checkpoint = self._load_checkpoint(inputs)
        if checkpoint is not None and checkpoint["complete"]:
            self.log(f"{self.output}: already complete")
            return json.loads((self.output / "curation_report.json").read_text(encoding="utf-8"))
        if checkpoint is None:
            if self.state.exists():
                shutil.rmtree(self.state)
            self.state.mkdir(parents=True)
            _atomic_write(self.output / "curate_config.yaml", self.config_text.encode())
            checkpoint = {"version": CHECKPOINT_VERSION, "inputs": inputs, "source_index": 0, "offset": 0,
                          "line_no": 0, "files": {}, "counts": [], "complete": False}
        else:
            self.log(f"{self.output}: resuming {inputs[checkpoint['source_index']]['name']} "
                     f"after line {checkpoint['line_no']}")
        for step, _ in self.steps:
            if step.kind == "ordered":
                step.setup()
            elif step.kind == "batch":
                step.bind(self.backend)
        logs = self._open_logs(checkpoint)
        pool = None
        if self.workers > 1:
            pool = multiprocessing.get_context("spawn").Pool(self.workers, _init_worker, (self.config_text,))
        try:
            for index in range(checkpoint["source_index"], len(self.sources)):
                self._run_source(index, checkpoint, logs, pool)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
            for f in logs.values():
                f.close()
        counts = [SourceCounts.from_dict(d) for d in checkpoint["counts"]]
        from .report import write_report

        report = write_report(self.output, self.sources, counts, self.config, self.config_text)
        checkpoint["complete"] = True
        self._save_checkpoint(checkpoint)
        return report

    def _open_logs(self, checkpoint: dict) -> dict[int, Any]:
        """Append-only logs of the ordered steps, truncated to the checkpoint and replayed into the steps."""
        logs = {}
        for i, (step, _) in enumerate(self.steps):
            if step.kind != "ordered":
                continue
            path = self.state / f"{i}-{step.name}.log"
            length = checkpoint["files"].get(path.name, 0)
            with open(path, "a+b") as f:
                f.truncate(length)
                f.seek(0)
                for line in f:
                    step.replay(line.decode("utf-8").rstrip("\n"))
            logs[i] = open(path, "ab")
        return logs

    def _run_source(self, index: int, checkpoint: dict, logs: dict, pool) -> None:
        source = self.sources[index]
        if checkpoint["source_index"] != index:  # a new source starts
            checkpoint.update(source_index=index, offset=0, line_no=0)
        if len(checkpoint["counts"]) <= index:
            checkpoint["counts"].append(SourceCounts(
                source.name, steps=[StepCounts("read")] + [StepCounts(cfg.step) for cfg in self.config.steps]
            ).to_dict())
        counts = SourceCounts.from_dict(checkpoint["counts"][index])
        kept_part = self.state / f"{source.output_name}.part"
        removed_part = self.state / f"{source.output_name}.removed.tsv.part"
        files = {}
        for path in (kept_part, removed_part):
            f = open(path, "a+b")
            f.truncate(checkpoint["files"].get(path.name, 0))
            f.seek(0, os.SEEK_END)
            files[path.name] = f
        bar = None
        if self.progress:
            from tqdm import tqdm

            from ..recipes import count_records

            bar = tqdm(total=count_records(source.manifest), initial=counts.records, unit="rec", desc=source.name,
                       dynamic_ncols=True)
        try:
            chunks = read_chunks(source.manifest, checkpoint["offset"], checkpoint["line_no"], self.config.chunk_size)
            upcoming = self._prepare(next(chunks, None), source, pool)
            while upcoming is not None:
                current = upcoming
                upcoming = self._prepare(next(chunks, None), source, pool)  # workers run one chunk ahead
                (chunk, offset, line_no), items, pending = current
                self._apply(items, pending, source, counts, logs)
                self._write(items, files[kept_part.name], files[removed_part.name], counts, source)
                for f in list(files.values()) + list(logs.values()):
                    f.flush()
                    os.fsync(f.fileno())
                checkpoint["offset"], checkpoint["line_no"] = offset, line_no
                checkpoint["files"] = {name: f.tell() for name, f in files.items()}
                checkpoint["files"].update({self.state.joinpath(f"{i}-{s.name}.log").name: logs[i].tell()
                                            for i, (s, _) in enumerate(self.steps) if i in logs})
                checkpoint["counts"][index] = counts.to_dict()
                self._save_checkpoint(checkpoint)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
            for f in files.values():
                f.close()
        os.replace(kept_part, self.output / source.output_name)
        os.replace(removed_part, self.output / f"{source.output_name}.removed.tsv")
        _fsync_dir(self.output)
        checkpoint.update(source_index=index + 1, offset=0, line_no=0)
        checkpoint["files"] = {k: v for k, v in checkpoint["files"].items() if k.endswith(".log")}
        self._save_checkpoint(checkpoint)

    def _prepare(self, chunk, source: SourceSpec, pool):
        """Parse and validate a chunk's lines and start its image work (in the pool, or later in-process)."""
        if chunk is None:
            return None
        items = []
        for line_no, raw in chunk[0]:
            try:
                record = json.loads(raw)
                validate_record(record)
                items.append(_Item(line_no, raw, record, RecordContext(record, source.name, source.image_folder),
                                   record_id=record["id"]))
            except json.JSONDecodeError as e:
                items.append(_Item(line_no, raw, None, None, removed=("read", Verdict(False, "invalid_json", 0.0,
                                                                                      f"line {line_no}: {e.msg}"))))
            except RecordError as e:
                items.append(_Item(line_no, raw, None, None, removed=("read", Verdict(False, "invalid_record", 0.0,
                                                                                      str(e))),
                                   record_id="" if e.record_id is None else str(e.record_id)))
        tasks = [(it.record, source.name, source.image_folder) for it in items if it.record is not None]
        pending = None
        if pool is not None and tasks:
            pending = pool.map_async(_analyze_task, tasks, chunksize=max(1, len(tasks) // (4 * self.workers)))
        return chunk, items, pending

    def _apply(self, items: list[_Item], pending, source: SourceSpec, counts: SourceCounts, logs: dict) -> None:
        valid = [it for it in items if it.record is not None]
        if pending is not None:
            analyses = pending.get()
        else:
            analyses = [analyze_record(self.steps, self.config, it.record, source.name, source.image_folder)
                        for it in valid]
        read = counts.steps[0]
        read.records_in += len(items)
        for it, (error, analysis) in zip(valid, analyses):
            it.analysis = analysis
            if error is not None:
                it.removed = ("read", error)
        for it in items:
            if it.removed is not None:
                read.reasons[it.removed[1].reason] += 1
        read.records_out += sum(it.removed is None for it in items)
        for i, (step, cfg) in enumerate(self.steps):
            alive = [it for it in items if it.removed is None and cfg.applies_to(source.name)]
            tally = counts.steps[i + 1]
            tally.records_in += len(alive)
            if step.kind == "image":
                verdicts = [it.analysis.get(i, Verdict(True)) for it in alive]
            elif step.kind == "ordered":
                verdicts = []
                for it in alive:
                    verdict, log_line = step.check(it.analysis.get(i), it.ctx)
                    if log_line is not None:
                        logs[i].write(log_line.encode("utf-8") + b"\n")
                    verdicts.append(verdict)
            else:
                verdicts = step.check_batch([it.ctx for it in alive]) if alive else []
            for it, verdict in zip(alive, verdicts):
                if not verdict.keep:
                    it.removed = (step.name, verdict)
                    tally.reasons[verdict.reason] += 1
            tally.records_out += sum(it.removed is None for it in alive)

    def _write(self, items: list[_Item], kept, removed, counts: SourceCounts, source: SourceSpec) -> None:
        for it in items:
            counts.records += 1
            if it.removed is None:
                counts.kept += 1
                kept.write(it.raw + b"\n")
                continue
            step, verdict = it.removed
            record_id = it.record_id
            removed.write(f"{it.line_no}\t{_tsv_field(record_id)}\t{step}\t{verdict.reason}\t{verdict.score:.4g}\t"
                          f"{_tsv_field(verdict.detail)}\n".encode("utf-8"))
            key = f"{step}/{verdict.reason}"
            samples = counts.samples.setdefault(key, [])
            if len(samples) < self.config.contact_sheet_images:
                images = list(record_images(it.record)) if it.record is not None else []
                samples.append({"id": record_id, "line": it.line_no, "images": images, "score": verdict.score})


def curate(sources: Sequence[SourceSpec], config: CurateConfig, output: str | os.PathLike, backend=None,
           workers: int = 1, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Curate `sources` into `output` (resuming a run there); returns the report (curation_report.json)."""
    return Curator(sources, config, output, backend, workers, progress, log).run()


