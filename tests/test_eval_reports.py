"""Reports a reviewer can read: n beside every score, 95% intervals, one macro average, the Impression
fallback, a chart whose labels are whole and whose glyphs exist, the end-of-run summary."""

import re
import warnings

import numpy as np
import pytest
from PIL import Image
from scipy.stats import binomtest

from llava_medgpt.eval.chart import DPI, WIDTH_INCHES, build_figure, draw_chart
from llava_medgpt.eval.intervals import bootstrap_interval, wilson_interval
from llava_medgpt.eval.metrics import corpus_bleu
from llava_medgpt.eval.metrics.text_overlap import bleu_from_sums, bleu_statistics
from llava_medgpt.eval.results import macro_averages, score_task, task_entry
from llava_medgpt.eval.tables import load_paper_results, render_summary, render_tables
from llava_medgpt.eval.tasks import EvalItem, load_config


@pytest.mark.parametrize("correct,n", [(0, 3), (2, 3), (3, 3), (598, 836), (1, 1), (250, 500)])
def test_wilson_interval_matches_scipy(correct, n):
    expected = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(correct, n)
    assert low == pytest.approx(float(expected.low), abs=1e-12)
    assert high == pytest.approx(float(expected.high), abs=1e-12)
    assert wilson_interval(0, 0) is None


def test_bootstrap_of_corpus_bleu_equals_bleu_of_resampled_corpora():
    predictions = ["no acute cardiopulmonary process", "the heart size is normal", "small left effusion",
                   "lungs are clear bilaterally", "stable cardiomegaly no edema", "no pneumothorax is seen"]
    references = ["no acute cardiopulmonary abnormality", "heart size is normal", "small left pleural effusion",
                  "the lungs are clear", "stable cardiomegaly without edema", "no pneumothorax"]
    stats = bleu_statistics(predictions, references)
    assert float(bleu_from_sums(stats.sum(axis=0))) == pytest.approx(corpus_bleu(predictions, references))
    rng = np.random.default_rng(7)
    for _ in range(20):  # the vectorised statistic is corpus BLEU of the resampled corpus
        index = rng.integers(0, len(predictions), len(predictions))
        assert float(bleu_from_sums(stats[index].sum(axis=0))) == pytest.approx(
            corpus_bleu([predictions[i] for i in index], [references[i] for i in index]))
    first = bootstrap_interval(bleu_from_sums, stats)
    assert first == bootstrap_interval(bleu_from_sums, stats)  # seeded
    assert first[0] <= corpus_bleu(predictions, references) <= first[1]
    assert bootstrap_interval(lambda s: s[:, 0] / 4, np.full(4, 0.25)) == pytest.approx((0.25, 0.25))
    assert bootstrap_interval(bleu_from_sums, stats[:1]) is None


def _mcq(task: str, n: int, correct: int) -> tuple[list[EvalItem], dict[str, str]]:
    items = [EvalItem(task=task, id=str(i), question=f"q{i}", kind="mcq", answer="A",
                      options={"A": "yes", "B": "no"}) for i in range(n)]
    outputs = {item.id: ("A" if int(item.id) < correct else "I am not sure") for item in items}
    return items, outputs


def _results(clinical: bool = False) -> dict:
    tasks = {}
    for name, n, correct, skipped in (("slake", 3, 2, {"no image": 1}), ("medqa", 7, 7, {}),
                                      ("pubmedqa", 5, 1, {"final_decision 'x' is not yes/no/maybe": 2})):
        config = load_config(name)
        items, outputs = _mcq(name, n, correct)
        tasks[name] = task_entry(config, score_task(config, items, outputs), skipped, "fixture")
    config = load_config("impression_0shot")
    items = [EvalItem(task="impression_0shot", id=str(i), question="", kind="generation", answer=ref)
             for i, ref in enumerate(["No acute process.", "Stable cardiomegaly.", "Small left effusion."])]
    outputs = {"0": "No acute process.", "1": "Cardiomegaly, stable.", "2": "Left effusion, small."}
    tasks["impression_0shot"] = task_entry(config, score_task(config, items, outputs, clinical=clinical), {}, "fixture")
    return {"model": "/ckpt/tiny", "label": "tiny", "tasks": tasks, "not_run": {"medbullets": "no data"},
            "macro_average": macro_averages(tasks)}


