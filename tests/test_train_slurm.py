"""The curriculum under a real two-node SLURM cluster on this machine (CPU, PRESET=tiny, DeepSpeed ZeRO-3).

`sbatch scripts/stage{0,1,2}_*.sh` across 2 nodes (1 CPU each), each stage from the previous output; losses are
finite, frozen parameters are bit-identical to the stage's start, trainable ones moved. Stage 2 is preempted
(USR1 to the batch shell, as `--signal=B:USR1@...` sends it), saves, requeues itself and finishes from the
checkpoint. Every stage output then generates a padded batch (no training switch left in its config). Needs
root and Debian's slurm-wlm + munge (.ci/run installs them).
"""

import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
pytestmark = pytest.mark.skipif(
    any(shutil.which(b) is None for b in ("slurmctld", "slurmd", "sbatch", "munged")) or os.geteuid() != 0,
    reason="needs root and SLURM (apt-get install -y slurm-wlm munge)",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_LOCAL_DIR=str(root / "cluster"), SLURM_LOCAL_PORT_BASE="17100")
    started = subprocess.run(["bash", str(SCRIPTS / "slurm" / "start_local_cluster.sh")], env=env,
                             capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        env["SLURM_CONF"] = started.stdout.strip().split("=", 1)[1]
        yield env, root
    finally:
        subprocess.run(["bash", str(SCRIPTS / "slurm" / "stop_local_cluster.sh")], env=env, timeout=120)


def _sbatch(env, root, script, wait=True):
    cmd = ["sbatch", "--parsable", "--nodes=2", "--gpus-per-node=0", "--cpus-per-task=1", "--time=20",
           f"--output={root}/%x-%j.out", "--export=ALL"]
    if wait:
        cmd.append("--wait")
    # Two epochs per stage (the tiny default trains longer, for the main job's falling loss).
    job_env = dict(env, PRESET="tiny", OUTPUT_ROOT=str(root / "out"), NUM_TRAIN_EPOCHS="2", LOGGING_STEPS="1")
    return subprocess.run(cmd + [str(SCRIPTS / script)], cwd=REPO, env=job_env, capture_output=True, text=True,
                          timeout=900)


def _steps_gone(job_id):
    """No slurmstepd of the job's steps is left on this machine (both test nodes run here)."""
    running = subprocess.run(["pgrep", "-f", rf"slurmstepd: \[{job_id}\."], capture_output=True, text=True)
    return running.stdout.strip() == ""


def _log(root, job_id):
    return next(root.glob(f"*-{job_id}.out")).read_text()


def _parameters(folder):
    import llava_medgpt  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(folder)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _start_parameters(assets):
    """Stage 0's start: the tiny language model and vision tower folders, named as inside MedGPT."""
    from transformers import AutoModel, AutoModelForCausalLM

    parts = {"language_model.": AutoModelForCausalLM.from_pretrained(assets / "language_model"),
             "vision_tower.": AutoModel.from_pretrained(assets / "vision_tower")}
    return {prefix + name: p.detach().clone() for prefix, model in parts.items() for name, p in model.named_parameters()}


def _losses(folder):
    history = json.loads((folder / "log_history.json").read_text())
    return [entry["loss"] for entry in history if "loss" in entry]


def _changed(before, after, prefix):
    names = [n for n in before if n.startswith(prefix)]
    assert names
    return {n for n in names if not torch.equal(before[n], after[n])}, set(names)


def _vision_params_off_the_loss_path(params):
    # The projector reads hidden_states[-2] (vision_feature_layer=-2): the last encoder layer and post_layernorm
    # get no gradient. Weight decay may still move some of them by a rounding step; nothing else may stay put.
    last = max(int(m.group(1)) for n in params if (m := re.search(r"encoder\.layers\.(\d+)\.", n)))
    return {n for n in params if n.startswith("vision_tower.")
            and (f"encoder.layers.{last}." in n or "post_layernorm" in n)}


def test_curriculum_on_two_slurm_nodes(cluster):
    env, root = cluster
    out = root / "out"
    for stage, script in enumerate(["stage0_pretrain.sh", "stage1_midtrain.sh"]):
        done = _sbatch(env, root, script)
        job_id = done.stdout.strip().split(";")[0]
        log = _log(root, job_id)
        assert done.returncode == 0, log[-5000:]
        assert "world size 2 (2 node(s) x 1)" in log
        assert (out / f"stage{stage}" / "COMPLETE").is_file()

    # Stage 2: preempted once, requeued, finished from its checkpoint.
    job_id = _sbatch(env, root, "stage2_sft.sh", wait=False).stdout.strip().split(";")[0]
    deadline = time.time() + 600
    signalled = False
    while time.time() < deadline:
        logs = list(root.glob(f"*-{job_id}.out"))
        text = logs[0].read_text() if logs else ""
        if not signalled and "'loss':" in text:
            subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], env=env, check=True)
            signalled = True
        state = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True).stdout
        if signalled and "JobState=PENDING" in state and "Reason=BeginTime" in state and _steps_gone(job_id):
            # slurmctld holds a requeued job back (BeginTime, 120 s); start it now to keep CI short, but only once
            # the first run's step has ended on both nodes: a step can end ~1 s after the requeue, and a restart
            # before that gets the old step's exit booked against it (the job ends FAILED with RunTime 0).
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=env)
        if signalled and "JobState=COMPLETED" in state:
            break
        assert "JobState=FAILED" not in state and "JobState=CANCELLED" not in state, text[-5000:]
        time.sleep(1)
    log = _log(root, job_id)
    assert signalled and "JobState=COMPLETED" in state, log[-5000:]
    assert "Restarts=1" in state
    assert f"requeueing job {job_id}" in log
    assert "Resuming from" in log
    assert (out / "stage2" / "COMPLETE").is_file()

    start = _start_parameters(out / "tiny_assets")
    stage = [_parameters(out / f"stage{s}") for s in range(3)]
    for s in range(3):
        losses = _losses(out / f"stage{s}")
        assert losses and all(math.isfinite(x) for x in losses), losses

    # Stage 0, built from the separate parts under ZeRO-3 on both nodes: the LLM is bit-identical to the language
    # model folder (its embedding tables gained the image-token rows), the vision tower trained, and so did the
    # freshly initialised projector (its LayerNorm left its initial weight 1 / bias 0).
    for name, before in start.items():
        if name.startswith("language_model."):
            after = stage[0][name]
            assert torch.equal(after[: before.shape[0]], before), name
    changed, names = _changed(start, stage[0], "vision_tower.")
    assert names - changed <= _vision_params_off_the_loss_path(start)
    assert changed  # the tower moved at all
    norm_weight = stage[0]["multi_modal_projector.norm.weight"]
    norm_bias = stage[0]["multi_modal_projector.norm.bias"]
    assert not torch.equal(norm_weight, torch.ones_like(norm_weight))
    assert not torch.equal(norm_bias, torch.zeros_like(norm_bias))
    # Stages 1 and 2: everything trains.
    for before, after in ((stage[0], stage[1]), (stage[1], stage[2])):
        for prefix in ("language_model.", "multi_modal_projector."):
            changed, names = _changed(before, after, prefix)
            assert changed == names, sorted(names - changed)
        changed, names = _changed(before, after, "vision_tower.")
        assert names - changed <= _vision_params_off_the_loss_path(before)

    # Every stage output is ready for batched generation: two prompts of different lengths, left-padded together.
    from llava_medgpt.inference.generate import HFBackend
    from llava_medgpt.inference.models import load_chat_model

    conversations = [[{"role": "user", "content": "Describe this image."}],
                     [{"role": "user", "content": "What does a fundus photograph show? Answer in one sentence."}]]
    for s in range(3):
        config = json.loads((out / f"stage{s}" / "config.json").read_text())
        assert config["text_config"]["output_router_logits"] is False and config["use_cache"] is True
        backend = HFBackend(load_chat_model(str(out / f"stage{s}")))
        batched = backend.generate(conversations, [[], []], max_new_tokens=6)
        assert batched == [backend.generate([c], [[]], max_new_tokens=6)[0] for c in conversations]
