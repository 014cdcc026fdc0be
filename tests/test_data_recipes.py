"""Data recipes: Table 1 coverage and counts, recipe validation, sampling strategies, manifest counting."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llava_medgpt.data.converters import CONVERTERS
from llava_medgpt.data.recipes import (
    RecipeError, SamplingStrategy, count_records, load_recipe, main, parse_sampling_strategy, report_counts,
    select_indices, stable_seed, validate_recipe,
)

REPO = Path(__file__).resolve().parents[1]
RECIPES = {0: REPO / "data_recipes/stage0_pretrain.yaml", 1: REPO / "data_recipes/stage1_midtrain.yaml",
           2: REPO / "data_recipes/stage2_sft.yaml"}
ENV = {"DATA_ROOT": "/data", "MIMIC_CXR_ROOT": "/mimic", "MIMIC_CXR_VQA_ROOT": "/mimic_vqa"}

# Table 1 of the paper, verbatim: name -> (examples, stage, modality, reasoning "(R)").
TABLE1 = {
    "II-Medical-Reasoning": (2_197_741, 2, "text", True),
    "Infinity-Instruct-Gen": (1_483_097, 2, "text", False),
    "ReasonMed": (1_111_555, 2, "text", True),
    "MedMCQA": (182_822, 2, "text", False),
    "HealthCareMagic-100k": (112_165, 2, "text", False),
    "MedQA": (10_178, 2, "text", False),
    "MedExpQA": (434, 2, "text", False),
    "PubMedQA": (1_000, 2, "text", False),
    "AlpaCare-MedInstruct-52k": (52_002, 2, "text", False),
    "MedQuAD": (47_441, 2, "text", False),
    "Huotuo-o1": (40_644, 2, "text", True),
    "MedReason": (32_682, 2, "text", True),
    "Medical-R1-Distill-Data": (22_000, 2, "text", True),
    "MedThoughts-8K": (7_716, 2, "text", True),
    "iCliniq-10K": (7_321, 2, "text", False),
    "ROCOv2 (filtered)": (38_861, 0, "image", False),
    "MIMIC-CXR (single-panel)": (22_747, 1, "image", False),
    "MIMIC-CXR (multi-view & longitudinal)": (146_893, 1, "image", False),
    "MIMIC-CXR-VQA": (363_598, 2, "image", False),
    "SLAKE (English)": (9_835, 2, "image", False),
    "VQA-Rad": (1_793, 2, "image", False),
    "GEMeX-ThinkVG": (202_383, 2, "image", True),
    "Quilt-1M (filtered)": (359_725, 0, "image", False),
    "Quilt-VQA": (107_131, 2, "image", False),
    "PMC-OA (filtered)": (477_078, 0, "image", False),
    "BIOMEDICA (dermatology and surgery subsets)": (63_775, 0, "image", False),
    "MedTrinity (accessible)": (18_525_974, 1, "image", False),
    "PubMedVision (alignment)": (646_759, 1, "image", False),
    "PMC-VQA": (188_229, 2, "image", False),
    "OpenMM-Medical": (88_996, 2, "image", False),
    "GMAI-Reasoning10K": (9_965, 2, "image", True),
}


@pytest.fixture(scope="module")
def recipes():
    return {stage: load_recipe(path, env=ENV) for stage, path in RECIPES.items()}


def test_every_table1_source_is_in_exactly_one_stage_with_its_count(recipes):
    assert len(TABLE1) == 31
    seen = {}
    for stage, recipe in recipes.items():
        assert recipe.stage == stage and recipe.seed == 42
        for entry in recipe.datasets:
            assert entry.name not in seen, f"{entry.name} in stages {seen[entry.name]} and {stage}"
            seen[entry.name] = stage
            count, table_stage, modality, reasoning = TABLE1[entry.name]
            assert (entry.expected_count, stage, entry.modality, entry.reasoning) == \
                (count, table_stage, modality, reasoning), entry.name
            assert str(entry.sampling_strategy) == "all"
    assert set(seen) == set(TABLE1)


def test_stage_totals_match_table1_and_the_papers_approximations(recipes):
    totals = {stage: sum(e.expected_count for e in r.datasets) for stage, r in recipes.items()}
    assert totals[0] == 939_439  # paper: "approximately 939K pairs"
    assert totals[1] == 19_342_373  # paper: "approximately 19M samples"
    assert round(totals[1] / 1e6) == 19
    assert totals[2] == 6_280_728
    # The paper's prose says "approximately 7M" for instruction tuning, but its own Table 1 IT rows sum to
    # 6.28M (rounds to 6M). We keep Table 1's numbers; docs/data.md records the mismatch.
    assert round(totals[2] / 1e6) == 6


def test_each_converter_serves_exactly_one_recipe_entry(recipes):
    used = [e.converter for r in recipes.values() for e in r.datasets]
    assert sorted(used) == sorted(CONVERTERS)
    for entry in (e for r in recipes.values() for e in r.datasets):
        assert CONVERTERS[entry.converter].table1_name == entry.name


def test_paths_expand_from_env_and_credentialed_sources_are_placeholders(recipes):
    mimic = recipes[1].source("MIMIC-CXR (single-panel)")
    assert mimic.json_path == "/data/stage1/mimic_cxr_single.jsonl"
    assert mimic.image_folder == "/mimic" and mimic.source == "/mimic"
    raw = (RECIPES[1]).read_text()
    assert "source: ${MIMIC_CXR_ROOT}" in raw


def test_unset_variable_is_a_clear_error_or_left_in_place():
    with pytest.raises(RecipeError, match=r"stage1_midtrain.yaml: datasets\[2\] \(MIMIC-CXR \(multi-view.*"
                                          r"MIMIC_CXR_ROOT"):
        load_recipe(RECIPES[1], env={"DATA_ROOT": "/data"})
    recipe = load_recipe(RECIPES[1], env={"DATA_ROOT": "/data"}, strict=False)
    assert recipe.source("MIMIC-CXR (single-panel)").image_folder == "${MIMIC_CXR_ROOT}"


def _write_recipe(tmp_path, entry_overrides=None, top=None):
    entry = {"name": "Toy", "json_path": "${ROOT:-/nowhere}/toy.jsonl", "sampling_strategy": "all",
             "expected_count": 3, "modality": "text", "reasoning": False, "source": "org/toy", "converter": "medqa"}
    entry.update(entry_overrides or {})
    entry = {k: v for k, v in entry.items() if v is not None}
    data = {"seed": 7, "stage": 2, "datasets": [entry]}
    data.update(top or {})
    path = tmp_path / "recipe.yaml"
    import yaml
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("override, message", [
    ({"json_path": None}, r"datasets\[0\] \(Toy\): missing 'json_path'"),
    ({"expected_count": 0}, r"'expected_count' must be a positive integer"),
    ({"sampling_strategy": "middle:5"}, r"datasets\[0\] \(Toy\): bad sampling strategy 'middle:5'"),
    ({"converter": "nope"}, r"datasets\[0\] \(Toy\): unknown converter 'nope'"),
    ({"modality": "video"}, r"'modality' must be one of"),
    ({"modality": "image"}, r"image datasets need an 'image_folder'"),
    ({"reasoning": "yes"}, r"'reasoning' must be true or false"),
    ({"json_path": "/x/toy.txt"}, r"'json_path' must end with"),
    ({"extra": 1}, r"unknown fields \['extra'\]"),
    ({"image_foler": "/x"}, r"unknown fields \['image_foler'\] \(did you mean 'image_foler' -> 'image_folder'\?\)"),
])
def test_invalid_entries_name_file_and_entry(tmp_path, override, message):
    path = _write_recipe(tmp_path, override)
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(path, env={})
    assert str(path) in str(info.value)


def test_default_values_in_variables(tmp_path):
    path = _write_recipe(tmp_path)
    assert load_recipe(path, env={}).datasets[0].json_path == "/nowhere/toy.jsonl"
    assert load_recipe(path, env={"ROOT": "/r"}).datasets[0].json_path == "/r/toy.jsonl"


@pytest.mark.parametrize("text, expected", [
    ("all", SamplingStrategy("all")),
    ("first:100", SamplingStrategy("first", count=100)),
    ("end:7", SamplingStrategy("end", count=7)),
    ("random:10%", SamplingStrategy("random", percent=10.0)),
    ("first:2.5%", SamplingStrategy("first", percent=2.5)),
])
def test_parse_sampling_strategy(text, expected):
    assert parse_sampling_strategy(text) == expected
    assert str(parse_sampling_strategy(text)) == text


@pytest.mark.parametrize("bad", ["", "first", "first:0", "first:-3", "random:x", "random:0%", "random:101%", "all:5"])
def test_parse_sampling_strategy_rejects(bad):
    with pytest.raises(ValueError):
        parse_sampling_strategy(bad)


def test_first_end_all_and_percent_are_exact():
    assert select_indices("all", 5, 0).tolist() == [0, 1, 2, 3, 4]
    assert select_indices("first:3", 10, 0).tolist() == [0, 1, 2]
    assert select_indices("end:3", 10, 0).tolist() == [7, 8, 9]
    assert select_indices("first:30", 10, 0).tolist() == list(range(10))  # clamped to what exists
    assert select_indices("end:10%", 25, 0).tolist() == [22, 23, 24]  # ceil(2.5) = 3
    assert select_indices("first:1%", 50, 0).tolist() == [0]  # ceil(0.5) = 1
    assert select_indices("random:3", 0, 0).tolist() == []
    assert select_indices("all", 4, 0).dtype == np.int64


def test_random_is_deterministic_sorted_unique_and_seed_dependent():
    a = select_indices("random:50", 1000, 42, "PMC-VQA")
    b = select_indices("random:50", 1000, 42, "PMC-VQA")
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == 50 and a.tolist() == sorted(a.tolist()) and a.min() >= 0 and a.max() < 1000
    assert a.tolist() != select_indices("random:50", 1000, 43, "PMC-VQA").tolist()
    assert a.tolist() != select_indices("random:50", 1000, 42, "MedQA").tolist()
    assert len(select_indices("random:10%", 1000, 42, "x")) == 100
    assert select_indices("random:2000", 1000, 1, "x").tolist() == list(range(1000))


def test_stable_seed_is_sha256_based():
    import hashlib
    expected = int.from_bytes(hashlib.sha256(b"42:PMC-VQA").digest()[:8], "little")
    assert stable_seed(42, "PMC-VQA") == expected


def test_random_selection_is_identical_across_processes():
    # Each rank is a separate interpreter; Python's hash() differs across them (PYTHONHASHSEED), ours must not.
    code = ("from llava_medgpt.data.recipes import select_indices;"
            "print(select_indices('random:20', 500, 42, 'SLAKE (English)').tolist())")
    outputs = []
    for hashseed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                                check=True)
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0]) == select_indices("random:20", 500, 42, "SLAKE (English)").tolist()


def test_count_records_jsonl_json_parquet(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "1"}\n\n{"id": "2"}\n{"id": "3"}')  # blank line, no final newline
    assert count_records(tmp_path / "a.jsonl") == 3
    (tmp_path / "b.json").write_text(json.dumps([{"id": str(i)} for i in range(4)]))
    assert count_records(tmp_path / "b.json") == 4
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"id": [str(i) for i in range(6)]}), tmp_path / "c.parquet")
    assert count_records(tmp_path / "c.parquet") == 6
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(ValueError, match="must be a JSON list of rows, got dict"):
        count_records(tmp_path / "d.json")


def test_report_counts_and_cli(tmp_path, capsys):
    (tmp_path / "toy.jsonl").write_text("\n".join(json.dumps(_text_record(i)) for i in range(3)) + "\n")
    import yaml
    data = {"seed": 1, "stage": 2, "datasets": [
        {"name": "Toy", "json_path": "${ROOT}/toy.jsonl", "sampling_strategy": "random:50%", "expected_count": 4,
         "modality": "text", "reasoning": False, "source": "org/toy", "converter": "medqa"},
        {"name": "Gone", "json_path": "${ROOT}/gone.jsonl", "sampling_strategy": "all", "expected_count": 9,
         "modality": "text", "reasoning": False, "source": "org/gone", "converter": "medmcqa"}]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    rows = report_counts(load_recipe(path, env={"ROOT": str(tmp_path)}))
    assert [(r.source, r.expected, r.found, r.selected) for r in rows] == [("Toy", 4, 3, 2), ("Gone", 9, None, None)]
    os.environ["ROOT"] = str(tmp_path)
    try:
        assert main([str(path)]) == 2  # the missing manifest is a problem
    finally:
        del os.environ["ROOT"]
    captured = capsys.readouterr()
    assert "Toy" in captured.out and "-1" in captured.out and "missing" in captured.out and "total" in captured.out
    assert f"datasets[1] (Gone): json_path {tmp_path / 'gone.jsonl'} does not exist" in captured.err


# ------------------------------------------------------------------------- a user's own LLaVA data


def _text_record(i):
    return {"id": f"t{i}", "conversations": [{"from": "human", "value": f"Q{i}?"}, {"from": "gpt", "value": "A."}]}


def _image_record(i, image):
    return {"id": f"m{i}", "image": image,
            "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "A."}]}


@pytest.fixture
def own_data(tmp_path):
    """Already-converted LLaVA data: a JSONL with images and a JSON list of text records."""
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (i, 0, 0)).save(tmp_path / "imgs" / f"{i}.png")
    (tmp_path / "my_vqa.jsonl").write_text("".join(json.dumps(_image_record(i, f"{i}.png")) + "\n" for i in range(3)))
    (tmp_path / "notes.json").write_text(json.dumps([_text_record(i) for i in range(5)]))
    return tmp_path


def test_a_llava_onevision_entry_needs_only_paths(own_data):
    path = own_data / "mine.yaml"
    path.write_text(f"""datasets:
  - json_path: {own_data}/my_vqa.jsonl
    image_folder: {own_data}/imgs
  - json_path: {own_data}/notes.json
    sampling_strategy: "first:2"
