"""Reading benchmark releases from disk (any file llava_medgpt.rows reads) or from a public hub id."""

import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from .base import BadRecord, ImageRef, TaskConfig


class MissingData(FileNotFoundError):
    """The benchmark's files are neither on disk nor reachable on the hub."""


def glob_files(root: Path, patterns: Iterable[str]) -> list[Path]:
    """Files under root matching any pattern, sorted; a clear error when none match."""
    patterns = list(patterns)
    found = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    if not found:
        raise MissingData(f"no file matching {patterns} under {root}")
    return found


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def image_ref(value: Any, root: Path | None) -> ImageRef | None:
    """An image field of a release -> ImageRef: a relative path, an HF image dict, or a decoded PIL image."""
    if is_missing(value):
        return None
    if isinstance(value, str):
        if root is None:
            raise ValueError(f"image path {value!r} given but the release has no image folder")
        return ImageRef(path=value, root=str(root))
    if isinstance(value, dict):
        if value.get("bytes"):
            return ImageRef(data=bytes(value["bytes"]))
        if value.get("path"):
            return image_ref(value["path"], root)
        return None
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return ImageRef(data=buffer.getvalue())
    # A number or other value where a release names an image: this record is unusable, the others are not.
    raise BadRecord(f"image field of type {type(value).__name__}, not a path")  # a stable counter key


def hub_records(config: TaskConfig, split: str | None = None) -> list[dict[str, Any]]:
    """Rows of the task's public hub dataset (only when a network is available)."""
    if not config.hub_id:
        raise MissingData(f"task {config.name}: no local data and no public hub id (user-supplied paths needed)")
    import datasets

    rows = []
    # Some releases split subjects into configs (MMMU, MMLU): read each.
    for hub_config in config.options.get("hub_configs") or [config.hub_config]:
        try:
            dataset = datasets.load_dataset(config.hub_id, hub_config, split=split or config.split)
        except Exception as err:  # offline, gated, renamed: all end the same way for the user
            raise MissingData(
                f"task {config.name}: local folder absent and hub dataset {config.hub_id} ({hub_config}) "
                f"unavailable: {err}"
            ) from err
        rows.extend(dict(row) for row in dataset)
    return rows
