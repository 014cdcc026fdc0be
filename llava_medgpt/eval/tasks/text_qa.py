"""Text-only medical QA benchmarks (paper Table 5): record in its official release schema -> EvalItem."""

import json
from pathlib import Path

from .base import MCQ, BadRecord, EvalItem, TaskConfig, letter_options, option_letters
from .sources import glob_files, is_missing, read_records


def convert_medqa(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """MedQA (USMLE, US 4-option test set, 1,273 questions).

    {"question": "A 23-year-old ...", "answer": "Nitrofurantoin", "options": {"A": "Ampicillin", ...,
     "D": "Nitrofurantoin"}, "meta_info": "step1", "answer_idx": "D", "metamap_phrases": [...]}
    -> EvalItem(id="<line number>", options A-D, answer="D")
    """
    options = {str(k).upper(): str(v).strip() for k, v in record["options"].items() if not is_missing(v)}
    return EvalItem(task=config.name, id=str(record.get("id", record["_index"])), question=record["question"].strip(),
                    kind=MCQ, options=dict(sorted(options.items())), answer=str(record["answer_idx"]).strip().upper(),
                    metadata={"meta_info": record.get("meta_info")})


def convert_medmcqa(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """MedMCQA (dev set, 4,183 questions; its test answers are not public).

    {"id": "45258d3d-...", "question": "Which of the following ...", "opa": "...", "opb": "...", "opc": "...",
     "opd": "...", "cop": 3, "choice_type": "single", "exp": "...", "subject_name": "Anatomy", ...}
    The official JSON numbers the correct option 1-4; the hub parquet (openlifescienceai/medmcqa) 0-3 --
    `cop_base` in the task options says which (hub rows always use 0).
    """
    base = 0 if record.get("_source") == "hub" else int(config.options.get("cop_base", 1))
    letters = option_letters(4)
    try:
        index = int(record["cop"]) - base
    except (TypeError, ValueError) as err:
        raise BadRecord(f"cop {record.get('cop')!r} is not an integer") from err
    if not 0 <= index < 4:
        raise BadRecord(f"cop {record['cop']!r} out of range for base {base}")
    options = {letter: str(record[f"op{letter.lower()}"]).strip() for letter in letters}
    return EvalItem(task=config.name, id=str(record["id"]), question=record["question"].strip(), kind=MCQ,
                    options=options, answer=letters[index], metadata={"subject": record.get("subject_name")})


PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}


def pubmedqa_records(config: TaskConfig, root: Path) -> list[dict]:
    """ori_pqal.json (1,000 labelled questions) restricted to the 500 ids of test_ground_truth.json."""
    (pqal,) = glob_files(root, [config.options.get("questions", "ori_pqal.json")])
    records = read_records(pqal)
    truth_files = list(root.glob(config.options.get("test_ids", "test_ground_truth.json")))
    if truth_files:
        test_ids = set(json.loads(truth_files[0].read_text(encoding="utf-8")))  # {pmid: decision}
        records = [r for r in records if r["_key"] in test_ids]
    return records


def convert_pubmedqa(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """PubMedQA (PQA-L test split, 500 questions; yes / no / maybe).

    "21645374": {"QUESTION": "Do mitochondria play a role in ...?", "CONTEXTS": ["...", "..."],
                 "LABELS": ["BACKGROUND", "RESULTS"], "final_decision": "yes", "LONG_ANSWER": "...", ...}
    -> EvalItem(id="21645374", context="BACKGROUND: ...\\nRESULTS: ...", options yes/no/maybe, answer="A")
    The hub copy (qiaojin/PubMedQA, pqa_labeled) uses lowercase names: pubid, question, context{contexts,labels}.
    """
    if "QUESTION" in record:
        pmid, question, contexts, labels = record["_key"], record["QUESTION"], record["CONTEXTS"], record.get("LABELS")
    else:
        pmid, question = record["pubid"], record["question"]
        contexts, labels = record["context"]["contexts"], record["context"].get("labels")
    labels = list(labels) if labels is not None else [""] * len(contexts)
    context = "\n".join(f"{label}: {text}" if label else text for label, text in zip(labels, contexts))
    decision = str(record["final_decision"]).strip().lower()
    letter = {v: k for k, v in PUBMEDQA_OPTIONS.items()}.get(decision)
    if letter is None:
        raise BadRecord(f"final_decision {decision!r} is not yes/no/maybe")
    return EvalItem(task=config.name, id=str(pmid), question=question.strip(), kind=MCQ, context=context,
                    options=dict(PUBMEDQA_OPTIONS), answer=letter)


def mmlu_records(config: TaskConfig, root: Path) -> list[dict]:
    """MMLU test questions of the configured subjects, from the hub parquet layout ({subject}/test-*.parquet)
    or the original CSV release (test/{subject}_test.csv: question, A, B, C, D, answer; no header)."""
    records = []
    for subject in config.options["subjects"]:
        parquet = sorted(root.glob(f"{subject}/{config.split}-*.parquet"))
        if parquet:
            for path in parquet:
                records.extend({**r, "subject": subject} for r in read_records(path))
            continue
        (csv_path,) = glob_files(root, [f"{config.split}/{subject}_{config.split}.csv"])
        import csv

        with csv_path.open(encoding="utf-8", newline="") as f:
            for n, row in enumerate(csv.reader(f)):
                if len(row) != 6:
                    raise ValueError(f"{csv_path}:{n + 1}: expected 6 columns, got {len(row)}")
                records.append({"question": row[0], "choices": row[1:5], "answer": "ABCD".index(row[5].strip()),
                                "subject": subject, "_index": n})
    return records


def convert_mmlu(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """MMLU (cais/mmlu), one of the seven medical subsets.

    {"question": "Which of these branches of the trigeminal nerve ...", "subject": "anatomy",
     "choices": ["...", "...", "...", "..."], "answer": 2}
    -> EvalItem(id="anatomy-<index>", options A-D, answer="C")
    """
    options = letter_options(list(record["choices"]))
    answer = record["answer"]
    letter = list(options)[int(answer)] if not isinstance(answer, str) or answer.isdigit() else answer.strip()
    return EvalItem(task=config.name, id=f"{record['subject']}-{record['_index']}", question=record["question"].strip(),
                    kind=MCQ, options=options, answer=letter, metadata={"subject": record["subject"]})


def convert_medbullets(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """Medbullets (USMLE Step 2/3 style; medbullets_op4.csv or medbullets_op5.csv).

    question,opa,opb,opc,opd,ope,answer_idx,answer,explanation,link
    "A 35-year-old ...","...","...","...","...","...",B,"...","...",https://...
    -> EvalItem(id="<row index>", options A-E (A-D for op4), answer="B")
    """
    options = {}
    for letter in option_letters(5):
        value = record.get(f"op{letter.lower()}")
        if not is_missing(value):
            options[letter] = str(value).strip()
    return EvalItem(task=config.name, id=str(record.get("id") or record["_index"]), question=record["question"].strip(),
                    kind=MCQ, options=options, answer=str(record["answer_idx"]).strip().upper())
