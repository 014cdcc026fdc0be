"""Decontamination: planted text and image overlaps are found and dropped; everything else is kept."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from llava_medgpt.data.converters.mcq import format_mcq_prompt
from llava_medgpt.data.decontaminate import (
    JsonlEvalItem, build_eval_index, decontaminate, find_overlap, load_eval_items, main, normalize_question,
)
from llava_medgpt.data.recipes import load_recipe

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
    assert (by_name["TextSet"].records, by_name["TextSet"].text, by_name["TextSet"].image) == (3, 1, 0)
    assert [(o.record_id, o.kind, o.eval_items) for o in by_name["TextSet"].examples] == [
        ("t-leak", "text", ("medqa/q1",))]
    assert (by_name["ImageSet"].records, by_name["ImageSet"].text, by_name["ImageSet"].image) == (3, 0, 1)
    assert [(o.record_id, o.kind, o.eval_items) for o in by_name["ImageSet"].examples] == [
        ("i-leak", "image", ("slake/s1",))]


def test_ngram_option_and_pixel_hash_widen_the_net(setup):
    tmp_path, recipe = setup
    items = load_eval_items(tmp_path / "eval")
    by_name = {r.source: r for r in decontaminate(recipe, items, ngram=8, pixels=True)}
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
    assert kept_text == ["t-clean", "t-superset"] and kept_image == ["i-short-question", "i-resaved"]
    # Kept lines are byte-identical to the input lines.
    assert (out / "text.jsonl").read_text().splitlines()[0] == \
        (tmp_path / "data/text.jsonl").read_text().splitlines()[1]
    report = json.loads((out / "decontamination_report.json").read_text())
    assert [(r["source"], r["records"], r["text"], r["image"]) for r in report] == [
        ("TextSet", 3, 1, 0), ("ImageSet", 3, 0, 1)]
    printed = capsys.readouterr().out
    assert "3 eval items checked" in printed and "t-leak (text) ~ medqa/q1" in printed


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