""")
    recipe = load_recipe(path, env={})
    assert recipe.seed == 42 and recipe.stage == -1
    vqa, notes = recipe.datasets
    assert (vqa.name, str(vqa.sampling_strategy), vqa.image_folder, vqa.expected_count, vqa.converter) == (
        "my_vqa", "all", f"{own_data}/imgs", None, None)
    assert (notes.name, str(notes.sampling_strategy), notes.image_folder) == ("notes", "first:2", None)
    assert validate_recipe(path, env={}) == []
    assert main([str(path)]) == 0
    # The dataset reads it: 3 image samples + the first 2 notes.
    from llava_medgpt.data.dataset import MedGptDataset
    from llava_medgpt.model.tokenizer import build_tiny_tokenizer
    from llava_medgpt.processing.image_processor import MedGptImageProcessor
    from llava_medgpt.processing.processor import MedGptProcessor

    processor = MedGptProcessor(MedGptImageProcessor(), build_tiny_tokenizer("gpt_oss"))
    dataset = MedGptDataset(path, processor, max_length=4096, cache_dir=own_data / "cache", env={})
    assert [dataset[k]["id"] for k in range(len(dataset))] == ["m0", "m1", "m2", "t0", "t1"]
    assert dataset[0]["pixel_values"] is not None


def test_image_folder_default_comes_from_the_training_argument(own_data):
    path = own_data / "mine.yaml"
    path.write_text(f"datasets:\n  - json_path: {own_data}/my_vqa.jsonl\n")
    problems = validate_recipe(path, env={})
    assert problems == [f"{path}: datasets[0] (my_vqa): records have images (record 'm0': '0.png') but the entry "
                        "has no 'image_folder'"]
    assert validate_recipe(path, env={}, image_folder=str(own_data / "imgs")) == []
    assert main([str(path), "--train-args", "--image_folder", str(own_data / "imgs"), "--packing", "True"]) == 0
    # The launcher passes the stage's settings files: their image_folder counts, and a flag after them wins.
    settings = own_data / "stage.yaml"
    settings.write_text(f"image_folder: {own_data / 'no_such_folder'}\n")
    assert main([str(path), "--train-args", "--config", str(settings)]) == 2
    assert main([str(path), "--train-args", "--config", str(settings), "--image_folder", str(own_data / "imgs")]) == 0
    assert load_recipe(path, env={}, image_folder="/imgs").datasets[0].image_folder == "/imgs"


def test_every_problem_is_listed_at_once(own_data, capsys):
    path = own_data / "bad.yaml"
    path.write_text(f"""seed:
