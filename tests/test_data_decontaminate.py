"""Decontamination: planted text and image overlaps are found and dropped; everything else is kept."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from llava_medgpt.data.converters.mcq import format_mcq_prompt
from llava_medgpt.data.decontaminate import (
    JsonlEvalItem, Overlap, build_eval_index, decontaminate, find_overlap, hash_image, load_eval_items, main,
    normalize_question,
)
from llava_medgpt.data.recipes import load_recipe
from llava_medgpt.eval.tasks import task_names

EVAL_QUESTION = "A 34-year-old woman presents with fatigue and joint pain. Which antibody is most specific?"


def _image(path: Path, seed: int, fmt: str = "PNG") -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def _qa(record_id, question, answer="x", image=None):
    record = {"id": record_id, "conversations": [
        {"from": "human", "value": ("<image>\n" if image else "") + question}, {"from": "gpt", "value": answer}]}
    if image:
        record["image"] = image
    return record


@pytest.fixture
def setup(tmp_path):
    eval_dir = tmp_path / "eval"
    _image(eval_dir / "img/slake_test_1.png", seed=1)
    _image(eval_dir / "img/slake_test_2.png", seed=2)
    items = [
        {"task": "medqa", "id": "q1", "question": EVAL_QUESTION, "images": []},
        {"task": "slake", "id": "s1", "question": "Is this an MRI?", "images": ["img/slake_test_1.png"]},
        {"task": "slake", "id": "s2", "question": "Where is the liver located in this scan?",
         "images": ["img/slake_test_2.png"]},
    ]
    (eval_dir / "items.jsonl").write_text("\n".join(json.dumps(i) for i in items) + "\n")

    data = tmp_path / "data"
    images = data / "images"
    (images / "leak.png").parent.mkdir(parents=True)
    (images / "leak.png").write_bytes((eval_dir / "img/slake_test_1.png").read_bytes())  # planted image copy
    _image(images / "clean.png", seed=3)
    # Same pixels as slake_test_2, other container: only the pixel hash can see it.
    Image.open(eval_dir / "img/slake_test_2.png").save(images / "resaved.bmp", format="BMP")

    text_records = [
        _qa("t-leak", format_mcq_prompt("A 34-year-old woman presents with fatigue and joint pain.  Which antibody "
                                        "is MOST specific?", {"A": "Anti-dsDNA", "B": "ANA"}), "A. Anti-dsDNA"),
        _qa("t-clean", "What is the first-line treatment for uncomplicated hypertension in adults?"),
        _qa("t-superset", "Case: A 34-year-old woman presents with fatigue and joint pain. Which antibody is most "
                          "specific? Explain the pathophysiology."),
    ]
    image_records = [
        _qa("i-leak", "Describe the image.", image="leak.png"),
        _qa("i-short-question", "Is this an MRI?", image="clean.png"),  # same generic question, other image
        _qa("i-resaved", "What organ is shown?", image="resaved.bmp"),
    ]
    (data / "text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in text_records))
    (data / "image.jsonl").write_text("".join(json.dumps(r) + "\n" for r in image_records))
    recipe = {"seed": 42, "stage": 2, "datasets": [
        {"name": "TextSet", "json_path": "${ROOT}/text.jsonl", "sampling_strategy": "all", "expected_count": 3,
         "modality": "text", "reasoning": False, "source": "org/text", "converter": "medqa"},
        {"name": "ImageSet", "json_path": "${ROOT}/image.jsonl", "image_folder": "${ROOT}/images",
         "sampling_strategy": "all", "expected_count": 3, "modality": "image", "reasoning": False,
         "source": "org/image", "converter": "slake"},
    ]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path, load_recipe(tmp_path / "recipe.yaml", env={"ROOT": str(data)})


def test_normalize_question():
    assert normalize_question("<image>\nWhat's  the DIAGNOSIS?\n") == "what s the diagnosis"
    assert normalize_question("Ａｂｃ—def_ghi") == "abc def ghi"  # NFKC folds full-width letters


def test_planted_text_and_image_overlaps_are_found_and_nothing_else(setup):
    tmp_path, recipe = setup
    items = load_eval_items(tmp_path / "eval")
    assert [(i.task, i.id) for i in items] == [("medqa", "q1"), ("slake", "s1"), ("slake", "s2")]
    reports = decontaminate(recipe, items)
    by_name = {r.source: r for r in reports}
    # t-leak: the question as a formatted MCQ (exact after normalisation); t-superset: the whole 16-word question
    # inside a longer prompt (text-only item, >= 10 words).
    assert (by_name["TextSet"].records, by_name["TextSet"].text, by_name["TextSet"].image) == (3, 2, 0)
    assert [(o.record_id, o.kind, o.eval_items) for o in by_name["TextSet"].examples] == [
        ("t-leak", "text", ("medqa/q1",)), ("t-superset", "text", ("medqa/q1",))]
    # Exact matching only: the superset passes.
    exact = {r.source: r for r in decontaminate(recipe, items, min_contained_words=None)}
    assert [o.record_id for o in exact["TextSet"].examples] == ["t-leak"]
    assert (by_name["ImageSet"].records, by_name["ImageSet"].text, by_name["ImageSet"].image) == (3, 0, 1)
    assert [(o.record_id, o.kind, o.eval_items) for o in by_name["ImageSet"].examples] == [
        ("i-leak", "image", ("slake/s1",))]


def test_ngram_option_and_pixel_hash_widen_the_net(setup):
    tmp_path, recipe = setup
    items = load_eval_items(tmp_path / "eval")
    by_name = {r.source: r for r in decontaminate(recipe, items, ngram=8, pixels=True, min_contained_words=None)}
    assert sorted(o.record_id for o in by_name["TextSet"].examples) == ["t-leak", "t-superset"]
    assert sorted(o.record_id for o in by_name["ImageSet"].examples) == ["i-leak", "i-resaved"]


def test_drop_writes_filtered_manifests_and_report(setup, capsys, monkeypatch):
    tmp_path, _ = setup
    monkeypatch.setenv("ROOT", str(tmp_path / "data"))
    out = tmp_path / "clean"
    assert main([str(tmp_path / "recipe.yaml"), "--eval-data", str(tmp_path / "eval"), "--drop",
                 "--output", str(out)]) == 0
    kept_text = [json.loads(l)["id"] for l in (out / "text.jsonl").read_text().splitlines()]
    kept_image = [json.loads(l)["id"] for l in (out / "image.jsonl").read_text().splitlines()]
    assert kept_text == ["t-clean"] and kept_image == ["i-short-question", "i-resaved"]
    assert sorted(p.name for p in out.iterdir()) == ["decontamination_report.json", "image.jsonl", "text.jsonl"]
    # Kept lines are byte-identical to the input lines.
    assert (out / "text.jsonl").read_text().splitlines()[0] == \
        (tmp_path / "data/text.jsonl").read_text().splitlines()[1]
    report = json.loads((out / "decontamination_report.json").read_text())
    assert [(r["source"], r["records"], r["text"], r["image"], r["by_task"]) for r in report] == [
        ("TextSet", 3, 2, 0, {"medqa": 2}), ("ImageSet", 3, 0, 1, {"slake": 1})]
    printed = capsys.readouterr().out
    assert "3 eval items checked from 2 task(s)" in printed and "t-leak (text) ~ medqa/q1" in printed
    assert "result: 3 overlapping training records dropped (by eval task: medqa 2, slake 1)" in printed


def test_short_questions_match_by_image_only(tmp_path):
    index = build_eval_index([JsonlEvalItem("vqa_rad", "1", "is this an mri?", [])])
    assert find_overlap(_qa("r", "Is this an MRI?"), index, None) is None
    index = build_eval_index([JsonlEvalItem("vqa_rad", "1", "is this an mri?", [])], min_words=3)
    assert find_overlap(_qa("r", "Is this an MRI?"), index, None).kind == "text"


def test_missing_manifest_is_reported_not_fatal(setup):
    tmp_path, _ = setup
    recipe = load_recipe(tmp_path / "recipe.yaml", env={"ROOT": str(tmp_path / "nowhere")})
    reports = decontaminate(recipe, load_eval_items(tmp_path / "eval"))
    assert all(r.missing and r.records == 0 for r in reports)


# ------------------------------------------------------------------- benchmark folders, default flags

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
MEDQA_TEST = "data_clean/questions/US/4_options/phrases_no_exclude_test.jsonl"
PLANTED = ("A 45-year-old man presents with crushing substernal chest pain radiating to the left arm for two "
           "hours. Which of the following is the most appropriate next step in management?")
PLANTED_OPTIONS = {"A": "Aspirin", "B": "Discharge home", "C": "Antacids", "D": "Reassurance"}


@pytest.fixture
def benchmarks(tmp_path):
    """Every benchmark fixture in its release layout, with one realistic MedQA test question added; a training
    recipe holding that question in three forms, a SLAKE test image and an MMMU test image (embedded in the
    release's parquet), plus clean records."""
    eval_dir = tmp_path / "benchmarks"
    shutil.copytree(FIXTURES, eval_dir, ignore=shutil.ignore_patterns("*.py"))
    with open(eval_dir / "MedQA" / MEDQA_TEST, "a", encoding="utf-8") as f:
        f.write(json.dumps({"question": PLANTED, "answer": "Aspirin", "options": PLANTED_OPTIONS,
                            "meta_info": "step2&3", "answer_idx": "A"}) + "\n")
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    shutil.copy(eval_dir / "Slake1.0/imgs/xmlab1/source.jpg", data / "images/slake_copy.jpg")
    import pyarrow.parquet as pq

    mmmu = pq.read_table(next((eval_dir / "MMMU").rglob("validation-*.parquet"))).to_pylist()[0]
    (data / "images/mmmu_copy.png").write_bytes(mmmu["image_1"]["bytes"])
    _image(data / "images/clean.png", seed=5)
    text_records = [
        # As the MedQA training converter would write it (formatted MCQ): exact after normalisation.
        _qa("exact", format_mcq_prompt(PLANTED, PLANTED_OPTIONS), "A. Aspirin"),
        # Case, punctuation and spacing changed.
        _qa("normalised", PLANTED.upper().replace(".", " ;").replace("  ", " ") + "  "),
        # The question after a preface and before the source's own option list (as MedReason writes it).
        _qa("contained", "Read the case.\n" + PLANTED + "\nA. Aspirin\nB. Discharge home\nC. Antacids"),
        _qa("clean", "A 60-year-old woman has had a dry cough for three weeks after starting lisinopril. "
                     "What is the most likely cause?"),
    ]
    image_records = [_qa("slake-copy", "What is shown?", image="slake_copy.jpg"),
                     _qa("mmmu-copy", "Describe the image.", image="mmmu_copy.png"),
                     _qa("image-clean", "What is shown?", image="clean.png")]
    (data / "text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in text_records))
    (data / "image.jsonl").write_text("".join(json.dumps(r) + "\n" for r in image_records))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"seed": 0, "datasets": [
        {"name": "Text", "json_path": str(data / "text.jsonl"), "sampling_strategy": "all", "expected_count": 4,
         "modality": "text", "reasoning": False, "source": "test", "converter": "medqa"},
        {"name": "Images", "json_path": str(data / "image.jsonl"), "image_folder": str(data / "images"),
         "sampling_strategy": "all", "expected_count": 3, "modality": "image", "reasoning": False,
         "source": "test", "converter": "slake"}]}))
    return eval_dir, recipe


