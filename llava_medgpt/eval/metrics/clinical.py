"""Clinically informed report metrics through the packages that maintain them (optional extra).

    RadGraph-F1 ("partial" reward level)  package `radgraph`   (F1RadGraph)
    RaTEScore                             package `RaTEScore`  (RaTEScore)
    1/RadCliQ-v1                          package `RadEval`    (RadCliQ-v1 composite)

Each needs model weights that these packages fetch from a hub on first use. We construct them with the
hub in offline mode: when the package is missing or its weights are not in the local cache, the metric is
reported as unavailable with the reason -- never as a number.
"""

import importlib.util
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricResult:
    value: float | None
    unavailable: str | None = None  # the reason when value is None

    def to_json(self) -> dict:
        return {"value": self.value} if self.unavailable is None else {"value": None, "unavailable": self.unavailable}


@contextmanager
def _offline():
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _radgraph_f1(predictions: list[str], references: list[str]) -> float:
    from radgraph import F1RadGraph

    scorer = F1RadGraph(reward_level="partial")
    mean_reward, *_ = scorer(hyps=predictions, refs=references)
    return float(mean_reward)


def _ratescore(predictions: list[str], references: list[str]) -> float:
    from RaTEScore import RaTEScore

    scores = RaTEScore().compute_score(predictions, references)
    return float(sum(scores) / len(scores))


def _inverse_radcliq(predictions: list[str], references: list[str]) -> float:
    from RadEval import RadEval

    # Paper, footnote 2: average RadCliQ-v1 over the dataset, then take the reciprocal.
    result = RadEval(do_radcliq=True)(refs=references, hyps=predictions)
    return 1.0 / float(result["radcliq-v1"])


@dataclass(frozen=True)
class ClinicalMetric:
    package: str  # import name checked before anything is constructed
    pip_name: str
    compute: Callable[[list[str], list[str]], float]


CLINICAL_METRICS: dict[str, ClinicalMetric] = {
    "radgraph_f1": ClinicalMetric("radgraph", "radgraph", _radgraph_f1),
    "ratescore": ClinicalMetric("RaTEScore", "RaTEScore", _ratescore),
    "inv_radcliq_v1": ClinicalMetric("RadEval", "RadEval", _inverse_radcliq),
}


def compute_clinical_metric(name: str, predictions: list[str], references: list[str]) -> MetricResult:
    metric = CLINICAL_METRICS[name]
    if importlib.util.find_spec(metric.package) is None:
        return MetricResult(None, f"package {metric.package!r} not installed (pip install {metric.pip_name})")
    if not predictions:
        return MetricResult(None, "no predictions")
    try:
        with _offline():
            return MetricResult(metric.compute(predictions, references))
    except Exception as err:  # most often: weights not in the local hub cache while offline
        return MetricResult(None, f"{metric.package} could not run offline ({type(err).__name__}: {err})"[:500])
