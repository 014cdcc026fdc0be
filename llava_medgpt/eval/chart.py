"""Grouped bar chart (PNG) of the evaluated checkpoint beside the paper's models, drawn with PIL only."""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .tables import load_paper_results

COLORS = [(214, 39, 40), (31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75), (127, 127, 127)]


def chart_rows(results: dict, paper: dict) -> list[tuple[str, list[float | None]]]:
    """(row label, [evaluated, *paper models]) for every accuracy row the checkpoint was scored on."""
    rows = []
    for table in ("4", "5", "6"):
        evaluated = {t["row"]: t for t in results["tasks"].values() if t["table"] == table}
        for row, published in paper["tables"][table]["rows"].items():
            if row in evaluated and evaluated[row].get("primary") is not None:
                rows.append((row, [evaluated[row]["primary"], *published]))
    return rows


def draw_chart(results: dict, path: Path, paper: dict | None = None) -> Path:
    paper = paper or load_paper_results()
    rows = chart_rows(results, paper)
    series = [results["label"], *paper["models"]]
    bar, gap, left, top, height = 9, 18, 60, 40, 300
    width = left + max(1, len(rows)) * (len(series) * bar + gap) + 20
    image = Image.new("RGB", (max(width, 560), top + height + 130), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    base = top + height
    for tick in range(0, 101, 20):  # y axis in percent
        y = base - tick * height / 100
        draw.line([(left - 4, y), (image.width - 10, y)], fill=(225, 225, 225))
        draw.text((left - 30, y - 6), str(tick), fill="black", font=font)
    for r, (label, values) in enumerate(rows):
        x0 = left + r * (len(series) * bar + gap) + gap / 2
        for s, value in enumerate(values):
            if value is not None:
                x = x0 + s * bar
                draw.rectangle([x, base - value * height / 100, x + bar - 1, base], fill=COLORS[s % len(COLORS)])
        draw.text((x0, base + 4), label[:14], fill="black", font=font)
    draw.text((left, 10), "Accuracy (%) — evaluated checkpoint vs. MedGPT-oss paper", fill="black", font=font)
    for s, name in enumerate(series):  # legend
        x, y = left + (s % 4) * 130, base + 40 + (s // 4) * 16
        draw.rectangle([x, y, x + 10, y + 10], fill=COLORS[s % len(COLORS)])
        draw.text((x + 14, y - 1), name[:18], fill="black", font=font)
    if not rows:
        draw.text((left, top + height / 2), "no accuracy task scored", fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
