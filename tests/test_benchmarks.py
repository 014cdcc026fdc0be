"""One reader per release: the same release file gives the same options and answer letter in training records
(llava_medgpt.data.converters) and eval items (llava_medgpt.eval.tasks); MedMCQA files whose cop values show
the other numbering are refused; the layering of llava_medgpt.benchmarks."""

import ast
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from llava_medgpt.benchmarks import ANSWER_WITH_LETTER, ANSWER_WITH_LETTER_AND_TEXT, BadRow, medmcqa
from llava_medgpt.data.convert import convert_rows, convert_source, source_rows
from llava_medgpt.data.converters import CONVERTERS
from llava_medgpt.eval.tasks import load_task

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
PACKAGE = Path(__file__).parents[1] / "llava_medgpt"
_OPTION_LINE = re.compile(r"^([A-Z])\. (.*)$")


def training_records(source: str, path: Path) -> tuple[list[dict], list[tuple[int, str]]]:
    converter = CONVERTERS[source]
    records, skipped = [], []
    for row_number, out, reason, _ in convert_rows(converter, source_rows(converter, path)):
        records += out
        if reason:
            skipped.append((row_number, reason))
    return records, skipped


def training_mcq(record: dict) -> tuple[str, dict[str, str], str]:
    """(question, options, answer letter) read back from a training record's prompt and target."""
    prompt, target = record["conversations"][0]["value"], record["conversations"][1]["value"]
    lines = prompt.split("\n")
    assert lines[-1] == ANSWER_WITH_LETTER_AND_TEXT
    first = next(i for i, line in enumerate(lines) if line.startswith("A. "))
    options = dict(_OPTION_LINE.match(line).groups() for line in lines[first:-1])
    letter, _, text = target.partition(". ")
    assert options[letter] == text
    return "\n".join(lines[:first]), options, letter


@pytest.mark.parametrize("source,task,path", [
    ("medqa", "medqa", FIXTURES / "MedQA/data_clean/questions/US/4_options/phrases_no_exclude_test.jsonl"),
    ("medmcqa", "medmcqa", FIXTURES / "medmcqa/dev.json"),
    ("pubmedqa", "pubmedqa", FIXTURES / "pubmedqa/ori_pqal.json"),
])
def test_training_records_and_eval_items_agree_on_options_and_answer(source, task, path):
    records, skipped = training_records(source, path)
    items = {item.id: item for item in load_task(task, path=path.parent, setting="release").items} \
        if task == "pubmedqa" else {item.id: item for item in load_task(task, path=_task_root(task)).items}
    assert len(records) == len(items) > 0
    for record in records:
        question, options, letter = training_mcq(record)
        item = items[record["id"].split("-", 1)[1]]
        assert (options, letter) == (item.options, item.answer), record["id"]
        if task == "pubmedqa":  # the abstract with its section labels, in both
            assert question == f"Context: {item.context}\nQuestion: {item.question}"
            assert item.context.startswith("BACKGROUND: ")
        else:
            assert question == item.question
    if task == "medmcqa":  # the official file's cop 1-4: cop 1 is A, and the row with cop 7 is refused in both
        assert [training_mcq(r)[2] for r in records] == ["A", "B", "C"]
        assert skipped == [(4, "cop 7 is not 1-4")]


def _task_root(task: str) -> Path:
    return {"medqa": FIXTURES / "MedQA", "medmcqa": FIXTURES / "medmcqa"}[task]


def test_slake_training_records_and_eval_items_agree():
    path = FIXTURES / "Slake1.0/test.json"
    records, skipped = training_records("slake", path)
    items = {item.id: item for item in load_task("slake", path=path.parent, setting="english").items}
    assert sorted(r["id"] for r in records) == sorted(f"slake-{qid}" for qid in items)
    assert skipped == [(4, "q_lang is not 'en'"), (5, "q_lang is not 'en'"), (6, "q_lang is not 'en'")]
    for record in records:
        item = items[record["id"].removeprefix("slake-")]
        assert record["image"] == item.image_paths[0]
        assert record["conversations"][0]["value"] == f"<image>\n{item.question}"
        answer = record["conversations"][1]["value"]
        assert answer == (item.options[item.answer] if item.kind == "mcq" else item.answer)


