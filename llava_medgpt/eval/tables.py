"""Markdown tables laid out like the paper's Tables 4, 5, 6 (and Figure 2's numbers), with the evaluated
checkpoint's column beside the published rows of eval/paper_results.yaml."""

from pathlib import Path

import yaml

from .tasks import TASK_DIR

PAPER_RESULTS = TASK_DIR / "paper_results.yaml"
TABLE_ORDER = ("4", "5", "6", "figure2")
FIGURE2_LABELS = {"radgraph_f1": "RadGraph-F1 (partial)", "ratescore": "RaTEScore", "inv_radcliq_v1": "1/RadCliQ-v1",
                  "bleu4": "BLEU-4", "rouge_l": "ROUGE-L"}


def load_paper_results(path: Path = PAPER_RESULTS) -> dict:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def _fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _evaluated_by_row(results: dict, table: str) -> dict[str, dict]:
    return {task["row"]: task for task in results["tasks"].values() if task["table"] == table}


def _cell(task: dict | None) -> str:
    if task is None:
        return "not run"
    if task.get("primary") is None:
        return f"unavailable ({task.get('primary_metric')})"
    return _fmt(task["primary"], 2)


def render_table(results: dict, paper: dict, table: str) -> str:
    spec = paper["tables"][table]
    models = paper["models"]
    label = results["label"]
    evaluated = _evaluated_by_row(results, table)
    lines = [f"### {spec['caption']}", ""]
    if table == "figure2":
        task = next(iter(evaluated.values()), None)
        lines += [f"| Metric | {label} | " + " | ".join(models) + " |", "|---" * (len(models) + 2) + "|"]
        for metric, published in spec["rows"].items():
            ours = task["scores"].get(metric) if task else None
            cell = "not run" if task is None else (
                _fmt(ours["value"], 3) if ours.get("value") is not None else f"unavailable: {ours['unavailable']}")
            lines.append(f"| {FIGURE2_LABELS[metric]} | {cell} | " + " | ".join(_fmt(v, 3) for v in published) + " |")
        if task:
            for metric in ("bleu4", "rouge_l"):
                lines.append(f"| {FIGURE2_LABELS[metric]} | {_fmt(task['scores'][metric], 3)} | "
                             + " | ".join("–" for _ in models) + " |")
        return "\n".join(lines)

    lines += [f"| Dataset | {label} | " + " | ".join(models) + " |", "|---" * (len(models) + 2) + "|"]
    for row, published in spec["rows"].items():
        lines.append(f"| {row} | {_cell(evaluated.get(row))} | " + " | ".join(_fmt(v, 2) for v in published) + " |")
    # Macro average over the rows the checkpoint was scored on, for it and for each published model.
    scored = [row for row in spec["rows"] if evaluated.get(row, {}).get("primary") is not None]
    if scored:
        ours = sum(evaluated[row]["primary"] for row in scored) / len(scored)
        theirs = [sum(spec["rows"][row][m] for row in scored) / len(scored) for m in range(len(models))]
        lines.append(f"| Macro average ({len(scored)} rows) | {_fmt(ours, 2)} | "
                     + " | ".join(_fmt(v, 2) for v in theirs) + " |")
    return "\n".join(lines)


def render_tables(results: dict, paper: dict | None = None) -> str:
    paper = paper or load_paper_results()
    header = [f"# Evaluation of {results['label']}", "",
              f"Model: `{results['model']}`. Published columns: MedGPT-oss paper, section 4.4.", ""]
    return "\n".join(header + ["\n\n".join(render_table(results, paper, t) for t in TABLE_ORDER)]) + "\n"
