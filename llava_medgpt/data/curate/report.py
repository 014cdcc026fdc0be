"""The curation report: per source and per step, records in and out and the reasons with their counts, the
thresholds used, and a contact sheet (PNG) of the first removed images of every reason, so that a researcher can
look at what was removed before trusting it. Everything here is a function of the counts: a resumed run writes
the same bytes.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from .config import CurateConfig, config_to_dict

THUMB = 160
COLUMNS = 6
LABEL_HEIGHT = 30


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "source"


def _totals(counts) -> dict:
    steps: dict[str, dict] = {}
    for source in counts:
        for s in source.steps:
            entry = steps.setdefault(s.step, {"step": s.step, "in": 0, "out": 0, "reasons": Counter()})
            entry["in"] += s.records_in
            entry["out"] += s.records_out
            entry["reasons"].update(s.reasons)
    return {"records": sum(s.records for s in counts), "kept": sum(s.kept for s in counts),
            "steps": [dict(e, reasons=dict(sorted(e["reasons"].items()))) for e in steps.values()]}


def contact_sheet(samples: Sequence[dict], image_folder: str | None, title: str) -> Image.Image:
    """Thumbnails of the removed records' first images, each labelled with its id and score."""
    from ...processing.image_io import ImageLoadError, load_image, resolve_image_path

    rows = max(1, -(-len(samples) // COLUMNS))
    font = ImageFont.load_default(size=11)
    sheet = Image.new("RGB", (COLUMNS * THUMB, 24 + rows * (THUMB + LABEL_HEIGHT)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 5), title, fill=(0, 0, 0), font=ImageFont.load_default(size=13))
    for k, sample in enumerate(samples):
        x, y = (k % COLUMNS) * THUMB, 24 + (k // COLUMNS) * (THUMB + LABEL_HEIGHT)
        thumb = None
        if sample["images"] and image_folder is not None:
            try:
                thumb = load_image(resolve_image_path(image_folder, sample["images"][0]))
            except ImageLoadError:
                thumb = None
        if thumb is None:
            draw.rectangle([x + 4, y + 4, x + THUMB - 4, y + THUMB - 4], fill=(220, 220, 220))
            draw.text((x + 10, y + THUMB // 2), "no image", fill=(90, 90, 90), font=font)
        else:
            thumb.thumbnail((THUMB - 8, THUMB - 8), Image.Resampling.BILINEAR)
            sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        draw.text((x + 4, y + THUMB), f"{sample['id'][:26]}", fill=(0, 0, 0), font=font)
        draw.text((x + 4, y + THUMB + 13), f"line {sample['line']}  score {sample['score']:.3g}", fill=(80, 80, 80),
                  font=font)
    return sheet


def _markdown(report: dict) -> str:
    lines = ["# Curation report", "", f"Config: `curate_config.yaml`.", ""]

    def table(block: dict, heading: str) -> None:
        lines.extend([f"## {heading}", "", f"{block['records']:,} records in, {block['kept']:,} kept.", "",
                      "| step | in | out | removed | reasons |", "|---|---:|---:|---:|---|"])
        for s in block["steps"]:
            reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(s["reasons"].items(), key=lambda kv: (-kv[1], kv[0])))
            lines.append(f"| {s['step']} | {s['in']:,} | {s['out']:,} | {s['in'] - s['out']:,} | {reasons} |")
        lines.append("")

    table(report["total"], "All sources")
    for source in report["sources"]:
        table(source, source["name"])
        for sheet in source["contact_sheets"]:
            lines.append(f"- `{sheet}`")
        lines.append("")
    return "\n".join(lines)


def write_report(output: Path, sources, counts, config: CurateConfig, config_text: str) -> dict:
    from .pipeline import _atomic_write

    sheets_root = output / "contact_sheets"
    report_sources = []
    for spec, source in zip(sources, counts):
        sheets = []
        for key in sorted(source.samples):
            step, reason = key.split("/", 1)
            path = sheets_root / slug(spec.name) / f"{step}--{reason}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image = contact_sheet(source.samples[key], spec.image_folder, f"{spec.name}: {step} / {reason}")
            png = io.BytesIO()
            image.save(png, format="PNG")
            _atomic_write(path, png.getvalue())
            sheets.append(str(path.relative_to(output)))
        entry = source.to_dict()
        entry.pop("samples")
        entry["removed_examples"] = {k: [s["id"] for s in v] for k, v in sorted(source.samples.items())}
        entry["contact_sheets"] = sheets
        entry["output"] = spec.output_name
        report_sources.append(entry)
    report = {"total": _totals(counts), "sources": report_sources, "config": config_to_dict(config)}
    _atomic_write(output / "curation_report.json", (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode())
    _atomic_write(output / "curation_report.md", _markdown(report).encode())
    return report