def test_medmcqa_hub_parquet_and_official_json_give_the_same_letters(tmp_path):
    official = [json.loads(line) for line in (FIXTURES / "medmcqa/dev.json").read_text().splitlines()][:3]
    hub = [{**row, "cop": row["cop"] - 1} for row in official]
    (tmp_path / "data").mkdir()
    pd.DataFrame(hub).to_parquet(tmp_path / "data/validation-00000-of-00001.parquet", index=False)
    records, _ = training_records("medmcqa", tmp_path / "data/validation-00000-of-00001.parquet")
    items = load_task("medmcqa", path=tmp_path).items
    assert [training_mcq(r)[2] for r in records] == [item.answer for item in items] == ["A", "B", "C"]


@pytest.mark.parametrize("name,cops,message", [
    ("dev.json", [0, 1, 2], r"a \.json MedMCQA file is the 1-4 \(official JSON release\), but its cop values "
                            r"\[0, 1, 2\] are numbered 0-3 \(hub parquet layout\); every answer would shift"),
    ("train.parquet", [1, 2, 4], r"\.parquet MedMCQA file is the 0-3 \(hub parquet layout\), but its cop values "
                                 r"\[1, 2, 4\] are numbered 1-4"),
    ("train.jsonl", [1, 2, 3], r"cannot tell whether this MedMCQA file numbers cop 0-3 \(hub\) or 1-4"),
    ("train.jsonl", [0, 4], r"cop values span 0-4"),
])
def test_medmcqa_file_showing_the_other_numbering_is_refused(tmp_path, name, cops, message):
    rows = [{"id": f"q{i}", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": cop}
            for i, cop in enumerate(cops)]
    path = tmp_path / name
    if name.endswith(".parquet"):
        pd.DataFrame(rows).to_parquet(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ValueError, match=message) as err:
        convert_source("medmcqa", path, tmp_path / "out.jsonl")
    assert str(path) in str(err.value)
    assert not (tmp_path / "out.jsonl").exists()
    if name == "dev.json":  # the eval task refuses the same file with the same message
        with pytest.raises(ValueError, match=message):
            load_task("medmcqa", path=tmp_path)


def test_jsonl_export_shows_its_numbering_through_its_values(tmp_path):
    rows = [{"id": f"q{i}", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": cop}
            for i, cop in enumerate([0, 3, 2, -1])]
    assert medmcqa.cop_base(tmp_path / "train.jsonl", rows) == 0  # -1 (hub test rows) is not evidence
    assert medmcqa.cop_base(tmp_path / "train.jsonl", [{**r, "cop": r["cop"] + 1} for r in rows[:3]]) == 1
    with pytest.raises(BadRow, match="cop 4 is not 0-3"):
        medmcqa.parse({**rows[0], "cop": 4}, 0)


def test_one_name_per_prompt():
    assert ANSWER_WITH_LETTER != ANSWER_WITH_LETTER_AND_TEXT
    definitions = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                    isinstance(node.value.value, str) and node.value.value.startswith("Answer with the option"):
                definitions.append((path.relative_to(PACKAGE).as_posix(), node.targets[0].id))
    assert sorted(definitions) == [("benchmarks/base.py", "ANSWER_WITH_LETTER"),
                                   ("benchmarks/base.py", "ANSWER_WITH_LETTER_AND_TEXT")]


def test_benchmarks_import_neither_data_nor_eval():
    for path in (PACKAGE / "benchmarks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 or node.module == "constants", f"{path.name} imports ..{node.module}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.startswith(("llava_medgpt.data", "llava_medgpt.eval", "torch", "transformers"))
                               for n in names), path.name


def test_release_readers_are_used_by_both_sides():
    for side in ("data/converters", "eval/tasks"):
        text = "".join(p.read_text(encoding="utf-8") for p in (PACKAGE / side).glob("*.py"))
        for module in ("medqa", "medmcqa", "pubmedqa", "slake"):
            assert f"{module}.parse(" in text, (side, module)
