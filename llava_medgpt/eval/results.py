"""Predictions -> per-task scores -> one results dict (written as results.json by the runner).

Scores are percentages for accuracy tasks; report tasks carry BLEU-4, ROUGE-L (0-1) and the optional
clinical metrics, each either {"value": x} or {"value": null, "unavailable": reason}.
"""

from .harmony import answer_text
from .metrics import CLINICAL_METRICS, compute_clinical_metric, corpus_bleu, mean_rouge_l
from .scoring import extract_choice, match_open_answer
from .tasks.base import ACCURACY, MCQ, OPEN, EvalItem, TaskConfig

PAPER_TABLES = {"4": "Medical VQA (Table 4)", "5": "Text-only medical QA (Table 5)",
                "6": "In-context learning (Table 6)", "figure2": "MIMIC-CXR report generation (Figure 2)"}


def score_item(item: EvalItem, output: str) -> dict:
    """Per-example verdict: the extracted letter (MCQ) and whether it is right."""
    if item.kind == MCQ:
        choice = extract_choice(output, item.options)
        return {"choice": choice, "correct": choice == item.answer}
    if item.kind == OPEN:
        return {"correct": match_open_answer(output, item.answer)}
    return {}


def score_task(config: TaskConfig, items: list[EvalItem], outputs: dict[str, str], clinical: bool = True) -> dict:
    """Scores of one task from its items and their raw outputs (item id -> text)."""
    if config.scoring == ACCURACY:
        verdicts = [score_item(item, outputs[item.id]) for item in items]
        correct = sum(v["correct"] for v in verdicts)
        no_option = sum(1 for item, v in zip(items, verdicts) if item.kind == MCQ and v["choice"] is None)
        return {"n": len(items), "correct": correct, "no_valid_option": no_option,
                "accuracy": 100.0 * correct / len(items) if items else None}
    predictions = [answer_text(outputs[item.id]) or "" for item in items]
    references = [item.answer for item in items]
    scores = {"n": len(items), "bleu4": corpus_bleu(predictions, references),
              "rouge_l": mean_rouge_l(predictions, references)}
    for name in CLINICAL_METRICS:
        result = compute_clinical_metric(name, predictions, references) if clinical else None
        scores[name] = result.to_json() if result else {"value": None, "unavailable": "clinical metrics disabled"}
    return scores


def primary_value(config: TaskConfig, scores: dict) -> float | None:
    """The number that goes in the paper-style table (percent for accuracy and for Table 6 report tasks)."""
    value = scores.get(config.primary_metric)
    if isinstance(value, dict):
        value = value.get("value")
    if value is None:
        return None
    if config.scoring != ACCURACY and config.paper.get("table") == "6":
        return 100.0 * value
    return value


def macro_averages(tasks: dict[str, dict]) -> dict[str, dict]:
    """Per paper table: mean primary value over the evaluated accuracy tasks of that table."""
    averages = {}
    for table in PAPER_TABLES:
        scored = {name: t["primary"] for name, t in tasks.items()
                  if t["table"] == table and "accuracy" in t["scores"] and t["primary"] is not None}
        if scored:
            averages[table] = {"mean": sum(scored.values()) / len(scored), "tasks": sorted(scored)}
    return averages
