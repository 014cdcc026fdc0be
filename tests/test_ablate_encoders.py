"""scripts/ablate_encoders.sh on the tiny preset: two encoders (SigLIP-384's padded odd grid, the converted-ViT
BiomedCLIP family) trained with LoRA from the same language model for the same steps, evaluated on OmniMedVQA's
release-layout fixture, compared in one table and one plot.

Slow by nature (about 2-4 minutes on a busy 2-core machine): each encoder is a real torchrun + DeepSpeed stage-0
run and a real evaluation, as a user runs them.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from llava_medgpt.eval.ablation import EncoderRun, check_comparable

REPO = Path(__file__).resolve().parents[1]
ENCODERS = ("siglip", "biomedclip")


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PRESET="tiny", OUTPUT_ROOT=str(root), NUM_GPUS="0", ENCODERS=" ".join(ENCODERS), MAX_STEPS="2",
               EVAL_TASKS="omnimedvqa")
    done = subprocess.run(["bash", str(REPO / "scripts" / "ablate_encoders.sh")], cwd=REPO, env=env, check=False,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    return root


def test_one_table_and_one_plot_compare_the_encoders(ablation):
    runs = json.loads((ablation / "ablation.json").read_text())["runs"]
    assert [run["encoder"] for run in runs] == list(ENCODERS)
    assert [run["tokens_per_tile"] for run in runs] == [196, 49]  # 384/14 -> 27 -> pad 28 -> 14x14; 224/16 -> 7x7
    assert all(run["steps"] == 2 for run in runs)
    for run in runs:
        task = run["tasks"]["omnimedvqa"]
        assert task["n"] == 4 and 0.0 <= task["score"] <= 100.0
        assert set(task["breakdowns"]) == {"modality", "question_type"}
    table = (ablation / "ablation.md").read_text()
    assert "| siglip |" in table and "27x27 (6 px unseen) -> pad 28x28 -> 14x14 = 196 tokens per tile" in table
    assert "| biomedclip |" in table and "224 px / 16 px patches -> 14x14 -> 7x7 = 49 tokens per tile" in table
    assert "## OmniMedVQA (open access) by modality" in table
    with Image.open(ablation / "ablation.png") as plot:
        assert plot.format == "PNG" and plot.width >= 700 and plot.height >= 400


def test_runs_share_the_language_model_and_differ_only_in_the_tower(ablation):
    weights = {e: load_file(ablation / e / "train" / "model.safetensors") for e in ENCODERS}
    configs = {e: json.loads((ablation / e / "train" / "config.json").read_text()) for e in ENCODERS}
    assert configs["siglip"]["vision_config"]["model_type"] == "siglip_vision_model"
    assert configs["biomedclip"]["vision_config"]["model_type"] == "vit"
    # LoRA adapts the attention projections only: every other language-model weight is the shared start's.
    untouched = [name for name in weights["siglip"] if name.startswith("language_model.")
                 and not any(f"{p}.weight" in name for p in ("q_proj", "k_proj", "v_proj", "o_proj"))]
    assert untouched and all(torch.equal(weights["siglip"][n], weights["biomedclip"][n]) for n in untouched)
    adapted = [n for n in weights["siglip"] if n.startswith("language_model.") and n.endswith("q_proj.weight")]
    assert adapted and not all(torch.equal(weights["siglip"][n], weights["biomedclip"][n]) for n in adapted)


def test_runs_of_unequal_length_are_refused():
    run = lambda name, steps: EncoderRun(name, "t", "g", 1, steps, 1.0, {"omnimedvqa": {"n": 4}})  # noqa: E731
    check_comparable([run("a", 2), run("b", 2)])
    with pytest.raises(SystemExit, match="different numbers of steps"):
        check_comparable([run("a", 2), run("b", 3)])
    other = EncoderRun("c", "t", "g", 1, 2, 1.0, {"omnimedvqa": {"n": 3}})
    with pytest.raises(SystemExit, match="same tasks and data"):
        check_comparable([run("a", 2), other])
