"""The vision-encoder ablation (paper Figure 1): one table and one plot comparing runs that differ only in
their vision tower.

Run as: python -m llava_medgpt.eval.ablation --run clip=OUT/clip --run siglip=OUT/siglip ... --output OUT
        (scripts/ablate_encoders.sh trains and evaluates each run, then calls this)

Each run folder holds `train/` (a finished stage output: config.json, log_history.json, COMPLETE), `eval/`
(the eval runner's results.json) and `vision_tower.txt` (the tower it started from). Written to --output,
atomically:

    ablation.json   per encoder: tower, geometry, training steps and last logged loss, every task's score,
                    95% interval and n, and the OmniMedVQA breakdowns when present
    ablation.md     the same as tables (scores per task; OmniMedVQA by modality)
    ablation.png    grouped bars, one group per task, one bar per encoder, 95% intervals as error bars

The protocol holds only if every run trained the same number of steps on the same data and was scored on the
same tasks; runs that differ are refused (the table would compare unequal things).
"""

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

from ..fileio import atomic_write
from ..processing.geometry import VisionGeometry

FONT = "DejaVu Sans"
COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f"]


@dataclass
class EncoderRun:
    encoder: str
    tower: str
    geometry: str
    tokens_per_tile: int
    steps: int
    train_loss: float | None
    tasks: dict[str, dict] = field(default_factory=dict)  # task -> {title, score, ci95, n, metric, breakdowns}

    @property
    def mean(self) -> float | None:
        scores = [task["score"] for task in self.tasks.values() if task["score"] is not None]
        return sum(scores) / len(scores) if scores else None


def _read_json(path: Path):
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as err:
        raise SystemExit(f"{path} not found: is the run finished (training and evaluation)?") from err


def read_run(encoder: str, folder: Path) -> EncoderRun:
    """One encoder's training output and evaluation results -> EncoderRun."""
    train, evaluation = folder / "train", folder / "eval"
    if not (train / "COMPLETE").is_file():
        raise SystemExit(f"{train} is not a finished training run (no COMPLETE marker)")
    config = _read_json(train / "config.json")
    vision = config["vision_config"]
    geometry = VisionGeometry.from_vision_config(SimpleNamespace(**vision), config.get("downsample_ratio", 0.5))
    history = _read_json(train / "log_history.json")
    losses = [entry["loss"] for entry in history if "loss" in entry]
    steps = max((entry.get("step", 0) for entry in history), default=0)
    results = _read_json(evaluation / "results.json")
    tasks = {}
    for name, task in sorted(results["tasks"].items()):
        tasks[name] = {"title": task["title"], "metric": task["primary_metric"], "score": task["primary"],
                       "ci95": task.get("primary_ci95"), "n": task.get("n_scored", task["scores"].get("n")),
                       "breakdowns": task["scores"].get("breakdowns", {})}
    # The launcher records which tower it started from; without that record, the tower's family.
    tower_file = folder / "vision_tower.txt"
    tower = tower_file.read_text(encoding="utf-8").strip() if tower_file.is_file() else vision.get("model_type", "?")
    return EncoderRun(encoder, str(tower), geometry.describe(), geometry.tokens_per_tile, int(steps),
                      losses[-1] if losses else None, tasks)


