"""Fault injection on the real training launcher (PRESET=tiny, 2 CPU ranks, DeepSpeed ZeRO-3), plus the faults that
need no training run. docs/faults.md tabulates every case with the outcome these tests assert.

Every training run uses one recipe: 20 good records followed by 6 bad ones (a NUL byte in an image path, a symlink
loop, 27 images, a corrupt PNG, a repeated id, a lone surrogate in the text), so each run also checks that bad
records are skipped and counted on every rank, and that their counts survive kills and resumes.

Scenarios (each a few launcher runs; the module's training runs take about 6 minutes on this 2-core machine):
- reference: an uninterrupted run; a second launcher started on its OUTPUT_DIR meanwhile is refused;
- kill: SIGKILL of the launcher shell and torchrun while checkpoint-6 is being written: no rank survives, the lock
  is released; then the newest complete checkpoint (4) gets a truncated shard; the rerun deletes checkpoint-6,
  names the damaged file, sets checkpoint-4 aside, resumes from checkpoint-2 and ends bit-identical to the
  reference (losses, weights, skip counts);
- disk full: OUTPUT_DIR on a tmpfs that holds one checkpoint; the second save fails with a clear ENOSPC message
  and exit 74; after the tmpfs is enlarged the rerun resumes from checkpoint-2, bit-identical;
- bad samples: a limit the recipe exceeds stops the run on every rank with exit 65 and the counts; SIGTERM during
  that failure does not turn it into 75 ("run again"); the rerun resumes with the saved counts and fails at the
  same step with the same report (never a fresh num_seen 0).
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llava_medgpt import create_tiny_checkpoint
from llava_medgpt.train.checkpointing import checkpoints, is_complete, read_manifest, verify_folder
from llava_medgpt.train.exit_status import EXIT_DISK_FULL, EXIT_TOO_MANY_BAD, read_exit_status

REPO = Path(__file__).resolve().parents[1]
STAGE2 = REPO / "scripts" / "stage2_sft.sh"
NORMAL_LIMIT = ["--max_bad_sample_fraction", "0.5"]  # the recipe's 6 bad records of 26 stay under it
BAD_SAMPLE_REASONS = {"invalid_record": 1, "image_load": 2, "too_many_images": 1, "duplicate_id": 1, "template": 1}


# ------------------------------------------------------------------------------------------------ helpers


def _can_mount() -> bool:
    probe = Path(f"/tmp/.i13-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    finally:
        probe.rmdir()


CAN_MOUNT = os.geteuid() == 0 and shutil.which("mount") is not None and _can_mount()
needs_mount = pytest.mark.skipif(not CAN_MOUNT, reason="needs root and mount (tmpfs / bind mounts)")


def _env(root: Path, output_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PRESET="tiny", OUTPUT_ROOT=str(root), OUTPUT_DIR=str(output_dir), NPROC_PER_NODE="2",
               PREV_STAGE_CHECKPOINT=str(root / "start"), DATA_RECIPE=str(root / "faulty.yaml"), NUM_GPUS="0",
               # One epoch of padded batches of 2 per rank: 7 steps, a checkpoint every 2, every loss logged.
               PACKING="False", PER_DEVICE_BATCH_SIZE="2", NUM_TRAIN_EPOCHS="1", LOGGING_STEPS="1", SAVE_STEPS="2",
               SAVE_TOTAL_LIMIT="2")
    return env


class Launch:
    """One `bash scripts/stage2_sft.sh` run, its output in a log file (a pipe could fill up and block it)."""

    def __init__(self, root: Path, output_dir: Path, *args: str):
        self.log_path = root / f"{output_dir.name}.{time.time_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["bash", str(STAGE2), *args], cwd=REPO, env=_env(root, output_dir),
                                     stdout=self._log, stderr=subprocess.STDOUT, text=True)

    def wait(self, timeout: float = 900) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _run(root: Path, output_dir: Path, *args: str) -> tuple[int, str]:
    launch = Launch(root, output_dir, *args)
    code = launch.wait()
    return code, launch.log


def _wait_for(predicate, timeout: float, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Any thread of the process still running, stopped or exiting (its open files are released with the last one;
    a zombie thread group leader can wait for its other threads for seconds)."""
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return True
        except OSError:
            continue
    return False


