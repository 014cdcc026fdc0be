"""Predictions -> per-task scores -> one results dict (written as results.json by the runner).

Accuracy tasks: percent correct over every scored item (no valid option counts as wrong), with a Wilson 95%
interval. Report tasks: corpus BLEU-4 and mean ROUGE-L (0-1) with seeded bootstrap 95% intervals, and the
optional clinical metrics, each either {"value": x} or {"value": null, "unavailable": reason}.

Every task entry carries n scored and n skipped (records the loader could not convert) beside its score.
When a report task's primary (clinical) metric is unavailable, the entry names BLEU-4 / ROUGE-L as a
labelled fallback; a fallback never enters a macro average.
"""

import numpy as np

from .breakdowns import breakdown_scores
from .harmony import answer_text
from .intervals import bootstrap_interval, wilson_interval
from .metrics import CLINICAL_METRICS, compute_clinical_metric, rouge_l
from .metrics.text_overlap import bleu_from_sums, bleu_statistics
from .scoring import extract_choice, match_open_answer
from .tasks.base import ACCURACY, MCQ, OPEN, EvalItem, TaskConfig

PAPER_TABLES = {"4": "Medical VQA (Table 4)", "5": "Text-only medical QA (Table 5)",
                "6": "In-context learning (Table 6)", "figure2": "MIMIC-CXR report generation (Figure 2)",
                "readme": "OmniMedVQA (repository README)"}
METRIC_NAMES = {"accuracy": "accuracy", "bleu4": "BLEU-4", "rouge_l": "ROUGE-L",
                "radgraph_f1": "RadGraph-F1 (partial)", "ratescore": "RaTEScore", "inv_radcliq_v1": "1/RadCliQ-v1"}
FALLBACK_METRICS = ("bleu4", "rouge_l")  # shown when a report task's clinical metric is unavailable


def score_item(item: EvalItem, output: str) -> dict:
    """Per-example verdict: the extracted letter (MCQ) and whether it is right."""
    if item.kind == MCQ:
        choice = extract_choice(output, item.options)
        return {"choice": choice, "correct": choice == item.answer}
    if item.kind == OPEN:
        return {"correct": match_open_answer(output, item.answer)}
    return {}


def _percent_interval(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [100.0 * interval[0], 100.0 * interval[1]]


def score_task(config: TaskConfig, items: list[EvalItem], outputs: dict[str, str], clinical: bool = True) -> dict:
    """Scores of one task from its items and their raw outputs (item id -> text)."""
    if config.scoring == ACCURACY:
        verdicts = [score_item(item, outputs[item.id]) for item in items]
        correct = sum(v["correct"] for v in verdicts)
        no_option = sum(1 for item, v in zip(items, verdicts) if item.kind == MCQ and v["choice"] is None)
        scores = {"n": len(items), "correct": correct, "no_valid_option": no_option,
                  "accuracy": 100.0 * correct / len(items) if items else None,
                  "ci95": {"accuracy": _percent_interval(wilson_interval(correct, len(items)))}}
        if config.options.get("breakdowns"):  # e.g. OmniMedVQA by modality and by question type
            scores["breakdowns"] = breakdown_scores(items, verdicts, list(config.options["breakdowns"]))
        return scores
    predictions = [answer_text(outputs[item.id]) or "" for item in items]
    references = [item.answer for item in items]
    bleu = bleu_statistics(predictions, references)
    rouge = np.array([rouge_l(p, r) for p, r in zip(predictions, references)])
    n = len(items)
    scores = {"n": n, "bleu4": float(bleu_from_sums(bleu.sum(axis=0))) if n else 0.0,
              "rouge_l": float(rouge.mean()) if n else 0.0,
              "ci95": {"bleu4": _list(bootstrap_interval(bleu_from_sums, bleu)),
                       "rouge_l": _list(bootstrap_interval(lambda sums: sums[:, 0] / n, rouge))}}
    for name in CLINICAL_METRICS:
        result = compute_clinical_metric(name, predictions, references) if clinical else None
        scores[name] = result.to_json() if result else {"value": None, "unavailable": "clinical metrics disabled"}
    return scores


def _list(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]


def _scale(config: TaskConfig) -> float:
    """Table 6 prints its report rows (Impression) as percentages; Figure 2 as fractions."""
    return 100.0 if config.scoring != ACCURACY and config.paper.get("table") == "6" else 1.0


def primary_value(config: TaskConfig, scores: dict) -> float | None:
    """The number that goes in the paper-style table (percent for accuracy and for Table 6 report tasks)."""
    value = scores.get(config.primary_metric)
    if isinstance(value, dict):
        value = value.get("value")
    return None if value is None else _scale(config) * value


def primary_interval(config: TaskConfig, scores: dict) -> list[float] | None:
    """95% interval of the primary value, on the same scale (None when the metric has none, e.g. RaTEScore)."""
    interval = scores.get("ci95", {}).get(config.primary_metric)
    return None if interval is None else [_scale(config) * v for v in interval]


def task_entry(config: TaskConfig, scores: dict, skipped: dict[str, int], source: str) -> dict:
    """One task's block of results.json: where its row goes, n scored / skipped, primary value and interval."""
    primary = primary_value(config, scores)
    entry = {"title": config.title, "table": config.paper.get("table"), "row": config.paper.get("row"),
             "setting": config.setting, "source": source, "skipped": dict(sorted(skipped.items())),
             "n_scored": scores["n"],
             "n_skipped": sum(skipped.values()), "primary_metric": config.primary_metric, "primary": primary,
             "primary_ci95": primary_interval(config, scores), "fallback": None, "scores": scores}
    if primary is None and config.scoring != ACCURACY:
        entry["fallback"] = {"reason": f"{METRIC_NAMES[config.primary_metric]} unavailable",
                             "metrics": {m: {"value": scores[m], "ci95": scores["ci95"][m]} for m in FALLBACK_METRICS}}
    return entry


def macro_average(values: list[float]) -> float:
    """The one macro-average definition: the unweighted mean of a table's primary values (each task counts
    once, whatever its size). Used for the checkpoint in results.json and for every column of tables.md."""
    if not values:
        raise ValueError("macro average of no rows")
    return sum(values) / len(values)


def macro_averages(tasks: dict[str, dict]) -> dict[str, dict]:
    """Per paper table: macro average over the rows whose primary metric was scored (fallbacks excluded).

    {"4": {"mean": 61.2, "rows": ["SLAKE", "MedFrameQA"], "tasks": ["medframeqa", "slake"]}}; Figure 2 has
    metrics, not rows, and no average.
    """
    averages = {}
    for table in PAPER_TABLES:
        if table == "figure2":
            continue
        scored = {name: t for name, t in tasks.items() if t["table"] == table and t["primary"] is not None}
        if scored:
            averages[table] = {"mean": macro_average([t["primary"] for t in scored.values()]),
                               "rows": [scored[name]["row"] for name in sorted(scored)], "tasks": sorted(scored)}
    return averages