def check_comparable(runs: list[EncoderRun]) -> None:
    """Same steps and the same scored tasks with the same item counts, else SystemExit naming the difference."""
    steps = {run.encoder: run.steps for run in runs}
    if len(set(steps.values())) != 1:
        raise SystemExit(f"runs trained for different numbers of steps {steps}: not the same protocol")
    reference = {name: task["n"] for name, task in runs[0].tasks.items()}
    for run in runs[1:]:
        counts = {name: task["n"] for name, task in run.tasks.items()}
        if counts != reference:
            raise SystemExit(f"{run.encoder} was scored on {counts}, {runs[0].encoder} on {reference}: "
                             "evaluate every encoder on the same tasks and data")


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_markdown(runs: list[EncoderRun]) -> str:
    tasks = list(runs[0].tasks)
    titles = [runs[0].tasks[name]["title"] for name in tasks]
    lines = ["# Vision-encoder ablation (paper Figure 1 protocol)", "",
             "Same language model, LoRA, same data and steps, one run per vision encoder, same evaluation tasks. "
             "Scores: each task's primary metric (accuracy in %), 95% interval in brackets.", "",
             "| Encoder | Tower | Geometry | Steps | Last train loss | " + " | ".join(titles) + " | Mean |",
             "|---" * (6 + len(tasks)) + "|"]
    for run in runs:
        cells = [f"{_fmt(run.tasks[name]['score'])} [{_fmt((run.tasks[name]['ci95'] or [None])[0], 1)}, "
                 f"{_fmt((run.tasks[name]['ci95'] or [None, None])[1], 1)}]" for name in tasks]
        lines.append(f"| {run.encoder} | {run.tower} | {run.geometry} | {run.steps} | {_fmt(run.train_loss, 4)} | "
                     + " | ".join(cells) + f" | {_fmt(run.mean)} |")
    lines += ["", "n per task: " + ", ".join(f"{runs[0].tasks[name]['title']} {runs[0].tasks[name]['n']}"
                                               for name in tasks)]
    for name in tasks:
        for key, _ in runs[0].tasks[name]["breakdowns"].items():
            groups = sorted({group for run in runs for group in run.tasks[name]["breakdowns"].get(key, {})})
            lines += ["", f"## {runs[0].tasks[name]['title']} by {key.replace('_', ' ')}", "",
                      "| Encoder | " + " | ".join(groups) + " |", "|---" * (1 + len(groups)) + "|"]
            for run in runs:
                by_group = run.tasks[name]["breakdowns"].get(key, {})
                lines.append(f"| {run.encoder} | " + " | ".join(
                    f"{_fmt(by_group[g]['accuracy'])} (n={by_group[g]['n']})" if g in by_group else "–"
                    for g in groups) + " |")
    return "\n".join(lines) + "\n"


def build_figure(runs: list[EncoderRun]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = list(runs[0].tasks)
    labels = [f"{runs[0].tasks[name]['title']}\n(n={runs[0].tasks[name]['n']})" for name in tasks] + ["Mean"]
    figure = Figure(figsize=(max(7.0, 2.0 + 2.0 * len(labels)), 5.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(runs)
    for r, run in enumerate(runs):
        values = [run.tasks[name]["score"] or 0.0 for name in tasks] + [run.mean or 0.0]
        intervals = [run.tasks[name]["ci95"] for name in tasks] + [None]
        low = [max(0.0, v - i[0]) if i else 0.0 for v, i in zip(values, intervals)]
        high = [max(0.0, i[1] - v) if i else 0.0 for v, i in zip(values, intervals)]
        positions = [x + (r - (len(runs) - 1) / 2) * width for x in range(len(labels))]
        axes.bar(positions, values, width=width, color=COLORS[r % len(COLORS)],
                 label=f"{run.encoder} ({run.tokens_per_tile} tok/tile)", yerr=[low, high],
                 error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "black"})
    axes.set_xticks(range(len(labels)), labels, fontfamily=FONT, fontsize=9)
    axes.set_ylim(0, 100)
    axes.set_ylabel("Score (%)", fontfamily=FONT)
    axes.set_title(f"Vision-encoder ablation (Figure 1 protocol)\nsame LM, LoRA, {runs[0].steps} steps each; "
                   "error bars: 95% CI", fontfamily=FONT, fontsize=10)
    axes.grid(axis="y", color="#e0e0e0")
    axes.set_axisbelow(True)
    figure.legend(loc="outside lower center", prop={"family": FONT, "size": 9}, frameon=False,
                  ncols=min(4, len(runs)))
    return figure


def write_ablation(runs: list[EncoderRun], output: Path) -> dict[str, Path]:
    check_comparable(runs)
    output.mkdir(parents=True, exist_ok=True)
    paths = {"json": output / "ablation.json", "markdown": output / "ablation.md", "plot": output / "ablation.png"}
    with atomic_write(paths["json"]) as f:
        json.dump({"runs": [{**asdict(run), "mean": run.mean} for run in runs]}, f, indent=2, sort_keys=True)
        f.write("\n")
    with atomic_write(paths["markdown"]) as f:
        f.write(render_markdown(runs))
    with atomic_write(paths["plot"], "wb") as f:
        build_figure(runs).savefig(f, format="png", dpi=100, metadata={"Software": None})
    return paths


def main(argv: list[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(prog="python -m llava_medgpt.eval.ablation", description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="ENCODER=FOLDER",
                        help="an encoder's run folder (train/ and eval/ inside); repeat per encoder")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args(argv)
    runs = []
    for spec in args.run:
        encoder, sep, folder = spec.partition("=")
        if not sep:
            parser.error(f"--run expects ENCODER=FOLDER, got {spec!r}")
        runs.append(read_run(encoder, Path(folder)))
    paths = write_ablation(runs, args.output)
    print(render_markdown(runs))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return paths


if __name__ == "__main__":
    main()