def _holders(path: Path) -> list[str]:
    """Processes with `path` open (pid and command line), for a failure message."""
    found = set()
    for fd_dir in Path("/proc").glob("[0-9]*/task/[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                process = fd_dir.parents[2]
                cmdline = (process / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.add(f"{process.name}: {cmdline[:120]}")
        except OSError:
            continue
    return sorted(found)


def _losses(output_dir: Path) -> dict[int, float]:
    history = json.loads((output_dir / "log_history.json").read_text())
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def _skips(output_dir: Path) -> dict:
    return json.loads((output_dir / "skipped_samples.json").read_text())


def _outcome(output_dir: Path) -> dict:
    """What must be bit-identical between an uninterrupted and a resumed run."""
    return {"losses": _losses(output_dir), "weights": (output_dir / "model.safetensors").read_bytes(),
            "skips": _skips(output_dir)}


def _assert_same_outcome(output_dir: Path, reference: dict) -> None:
    outcome = _outcome(output_dir)
    assert outcome["losses"] == reference["losses"]  # exactly, step by step
    assert outcome["weights"] == reference["weights"]
    assert outcome["skips"] == reference["skips"]


# ------------------------------------------------------------------------------------------------ fixture


def _record(i: int, image: str | list | None = None, question: str | None = None) -> dict:
    images = [image] if isinstance(image, str) else list(image or [])
    markers = "<image>\n" * len(images)
    record = {"id": f"r{i}", "conversations": [{"from": "human", "value": markers + (question or f"Question {i}?")},
                                               {"from": "gpt", "value": f"Answer {i}: effusion"}]}
    if images:
        record["image"] = image
    return record


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    create_tiny_checkpoint(root / "start")
    (root / "start" / "COMPLETE").touch()  # a start point like a finished stage output
    (root / "tiny_assets").mkdir()
    (root / "tiny_assets" / "COMPLETE").touch()  # this recipe needs no demo data
    images = root / "data" / "images"
    images.mkdir(parents=True)
    for i in range(10):
        Image.new("RGB", (64 + 8 * i, 64), (20 * i, 100, 200 - 10 * i)).save(images / f"ok{i}.png")
    (images / "loop_a.png").symlink_to(images / "loop_b.png")
    (images / "loop_b.png").symlink_to(images / "loop_a.png")
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not a PNG after all")
    records = [_record(i, f"ok{i // 2}.png" if i % 2 else None) for i in range(20)]  # the recipe check reads these
    records[19]["image"] = str(images / "ok9.png")  # absolute, inside the image folder: trained like the others
    records += [
        _record(20, "scan\x00.png"),
        _record(21, "loop_a.png"),
        _record(22, ["ok1.png"] * 27),
        _record(23, "corrupt.png"),
        {**_record(24), "id": "r0"},
        _record(25, question=json.loads('"what is \\ud800 shown?"')),
    ]
    (root / "data" / "faulty.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "faulty.yaml").write_text(f"seed: 3\ndatasets:\n  - name: faulty\n    json_path: {root}/data/faulty.jsonl\n"
                                      f"    image_folder: {images}\n")
    return root


@pytest.fixture(scope="module")
def reference(root):
    """The uninterrupted run, and a second launcher on its OUTPUT_DIR while it trains."""
    output_dir = root / "reference"
    first = Launch(root, output_dir, *NORMAL_LIMIT)
    _wait_for(lambda: "'loss'" in first.log or first.proc.poll() is not None, timeout=600, interval=0.5)
    second = subprocess.run(["bash", str(STAGE2), *NORMAL_LIMIT], cwd=REPO, env=_env(root, output_dir),
                            capture_output=True, text=True, timeout=120)
    code = first.wait()
    assert code == 0, first.log[-4000:]
    return {"output_dir": output_dir, "outcome": _outcome(output_dir), "second": second, "launcher_pid": first.proc.pid,
            "log": first.log}


# ------------------------------------------------------------------------------------------ reference run


def test_bad_records_are_counted_skips_on_every_rank(reference):
    skips = _skips(reference["output_dir"])
    # 7 steps x 4 samples: the 26 records plus the sampler's 2 wrap-around repeats (which may be bad ones).
    assert skips["num_seen"] == 28
    assert set(skips["counts"]) == set(BAD_SAMPLE_REASONS)
    assert all(skips["counts"][reason] >= n for reason, n in BAD_SAMPLE_REASONS.items())
    assert skips["num_skipped"] <= sum(BAD_SAMPLE_REASONS.values()) + 2
    assert skips["ids"]["duplicate_id"] == ["faulty/r0"]  # the copy at record 24
    assert not any(f"faulty/r{i}" in ids for i in range(1, 20) for ids in skips["ids"].values())  # r19: absolute
    assert "NUL byte" in skips["first_error"]["invalid_record"]
    assert "27 images cannot fit" in skips["first_error"]["too_many_images"]
    assert sorted(reference["outcome"]["losses"]) == list(range(1, 8))
    per_rank = [json.loads((reference["output_dir"] / f"skipped_samples.rank{r}.json").read_text()) for r in (0, 1)]
    assert sum(r["num_seen"] for r in per_rank) == 28


def test_second_launcher_on_the_same_output_dir_is_refused_naming_the_holder(reference):
    second = reference["second"]
    assert second.returncode == 2, second.stderr
    assert f"OUTPUT_DIR={reference['output_dir']} is in use by another run" in second.stderr
    assert f"pid={reference['launcher_pid']}" in second.stderr and f"host={os.uname().nodename}" in second.stderr


def test_checkpoints_and_stage_output_are_sealed_with_a_manifest(reference):
    output_dir = reference["output_dir"]
    saved = checkpoints(output_dir)
    assert [step for step, _ in saved] == [6, 7]  # SAVE_TOTAL_LIMIT=2 of the complete ones
    for _, folder in saved:
        manifest = read_manifest(folder)
        assert "skipped_samples.rank0.json" in manifest and "skipped_samples.rank1.json" in manifest
        assert any(name.endswith("optim_states.pt") for name in manifest)
        assert verify_folder(folder) == []
    assert "model.safetensors" in read_manifest(output_dir) and verify_folder(output_dir) == []
    assert read_exit_status(output_dir)["exit_code"] == 0


# ------------------------------------------------------------------------- kill -9 mid-save, damaged shard


@pytest.fixture(scope="module")
def killed(root, reference):
    output_dir = root / "killed"
    launch = Launch(root, output_dir, *NORMAL_LIMIT)
    saving = output_dir / "checkpoint-6"
    _wait_for(lambda: saving.is_dir() or launch.proc.poll() is not None, timeout=600, interval=0.005)
    bash = launch.proc.pid
    torchrun = next(pid for pid in _children(bash) if "torch.distributed.run" in Path(f"/proc/{pid}/cmdline")
                    .read_bytes().decode(errors="replace"))
    ranks = _children(torchrun)
    for pid in [*ranks, torchrun, bash]:  # freeze the save where it is
        os.kill(pid, signal.SIGSTOP)
    mid_save = not is_complete(saving)
    os.kill(bash, signal.SIGKILL)
    os.kill(torchrun, signal.SIGKILL)
    launch.wait()
    orphans = []
    try:
        _wait_for(lambda: not any(_alive(pid) for pid in ranks), timeout=30, interval=0.1)
    except AssertionError:
        orphans = [pid for pid in ranks if _alive(pid)]
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)
    lock_free = subprocess.run(["flock", "--nonblock", str(output_dir / ".launch.lock"), "true"]).returncode == 0
    holders = [] if lock_free else _holders(output_dir / ".launch.lock")
    state_after_kill = {"checkpoints": [(step, is_complete(folder)) for step, folder in checkpoints(output_dir)]}

    # Damage the newest complete checkpoint after its COMPLETE marker: cut one rank's optimizer shard.
    newest = output_dir / "checkpoint-4"
    shard = next(newest.glob("global_step4/*rank_1*optim_states.pt"))
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 2)
    code, log = _run(root, output_dir, *NORMAL_LIMIT)
    return {"ranks": ranks, "orphans": orphans, "mid_save": mid_save, "lock_free": lock_free, "holders": holders,
            "shard": shard,
            "output_dir": output_dir, "code": code, "log": log, **state_after_kill}


