"""The runner end to end on every benchmark fixture with a tiny checkpoint (predictions, scores, tables,
chart), and with the tiny GPT-oss checkpoint: byte-identical reruns, a crashed run resumed to the same
results file. (The Qwen2-backed tiny model is used for the all-fixture run only because it is ~3x faster
on CPU than the tiny GPT-oss MoE.)"""

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from llava_medgpt.eval import generation
from llava_medgpt.eval.runner import main
from llava_medgpt.eval.tasks import load_config, load_task
from llava_medgpt.model.tiny import create_tiny_checkpoint

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
MIMIC = FIXTURES / "mimic-cxr-jpg"
ITEMS = {"medxpertqa_mm": 3, "medxpertqa_text": 3, "slake": 5, "medframeqa": 3, "mmmu_med": 5, "mmmu_pro_med_4": 2,
         "mmmu_pro_med_10": 2, "medqa": 3, "medmcqa": 3, "pubmedqa": 3, "mmlu_med": 7, "medbullets": 3,
         "mimic_cxr_findings": 2, "impression_0shot": 3, "impression_1shot": 3, "patient_trial_0shot": 6,
         "patient_trial_1shot": 6, "omnimedvqa": 4}
SUBSET = "slake,medqa,pubmedqa"


def _tiny(tmp_path_factory, backbone: str) -> Path:
    path = create_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / f"tiny_{backbone}", text_backbone=backbone)
    # One tile per image keeps the CPU test fast; tiling itself is tested by the processing suite.
    config_path = path / "processor_config.json"
    config = json.loads(config_path.read_text())
    config["image_processor"].update(max_tiles=1, use_thumbnail=False)
    config_path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny(tmp_path_factory, "gpt_oss")


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    return _tiny(tmp_path_factory, "qwen2")


def run(tiny: Path, output: Path, tasks: str, batch_size: int = 4) -> dict:
    mimic_paths = [a for n in ("mimic_cxr_findings", "impression_0shot", "impression_1shot")
                   for a in ("--task-path", f"{n}={MIMIC}")]
    return main(["--model", str(tiny), "--tasks", tasks, "--data-dir", str(FIXTURES), *mimic_paths,
                 "--output", str(output), "--max-new-tokens", "4", "--batch-size", str(batch_size), "--no-progress"])


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_fixture_end_to_end(tiny_qwen, tmp_path, capsys):
    results = run(tiny_qwen, tmp_path, "all", batch_size=8)
    stdout = capsys.readouterr().out
    assert results["not_run"] == {}
    assert {name: task["scores"]["n"] for name, task in results["tasks"].items()} == ITEMS
    for name, task in results["tasks"].items():
        predictions = _lines(tmp_path / "predictions" / f"{name}.jsonl")
        loaded = load_task(name, FIXTURES, MIMIC if load_config(name).loader == "mimic_cxr" else None)
        assert sorted(p["id"] for p in predictions) == sorted(item.id for item in loaded.items)
    findings = results["tasks"]["mimic_cxr_findings"]["scores"]
    assert set(findings) == {"n", "bleu4", "rouge_l", "ci95", "radgraph_f1", "ratescore", "inv_radcliq_v1"}
    for metric in ("radgraph_f1", "ratescore", "inv_radcliq_v1"):
        assert findings[metric]["value"] is not None or findings[metric]["unavailable"]
    assert results["model_type"] == "llava_medgpt"
    assert set(results["macro_average"]) == {"4", "5", "6", "readme"}
    # The end-of-run summary on stdout (also summary.txt): one line per task with n and wall time.
    assert (tmp_path / "summary.txt").read_text() == stdout[stdout.index("Evaluation of "):]
    lines = {line.split()[0]: line for line in stdout.splitlines() if line.split()}
    for name, task in results["tasks"].items():
        cells = lines[name].split()
        assert str(task["n_scored"]) in cells and str(task["n_skipped"]) in cells
        assert float(cells[-1]) >= 0.0
    assert stdout.rstrip().splitlines()[-1].startswith("total wall time: ")

    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    tables = (tmp_path / "tables.md").read_text()
    slake = results["tasks"]["slake"]["primary"]
    n_slake = results["tasks"]["slake"]["n_scored"]
    assert f"| SLAKE | {slake:.2f} | " in tables and f" | {n_slake} / 0 | 71.53 | 65.07 | 69.14 | 72.24 | 55.98 | 46.53 |" in tables
    assert "| RadGraph-F1 (partial) |" in tables and "| 0.189 | 0.129 |" in tables
    with Image.open(tmp_path / "chart.png") as chart:
        assert chart.format == "PNG" and chart.width == 1100