def test_default_flags_check_every_task_found_and_find_the_planted_question(benchmarks, capsys):
    eval_dir, recipe = benchmarks
    assert main([str(recipe), "--eval-data", str(eval_dir)]) == 1  # overlaps found, not dropped
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line and line.split()[0] in task_names()}
    assert sorted(rows) == task_names()  # every task of the registry has fixture data here
    assert rows["medqa"][1:3] == ["4", "4"]  # 3 fixture items + the planted one, all long enough to match
    # every SLAKE test question of the fixture (its widest setting, not only the paper's 5), images hashed
    assert rows["slake"][1] == "7" and int(rows["slake"][3]) == 7
    assert int(rows["mmmu_med"][3]) == 5  # embedded parquet images hashed too
    total = sum(int(r[1]) for r in rows.values())
    assert f"{total:,} eval items checked from {len(task_names())} task(s)" in out
    assert "exact (text) ~ medqa/3" in out and "normalised (text) ~ medqa/3" in out
    assert "contained (text) ~ medqa/3" in out and "clean (" not in out
    assert "slake-copy (image) ~ slake/1" in out
    assert "mmmu-copy (image) ~ mmmu_med/" in out
    assert "image-clean" not in out
    assert "result: 5 training records overlap eval items (by eval task: medqa 3, mmmu_med 1, slake 1)" in out