def test_kill_9_of_launcher_and_torchrun_leaves_no_rank_running(killed):
    assert killed["mid_save"], "the kill came after checkpoint-6 was sealed; the scenario needs it mid-save"
    assert len(killed["ranks"]) == 2
    assert killed["orphans"] == []  # every rank died with torchrun (parent-death signal)
    assert killed["lock_free"], killed["holders"]  # and with them the OUTPUT_DIR lock
    assert killed["checkpoints"] == [(2, True), (4, True), (6, False)]


def test_rerun_after_kill_reports_the_damaged_checkpoint_and_falls_back(killed):
    log, output_dir = killed["log"], killed["output_dir"]
    assert killed["code"] == 0, log[-4000:]
    assert f"Removed incomplete checkpoint {output_dir / 'checkpoint-6'}" in log
    assert f"{killed['shard']}: content differs from the manifest" in log
    assert f"Resuming from {output_dir / 'checkpoint-2'}" in log
    assert (output_dir / "checkpoint-4.damaged").is_dir()
    assert "stale lock of a run that ended without releasing it" in log


def test_resume_after_kill_and_damaged_checkpoint_is_bit_identical(killed, reference):
    _assert_same_outcome(killed["output_dir"], reference["outcome"])


# -------------------------------------------------------------------------------------------- disk full


