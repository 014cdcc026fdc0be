"""Chart (PNG) of the evaluated checkpoint beside the paper's models: one group of horizontal bars per
paper row scored with its primary metric, the checkpoint's bar with its 95% interval.

Horizontal bars so that row labels are printed whole on the y axis ("MMMU-Med-Pro (10 opt)",
"Patient-trial (1-shot)"), with n beside each label. Text is set in DejaVu Sans, which ships inside
matplotlib and has every glyph the labels use (en/em dashes included), so the picture is the same on any
machine. Fallback metrics (BLEU-4 / ROUGE-L for an unavailable clinical metric) are not charted: they are
not on the paper's scale.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .tables import load_paper_results

COLORS = ["#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f"]
FONT = "DejaVu Sans"
DPI = 100
WIDTH_INCHES = 11.0


@dataclass(frozen=True)
class ChartRow:
    label: str  # the paper's row name and n, e.g. "SLAKE (n=836)"
    values: list[float | None]  # evaluated checkpoint first, then the paper's models
    interval: list[float] | None  # 95% interval of the evaluated value


def chart_rows(results: dict, paper: dict) -> list[ChartRow]:
    """Every Table 4 / 5 / 6 row the checkpoint was scored on with the row's primary metric, in paper order."""
    rows = []
    for table in ("4", "5", "6"):
        evaluated = {t["row"]: t for t in results["tasks"].values() if t["table"] == table}
        for row, published in paper["tables"][table]["rows"].items():
            task = evaluated.get(row)
            if task is not None and task.get("primary") is not None:
                rows.append(ChartRow(f"{row} (n={task['n_scored']})", [task["primary"], *published],
                                     task.get("primary_ci95")))
    return rows


def build_figure(results: dict, paper: dict | None = None):
    """The matplotlib Figure (Agg canvas, no display needed); `draw_chart` saves it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot state, no display
    from matplotlib.figure import Figure

    paper = paper or load_paper_results()
    rows = chart_rows(results, paper)
    series = [results["label"], *paper["models"]]
    group = len(series)
    height = 1.6 + max(1, len(rows)) * group * 0.16 + 0.8
    figure = Figure(figsize=(WIDTH_INCHES, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bar = 0.8 / group
    for s, name in enumerate(series):
        positions = [r + (s - (group - 1) / 2) * bar for r in range(len(rows))]
        values = [row.values[s] if row.values[s] is not None else 0.0 for row in rows]
        errors = None
        if s == 0 and rows:
            intervals = [row.interval or [row.values[0], row.values[0]] for row in rows]
            errors = [[max(0.0, v - lo) for v, (lo, _) in zip(values, intervals)],
                      [max(0.0, hi - v) for v, (_, hi) in zip(values, intervals)]]
        axes.barh(positions, values, height=bar, color=COLORS[s % len(COLORS)], label=name,
                  xerr=errors, error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "black"})
    axes.set_yticks(range(len(rows)), [row.label for row in rows], fontfamily=FONT, fontsize=9)
    axes.invert_yaxis()  # paper order top to bottom
    axes.set_xlim(0, 100)
    axes.set_xlabel("Score (%) — accuracy; Impression rows: RaTEScore × 100", fontfamily=FONT)
    axes.set_title(f"{results['label']} — evaluated checkpoint beside the MedGPT-oss paper (Tables 4–6); "
                   "error bars: 95% CI", fontfamily=FONT, fontsize=10)
    axes.grid(axis="x", color="#e0e0e0")
    axes.set_axisbelow(True)
    if not rows:
        axes.text(50, 0, "no task scored with the paper's metric", ha="center", va="center", fontfamily=FONT)
        axes.set_yticks([])
    figure.legend(loc="outside lower center", ncols=4, prop={"family": FONT, "size": 9}, frameon=False)
    return figure


def draw_chart(results: dict, target: Path | IO[bytes], paper: dict | None = None) -> Path | IO[bytes]:
    """Write the chart as PNG to a path or a binary file (no timestamp or version in the PNG: reruns match)."""
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    build_figure(results, paper).savefig(target, format="png", dpi=DPI, metadata={"Software": None})
    return target