@pytest.mark.parametrize("tasks, expected", [
    (["all"], None),
    (["table5"], ["medbullets", "medmcqa", "medqa", "medxpertqa_text", "mmlu_med", "pubmedqa"]),
    (["medqa,slake"], ["medqa", "slake"]),
    (["medqa", "slake"], ["medqa", "slake"]),
])
def test_task_names_and_groups_as_in_the_eval_cli(benchmarks, capsys, tasks, expected):
    eval_dir, recipe = benchmarks
    assert main([str(recipe), "--eval-data", str(eval_dir), "--tasks", *tasks]) == 1
    out = capsys.readouterr().out
    checked = sorted(line.split()[0] for line in out.splitlines() if line and line.split()[0] in task_names())
    assert checked == (task_names() if expected is None else expected)
    from llava_medgpt.eval.tasks import parse_tasks

    assert checked == sorted(parse_tasks(",".join(tasks)))


def test_checking_nothing_is_an_error_unless_allowed(benchmarks, tmp_path, capsys):
    _, recipe = benchmarks
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(recipe), "--eval-data", str(empty)]) == 2
    captured = capsys.readouterr()
    assert "0 eval items checked from 0 task(s)" in captured.out
    assert "error: 0 eval items checked" in captured.err
    assert main([str(recipe), "--eval-data", str(empty), "--allow-empty"]) == 0