@pytest.fixture(scope="module")
def disk_full(root, reference):
    if not CAN_MOUNT:
        pytest.skip("needs root and mount (tmpfs)")
    one_checkpoint = sum(p.stat().st_size for p in (reference["output_dir"] / "checkpoint-6").rglob("*")
                         if p.is_file())
    mount = root / "small_disk"
    mount.mkdir()
    size_kib = (one_checkpoint * 3 // 2) // 1024  # one checkpoint fits, a second does not
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)], check=True)
    try:
        output_dir = mount / "run"
        first_code, first_log = _run(root, output_dir, *NORMAL_LIMIT)
        state = {"checkpoints": [(step, is_complete(folder)) for step, folder in checkpoints(output_dir)],
                 "status": read_exit_status(output_dir)}
        subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
        code, log = _run(root, output_dir, *NORMAL_LIMIT)
        outcome = _outcome(output_dir) if code == 0 else None
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    return {"first_code": first_code, "first_log": first_log, "code": code, "log": log, "outcome": outcome,
            "output_dir": output_dir, **state}


def test_disk_full_is_reported_as_enospc_with_its_own_exit_code(disk_full):
    log = disk_full["first_log"]
    assert disk_full["first_code"] == EXIT_DISK_FULL, log[-4000:]
    assert "No space left on device (ENOSPC) while writing under" in log
    assert "The write failed with: RuntimeError: [enforce fail at inline_container.cc" in log  # torch's own words
    assert "training stopped: no space left on the device" in log
    assert disk_full["status"]["reason"] == "disk_full"
    assert disk_full["checkpoints"] == [(2, True)]  # the failed save was removed, freeing its space


def test_rerun_after_disk_full_resumes_bit_identical(disk_full, reference):
    assert disk_full["code"] == 0, disk_full["log"][-4000:]
    assert f"Resuming from {disk_full['output_dir'] / 'checkpoint-2'}" in disk_full["log"]
    assert disk_full["outcome"]["losses"] == reference["outcome"]["losses"]
    assert disk_full["outcome"]["weights"] == reference["outcome"]["weights"]
    assert disk_full["outcome"]["skips"] == reference["outcome"]["skips"]


# ---------------------------------------------------------------------------------------- bad-sample limit


@pytest.fixture(scope="module")
def too_many_bad(root, reference):
    output_dir = root / "too_many_bad"
    limit = ["--max_bad_sample_fraction", "0.1", "--bad_sample_min_samples", "12"]
    first = Launch(root, output_dir, *limit)
    # SIGTERM to the launcher while the ranks are failing: it used to turn the failure into 75 ("run again").
    _wait_for(lambda: "TooManyBadSamplesError" in first.log or "stopping:" in first.log
              or first.proc.poll() is not None, timeout=600, interval=0.01)
    if first.proc.poll() is None:
        first.proc.send_signal(signal.SIGTERM)
    first_code = first.wait()
    first_report = _skips(output_dir)
    saved = [(step, is_complete(folder)) for step, folder in checkpoints(output_dir)]
    code, log = _run(root, output_dir, *limit)
    return {"first_code": first_code, "first_log": first.log, "first_report": first_report, "saved": saved,
            "code": code, "log": log, "report": _skips(output_dir), "output_dir": output_dir}


