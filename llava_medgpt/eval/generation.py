"""Batched greedy generation with per-example JSONL predictions that a restarted run resumes from.

Batches are a fixed partition of the task's items (ordered by image count and prompt length, then id), so
a resumed run generates exactly the batches an uninterrupted run would have: same padding, same outputs.
"""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..inference.generate import GenerationBackend
from .prompts import build_images, build_messages
from .tasks.base import EvalItem, TaskConfig


@dataclass(frozen=True)
class GenerationSettings:
    """What must match for a prediction file to be resumed (stored beside it as <task>.meta.json)."""

    model: str
    max_new_tokens: int
    batch_size: int
    seed: int
    template_kwargs: dict


def generate_batch(backend: GenerationBackend, items: list[EvalItem], config: TaskConfig,
                   max_new_tokens: int) -> list[str]:
    """One deterministic greedy decode per item."""
    conversations = [build_messages(item, config) for item in items]
    return backend.generate(conversations, [build_images(item) for item in items], max_new_tokens)


def batch_order(items: list[EvalItem], config: TaskConfig) -> list[EvalItem]:
    """Similar prompts together (less padding); a pure function of the items, so resumes match."""
    def key(item: EvalItem):
        text = sum(len(m["content"]) for m in build_messages(item, config))
        return (len(item.images) + sum(len(d.images) for d in item.demos), text, item.id)

    return sorted(items, key=key)


class PredictionFile:
    """<task>.jsonl, one {"id", "output"} line per example, appended and flushed batch by batch."""

    def __init__(self, path: Path, settings: GenerationSettings):
        self.path = path
        self.meta_path = path.with_suffix(".meta.json")
        self.settings = settings
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = asdict(settings)
        if self.meta_path.exists():
            saved = json.loads(self.meta_path.read_text(encoding="utf-8"))
            if saved != meta:
                raise ValueError(f"{path} was produced with other settings ({saved}); use a new --output folder")
        else:
            self.meta_path.write_text(json.dumps(meta, sort_keys=True, indent=2) + "\n", encoding="utf-8")

    def load(self) -> dict[str, str]:
        """Outputs written so far. A last line cut by a kill is dropped (and truncated from the file)."""
        if not self.path.exists():
            return {}
        outputs, good_bytes = {}, 0
        with self.path.open("rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break
                if not line.endswith(b"\n"):
                    break
                outputs[record["id"]] = record["output"]
                good_bytes += len(line)
        if good_bytes != self.path.stat().st_size:
            with self.path.open("r+b") as f:
                f.truncate(good_bytes)
        return outputs

    def append(self, items: list[EvalItem], outputs: list[str]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            for item, output in zip(items, outputs, strict=True):
                f.write(json.dumps({"id": item.id, "output": output}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def run_generation(backend: GenerationBackend, items: list[EvalItem], config: TaskConfig, store: PredictionFile,
                   progress: bool = True) -> dict[str, str]:
    """Generate every item not yet in `store`; returns item id -> raw output for all items."""
    settings = store.settings
    done = store.load()
    unknown = set(done) - {item.id for item in items}
    if unknown:
        raise ValueError(f"{store.path}: predictions for ids not in the task ({sorted(unknown)[:3]}...)")
    ordered = batch_order(items, config)
    batches = [ordered[i:i + settings.batch_size] for i in range(0, len(ordered), settings.batch_size)]
    bar = tqdm(total=len(items), initial=len(done), desc=config.name, unit="ex", disable=not progress)
    for batch in batches:
        if all(item.id in done for item in batch):
            continue
        torch.manual_seed(settings.seed)
        outputs = generate_batch(backend, batch, config, settings.max_new_tokens)
        todo = [(item, out) for item, out in zip(batch, outputs) if item.id not in done]
        store.append([item for item, _ in todo], [out for _, out in todo])
        done.update((item.id, out) for item, out in todo)
        bar.update(len(todo))
    bar.close()
    return done
