"""Model cards (README.md) in checkpoint folders: architecture from the config, training record, licence terms."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from llava_medgpt.model.card import LICENCE_TERMS, TrainingRecord, render_model_card

# shared/ lies beside the clone (CI) or the worktrees' parent (sessions).
REPO_TERMS = [Path(__file__).resolve().parents[n] / "shared/reference/medgpt-oss-repo-readme.md" for n in (1, 2, 3)]


def test_tiny_checkpoint_carries_a_card(tiny_checkpoint):
    card = (tiny_checkpoint("gpt_oss") / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlicense: other\n")
    assert "- Vision tower: clip_vision_model (2 layers, hidden 32, 336-px input, 14-px patches)" in card
    assert "LayerNorm(128) -> Linear(128, 64) -> GELU -> Linear(64, 64); 144 tokens per tile" in card
    assert "gpt_oss: 2 layers, hidden 64" in card and "4 experts, top-2" in card
    assert "import llava_medgpt" in card and "llava-medgpt-chat --model PATH" in card
    assert "clinical care or for any clinical decision making purposes" in card
    assert LICENCE_TERMS in card


def test_licence_terms_are_the_repositorys_verbatim():
    # The upstream README is a reference document beside the project, not part of a clone: a clone elsewhere (a
    # user's machine) has nothing to compare with.
    found = [path for path in REPO_TERMS if path.exists()]
    if not found:
        pytest.skip(f"no reference copy of the MedGPT-oss README at {[str(p) for p in REPO_TERMS]}")
    assert LICENCE_TERMS in found[0].read_text(encoding="utf-8")


def test_stage_card_records_recipe_and_settings(tiny_checkpoint, tmp_path):
    from transformers import AutoConfig, AutoProcessor

    recipe = tmp_path / "stage2_sft.yaml"
    recipe.write_text("stage: 2\ndatasets:\n  - json_path: pmc_vqa.jsonl\n    sampling_strategy: all\n")
    record = TrainingRecord.from_args(
        SimpleNamespace(model_name_or_path="outputs/stage1", vision_tower=None, mm_tunable_parts="mm_mlp_adapter"),
        SimpleNamespace(data_path=str(recipe)),
        SimpleNamespace(learning_rate=2e-5, num_train_epochs=1.0, model_max_length=32768, seed=42, world_size=8),
        global_step=123,
    )
    folder = tiny_checkpoint("gpt_oss")
    card = render_model_card(AutoConfig.from_pretrained(folder), AutoProcessor.from_pretrained(folder), record)
    assert "# MedGPT-oss stage 2 output (mixed instruction tuning)" in card
    assert "- Started from: outputs/stage1" in card and "- Trained parts (mm_tunable_parts): mm_mlp_adapter" in card
    assert "- Optimizer steps: 123, ranks: 8" in card and "- learning_rate: 2e-05" in card
    assert "- model_max_length: 32768" in card
    assert f"- Data recipe: {recipe}" in card and "json_path: pmc_vqa.jsonl" in card
