"""Text-only medical QA benchmarks (paper Table 5): record in its official release schema -> EvalItem."""

from pathlib import Path

from ...benchmarks import medbullets, medmcqa, medqa, pubmedqa
from ...rows import read_rows
from .base import MCQ, EvalItem, TaskConfig, letter_options, mcq_item
from .sources import MissingData, glob_files


def convert_medqa(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """MedQA (USMLE, US 4-option test set, 1,273 questions): `llava_medgpt.benchmarks.medqa`.

    {"question": "A 23-year-old ...", "answer": "Nitrofurantoin", "options": {"A": "Ampicillin", ...,
     "D": "Nitrofurantoin"}, "meta_info": "step1", "answer_idx": "D", "metamap_phrases": [...]}
    -> EvalItem(id="<line number>", options A-D, answer="D")
    """
    return mcq_item(medqa.parse(record, record["_index"]), config)


def medmcqa_records(config: TaskConfig, root: Path, split: str) -> list[dict]:
    """Rows of each release file with that file's cop numbering (`benchmarks.medmcqa.cop_base`) attached."""
    records = []
    for path in glob_files(root, [p.format(split=split) for p in config.options["files"]]):
        rows = list(read_rows(path, strict=True))
        base = medmcqa.cop_base(path, rows)
        records.extend({**row, "_cop_base": base} for row in rows)
    return records


def convert_medmcqa(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """MedMCQA (dev set, 4,183 questions; its test answers are not public): `llava_medgpt.benchmarks.medmcqa`.

    {"id": "45258d3d-...", "question": "Which of the following ...", "opa": "...", "opb": "...", "opc": "...",
     "opd": "...", "cop": 3, "choice_type": "single", "exp": "...", "subject_name": "Anatomy", ...}
    The official dev.json numbers the correct option 1-4, the hub parquet 0-3 (hub rows always).
    """
    base = medmcqa.HUB_COP_BASE if record.get("_source") == "hub" else record["_cop_base"]
    return mcq_item(medmcqa.parse(record, base), config)


PUBMEDQA_OPTIONS = pubmedqa.OPTIONS


def pubmedqa_records(config: TaskConfig, root: Path) -> list[dict]:
    """ori_pqal.json (1,000 labelled questions), restricted to the 500 PMIDs of test_ground_truth.json.

    Without the test ids the paper's setting is refused (MissingData); the "release" setting
    (`test_split_only: false`) scores all 1,000.
    """
    (pqal,) = glob_files(root, [config.options.get("questions", "ori_pqal.json")])
    records = list(read_rows(pqal, strict=True))
    if not config.options.get("test_split_only", True):
        return records
    truth = sorted(root.glob(config.options.get("test_ids", pubmedqa.TEST_IDS_FILE)))
    if truth:
        test_ids = pubmedqa.read_test_ids(truth[0])
        records = [r for r in records if str(r["_key"]) in test_ids]
    else:
        raise MissingData(f"task {config.name}: {root / config.options.get('test_ids', pubmedqa.TEST_IDS_FILE)} "
                          "not found: the paper scores the 500 PQA-L test questions and needs their ids "
                          "(data/test_ground_truth.json of the PubMedQA repository); "
                          f"--setting {config.name}=release scores all 1,000")
    return records


def pubmedqa_hub_allowed(config: TaskConfig) -> None:
    """The hub copy has no test split: only the release setting may read it."""
    if config.options.get("test_split_only", True):
        raise MissingData(f"task {config.name}: the hub copy {config.hub_id} has no test split (all 1,000 PQA-L "
                          "questions); the paper's 500 need the local release with test_ground_truth.json, "
                          f"or --setting {config.name}=release")


def convert_pubmedqa(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """PubMedQA (PQA-L test split, 500 questions; yes / no / maybe): `llava_medgpt.benchmarks.pubmedqa`.

    "21645374": {"QUESTION": "Do mitochondria play a role in ...?", "CONTEXTS": ["...", "..."],
                 "LABELS": ["BACKGROUND", "RESULTS"], "final_decision": "yes", "LONG_ANSWER": "...", ...}
    -> EvalItem(id="21645374", context="BACKGROUND: ...\\nRESULTS: ...", options yes/no/maybe, answer="A")
    """
    return mcq_item(pubmedqa.parse(record), config)


MMLU_CSV_COLUMNS = ("question", "A", "B", "C", "D", "answer")  # the CSV release has no header row


def mmlu_records(config: TaskConfig, root: Path) -> list[dict]:
    """MMLU test questions of the configured subjects, from the hub parquet layout ({subject}/test-*.parquet)
    or the original CSV release (test/{subject}_test.csv: question, A, B, C, D, answer; no header)."""
    records = []
    for subject in config.options["subjects"]:
        parquet = sorted(root.glob(f"{subject}/{config.split}-*.parquet"))
        if parquet:
            for path in parquet:
                records.extend({**r, "subject": subject} for r in read_rows(path, strict=True))
            continue
        (csv_path,) = glob_files(root, [f"{config.split}/{subject}_{config.split}.csv"])
        for n, row in enumerate(read_rows(csv_path, strict=True, fieldnames=MMLU_CSV_COLUMNS)):
            # csv.DictReader puts surplus cells under None and fills missing columns with None.
            if None in row or row["answer"] is None:
                raise ValueError(f"{csv_path}:{n + 1}: expected {len(MMLU_CSV_COLUMNS)} columns")
            records.append({"question": row["question"], "choices": [row[letter] for letter in "ABCD"],
                            "answer": "ABCD".index(row["answer"].strip()), "subject": subject, "_index": n})
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


def medbullets_records(config: TaskConfig, root: Path, split: str) -> list[dict]:
    """Rows of the release CSV; with `unique_questions` (the paper's setting) each repeated question once."""
    records = []
    for path in glob_files(root, [p.format(split=split) for p in config.options["files"]]):
        records.extend({**row, "_index": i} for i, row in enumerate(read_rows(path, strict=True)))
    if config.options.get("unique_questions", False):
        records, _ = medbullets.unique_rows(records)
    return records


def convert_medbullets(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    """Medbullets (USMLE Step 2/3 style; medbullets_op5.csv or medbullets_op4.csv): `benchmarks.medbullets`.

    question,opa,opb,opc,opd,ope,answer_idx,answer,explanation,link
    "A 35-year-old ...","...","...","...","...","...",B,"...","...",https://...
    -> EvalItem(id="<row index>", options A-E (A-D for op4), answer="B")
    """
    return mcq_item(medbullets.parse(record, record["_index"]), config)
