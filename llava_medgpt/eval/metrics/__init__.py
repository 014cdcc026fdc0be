"""Report-generation metrics: built-in BLEU / ROUGE-L, optional clinical metrics (RadGraph-F1, RaTEScore,
1/RadCliQ-v1) through their maintained packages."""

from .clinical import CLINICAL_METRICS, MetricResult, compute_clinical_metric
from .text_overlap import corpus_bleu, mean_rouge_l, rouge_l, tokenize

__all__ = ["CLINICAL_METRICS", "MetricResult", "compute_clinical_metric", "corpus_bleu", "mean_rouge_l",
           "rouge_l", "tokenize"]