def test_too_many_bad_samples_stops_every_rank_with_its_exit_code(too_many_bad):
    log = too_many_bad["first_log"]
    assert too_many_bad["first_code"] == EXIT_TOO_MANY_BAD, log[-4000:]
    assert "training stopped: too many bad samples (exit code 65)" in log
    report = too_many_bad["first_report"]
    assert report["num_seen"] >= 12 and report["num_skipped"] / report["num_seen"] > 0.1
    assert not is_complete(too_many_bad["output_dir"])
    assert too_many_bad["saved"] and all(complete for _, complete in too_many_bad["saved"])


def test_rerun_restores_the_counts_and_fails_the_same_way(too_many_bad):
    log = too_many_bad["log"]
    assert too_many_bad["code"] == EXIT_TOO_MANY_BAD, log[-4000:]
    step = too_many_bad["saved"][-1][0]
    assert f"Resuming from {too_many_bad['output_dir'] / f'checkpoint-{step}'}" in log
    assert "Bad-sample counts restored from" in log
    assert too_many_bad["report"] == too_many_bad["first_report"]  # the evidence is never replaced by zeros
    assert not is_complete(too_many_bad["output_dir"])


# ------------------------------------------------------------------------------------------ evaluation faults

FIXTURES = REPO / "tests" / "fixtures" / "eval"


@pytest.fixture(scope="module")
def eval_model(tmp_path_factory):
    """A tiny Qwen2-backed MedGPT checkpoint with one tile per image (fast on CPU)."""
    path = create_tiny_checkpoint(tmp_path_factory.mktemp("eval_ckpt") / "tiny", text_backbone="qwen2")
    config_path = path / "processor_config.json"
    config = json.loads(config_path.read_text())
    config["image_processor"].update(max_tiles=1, use_thumbnail=False)
    config_path.write_text(json.dumps(config))
    return path


def _evaluate(model, output: Path, tasks: str, data_dir: Path = FIXTURES, *extra: str) -> dict:
    from llava_medgpt.eval.runner import main

    return main(["--model", str(model), "--tasks", tasks, "--data-dir", str(data_dir), "--output", str(output),
                 "--max-new-tokens", "3", "--batch-size", "2", "--no-progress", "--no-clinical-metrics", *extra])


def test_eval_resume_is_refused_for_another_dtype_or_attention_but_not_for_the_same_model(eval_model, tmp_path):
    _evaluate(eval_model, tmp_path, "medqa")
    before = (tmp_path / "results.json").read_bytes()
    # The same model: an explicit float32 (what "auto" loaded) and the path with a trailing slash resume.
    _evaluate(f"{eval_model}/", tmp_path, "medqa", FIXTURES, "--dtype", "float32")
    assert (tmp_path / "results.json").read_bytes() == before
    with pytest.raises(ValueError, match=r"other settings \(dtype: 'float32' -> 'bfloat16'\)"):
        _evaluate(eval_model, tmp_path, "medqa", FIXTURES, "--dtype", "bfloat16")
    with pytest.raises(ValueError, match=r"attn_implementation: .*'sdpa'.* -> .*'eager'"):
        _evaluate(eval_model, tmp_path, "medqa", FIXTURES, "--attn-implementation", "eager")


def test_eval_resume_is_refused_when_the_checkpoint_was_replaced_at_the_same_path(eval_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(eval_model, model)
    _evaluate(model, tmp_path / "out", "medqa")
    # Another checkpoint saved at the same path: same config and file sizes, other weights.
    from safetensors.numpy import load_file, save_file

    weights = load_file(model / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + np.float32(0.01)
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="model_fingerprint: 'sha256:"):
        _evaluate(model, tmp_path / "out", "medqa")


def _copy_release(tmp_path: Path, name: str) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / name, data / name)
    return data


