"""Packed training on the tiny GPT-oss, at model level and for real.

Model level: the router aux loss switched on the way training switches it on, and the packed losses equal the
padded layout's where docs/data_pipeline.md says they do. The packed collator sends input_ids / labels /
position_ids only; the model builds per-layer-type block-diagonal masks (a dict) from the restarting position
ids. With the MoE load-balancing loss on, those dict masks must not reach transformers' load-balancing loss (it
reads attention_mask as a 2D padding mask).

For real: `bash scripts/stage2_sft.sh` with PRESET=tiny (packing on, as by default) on 2 CPU ranks under DeepSpeed
ZeRO-3, from a tiny checkpoint; then the trained stage output generates a padded batch and the eval CLI runs on it
at its default batch size. (~1-2 minutes: one real stage and one real evaluation.)
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llava_medgpt.constants import IGNORE_INDEX
from llava_medgpt.data.collator import MedGptCollator
from llava_medgpt.model import MedGptConfig, MedGptForConditionalGeneration
from llava_medgpt.model.backbones import TINY_TEXT_CONFIGS, TINY_VISION_CONFIGS

VOCAB = 320
PAD = 0


def make_model(router_logits_in_config: bool) -> MedGptForConditionalGeneration:
    torch.manual_seed(0)
    text_config = TINY_TEXT_CONFIGS["gpt_oss"](VOCAB)
    text_config.output_router_logits = router_logits_in_config
    text_config.pad_token_id = PAD
    config = MedGptConfig(vision_config=TINY_VISION_CONFIGS["clip"](), text_config=text_config,
                          image_token_id=VOCAB - 1)
    return MedGptForConditionalGeneration(config).eval()


def make_samples(lengths: list[int], seed: int = 0) -> list[dict]:
    """Text-only samples (ids 1 .. VOCAB-2: no padding id, no image placeholder), the last 60% of each trained."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for k, n in enumerate(lengths):
        input_ids = torch.randint(1, VOCAB - 1, (n,), generator=generator)
        labels = input_ids.clone()
        labels[: (2 * n) // 5] = IGNORE_INDEX
        samples.append({"input_ids": input_ids, "labels": labels, "pixel_values": None, "id": f"s{k}"})
    return samples


# 200 + 150 + 162 = 512 and 300 + 212 = 512: with max_length 512 both packed rows are full (no padding), and
# every sample is longer than GPT-oss's 128-token sliding window.
LENGTHS = [200, 300, 150, 212, 162]


def _forward(model, batch: dict):
    inputs = {k: v for k, v in batch.items() if k not in ("meta", "pixel_values")}
    with torch.no_grad():
        return model(**inputs)


def test_packed_batch_with_router_logits_from_the_config_trains():
    """The config (not the call) switches the router aux loss on, as a loaded training config does: no crash."""
    model = make_model(router_logits_in_config=True)
    batch = MedGptCollator(pad_token_id=PAD, layout="packed", max_length=512)(make_samples([40, 30, 50]))
    assert "attention_mask" not in batch
    out = _forward(model, batch)
    assert out.aux_loss is not None and float(out.aux_loss) > 0
    assert torch.isfinite(out.loss)


def test_packed_losses_equal_the_padded_layout():
    """Packed rows without padding: LM loss and MoE load-balancing loss equal the padded batch's (whose aux loss
    weights out padding with the 2D attention mask), i.e. the same tokens counted the same way."""
    model = make_model(router_logits_in_config=True)
    samples = make_samples(LENGTHS)
    packed_batch = MedGptCollator(pad_token_id=PAD, layout="packed", max_length=512)(samples)
    assert packed_batch["input_ids"].shape == (2, 512)
    assert int((packed_batch["position_ids"] == 0).sum()) == len(LENGTHS)  # every row full: no padding sequence
    padded_batch = MedGptCollator(pad_token_id=PAD, layout="padded")(samples)
    assert int((padded_batch["attention_mask"] == 0).sum()) > 0  # the padded layout does pad

    packed, padded = _forward(model, packed_batch), _forward(model, padded_batch)
    coef = model.config.text_config.router_aux_loss_coef
    torch.testing.assert_close(packed.aux_loss, padded.aux_loss, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(packed.loss - coef * packed.aux_loss, padded.loss - coef * padded.aux_loss,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.loss, padded.loss, atol=1e-5, rtol=1e-5)

    # The LM loss is the token-weighted mean of each sample's own loss (computed alone, without aux loss).
    total, count = 0.0, 0
    for s in samples:
        with torch.no_grad():
            alone = model(input_ids=s["input_ids"][None], labels=s["labels"][None], output_router_logits=False)
        n = int((s["labels"][1:] != IGNORE_INDEX).sum())
        total, count = total + float(alone.loss) * n, count + n
    assert float(packed.loss - coef * packed.aux_loss) == pytest.approx(total / count, abs=1e-5)


def test_packed_padding_counts_in_the_load_balancing_statistics():
    """What the docs say about padded packed rows: the padding sequence is routed like any token and counts in the
    load-balancing statistics (packed rows carry almost no padding); the LM loss is unaffected."""
    model = make_model(router_logits_in_config=True)
    samples = make_samples([200, 150])
    packed_batch = MedGptCollator(pad_token_id=PAD, layout="packed", max_length=512)(samples)
    padded_batch = MedGptCollator(pad_token_id=PAD, layout="padded")(samples)
    assert packed_batch["input_ids"].shape == (1, 350)  # one row, no padding yet
    packed = _forward(model, packed_batch)
    padded = _forward(model, padded_batch)
    torch.testing.assert_close(packed.aux_loss, padded.aux_loss, atol=1e-6, rtol=1e-5)

    # Add a padding sequence at the end of the row (what pack_rows writes when rows differ in length).
    extra = {k: v for k, v in packed_batch.items() if k in ("input_ids", "labels", "position_ids")}
    extra["input_ids"] = torch.cat([extra["input_ids"], torch.full((1, 40), PAD)], dim=1)
    extra["labels"] = torch.cat([extra["labels"], torch.full((1, 40), IGNORE_INDEX)], dim=1)
    extra["position_ids"] = torch.cat([extra["position_ids"], torch.arange(40)[None]], dim=1)
    with_padding = _forward(model, extra)
    coef = model.config.text_config.router_aux_loss_coef
    torch.testing.assert_close(with_padding.loss - coef * with_padding.aux_loss, packed.loss - coef * packed.aux_loss,
                               atol=1e-5, rtol=1e-5)
    assert not torch.allclose(with_padding.aux_loss, packed.aux_loss, atol=1e-7, rtol=0)


# ------------------------------------------------------------------------------------------- a real packed stage

REPO = Path(__file__).resolve().parents[1]
KNOWN_DEPRECATIONS = ("reduce_scatter_tensor` is deprecated", "all_gather_into_tensor` is deprecated",
                      "`gradient_checkpointing` is deprecated", "`gradient_checkpointing_kwargs` is deprecated")


@pytest.fixture(scope="module")
def packed_stage(tmp_path_factory):
    from llava_medgpt import create_tiny_checkpoint

    root = tmp_path_factory.mktemp("packed_stage")
    create_tiny_checkpoint(root / "start")
    (root / "start" / "COMPLETE").touch()  # a start point like a finished stage output
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PRESET="tiny", OUTPUT_ROOT=str(root), PREV_STAGE_CHECKPOINT=str(root / "start"), NUM_GPUS="0",
               NPROC_PER_NODE="2", LOGGING_STEPS="1", SAVE_STEPS="1000")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "stage2_sft.sh")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return root, proc.stdout + proc.stderr