datasets:
  - json_path: {own_data}/my_vqa.jsonl
    image_folder: {own_data}/no_such_folder
  - json_path: {own_data}/notes.json
    sampling_strategy: "middle:3"
    image_foler: {own_data}/imgs
  - name: Gone
    json_path: ${{NOT_SET_ANYWHERE}}/x.jsonl
  - json_path: {own_data}/sub/my_vqa.jsonl
    converter: my_own_converter
  - sampling_strategy: all
""")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, env={})
    problems = info.value.problems
    assert problems == [
        f"{path}: datasets[1]: unknown fields ['image_foler'] (did you mean 'image_foler' -> 'image_folder'?)",
        f"{path}: datasets[1]: bad sampling strategy 'middle:3'; expected all | first:N | end:N | random:N | <kind>:P%",
        f"{path}: datasets[2] (Gone): 'json_path' uses ${{NOT_SET_ANYWHERE}}, which is not set (export it, or write "
        "${NOT_SET_ANYWHERE:-default})",
        f"{path}: datasets[3]: unknown converter 'my_own_converter' (omit 'converter' for data converted elsewhere); "
        f"known: {sorted(CONVERTERS)}",
        f"{path}: datasets[4]: missing 'json_path'",
    ]
    assert str(info.value).startswith("5 problems:\n  - ")
    # Fixing the schema problems shows the file problems, all at once too.
    path.write_text(f"""datasets:
  - json_path: {own_data}/my_vqa.jsonl
    image_folder: {own_data}/no_such_folder
  - json_path: {own_data}/my_vqa.jsonl
    name: again
    image_folder: {own_data}
  - json_path: {own_data}/missing.jsonl
  - json_path: {own_data}/notes.json
    image_folder: {own_data}/imgs