def test_an_unreadable_eval_image_is_skipped_and_counted_per_task(eval_model, tmp_path):
    data = _copy_release(tmp_path, "Slake1.0")
    (data / "Slake1.0" / "imgs" / "xmlab2" / "source.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    from llava_medgpt.eval.tasks import load_task

    items = load_task("slake", data).items
    bad = [item.id for item in items if item.images[0].path == "xmlab2/source.jpg"]
    assert bad and len(bad) < len(items)
    results = _evaluate(eval_model, tmp_path / "out", "slake", data)
    entry = results["tasks"]["slake"]
    assert entry["skipped"] == {"image_load": len(bad)} and entry["n_scored"] == len(items) - len(bad)
    lines = [json.loads(line) for line in (tmp_path / "out/predictions/slake.jsonl").read_text().splitlines()]
    skipped = {line["id"]: line for line in lines if "skipped" in line}
    assert sorted(skipped) == sorted(bad) and "xmlab2/source.jpg" in skipped[bad[0]]["detail"]
    # A rerun resumes the same way: nothing regenerated, the same results.
    before = (tmp_path / "out/results.json").read_bytes()
    _evaluate(eval_model, tmp_path / "out", "slake", data)
    assert (tmp_path / "out/results.json").read_bytes() == before


def test_an_int_image_name_in_an_eval_record_is_a_counted_skip(eval_model, tmp_path):
    data = _copy_release(tmp_path, "MedXpertQA")
    path = data / "MedXpertQA" / "MM" / "test.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    from llava_medgpt.eval.tasks import load_task

    before = load_task("medxpertqa_mm", data)  # the fixture has a bad record of its own
    records[1]["images"] = [123]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    results = _evaluate(eval_model, tmp_path / "out", "medxpertqa_mm", data)
    entry = results["tasks"]["medxpertqa_mm"]
    assert entry["skipped"] == {**before.skipped, "image field of type int, not a path": 1}
    assert entry["n_scored"] == len(before.items) - 1


@pytest.mark.parametrize("line, problem", [
    (b'{"id":"zz"}\n', "no string 'output' for id 'zz'"),
    (b"null\n", "expected a JSON object, got null"),
    (b'{"id": "\xff\xfe", "output": "A"}\n', "not UTF-8"),
    (b'{"output": "A"}\n', "no string 'id'"),
    (b"[1, 2\n", "not JSON"),
])
def test_a_corrupt_prediction_line_is_refused_naming_it(tmp_path, line, problem):
    from llava_medgpt.eval.generation import GenerationSettings, PredictionFile, PredictionFileError

    path = tmp_path / "task.jsonl"
    path.write_bytes(b'{"id": "a", "output": "A"}\n' + line + b'{"id": "b", "output": "B"}\n')
    store = PredictionFile(path, GenerationSettings(model="m", max_new_tokens=1, batch_size=1, seed=0,
                                                    template_kwargs={}))
    with pytest.raises(PredictionFileError, match=rf"task\.jsonl line 2: {problem}"):
        store.load()
    assert path.read_bytes().endswith(b'{"id": "b", "output": "B"}\n')  # nothing was cut off


def test_a_duplicate_prediction_id_is_refused_and_a_cut_last_line_repaired(tmp_path):
    from llava_medgpt.eval.generation import GenerationSettings, PredictionFile, PredictionFileError

    settings = GenerationSettings(model="m", max_new_tokens=1, batch_size=1, seed=0, template_kwargs={})
    path = tmp_path / "task.jsonl"
    path.write_bytes(b'{"id": "a", "output": "A"}\n{"id": "b", "output": "B"}\n{"id": "a", "output": "C"}\n')
    with pytest.raises(PredictionFileError, match="line 3: a second line for id 'a'"):
        PredictionFile(path, settings).load()
    path.write_bytes(b'{"id": "a", "output": "A"}\n{"id": "b", "outp')
    assert PredictionFile(path, settings).load() == {"a": "A"}
    assert path.read_bytes() == b'{"id": "a", "output": "A"}\n'


def test_a_later_tasks_failure_keeps_the_finished_tasks_results(eval_model, tmp_path):
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    (predictions / "pubmedqa.jsonl").write_bytes(b"null\n")  # pubmedqa will refuse its file
    with pytest.raises(ValueError, match="pubmedqa.jsonl line 1"):
        _evaluate(eval_model, tmp_path, "medqa,pubmedqa")
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["tasks"]) == {"medqa"} and results["tasks"]["medqa"]["n_scored"] == 3
    assert results["failed"]["pubmedqa"].startswith("PredictionFileError: ")
    assert not list(tmp_path.glob(".results.json*.tmp"))  # written atomically


# ------------------------------------------------------------------------------- training faults, no run


