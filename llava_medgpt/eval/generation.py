"""Batched greedy generation with per-example JSONL predictions that a restarted run resumes from.

Batches are a fixed partition of the task's items (ordered by image count and prompt length, then id), so
a resumed run generates exactly the batches an uninterrupted run would have: same padding, same outputs.

A prediction file is resumed only under the GenerationSettings it was written with (its <task>.meta.json):
everything that changes outputs, i.e. the checkpoint's content fingerprint and normalised path, the backend, dtype
and attention implementation, the decoding settings and the task definition. An item whose images cannot be read
is skipped: a {"id", "skipped": reason, "detail"} line records it (a resumed run skips it the same way) and the
task counts it. A last line cut by a kill is repaired; any other bad line stops the run naming the file and line.
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from ..inference.generate import GenerationBackend
from ..processing.image_io import ImageLoadError
from .prompts import build_images, build_messages
from .tasks.base import EvalItem, TaskConfig


@dataclass(frozen=True)
class GenerationSettings:
    """What must match for a prediction file to be resumed (stored beside it as <task>.meta.json).

    model: the normalised model path (inference.fingerprint.normalized_model_name); model_fingerprint: the
    checkpoint's content hash (None when there is no local folder). dtype / attn_implementation: what the
    loaded model really uses (None for a server backend, which owns them). task_config: task_config_hash.
    """

    model: str
    max_new_tokens: int
    batch_size: int
    seed: int
    template_kwargs: dict
    backend: str = "hf"
    model_fingerprint: str | None = None
    dtype: str | None = None
    attn_implementation: dict | None = None
    task_config: str = ""


def task_config_hash(config: TaskConfig) -> str:
    """Prompts, options, shots and item selection of a task: editing its YAML changes the outputs."""
    text = json.dumps(asdict(config), sort_keys=True, default=str, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class PredictionFileError(ValueError):
    """A prediction file that a resumed run cannot trust; names the file and the line."""


def generate_batch(backend: GenerationBackend, items: list[EvalItem], config: TaskConfig,
                   max_new_tokens: int, images: list[list] | None = None) -> list[str]:
    """One deterministic greedy decode per item (images: already loaded, in item order)."""
    conversations = [build_messages(item, config) for item in items]
    images = [build_images(item) for item in items] if images is None else images
    return backend.generate(conversations, images, max_new_tokens)


def batch_order(items: list[EvalItem], config: TaskConfig) -> list[EvalItem]:
    """Similar prompts together (less padding); a pure function of the items, so resumes match."""
    def key(item: EvalItem):
        text = sum(len(m["content"]) for m in build_messages(item, config))
        return (len(item.images) + sum(len(d.images) for d in item.demos), text, item.id)

    return sorted(items, key=key)


class PredictionFile:
    """<task>.jsonl: one {"id", "output"} (or {"id", "skipped", "detail"}) line per example, appended and fsynced
    batch by batch. `skipped` holds item id -> (reason, detail) of the skipped items."""

    def __init__(self, path: Path, settings: GenerationSettings):
        from ..fileio import atomic_write

        self.path = path
        self.meta_path = path.with_suffix(".meta.json")
        self.settings = settings
        self.skipped: dict[str, tuple[str, str]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.loads(json.dumps(asdict(settings)))  # as JSON reads it back (tuples become lists)
        if self.meta_path.exists():
            saved = json.loads(self.meta_path.read_text(encoding="utf-8"))
            if saved != meta:
                changed = [f"{name}: {saved.get(name, '<not recorded>')!r} -> {meta[name]!r}"
                           for name in (f.name for f in fields(settings)) if saved.get(name) != meta[name]]
                raise ValueError(f"{path} was produced with other settings ({'; '.join(changed)}); its outputs would "
                                 "not be this run's: use a new --output folder, or delete the file to regenerate")
        else:
            with atomic_write(self.meta_path) as f:
                f.write(json.dumps(meta, sort_keys=True, indent=2) + "\n")

    def _bad_line(self, number: int, problem: str) -> PredictionFileError:
        return PredictionFileError(
            f"{self.path} line {number}: {problem}. Only a last line cut by a kill is repaired automatically; this "
            "file was changed otherwise (edited, written by two runs at once, or damaged): delete the line or the "
            "file to generate those items again")

    def load(self) -> dict[str, str]:
        """Outputs written so far (skipped items go to `self.skipped`). A last line without its newline (cut by a
        kill) is dropped and truncated from the file; any other unreadable, malformed or repeated line raises
        PredictionFileError naming its line."""
        self.skipped = {}
        if not self.path.exists():
            return {}
        outputs, good_bytes = {}, 0
        with self.path.open("rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    break  # the write a kill cut short; everything before it was fsynced whole
                try:
                    record = json.loads(line.decode("utf-8"))
                except UnicodeDecodeError as err:
                    raise self._bad_line(number, f"not UTF-8 ({err.reason} at byte {err.start})") from None
                except json.JSONDecodeError as err:
                    raise self._bad_line(number, f"not JSON ({err.msg})") from None
                problem = _record_problem(record)
                if problem:
                    raise self._bad_line(number, problem)
                if record["id"] in outputs or record["id"] in self.skipped:
                    raise self._bad_line(number, f"a second line for id {record['id']!r}")
                if "skipped" in record:
                    self.skipped[record["id"]] = (record["skipped"], record.get("detail", ""))
                else:
                    outputs[record["id"]] = record["output"]
                good_bytes += len(line)
        if good_bytes != self.path.stat().st_size:
            with self.path.open("r+b") as f:
                f.truncate(good_bytes)
        return outputs

    def _write(self, lines: list[dict]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def append(self, items: list[EvalItem], outputs: list[str]) -> None:
        self._write([{"id": item.id, "output": output} for item, output in zip(items, outputs, strict=True)])

    def append_skipped(self, item: EvalItem, reason: str, detail: str) -> None:
        self._write([{"id": item.id, "skipped": reason, "detail": detail}])
        self.skipped[item.id] = (reason, detail)


def _record_problem(record) -> str | None:
    if not isinstance(record, dict):
        return f"expected a JSON object, got {json.dumps(record)[:40]}"
    if not isinstance(record.get("id"), str):
        return f"no string 'id' in {json.dumps(record, ensure_ascii=False)[:80]}"
    if "skipped" in record:
        return None if isinstance(record["skipped"], str) else f"'skipped' of id {record['id']!r} is not a string"
    if not isinstance(record.get("output"), str):
        return f"no string 'output' for id {record['id']!r}"
    return None


def _load_images(item: EvalItem) -> list | ImageLoadError:
    try:
        return build_images(item)
    except ImageLoadError as err:
        return err


def run_generation(backend: GenerationBackend, items: list[EvalItem], config: TaskConfig, store: PredictionFile,
                   progress: bool = True) -> dict[str, str]:
    """Generate every item not yet in `store`; returns item id -> raw output for every item that was not skipped
    (store.skipped: id -> (reason, detail) of the others, e.g. an unreadable image)."""
    settings = store.settings
    done = store.load()
    unknown = (set(done) | set(store.skipped)) - {item.id for item in items}
    if unknown:
        raise ValueError(f"{store.path}: predictions for ids not in the task ({sorted(unknown)[:3]}...)")
    ordered = batch_order(items, config)
    batches = [ordered[i:i + settings.batch_size] for i in range(0, len(ordered), settings.batch_size)]
    bar = tqdm(total=len(items), initial=len(done) + len(store.skipped), desc=config.name, unit="ex",
               disable=not progress)
    for batch in batches:
        if all(item.id in done or item.id in store.skipped for item in batch):
            continue
        # Items whose images cannot be read leave the batch (recorded first, so a resumed run leaves them out too).
        kept, images = [], []
        for item in batch:
            if item.id in store.skipped:
                continue
            loaded = _load_images(item)
            if isinstance(loaded, ImageLoadError):
                store.append_skipped(item, "image_load", str(loaded))
                bar.update(1)
                continue
            kept.append(item)
            images.append(loaded)
        if not kept or all(item.id in done for item in kept):
            continue
        torch.manual_seed(settings.seed)
        outputs = generate_batch(backend, kept, config, settings.max_new_tokens, images)
        todo = [(item, out) for item, out in zip(kept, outputs) if item.id not in done]
        store.append([item for item, _ in todo], [out for _, out in todo])
        done.update((item.id, out) for item, out in todo)
        bar.update(len(todo))
    bar.close()
    return done