def _row(tables: str, name: str) -> list[str]:
    line = next(line for line in tables.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_tables_md_has_n_intervals_and_one_macro_average():
    results = _results()
    tables = render_tables(results)
    header = _row(tables, "Dataset")
    assert header[:4] == ["Dataset", "tiny", "95% CI", "n (scored / skipped)"]
    slake = _row(tables, "SLAKE")
    low, high = binomtest(2, 3).proportion_ci(method="wilson")
    assert slake[:4] == ["SLAKE", "66.67", f"[{100 * low:.2f}, {100 * high:.2f}]", "3 / 1"]
    assert slake[4:] == ["71.53", "65.07", "69.14", "72.24", "55.98", "46.53"]
    assert _row(tables, "PubMedQA")[1:4] == ["20.00", "[3.62, 62.45]", "5 / 2"]
    assert _row(tables, "MedMCQA")[1:4] == ["not run", "–", "–"]
    # One macro average: the mean over the scored rows, the same rows for every published column.
    assert results["macro_average"]["5"] == {"mean": pytest.approx((100.0 + 20.0) / 2), "rows": ["MedQA", "PubMedQA"],
                                             "tasks": ["medqa", "pubmedqa"]}
    table5 = tables.split("### Text-only")[1].split("###")[0]
    macro = _row(table5, "Macro average (2 rows)")
    assert macro[1] == "60.00"
    assert macro[4:] == [f"{(a + b) / 2:.2f}" for a, b in zip([70.11, 44.97, 77.18, 70.71, 66.75, 55.25],
                                                               [57.81, 48.31, 61.00, 62.44, 55.80, 42.80])]
    assert "`medbullets`: no data" in tables


def test_unavailable_clinical_metric_shows_labelled_bleu_and_rouge():
    results = _results(clinical=False)
    entry = results["tasks"]["impression_0shot"]
    assert entry["primary"] is None and entry["fallback"]["reason"] == "RaTEScore unavailable"
    cell = _row(render_tables(results), "Impression (0-shot)")[1]
    bleu, rouge = entry["scores"]["bleu4"], entry["scores"]["rouge_l"]
    assert cell.startswith("RaTEScore unavailable; fallback: BLEU-4 ")
    assert f"ROUGE-L {rouge:.3f} [" in cell and f"BLEU-4 {bleu:.3f} [" in cell
    assert rouge == pytest.approx((1.0 + 0.5 + 2 / 3) / 3)  # LCS F1 per item: 3/3, 1 of 2, 2 of 3
    # A fallback never enters the macro average: Table 6 has no scored row here.
    assert "6" not in results["macro_average"]


def test_chart_labels_are_whole_and_every_glyph_renders(tmp_path):
    paper = load_paper_results()
    tasks = {}
    for name in ("mmmu_pro_med_4", "mmmu_pro_med_10", "patient_trial_0shot", "patient_trial_1shot", "medqa"):
        config = load_config(name)
        items, outputs = _mcq(name, 4, 3)
        tasks[name] = task_entry(config, score_task(config, items, outputs), {}, "fixture")
    results = {"model": "m", "label": "MedGPT-oss-tiny — run 1", "tasks": tasks, "not_run": {},
               "macro_average": macro_averages(tasks)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = build_figure(results, paper)
        path = draw_chart(results, tmp_path / "chart.png", paper)
    assert not [w for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width == round(WIDTH_INCHES * DPI)
        assert image.height == round(figure.get_figheight() * DPI)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (axes,) = figure.axes
    labels = [t for t in axes.get_yticklabels() if t.get_text()]
    assert [t.get_text() for t in labels] == ["MMMU-Med-Pro (4 opt) (n=4)", "MMMU-Med-Pro (10 opt) (n=4)",
                                              "MedQA (n=4)", "Patient-trial (0-shot) (n=4)",
                                              "Patient-trial (1-shot) (n=4)"]
    boxes = [t.get_window_extent(renderer) for t in labels]
    for box in boxes:  # inside the picture
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= image.width and box.y1 <= image.height
    for a, b in zip(boxes, boxes[1:]):  # no two labels collide
        assert not a.overlaps(b)
    texts = [t.get_text() for t in figure.findobj(match=lambda o: hasattr(o, "get_text")) if t.get_text()]
    assert any("—" in t for t in texts)  # the em dash is drawn (not a missing-glyph box)
    from matplotlib import font_manager

    assert font_manager.findfont("DejaVu Sans", fallback_to_default=False).endswith("DejaVuSans.ttf")
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == ["MedGPT-oss-tiny — run 1", *paper["models"]]


def test_summary_lists_every_task_with_n_interval_and_time():
    results = _results()
    summary = render_summary(results, {"slake": 1.25, "medqa": 0.5, "pubmedqa": 2.0, "impression_0shot": 3.0}, 9.0)
    lines = summary.splitlines()
    assert lines[0] == "Evaluation of tiny (/ckpt/tiny)"
    assert re.split(r"\s{2,}", lines[1].strip()) == ["task", "metric", "score", "95% CI", "scored", "skipped",
                                                     "time (s)"]
    slake = re.split(r"\s{2,}", next(line for line in lines if line.startswith("slake")).strip())
    assert slake == ["slake", "accuracy", "66.67", "[20.77, 93.85]", "3", "1", "1.2"]
    impression = next(line for line in lines if line.startswith("impression_0shot"))
    assert "ROUGE-L (fallback: RaTEScore unavailable)" in impression and impression.rstrip().endswith("3.0")
    assert "macro average, Table 5: 60.00 over 2 row(s)" in lines
    assert "not run: medbullets: no data" in lines and lines[-1] == "total wall time: 9.0 s"