def test_a_named_task_without_data_is_an_error_unless_allowed(benchmarks, capsys):
    eval_dir, recipe = benchmarks
    shutil.rmtree(eval_dir / "Slake1.0")
    assert main([str(recipe), "--eval-data", str(eval_dir), "--tasks", "medqa,slake"]) == 2
    captured = capsys.readouterr()
    assert f"not found: slake: data folder {eval_dir / 'Slake1.0'} not found" in captured.out
    assert "error: no eval data for slake" in captured.err
    assert main([str(recipe), "--eval-data", str(eval_dir), "--tasks", "medqa,slake", "--allow-missing"]) == 1
    # Unknown names fail before anything is read, as in the eval CLI.
    assert main([str(recipe), "--eval-data", str(eval_dir), "--tasks", "medqa,nosuchtask"]) == 2
    assert "unknown task 'nosuchtask'" in capsys.readouterr().err


def test_library_functions_stay_importable_for_curation():
    items = [JsonlEvalItem("medqa", "1", PLANTED, [])]
    index = build_eval_index(items)
    assert find_overlap(_qa("r", "Intro. " + PLANTED), index, None) == Overlap("r", "text", ("medqa/1",))
    assert find_overlap(_qa("r", PLANTED.replace("left", "right")), index, None) is None  # one word differs
    assert hash_image(b"abc") == hashlib.sha256(b"abc").hexdigest()