@needs_mount
def test_torch_save_on_a_full_disk_is_named_enospc(tmp_path):
    import errno

    import torch

    from llava_medgpt.train.exit_status import DiskFullError, disk_full_error

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        with pytest.raises(RuntimeError) as info:
            torch.save({"w": torch.zeros(100_000)}, disk / "shard.pt")
        assert "No space" not in str(info.value)  # torch's writer does not say why
        full = disk_full_error(info.value, disk)
        assert isinstance(full, DiskFullError) and full.errno == errno.ENOSPC
        assert f"No space left on device (ENOSPC) while writing under {disk}" in str(full)
        assert disk_full_error(ValueError("unrelated"), disk) is None
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@needs_mount
def test_a_read_only_dataset_mount_needs_and_takes_an_index_cache_dir(tmp_path):
    from llava_medgpt.data.dataset import MedGptDataset
    from llava_medgpt.data.index import IndexLocationError
    from llava_medgpt.model.tokenizer import build_tiny_tokenizer
    from llava_medgpt.processing.image_processor import MedGptImageProcessor
    from llava_medgpt.processing.processor import MedGptProcessor

    source = tmp_path / "source"
    source.mkdir()
    (source / "chat.jsonl").write_text("".join(json.dumps(_record(i)) + "\n" for i in range(3)))
    mounted = tmp_path / "dataset"
    mounted.mkdir()
    subprocess.run(["mount", "--bind", str(source), str(mounted)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)], check=True)
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(f"datasets:\n  - json_path: {mounted}/chat.jsonl\n")
        processor = MedGptProcessor(MedGptImageProcessor(), build_tiny_tokenizer("gpt_oss"))
        with pytest.raises(IndexLocationError, match=r"Read-only file system.*pass --index_cache_dir"):
            MedGptDataset(recipe, processor, max_length=512)
        dataset = MedGptDataset(recipe, processor, max_length=512, cache_dir=tmp_path / "index")
        assert [dataset[k]["id"] for k in range(3)] == ["r0", "r1", "r2"]
    finally:
        subprocess.run(["umount", "-l", str(mounted)], check=False)


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    try:
        _wait_for(lambda: not _alive(pid), timeout=timeout, interval=0.05)
        return True
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        return False


def test_the_process_guard_ends_the_command_when_its_parent_is_killed(tmp_path):
    """The launcher's guard on torchrun (SIGTERM) and the ranks' own guard (SIGKILL when torchrun dies)."""
    import sys

    pid_file = tmp_path / "pids"
    # A parent shell starts `sleep` through the guard, then is killed with SIGKILL.
    parent = subprocess.Popen(["bash", "-c", f"{sys.executable} -m llava_medgpt.train.process_guard --signal TERM "
                               f"--expect-parent $$ -- sleep 300 & echo $! > {pid_file}; wait"], cwd=REPO)
    child = int(_wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=30))
    _wait_for(lambda: Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"sleep"), timeout=30)
    parent.kill()
    parent.wait()
    assert _wait_gone(child), "the guarded command outlived its parent"
    # A rank: guard_rank() with the parent's pid exported, as the guard does for torchrun's children.
    rank_code = (f"from llava_medgpt.train.process_guard import guard_rank; guard_rank(); "
                 f"open({str(pid_file)!r}, 'w').write('ready'); import time; time.sleep(300)")
    pid_file.unlink()
    parent = subprocess.Popen([sys.executable, "-c",
                               "import os, subprocess, sys, time; "
                               "os.environ['LLAVA_MEDGPT_TORCHRUN_PID'] = str(os.getpid()); "
                               f"p = subprocess.Popen([sys.executable, '-c', {rank_code!r}]); print(p.pid, flush=True); "
                               "time.sleep(300)"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    rank = int(parent.stdout.readline())
    _wait_for(lambda: pid_file.exists(), timeout=30)
    parent.kill()
    parent.wait()
    assert _wait_gone(rank), "the rank outlived torchrun"


def test_the_guard_refuses_to_start_when_the_parent_is_already_gone():
    import sys

    done = subprocess.run([sys.executable, "-m", "llava_medgpt.train.process_guard", "--expect-parent", "1", "--",
                           "true"], cwd=REPO)
    assert done.returncode == -signal.SIGTERM  # not run: the expected parent is not ours
