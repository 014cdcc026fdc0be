"""Per-module learning rates are the ones in effect inside the DeepSpeed ZeRO-3 optimizer (2 CPU ranks)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from train_lr_worker import LRS  # noqa: E402


@pytest.fixture(scope="module")
def one_step(tmp_path_factory):
    out = tmp_path_factory.mktemp("lr") / "result.json"
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1",
               PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with socket.socket() as s:  # torchrun's static rendezvous needs a concrete port (0 hangs)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(REPO / "tests" / "train_lr_worker.py"), str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(out.read_text())


def test_deepspeed_optimizer_keeps_one_learning_rate_per_module(one_step):
    assert one_step["optimizer_class"] == "DeepSpeedZeroOptimizer_Stage3"
    assert one_step["world_size"] == 2
    seen = {}
    for group in one_step["groups"]:
        assert len(group["modules"]) == 1, group  # no group mixes modules
        module = group["modules"][0]
        assert group["name"].startswith(module + "/")
        assert group["lr"] == pytest.approx(LRS[module], rel=1e-12)
        seen[module] = group["lr"]
    assert set(seen) == set(LRS)


def test_first_adam_step_moves_each_module_by_its_learning_rate(one_step):
    # Adam's first step is lr * g / (|g| + eps) per element, so the largest change in a module is its lr
    # (weight decay 0, constant schedule): the rates were applied, not just stored.
    for module, lr in LRS.items():
        assert one_step["max_change"][module] == pytest.approx(lr, rel=2e-3), (module, one_step["max_change"])


def test_gpt_oss_moe_block_is_a_zero3_leaf(one_step):
    assert one_step["leaf_modules"] == ["GptOssMLP"]
