"""Curation: each filter's verdict on generated images, strict LLM verdict parsing, the tiny judge wired through
HFBackend, duplicates, the report, and a killed run resuming to byte-identical outputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rapidocr_onnxruntime")
pytest.importorskip("imagehash")

from PIL import Image  # noqa: E402

from llava_medgpt.data.curate import STEPS, SourceSpec, curate, dump_config, load_config, parse_config  # noqa: E402
from llava_medgpt.data.curate.base import RecordContext  # noqa: E402
from llava_medgpt.data.curate.dedup import HammingIndex  # noqa: E402
from llava_medgpt.data.curate.llm import LlmVerdict, parse_verdict, verdict_for  # noqa: E402
from llava_medgpt.data.curate.synthetic import (desktop_screenshot, dicom_sample, panel_grid,  # noqa: E402
                                                skimage_sample, with_text)
from llava_medgpt.data.curate.views import ImageView  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _images() -> dict[str, Image.Image]:
    ihc, retina, cell, moon = (skimage_sample(n) for n in ("immunohistochemistry", "retina", "cell", "moon"))
    return {
        "grid_2x2": panel_grid([ihc, retina, cell, moon], 2, 2, gutter=10),
        "grid_1x3": panel_grid([retina, ihc, moon], 1, 3, gutter=8),
        "grid_1x3_no_letters_black": panel_grid([cell, ihc, retina], 1, 3, gutter=6, colour=(0, 0, 0), letters=False),
        "ihc_with_text": with_text(ihc, "H&E x40  scale 50 um", (20, 20), size=26),
        "desktop": desktop_screenshot(retina),
        "astronaut": skimage_sample("astronaut"),
        "ihc": ihc,
        "retina": retina,
        "ct_dicom": dicom_sample("CT_small.dcm"),
        "mr_dicom": dicom_sample("MR_small.dcm"),
        "phantom_marker_L": with_text(skimage_sample("shepp_logan_phantom"), "L", (8, 8), 20, (255, 255, 255)),
    }


# Expected verdict (True = keep) of each image filter on each image, worked out from what is drawn:
# grids have gutters and letters (single_panel removes them; their letters are single characters, not text);
# the text photo carries a 4-word caption; the desktop has title bar, menu, toolbar; only the astronaut has a
# face; the clean images (histology, retina, CT, MR, a phantom with a one-letter laterality marker) pass all.
EXPECTED = {
    #                               software  panel  text   narrator
    "grid_2x2":                    (True,     False, True,  True),
    "grid_1x3":                    (True,     False, True,  True),
    "grid_1x3_no_letters_black":   (True,     False, True,  True),
    "ihc_with_text":               (True,     True,  False, True),
    "desktop":                     (False,    False, False, True),
    "astronaut":                   (True,     True,  True,  False),
    "ihc":                         (True,     True,  True,  True),
    "retina":                      (True,     True,  True,  True),
    "ct_dicom":                    (True,     True,  True,  True),
    "mr_dicom":                    (True,     True,  True,  True),
    "phantom_marker_L":            (True,     True,  True,  True),
}
FILTERS = ("software_interface", "single_panel", "overlaid_text", "narrator")


def test_image_filters_verdicts_on_generated_images():
    steps = [STEPS[name].from_config({}) for name in FILTERS]
    ctx = RecordContext({}, "src", None)
    got, reasons = {}, {}
    for name, image in _images().items():
        view = ImageView(image, name)
        verdicts = [step.check([view], ctx) for step in steps]
        got[name] = tuple(v.keep for v in verdicts)
        reasons[name] = [v.reason for v in verdicts]
    assert got == EXPECTED
    assert reasons["grid_2x2"][1] == "compound_figure"
    assert reasons["desktop"][0] == "software_interface"
    assert reasons["ihc_with_text"][2] == "overlaid_text"
    assert reasons["astronaut"][3] == "narrator_face"


def test_panel_count_of_grids():
    from llava_medgpt.data.curate.panels import SinglePanelParams, analysis_gray, count_panels

    p = SinglePanelParams()
    images = _images()
    assert count_panels(analysis_gray(images["grid_2x2"], 2048), p) == 4
    assert count_panels(analysis_gray(images["grid_1x3"], 2048), p) == 3
    assert count_panels(analysis_gray(images["ihc"], 2048), p) == 1
    # Panels pasted edge to edge (no gutter), found by their seam: a dark fundus photo beside bright histology.
    seamless = panel_grid([skimage_sample("retina"), skimage_sample("immunohistochemistry")], 1, 2, gutter=0,
                          letters=False)
    assert count_panels(analysis_gray(seamless, 2048), p) == 2


@pytest.mark.parametrize("output, expected", [
    ("RELEVANT: yes\nMISLEADING_NUMBERS: no", LlmVerdict(True, False)),
    ("  relevant: No\nmisleading_numbers: YES\n", LlmVerdict(False, True)),
    ("RELEVANT:yes\r\nMISLEADING_NUMBERS:\tno", LlmVerdict(True, False)),
    ("<|channel|>analysis<|message|>It is a CT.<|end|><|start|>assistant<|channel|>final<|message|>"
     "RELEVANT: yes\nMISLEADING_NUMBERS: yes<|return|>", LlmVerdict(True, True)),
    ("RELEVANT: yes", None),  # half a verdict
    ("RELEVANT: yes\nMISLEADING_NUMBERS: no\nBecause the scale bar ...", None),  # extra text
    ("Relevant? yes. Misleading numbers? no.", None),
    ("RELEVANT: maybe\nMISLEADING_NUMBERS: no", None),
    ("MISLEADING_NUMBERS: no\nRELEVANT: yes", None),  # order is part of the format
    ("<|channel|>analysis<|message|>RELEVANT: yes\nMISLEADING_NUMBERS: no<|end|>", None),  # no final channel
    ("", None),
])
def test_parse_verdict_recorded_outputs(output, expected):
    assert parse_verdict(output) == expected


def test_unparseable_verdict_is_removed_not_kept():
    assert verdict_for("RELEVANT: yes\nMISLEADING_NUMBERS: no").keep
    assert verdict_for("RELEVANT: no\nMISLEADING_NUMBERS: yes").reason == "clinically_irrelevant"
    assert verdict_for("RELEVANT: yes\nMISLEADING_NUMBERS: yes").reason == "misleading_numeric"
    bad = verdict_for("Sure! The image shows")
    assert not bad.keep and bad.reason == "unparseable_verdict"


def test_hamming_index_matches_brute_force():
    import random

    rng = random.Random(0)
    index = HammingIndex(4)
    stored = []
    for i in range(2000):
        h = rng.getrandbits(64)
        stored.append(h)
        index.add(h, f"s\t{i}")
    for trial in range(300):
        base = stored[rng.randrange(len(stored))] if trial % 2 else rng.getrandbits(64)
        flips = rng.sample(range(64), rng.randrange(0, 7))
        query = base
        for bit in flips:
            query ^= 1 << bit
        brute = [i for i, h in enumerate(stored) if (h ^ query).bit_count() <= 4]
        found = index.find(query)
        assert (found is None) == (not brute)
        if brute:
            assert found == f"s\t{min(brute)}"


# ----------------------------------------------------------------------------------------- pipeline


def _write_source(root: Path, name: str, images: dict[str, Image.Image], captions: dict[str, str],
                  extra_lines: list[str] = ()) -> SourceSpec:
    folder = root / "images" / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for key, image in images.items():
        image.save(folder / f"{key}.png")
        lines.append(json.dumps({"id": f"{name}-{key}", "image": f"{key}.png", "conversations": [
            {"from": "human", "value": "<image>\nDescribe the medical image."},
            {"from": "gpt", "value": captions.get(key, f"Figure showing {key.replace('_', ' ')} in detail")}]}))
    manifest = root / f"{name}.jsonl"
    manifest.write_text("\n".join(lines + list(extra_lines)) + "\n", encoding="utf-8")
    return SourceSpec(name, str(manifest), str(folder), f"{name}.jsonl")


CONFIG = {
    "chunk_size": 3,
    "contact_sheet_images": 4,
    "steps": [{"step": "software_interface"}, {"step": "single_panel"}, {"step": "overlaid_text"},
              {"step": "narrator", "sources": ["video"]}, {"step": "duplicate_image"},
              {"step": "duplicate_caption"}],
}


def _sources(root: Path) -> list[SourceSpec]:
    images = _images()
    shifted = images["ihc"].resize((images["ihc"].width // 2, images["ihc"].height // 2))  # near duplicate
    paper = _write_source(root, "paper", {k: images[k] for k in ("grid_2x2", "ihc_with_text", "ihc", "ct_dicom",
                                                                 "desktop", "astronaut")}
                          | {"ihc_small": shifted},
                          {"ct_dicom": "Axial CT of the abdomen without contrast."},
                          extra_lines=['{"id": "broken", ', '{"id": "no-turns", "conversations": []}'])
    video = _write_source(root, "video", {k: images[k] for k in ("astronaut", "retina", "mr_dicom")}
                          | {"ct_again": images["ct_dicom"]},
                          {"ct_again": "axial CT of the abdomen, without contrast"})
    return [paper, video]


def test_pipeline_outputs_and_report(tmp_path):
    sources = _sources(tmp_path)
    config = parse_config(CONFIG)
    report = curate(sources, config, tmp_path / "out", workers=1, progress=False, log=lambda _: None)
    out = tmp_path / "out"
    kept = {s.name: [json.loads(l)["id"] for l in (out / s.output_name).read_text().splitlines()] for s in sources}
    # paper: the face is kept (narrator applies to "video" only); the half-size ihc is a near duplicate.
    assert kept["paper"] == ["paper-ihc", "paper-ct_dicom", "paper-astronaut"]
    # video: the astronaut's face removed; the CT is an exact duplicate of paper's image across sources.
    assert kept["video"] == ["video-retina", "video-mr_dicom"]
    removed = [l.split("\t") for l in (out / "paper.jsonl.removed.tsv").read_text().splitlines()]
    assert [(r[1], r[2], r[3]) for r in removed] == [
        ("paper-grid_2x2", "single_panel", "compound_figure"),
        ("paper-ihc_with_text", "overlaid_text", "overlaid_text"),
        ("paper-desktop", "software_interface", "software_interface"),
        ("paper-ihc_small", "duplicate_image", "near_duplicate_image"),
        ("", "read", "invalid_json"),
        ("no-turns", "read", "invalid_record"),
    ]
    video_removed = [l.split("\t") for l in (out / "video.jsonl.removed.tsv").read_text().splitlines()]
    assert [(r[1], r[3]) for r in video_removed] == [("video-astronaut", "narrator_face"),
                                                     ("video-ct_again", "exact_duplicate_image_across_sources")]
    # Kept lines are the input lines, byte for byte.
    paper_lines = Path(sources[0].manifest).read_bytes().splitlines()
    assert (out / "paper.jsonl").read_bytes().splitlines() == [paper_lines[i] for i in (2, 3, 5)]
    paper_report = report["sources"][0]
    assert (paper_report["records"], paper_report["kept"]) == (9, 3)
    funnel = {s["step"]: (s["in"], s["out"], s["reasons"]) for s in paper_report["steps"]}
    assert funnel["read"] == (9, 7, {"invalid_json": 1, "invalid_record": 1})
    assert funnel["software_interface"] == (7, 6, {"software_interface": 1})
    assert funnel["narrator"] == (0, 0, {})
    assert funnel["duplicate_image"] == (4, 3, {"near_duplicate_image": 1})  # ihc, ct, astronaut, ihc_small
    assert report["total"]["records"] == 13 and report["total"]["kept"] == 5
    sheet = out / "contact_sheets" / "paper" / "single_panel--compound_figure.png"
    with Image.open(sheet) as image:
        assert image.size[0] == 6 * 160
    assert (out / "curation_report.md").read_text().count("| single_panel |") == 3
    # The saved config loads back to the same config, thresholds included.
    assert dump_config(load_config(out / "curate_config.yaml")) == dump_config(config)


def test_workers_give_the_same_outputs(tmp_path):
    sources = _sources(tmp_path)
    config = parse_config(CONFIG)
    curate(sources, config, tmp_path / "one", workers=1, progress=False, log=lambda _: None)
    curate(sources, config, tmp_path / "two", workers=2, progress=False, log=lambda _: None)
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".curate_state" not in p.parts}


def test_killed_run_resumes_byte_identical(tmp_path):
    """SIGKILL the CLI after its first checkpoints, rerun the same command, compare with an uninterrupted run."""
    images = {f"img{i:02d}": skimage_sample(n).rotate(7 * i) for i, n in
              enumerate(["immunohistochemistry", "retina", "cell", "moon", "coins", "microaneurysms"] * 4)}
    source = _write_source(tmp_path, "src", images, {k: f"caption number {i % 9} for the image" for i, k in
                                                     enumerate(images)})
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"chunk_size": 2, "steps": [{"step": "single_panel", "panel_letters": False},
                                                             {"step": "duplicate_image"},
                                                             {"step": "duplicate_caption"}]}))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")

    def command(out):
        return [sys.executable, "-m", "llava_medgpt.data.curate", "--input", source.manifest, "--image-folder",
                source.image_folder, "--name", "src", "--output", str(out), "--config", str(config), "--workers", "1",
                "--no-progress"]

    curate([source], load_config(config), tmp_path / "full", progress=False, log=lambda _: None)  # uninterrupted
    killed = tmp_path / "killed"
    checkpoint = killed / ".curate_state" / "checkpoint.json"
    proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if 4 <= json.loads(checkpoint.read_text())["line_no"] < len(images):
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "src.jsonl").exists()
    subprocess.run(command(killed), check=True, env=env, capture_output=True)
    assert _tree(killed) == _tree(tmp_path / "full")
    kept = (tmp_path / "full" / "src.jsonl").read_text().splitlines()
    assert len(kept) == 9  # 9 distinct captions; the rotated copies differ as images


def test_llm_step_wired_to_tiny_checkpoint(tmp_path, tiny_checkpoint):
    from llava_medgpt.inference.generate import HFBackend
    from llava_medgpt.inference.models import load_chat_model

    class Recording:
        """The real HFBackend on the tiny model, keeping what it was asked."""

        def __init__(self, backend):
            self.backend, self.calls = backend, []

        def generate(self, conversations, images, max_new_tokens):
            self.calls.append((conversations, [[im.size for im in ims] for ims in images], max_new_tokens))
            return self.backend.generate(conversations, images, max_new_tokens)

    backend = Recording(HFBackend(load_chat_model(tiny_checkpoint())))
    images = {k: v for k, v in _images().items() if k in ("ihc", "retina", "ct_dicom")}
    source = _write_source(tmp_path, "src", images, {"ihc": "IHC of a lymph node, 40x."})
    config = parse_config({"steps": [{"step": "llm_relevance", "batch_size": 2, "max_new_tokens": 4,
                                      "image_max_side": 64}]})
    report = curate([source], config, tmp_path / "out", backend=backend, progress=False, log=lambda _: None)
    # Batches of 2 then 1; each conversation shows one image and the caption inside the prompt.
    assert [len(c[0]) for c in backend.calls] == [2, 1]
    first = backend.calls[0][0][0]
    assert first[0]["role"] == "user" and first[0]["content"].startswith("<image>\n")
    assert "Caption: IHC of a lymph node, 40x." in first[0]["content"]
    assert all(max(size) <= 64 for call in backend.calls for sizes in call[1] for size in sizes)
    assert backend.calls[0][2] == 4
    # A random tiny model cannot answer in the verdict format: every record is removed as unparseable.
    llm = report["sources"][0]["steps"][1]
    assert llm == {"step": "llm_relevance", "in": 3, "out": 0, "reasons": {"unparseable_verdict": 3}}


def test_config_errors_name_the_step():
    with pytest.raises(ValueError, match="single_panel.*unknown options"):
        parse_config({"steps": [{"step": "single_panel", "gutter": 3}]})
    with pytest.raises(ValueError, match="unknown step 'crop'"):
        parse_config({"steps": [{"step": "crop"}]})
    with pytest.raises(ValueError, match="must be a number"):
        parse_config({"steps": [{"step": "overlaid_text", "max_boxes": "two"}]})
    default = load_config(REPO / "llava_medgpt" / "data" / "curate" / "configs" / "stage0.yaml")
    assert [s.step for s in default.steps] == ["software_interface", "single_panel", "overlaid_text", "narrator",
                                               "duplicate_image", "duplicate_caption", "eval_overlap",
                                               "llm_relevance"]


def test_eval_overlap_finds_near_copies_of_release_layout_eval_images(tmp_path):
    """eval_data in a benchmark's release layout (the eval CLI's --data-dir, as docs/data.md documents): its images
    are files under the release root, and a resized, re-encoded copy in training is an eval_near_image. (The step
    once opened the items' root-relative names from the working folder, so it hashed no eval image at all.)"""
    images = _images()
    slake = tmp_path / "eval" / "Slake1.0"
    (slake / "imgs" / "xmlab0").mkdir(parents=True)
    images["retina"].convert("RGB").save(slake / "imgs" / "xmlab0" / "source.jpg", quality=90)
    (slake / "test.json").write_text(json.dumps([{
        "qid": 0, "img_id": 0, "img_name": "xmlab0/source.jpg", "question": "Is this a fundus photograph?",
        "answer": "Yes", "answer_type": "CLOSED", "q_lang": "en", "content_type": "Modality", "modality": "Fundus",
        "location": "Eye", "base_type": "vqa", "triple": ["vhead", "_", "_"]}]))
    retina = images["retina"]
    source = _write_source(tmp_path, "paper", {"retina_small": retina.resize((retina.width // 2, retina.height // 2)),
                                               "ihc": images["ihc"]}, {})
    config = parse_config({"steps": [{"step": "eval_overlap", "eval_data": str(tmp_path / "eval"),
                                      "tasks": ["slake"]}]})
    report = curate([source], config, tmp_path / "out", workers=1, progress=False, log=lambda _: None)
    removed = [line.split("\t") for line in (tmp_path / "out" / "paper.jsonl.removed.tsv").read_text().splitlines()]
    assert [(r[1], r[3]) for r in removed] == [("paper-retina_small", "eval_near_image")]
    assert "slake/0" in removed[0][5]
    assert report["sources"][0]["kept"] == 1
