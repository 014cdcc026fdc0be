"""Preemption and resume through the stage launcher (PRESET=tiny, 2 CPU ranks, DeepSpeed ZeRO-3).

A run stopped by SIGTERM after its first step saves a complete checkpoint and exits with the requeue code; the
same command then resumes at that optimizer step and data position, and every later step's loss equals the
uninterrupted run's.
"""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from llava_medgpt import create_tiny_checkpoint
from llava_medgpt.train.checkpointing import checkpoints, is_complete
from llava_medgpt.train.preemption import REQUEUE_EXIT_CODE

REPO = Path(__file__).resolve().parents[1]
STAGE2 = REPO / "scripts" / "stage2_sft.sh"


def _env(root: Path, run: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PRESET="tiny", OUTPUT_ROOT=str(root), OUTPUT_DIR=str(root / run), NPROC_PER_NODE="2",
               PREV_STAGE_CHECKPOINT=str(root / "start"), SAVE_STEPS="100", NUM_GPUS="0", NUM_TRAIN_EPOCHS="2",
               LOGGING_STEPS="1")
    return env


def _losses(output_dir: Path) -> dict[int, float]:
    history = json.loads((output_dir / "log_history.json").read_text())
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def _run(root: Path, run: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(STAGE2)], cwd=REPO, env=_env(root, run), capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    create_tiny_checkpoint(root / "start")
    (root / "start" / "COMPLETE").touch()  # a start point like a finished stage output
    return root


def test_sigterm_saves_then_restart_matches_uninterrupted_run(root):
    uninterrupted = _run(root, "uninterrupted")
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-4000:]
    reference = _losses(root / "uninterrupted")
    n = max(reference)
    assert n >= 4  # packed rows (the tiny default): 2 epochs of 39 demo samples, about 6 per step

    # Interrupted run: SIGTERM to the launcher as soon as the first step has logged its loss.
    proc = subprocess.Popen(["bash", str(STAGE2)], cwd=REPO, env=_env(root, "interrupted"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "'loss':" in line and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            break
    lines.extend(proc.stdout)
    assert proc.wait(timeout=300) == REQUEUE_EXIT_CODE, "".join(lines)[-4000:]
    saved = checkpoints(root / "interrupted")
    assert len(saved) == 1 and is_complete(saved[0][1]), saved
    k = saved[0][0]
    assert 1 <= k < n
    assert not is_complete(root / "interrupted")  # no stage output: the stage is not finished

    resumed = _run(root, "interrupted")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"Resuming from {root / 'interrupted' / f'checkpoint-{k}'}" in resumed.stderr
    losses = _losses(root / "interrupted")
    assert sorted(losses) == list(range(1, n + 1))
    for step in range(1, n + 1):
        assert losses[step] == pytest.approx(reference[step], abs=1e-6), (step, losses, reference)
