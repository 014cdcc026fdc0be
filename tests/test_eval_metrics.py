"""Built-in report metrics against hand-computed values; optional clinical metrics never fake a number."""

import importlib.util
import math
import os

import pytest

from llava_medgpt.eval.metrics import compute_clinical_metric, corpus_bleu, mean_rouge_l, rouge_l, tokenize
from llava_medgpt.eval.metrics.clinical import CLINICAL_METRICS, ClinicalMetric, MetricResult


def test_tokenize_drops_case_and_punctuation():
    assert tokenize("No acute, cardiopulmonary-process.") == ["no", "acute", "cardiopulmonary", "process"]


def test_corpus_bleu_hand_computed():
    # p1 = 5/6, p2 = 4/5, p3 = 3/4, p4 = 2/3; prediction longer than reference -> no brevity penalty.
    assert corpus_bleu(["the heart size is normal today"], ["the heart size is normal"]) == pytest.approx(
        (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25)
    # All precisions 1, prediction 4 tokens vs reference 5: brevity penalty exp(1 - 5/4).
    assert corpus_bleu(["the heart size is"], ["the heart size is normal"]) == pytest.approx(math.exp(-0.25))
    assert corpus_bleu(["lungs are clear"], ["heart is enlarged"]) == 0.0
    assert corpus_bleu([""], ["heart"]) == 0.0
    with pytest.raises(ValueError):
        corpus_bleu(["a"], [])


def test_rouge_l_hand_computed():
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)  # LCS "a c d": P = R = 3/4
    assert rouge_l("no effusion", "no pleural effusion or pneumothorax") == pytest.approx(2 * 1 * 0.4 / 1.4)
    assert rouge_l("", "x") == 0.0
    assert mean_rouge_l(["a b", "x"], ["a b", "y"]) == pytest.approx(0.5)


@pytest.mark.parametrize("name", sorted(CLINICAL_METRICS))
def test_clinical_metric_without_its_package_is_unavailable_naming_it(name):
    metric = CLINICAL_METRICS[name]
    if importlib.util.find_spec(metric.package) is not None:
        pytest.skip(f"{metric.package} is installed here; the next tests cover the installed path")
    result = compute_clinical_metric(name, ["No effusion."], ["No pleural effusion."])
    assert result == MetricResult(None, f"package {metric.package!r} not installed (pip install {metric.pip_name})")
    assert result.to_json() == {"value": None, "unavailable": result.unavailable}


def test_a_missing_package_is_reported_before_anything_runs(monkeypatch):
    calls = []
    monkeypatch.setitem(CLINICAL_METRICS, "ratescore",
                        ClinicalMetric("llava_medgpt_absent_metric", "absent-metric", lambda p, r: calls.append(p) or 1.0))
    result = compute_clinical_metric("ratescore", ["a"], ["b"])
    assert result == MetricResult(None, "package 'llava_medgpt_absent_metric' not installed (pip install absent-metric)")
    assert calls == []


def test_an_installed_metric_runs_offline_and_its_value_is_reported(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    seen = {}

    def score(predictions, references):
        seen.update(offline=os.environ.get("HF_HUB_OFFLINE"), args=(predictions, references))
        return 0.25

    monkeypatch.setitem(CLINICAL_METRICS, "ratescore", ClinicalMetric("json", "json", score))
    assert compute_clinical_metric("ratescore", ["a"], ["b"]) == MetricResult(0.25)
    assert seen == {"offline": "1", "args": (["a"], ["b"])}  # weights only from the local cache
    assert "HF_HUB_OFFLINE" not in os.environ  # restored afterwards
    assert compute_clinical_metric("ratescore", [], []) == MetricResult(None, "no predictions")


def test_clinical_metric_failure_is_reported_not_scored(monkeypatch):
    def boom(predictions, references):
        raise OSError("We couldn't connect to the hub to load weights")

    monkeypatch.setitem(CLINICAL_METRICS, "ratescore", ClinicalMetric("json", "json", boom))
    result = compute_clinical_metric("ratescore", ["a"], ["b"])
    assert result.value is None and "couldn't connect" in result.unavailable
