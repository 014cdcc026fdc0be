"""bench/gpu_check.py in its CPU dry run: the same checks and code as on a GPU, at toy sizes, in one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)


def test_dry_run_runs_every_registered_check(tmp_path):
    import gpu_check

    out = run("--dry-run", "--json", str(tmp_path / "figures.json"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["dry_run"] and set(figures["seconds"]) == set(gpu_check.CHECKS)
    by_check = {}
    for result in figures["results"]:
        by_check.setdefault(result["check"], {})[result["metric"]] = result["value"]
    assert set(by_check) == set(gpu_check.CHECKS)

    loss = by_check["loss"]
    for name in ("chunked", "transformers"):
        assert loss[f"{name} bf16: loss relative error vs fp32"] < 1e-3
        assert loss[f"{name} bf16: d head max relative error vs fp32"] < 5e-2
    assert loss["chunked bf16: peak memory (T=96, V=640)"] < loss["transformers bf16: peak memory (T=96, V=640)"]

    flex = by_check["flex_vs_eager"]
    assert flex["packed: logits eager bf16 vs eager fp32: same top-1 token"] > 0.9
    for step in ("step_16x2048", "step_32k"):
        for label in ("chunked loss", "transformers' loss"):
            assert by_check[step][f"{label}: tokens/s"] > 0
            assert by_check[step][f"{label}: peak memory above the weights (gradients included)"] > 0
            assert by_check[step][f"{label}: MFU"] == "n/a"  # no GPU peak to divide by


def test_list_and_unknown_check():
    listed = run("--list")
    assert listed.returncode == 0 and listed.stdout.split()[0] == "loss"
    unknown = run("--dry-run", "--only", "nope")
    assert unknown.returncode == 2 and "unknown checks" in unknown.stderr