""")
    (own_data / "notes.json").write_text(json.dumps([{"id": "n0", "conversations": [{"from": "human", "value": "Q"}]}]))
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: 4 problem(s) in {path}:",
        f"  - {path}: datasets[0] (my_vqa): image_folder {own_data}/no_such_folder does not exist",
        f"  - {path}: datasets[1] (again): record 'm0' names an image that is not in the image folder: "
        f"{own_data}/0.png",
        f"  - {path}: datasets[2] (missing): json_path {own_data}/missing.jsonl does not exist",
        f"  - {path}: datasets[3] (notes): record 1 of {own_data}/notes.json is not a LLaVA record: record 'n0': a "
        "record needs at least one prompt turn and one 'gpt' turn",
    ]


def test_duplicate_default_names_ask_for_a_name(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("datasets:\n  - json_path: /a/train.jsonl\n  - json_path: /b/train.jsonl\n")
    with pytest.raises(RecipeError, match=r"datasets\[0\], datasets\[1\] share the name 'train' \(names default to "
                                          r"the json_path's file name\); give each a distinct 'name'"):
        load_recipe(path, env={})


def test_the_launcher_checks_the_recipe_once_before_torchrun(own_data):
    """A bad recipe stops the stage script before any process starts: problems printed once, no output folder."""
    bad = own_data / "bad.yaml"
    bad.write_text(f"datasets:\n  - json_path: {own_data}/missing.jsonl\n  - json_path: {own_data}/my_vqa.jsonl\n")
    env = {**os.environ, "NUM_GPUS": "0", "NPROC_PER_NODE": "1", "DATA_RECIPE": str(bad),
           "MODEL_NAME_OR_PATH": str(own_data / "no_model"), "VISION_TOWER": str(own_data / "no_tower"),
           "OUTPUT_ROOT": str(own_data / "out"), "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(REPO / "scripts/stage0_pretrain.sh")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr.count("does not exist") == 1 and run.stderr.count("has no 'image_folder'") == 1
    assert f"[stage0] error: data recipe {bad} has the problems listed above" in run.stderr
    assert "torch.distributed" not in run.stderr and "llava_medgpt.train" not in run.stderr
    assert not (own_data / "out").exists()


def test_absolute_image_paths_pass_the_recipe_check_only_inside_the_image_folder(own_data):
    """The dataset trains on an absolute path inside the image folder (docs/preprocessing.md); the launcher's recipe
    check refused it as 'must be relative'."""
    inside = own_data / "inside.jsonl"
    inside.write_text(json.dumps(_image_record(0, str(own_data / "imgs" / "0.png"))) + "\n")
    outside = own_data / "outside.jsonl"
    outside.write_text(json.dumps(_image_record(1, str(own_data / "elsewhere.png"))) + "\n")
    (own_data / "elsewhere.png").write_bytes((own_data / "imgs" / "0.png").read_bytes())
    for manifest, expected in ((inside, []), (outside, ["names an absolute image path outside the image folder"])):
        recipe = own_data / f"{manifest.stem}.yaml"
        recipe.write_text(f"datasets:\n  - json_path: {manifest}\n    image_folder: {own_data / 'imgs'}\n")
        problems = validate_recipe(recipe)
        assert [p for p in expected if not any(p in problem for problem in problems)] == [] and (
            len(problems) == len(expected)), problems
