"""OmniMedVQA: the release layout -> MCQ items, strict scoring with per-modality / per-question-type breakdowns,
the README's published numbers beside ours, and decontamination over the task."""

import json
from pathlib import Path

import pytest

from llava_medgpt.data.decontaminate import build_eval_index, find_overlap, load_eval_items
from llava_medgpt.eval.results import macro_averages, score_task, task_entry
from llava_medgpt.eval.tables import load_paper_results, render_tables
from llava_medgpt.eval.tasks import load_config, load_task, task_names

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
RELEASE = FIXTURES / "OmniMedVQA"


def test_fixture_uses_the_release_field_names_and_layout():
    items = json.loads((RELEASE / "QA_information/Open-access/ACRIMA.json").read_text())
    assert {"question", "gt_answer", "image_path", "option_A", "option_B", "question_type", "modality_type",
            "question_id", "dataset"} <= set(items[0])
    assert (RELEASE / items[0]["image_path"]).is_file()  # image paths are relative to the release root


def test_loader_converts_items_and_counts_the_bad_one():
    task = load_task("omnimedvqa", FIXTURES)
    assert dict(task.skipped) == {"gt_answer 'Cataract' matches 0 options, expected exactly one": 1}
    items = {item.id: item for item in task.items}
    assert sorted(items) == ["ACRIMA_0000", "ACRIMA_0001", "Chest CT Scan_0000", "Chest CT Scan_0001"]
    glaucoma = items["ACRIMA_0000"]
    assert glaucoma.kind == "mcq" and glaucoma.options == {"A": "Normal", "B": "Glaucoma"}
    assert glaucoma.answer == "B"  # gt_answer is the option's text; the letter is where that text stands
    assert glaucoma.image_paths == ["Images/ACRIMA/Im002_ACRIMA.png"]
    assert glaucoma.images[0].load().mode == "RGB"
    assert glaucoma.metadata == {"modality": "Fundus Photography", "question_type": "Disease Diagnosis",
                                 "dataset": "ACRIMA"}
    assert list(items["ACRIMA_0001"].options) == list("ABCD") and items["ACRIMA_0001"].answer == "C"
    assert items["Chest CT Scan_0000"].answer == "A" and list(items["Chest CT Scan_0000"].options) == list("ABC")
    # The release's one item with "modality" instead of "modality_type" keeps its modality.
    assert items["Chest CT Scan_0001"].metadata["modality"] == "CT(Computed Tomography)"


def test_records_without_question_id_are_named_by_file_and_position(tmp_path):
    qa = tmp_path / "OmniMedVQA" / "QA_information" / "Open-access"
    qa.mkdir(parents=True)
    (qa / "Kvasir.json").write_text(json.dumps([
        {"question": "Q?", "gt_answer": "Polyp", "image_path": "Images/Kvasir/a.png", "option_A": "Polyp",
         "option_B": "Normal", "question_type": "Disease Diagnosis", "modality_type": "Endoscopy"},
        {"question": "Q2?", "gt_answer": "x", "image_path": "Images/Kvasir/b.png", "option_A": "x",
         "option_C": "y", "question_type": "Disease Diagnosis", "modality_type": "Endoscopy"},
    ]))
    task = load_task("omnimedvqa", tmp_path)
    assert [item.id for item in task.items] == ["Kvasir/0"]
    assert task.items[0].metadata["dataset"] == "Kvasir"
    assert list(task.skipped) == ["options are not contiguous from option_A (have ['option_A', 'option_C'])"]


def test_missing_release_is_reported_not_fetched(tmp_path):
    from llava_medgpt.eval.tasks import MissingData

    with pytest.raises(MissingData, match="user-supplied"):
        load_task("omnimedvqa", tmp_path)


def scored():
    task = load_task("omnimedvqa", FIXTURES)
    outputs = {
        "ACRIMA_0000": "B",  # right
        "ACRIMA_0001": "The answer is A.",  # wrong (A: CT)
        "Chest CT Scan_0000": "Adenocarcinoma",  # right: the option's text alone
        "Chest CT Scan_0001": "B or A",  # two letters: no valid option, wrong
    }
    return task, score_task(task.config, task.items, outputs)


def test_strict_scoring_with_per_modality_and_per_question_type_breakdowns():
    _, scores = scored()
    assert (scores["n"], scores["correct"], scores["accuracy"], scores["no_valid_option"]) == (4, 2, 50.0, 1)
    by_modality = scores["breakdowns"]["modality"]
    assert {k: (v["n"], v["correct"]) for k, v in by_modality.items()} == {
        "CT(Computed Tomography)": (2, 1), "Fundus Photography": (2, 1)}
    by_type = scores["breakdowns"]["question_type"]
    assert {k: (v["n"], v["correct"], v["accuracy"]) for k, v in by_type.items()} == {
        "Anatomy Identification": (1, 0, 0.0), "Disease Diagnosis": (2, 2, 100.0), "Modality Recognition": (1, 0, 0.0)}
    assert by_type["Disease Diagnosis"]["ci95"][1] == 100.0 and by_type["Anatomy Identification"]["ci95"][0] == 0.0


def test_tables_put_the_readme_numbers_beside_ours_and_render_the_breakdowns():
    task, scores = scored()
    entry = task_entry(task.config, scores, dict(task.skipped), task.source)
    results = {"label": "tiny", "model": "m", "tasks": {"omnimedvqa": entry}, "not_run": {}}
    results["macro_average"] = macro_averages(results["tasks"])
    text = render_tables(results)
    paper = load_paper_results()["tables"]["readme"]
    assert paper["models"] == ["LLaVA-Med", "MedVInT", "MedGemma", "MedGPT-OSS (CLIP + GPT-oss 20B)"]
    row = next(line for line in text.splitlines() if line.startswith("| OmniMedVQA |"))
    assert row.startswith("| OmniMedVQA | 50.00 |") and row.endswith("| 4 / 1 | 29.88 | 41.26 | 42.33 | 51.49 |")
    assert "| MedGPT-OSS (CLIP + GPT-oss 20B) |" in text
    assert "### OmniMedVQA (open access): accuracy by modality (tiny)" in text
    assert "| Disease Diagnosis | 100.00 |" in text and "| Fundus Photography | 50.00 |" in text


def test_decontamination_covers_the_task(tmp_path):
    assert "omnimedvqa" in task_names()
    items = load_eval_items(FIXTURES, ["omnimedvqa"])
    assert {item.task for item in items} == {"omnimedvqa"} and len(items) == 4
    index = build_eval_index(items)
    images = tmp_path / "train_images"
    images.mkdir()
    (images / "copy.png").write_bytes((RELEASE / "Images/ACRIMA/Im002_ACRIMA.png").read_bytes())
    record = {"id": "train-1", "image": "copy.png",
              "conversations": [{"from": "human", "value": "<image>\nDescribe this picture."},
                                {"from": "gpt", "value": "A fundus photograph."}]}
    overlap = find_overlap(record, index, str(images))
    assert overlap is not None and overlap.kind == "image"
    assert overlap.eval_items == ("omnimedvqa/ACRIMA_0000",)


def test_task_definition_points_at_the_release():
    config = load_config("omnimedvqa")
    assert config.data_subdir == "OmniMedVQA" and config.split == "Open-access"
    assert config.options["breakdowns"] == ["modality", "question_type"]
    assert config.paper == {"table": "readme", "row": "OmniMedVQA"}