def test_results_are_the_strict_scores_of_the_predictions(tiny_qwen, tmp_path):
    """Scores of known outputs, worked out by hand: the runner resumes from a predictions file whose outputs we wrote,
    so it scores exactly them. MedQA's fixture golds are A, B, C for records 0, 1, 2."""
    run(tiny_qwen, tmp_path, "medqa")
    outputs = {"0": "The answer is A.", "1": "C", "2": "I cannot tell from the question."}  # right, wrong, unparsed
    (tmp_path / "predictions/medqa.jsonl").write_text("".join(json.dumps({"id": i, "output": o}) + "\n"
                                                              for i, o in outputs.items()))
    (tmp_path / "results.json").unlink()
    results = run(tiny_qwen, tmp_path, "medqa")
    task = results["tasks"]["medqa"]
    assert (task["n_scored"], task["n_skipped"]) == (3, 0)
    assert task["primary"] == pytest.approx(100 / 3)
    assert (task["scores"]["correct"], task["scores"]["no_valid_option"]) == (1, 1)
    # Wilson 95% interval of 1 success in 3: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n).
    z, n, p = 1.959963984540054, 3, 1 / 3
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)
    assert [bound / 100 for bound in task["primary_ci95"]] == pytest.approx([low, high], abs=1e-9)
    assert f"| MedQA | {100 / 3:.2f} |" in (tmp_path / "tables.md").read_text()


def test_two_runs_are_byte_identical_and_a_crashed_run_resumes(tiny, tmp_path, monkeypatch):
    run(tiny, tmp_path / "a", SUBSET, batch_size=2)
    run(tiny, tmp_path / "b", SUBSET, batch_size=2)
    names = [f"{n}.jsonl" for n in SUBSET.split(",")]
    for name in names:
        assert (tmp_path / "a/predictions" / name).read_bytes() == (tmp_path / "b/predictions" / name).read_bytes()
    assert (tmp_path / "a/results.json").read_bytes() == (tmp_path / "b/results.json").read_bytes()

    # Crash after 4 batches (mid-task), leaving a half-written line as a kill during a write would.
    real, calls = generation.generate_batch, []

    def crashing(*args, **kwargs):
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "generate_batch", crashing)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, tmp_path / "c", SUBSET, batch_size=2)
    partial = tmp_path / "c/predictions/medqa.jsonl"
    assert len(_lines(partial)) == 2  # slake took 3 batches (5 items), medqa 1 of its 2 (2 items)
    assert not (tmp_path / "c/predictions/pubmedqa.jsonl").exists()
    with partial.open("a") as f:
        f.write('{"id": "2", "outp')
    monkeypatch.setattr(generation, "generate_batch", real)
    run(tiny, tmp_path / "c", SUBSET, batch_size=2)
    assert (tmp_path / "c/results.json").read_bytes() == (tmp_path / "a/results.json").read_bytes()
    for name in names:
        assert (tmp_path / "c/predictions" / name).read_bytes() == (tmp_path / "a/predictions" / name).read_bytes()


def test_resuming_with_other_settings_is_refused(tiny_qwen, tmp_path):
    run(tiny_qwen, tmp_path, "medqa")
    with pytest.raises(ValueError, match="other settings"):
        main(["--model", str(tiny_qwen), "--tasks", "medqa", "--data-dir", str(FIXTURES), "--output", str(tmp_path),
              "--max-new-tokens", "5", "--no-progress"])
