"""PubMedQA PQA-L (Jin et al. 2019): data/ori_pqal.json (1,000 labelled questions keyed by PMID) and
data/test_ground_truth.json (the 500 test PMIDs -> decision); the hub copy qiaojin/PubMedQA (pqa_labeled,
one train split of the same 1,000) names the fields in lower case.

    "21645374": {"QUESTION": "Do mitochondria play a role in ...?", "CONTEXTS": ["...", "..."],
                 "LABELS": ["BACKGROUND", "RESULTS"], "MESHES": [...], "YEAR": "2011",
                 "final_decision": "yes", "LONG_ANSWER": "..."}
    hub:         {"pubid": 21645374, "question": "...", "context": {"contexts": [...], "labels": [...],
                  "meshes": [...]}, "long_answer": "...", "final_decision": "yes"}
    -> McqQuestion(id="21645374", context="BACKGROUND: ...\\nRESULTS: ...", options yes/no/maybe, answer="A")

The abstract keeps its section labels, one "LABEL: sentence" line per context, for training and evaluation.
"""

import json
from pathlib import Path
from typing import Any, Mapping

from .base import BadRow, McqQuestion, field_text, is_missing

OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}
TEST_IDS_FILE = "test_ground_truth.json"


def _context(contexts: Any, labels: Any) -> str:
    if not isinstance(contexts, list | tuple) and not hasattr(contexts, "tolist"):
        raise BadRow("missing field 'CONTEXTS'")
    contexts = list(contexts.tolist() if hasattr(contexts, "tolist") else contexts)
    labels = list(labels.tolist() if hasattr(labels, "tolist") else labels) if labels is not None else []
    if labels and len(labels) != len(contexts):
        raise BadRow(f"{len(labels)} LABELS for {len(contexts)} CONTEXTS")
    labels = labels or [""] * len(contexts)
    lines = [f"{str(label).strip()}: {text.strip()}" if not is_missing(label) else text.strip()
             for label, text in zip(labels, contexts) if isinstance(text, str) and text.strip()]
    if not lines:
        raise BadRow("missing field 'CONTEXTS'")
    return "\n".join(lines)


def parse(row: Mapping[str, Any]) -> McqQuestion:
    """An ori_pqal.json value (with its PMID key in row["_key"]) or a hub pqa_labeled row."""
    if "QUESTION" in row:
        pmid, question = field_text(row, "_key"), field_text(row, "QUESTION")
        context = _context(row.get("CONTEXTS"), row.get("LABELS"))
    else:
        pmid, question = field_text(row, "pubid"), field_text(row, "question")
        block = row.get("context")
        if not isinstance(block, Mapping):
            raise BadRow("missing field 'context'")
        context = _context(block.get("contexts"), block.get("labels"))
    decision = field_text(row, "final_decision").lower()
    letter = {v: k for k, v in OPTIONS.items()}.get(decision)
    if letter is None:
        raise BadRow(f"final_decision {decision!r} is not yes/no/maybe")
    return McqQuestion(id=pmid, question=question, options=dict(OPTIONS), answer=letter, context=context)


def read_test_ids(path: str | Path) -> set[str]:
    """The PMIDs of test_ground_truth.json ({pmid: decision}): the 500-question PQA-L test split."""
    with Path(path).open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{pmid: decision}}")
    return {str(pmid) for pmid in data}