def test_packed_stage_trains_on_two_zero3_ranks_with_a_falling_loss(packed_stage):
    root, console = packed_stage
    out = root / "stage2"
    assert "per-device batch 1 packed row(s) of up to 4096 tokens" in console
    assert json.loads((out / "training_args.json").read_text())["deepspeed"].endswith("zero3.json")
    history = json.loads((out / "log_history.json").read_text())
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) >= 8 and all(math.isfinite(x) for x in losses), losses
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0], losses  # from a random tiny checkpoint: 6.5 -> about 4.4
    # Rows held several samples: each rank saw more samples than it took steps.
    seen = json.loads((out / "skipped_samples.rank0.json").read_text())["num_seen"]
    assert seen >= 2 * len(losses), (seen, len(losses))


def test_packed_stage_console_is_free_of_known_deprecations_and_rank_duplicates(packed_stage):
    _, console = packed_stage
    for text in KNOWN_DEPRECATIONS:
        assert text not in console
    lines = [line for line in console.splitlines() if line.strip()]
    # Both ranks build DeepSpeed's op and resize nothing alike: what both print shows once.
    assert sum("deepspeed_shm_comm_op built successfully" in line for line in lines) <= 1
    assert not [line for line in lines if line.startswith("[rank")], "rank-tagged lines: ranks printed different text"
    assert len(lines) < 80, "\n".join(lines)


def test_stage_output_keeps_no_training_switch_in_its_config(packed_stage):
    root, _ = packed_stage
    config = json.loads((root / "stage2" / "config.json").read_text())
    assert config["text_config"]["output_router_logits"] is False
    assert config["text_config"]["use_cache"] is True and config.get("use_cache", True) is True


def test_trained_stage_output_generates_a_padded_batch(packed_stage):
    """Two prompts of different lengths (left-padded together), one with an image: each row's greedy output
    equals that prompt's own output."""
    from PIL import Image

    from llava_medgpt.inference.generate import HFBackend
    from llava_medgpt.inference.models import load_chat_model

    root, _ = packed_stage
    backend = HFBackend(load_chat_model(str(root / "stage2")))
    image = Image.open(next((root / "tiny_assets" / "demo_data" / "images").glob("*.png"))).convert("RGB")
    conversations = [[{"role": "user", "content": "<image>\nWhat imaging modality is this?"}],
                     [{"role": "user", "content": "What does a fundus photograph show? Answer in one sentence."}]]
    images = [[image], []]
    batched = backend.generate(conversations, images, max_new_tokens=12)
    alone = [backend.generate([c], [i], max_new_tokens=12)[0] for c, i in zip(conversations, images)]
    assert batched == alone
    assert all(text for text in batched)


def test_eval_cli_at_its_default_batch_size_on_the_trained_output(packed_stage, tmp_path):
    root, _ = packed_stage
    cmd = [sys.executable, "-m", "llava_medgpt.eval", "--model", str(root / "stage2"), "--tasks", "slake,medqa",
           "--data-dir", str(root / "tiny_assets" / "demo_data" / "benchmarks"), "--output", str(tmp_path),
           "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["settings"]["batch_size"] == 8
    assert {name: task["n_scored"] for name, task in results["tasks"].items()} == {"slake": 20, "medqa": 6}
    assert (tmp_path / "tables.md").is_file() and (tmp_path / "chart.png").is_file()
