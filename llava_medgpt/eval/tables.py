"""Markdown tables laid out like the paper's Tables 4, 5, 6 (and Figure 2's numbers), with the evaluated
checkpoint's column (score, 95% interval, n scored / skipped) beside the published rows of
llava_medgpt/eval/paper_results.yaml, and the plain-text summary the runner prints at the end of a run."""

from pathlib import Path

import yaml

from .results import METRIC_NAMES, macro_average
PAPER_RESULTS = Path(__file__).resolve().parent / "paper_results.yaml"  # package data
TABLE_ORDER = ("4", "5", "6", "figure2", "readme")
FIGURE2_METRICS = ("radgraph_f1", "ratescore", "inv_radcliq_v1", "bleu4", "rouge_l")
DASH = "–"


def load_paper_results(path: Path = PAPER_RESULTS) -> dict:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def _fmt(value, digits: int) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _interval(interval, digits: int) -> str:
    return DASH if interval is None else f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def _n(task: dict | None) -> str:
    return DASH if task is None else f"{task['n_scored']} / {task['n_skipped']}"


def _evaluated_by_row(results: dict, table: str) -> dict[str, dict]:
    return {task["row"]: task for task in results["tasks"].values() if task["table"] == table}


def _fallback_text(task: dict, digits: int = 3) -> str:
    parts = [f"{METRIC_NAMES[m]} {_fmt(v['value'], digits)} {_interval(v['ci95'], digits)}"
             for m, v in task["fallback"]["metrics"].items()]
    return f"{task['fallback']['reason']}; fallback: " + ", ".join(parts)


def _cell(task: dict | None) -> str:
    if task is None:
        return "not run"
    if task.get("primary") is None:
        return _fallback_text(task) if task.get("fallback") else f"unavailable ({METRIC_NAMES[task['primary_metric']]})"
    return _fmt(task["primary"], 2)


def render_table(results: dict, paper: dict, table: str) -> str:
    spec = paper["tables"][table]
    models = spec.get("models", paper["models"])  # the README's table compares other models than the paper's
    label = results["label"]
    evaluated = _evaluated_by_row(results, table)
    lines = [f"### {spec['caption']}", ""]
    header = ["Metric" if table == "figure2" else "Dataset", label, "95% CI", "n (scored / skipped)", *models]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    if table == "figure2":
        task = next(iter(evaluated.values()), None)
        for metric in FIGURE2_METRICS:
            published = spec["rows"].get(metric, [None] * len(models))
            if task is None:
                ours, interval = "not run", DASH
            else:
                value = task["scores"][metric]
                if isinstance(value, dict):
                    ours = _fmt(value["value"], 3) if value["value"] is not None else f"unavailable: {value['unavailable']}"
                else:
                    ours = _fmt(value, 3)
                interval = _interval(task["scores"]["ci95"].get(metric), 3)
            name = METRIC_NAMES[metric] + ("" if metric in spec["rows"] else " (not in the paper)")
            lines.append(f"| {name} | {ours} | {interval} | {_n(task)} | "
                         + " | ".join(_fmt(v, 3) for v in published) + " |")
        return "\n".join(lines)

    for row, published in spec["rows"].items():
        task = evaluated.get(row)
        interval = _interval(task.get("primary_ci95"), 2) if task else DASH
        lines.append(f"| {row} | {_cell(task)} | {interval} | {_n(task)} | "
                     + " | ".join(_fmt(v, 2) for v in published) + " |")
    other = [f"{row}: {task['setting']}" for row, task in evaluated.items() if task.get("setting", "paper") != "paper"]
    average = results.get("macro_average", {}).get(table)
    if average:
        rows = average["rows"]
        theirs = [macro_average([spec["rows"][row][m] for row in rows]) for m in range(len(models))]
        lines.append(f"| Macro average ({len(rows)} rows) | {_fmt(average['mean'], 2)} | {DASH} | {DASH} | "
                     + " | ".join(_fmt(v, 2) for v in theirs) + " |")
    if other:  # items not selected as in the paper: the published columns are not comparable for these rows
        lines += ["", "Rows scored in a setting other than the paper's: " + "; ".join(other) + "."]
    return "\n".join(lines)


def render_tables(results: dict, paper: dict | None = None) -> str:
    paper = paper or load_paper_results()
    header = [f"# Evaluation of {results['label']}", "",
              f"Model: `{results['model']}`. Published columns: MedGPT-oss paper, section 4.4. "
              "95% CI: Wilson interval for accuracies, seeded bootstrap over items for BLEU-4 / ROUGE-L. "
              "n: items scored / records skipped by the loader (reasons in results.json). Macro average: "
              "unweighted mean over the rows scored with their primary metric, for every column alike.", ""]
    body = "\n\n".join([render_table(results, paper, t) for t in TABLE_ORDER] + render_breakdowns(results))
    not_run = [f"- `{name}`: {reason}" for name, reason in sorted(results.get("not_run", {}).items())]
    footer = ["", "", "### Tasks not run", "", *not_run] if not_run else []
    return "\n".join(header + [body] + footer) + "\n"


def render_breakdowns(results: dict) -> list[str]:
    """One table per (task, breakdown field): accuracy, 95% CI and n of every group (OmniMedVQA modalities...)."""
    sections = []
    for task in results["tasks"].values():
        for key, groups in task["scores"].get("breakdowns", {}).items():
            lines = [f"### {task['title']}: accuracy by {key.replace('_', ' ')} ({results['label']})", "",
                     f"| {key.replace('_', ' ').capitalize()} | Accuracy | 95% CI | n |", "|---|---|---|---|"]
            lines += [f"| {value} | {_fmt(group['accuracy'], 2)} | {_interval(group['ci95'], 2)} | {group['n']} |"
                      for value, group in groups.items()]
            sections.append("\n".join(lines))
    return sections


def render_summary(results: dict, seconds: dict[str, float], total_seconds: float) -> str:
    """Fixed-width end-of-run table for stdout: one line per task with score, interval, n and wall time."""
    rows = [("task", "metric", "score", "95% CI", "scored", "skipped", "time (s)")]
    for name, task in results["tasks"].items():
        metric = METRIC_NAMES[task["primary_metric"]]
        if task["primary"] is not None:
            score, interval = _fmt(task["primary"], 2), _interval(task["primary_ci95"], 2)
        elif task.get("fallback"):
            fallback = task["fallback"]["metrics"]["rouge_l"]
            metric = f"ROUGE-L (fallback: {task['fallback']['reason']})"
            score, interval = _fmt(fallback["value"], 3), _interval(fallback["ci95"], 3)
        else:
            score, interval = "unavailable", DASH
        label = name if task.get("setting", "paper") == "paper" else f"{name} [{task['setting']}]"
        rows.append((label, metric, score, interval, str(task["n_scored"]), str(task["n_skipped"]),
                     f"{seconds.get(name, 0.0):.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"Evaluation of {results['label']} ({results['model']})"]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if c < 2 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for table, average in results.get("macro_average", {}).items():
        lines.append(f"macro average, Table {table}: {average['mean']:.2f} over {len(average['rows'])} row(s)")
    for name, reason in sorted(results.get("not_run", {}).items()):
        lines.append(f"not run: {name}: {reason}")
    lines.append(f"total wall time: {total_seconds:.1f} s")
    return "\n".join(lines)
