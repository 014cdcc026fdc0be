"""End-of-curriculum summary: per-stage loss, the evaluation scores and where everything is.

Run as: python -m llava_medgpt.train.summary OUTPUT_ROOT [--eval OUTPUT_ROOT/eval] [--seconds N]
        (scripts/run_curriculum.sh prints it last)

Reads only files the stages and the eval CLI wrote (stageN/log_history.json, COMPLETE markers, eval/results.json):
no model, no torch.
"""

import argparse
import json
from pathlib import Path

STAGES = ("stage0", "stage1", "stage2")


def stage_losses(stage_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) of every logged training step of a finished stage."""
    history = json.loads((stage_dir / "log_history.json").read_text(encoding="utf-8"))
    return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]


def stage_lines(root: Path) -> list[str]:
    lines = []
    for name in STAGES:
        folder = root / name
        if not (folder / "COMPLETE").is_file():
            lines.append(f"  {name}  not finished ({folder})")
            continue
        losses = stage_losses(folder)
        if not losses:
            lines.append(f"  {name}  no logged loss ({folder})")
            continue
        (_, first), (last_step, last) = losses[0], losses[-1]
        lines.append(f"  {name}  {last_step:4d} steps  loss {first:.2f} -> {last:.2f} ({last / first:.0%} of the "
                     f"first)  {folder.resolve()}")
    return lines


def eval_lines(eval_dir: Path) -> list[str]:
    results_path = eval_dir / "results.json"
    if not results_path.is_file():
        return [f"  no evaluation results in {eval_dir}"]
    results = json.loads(results_path.read_text(encoding="utf-8"))
    rows = [("task", "paper row", "n", "score")]
    for name, task in sorted(results["tasks"].items()):
        score = "unavailable" if task["primary"] is None else f"{task['primary']:.2f} ({task['primary_metric']})"
        rows.append((name, f"Table {task['table']}: {task['row']}", str(task["n_scored"]), score))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"Evaluation of {results['model']} (python -m llava_medgpt.eval, batch size "
             f"{results['settings']['batch_size']}):"]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for name, reason in sorted(results.get("not_run", {}).items()):
        lines.append(f"  not run: {name}: {reason}")
    lines.append(f"  tables: {(eval_dir / 'tables.md').resolve()}")
    lines.append(f"  chart:  {(eval_dir / 'chart.png').resolve()}")
    return lines


def render(root: Path, eval_dir: Path | None, seconds: float | None) -> str:
    took = "" if seconds is None else f" in {seconds:.0f} s"
    lines = [f"Curriculum finished{took}. Per stage: logged steps, training loss first -> last, stage output"]
    lines += stage_lines(root)
    if eval_dir is not None:
        lines += eval_lines(eval_dir)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_root", type=Path)
    parser.add_argument("--eval", type=Path, help="the eval CLI's --output folder")
    parser.add_argument("--seconds", type=float, help="wall time to report")
    args = parser.parse_args(argv)
    print(render(args.output_root, args.eval, args.seconds))


if __name__ == "__main__":
    main()
