"""vLLM with our plugin against transformers on a stage output of the tiny curriculum, served as the training
entrypoint wrote it (the tiny preset's head_dim 32 is one vLLM's CPU attention takes).

- Prompt token ids and greedy output tokens equal HF's for a text-only item, a one-image item with several tiles
  (a large JPEG: the server decodes the request's bytes with our JPEG draft rule), a DICOM item (pydicom's bundled
  CT) and a three-image MedFrameQA-style item whose images share the tile budget: offline (`vllm.LLM`, in
  .venv-vllm) and through the OpenAI server that scripts/serve.sh starts (the checkpoint's chat_template.jinja
  renders the prompt there).
- The eval harness with `--backend openai` writes the same predictions and results.json as `--backend hf`, byte
  for byte.
- A server killed mid-run: the run stops, keeps its finished batches, and after a restart asks the new server
  only for the rest (counted by the server's own request metrics).

Needs .venv-vllm (bash scripts/setup.sh --vllm; CI builds it). Each vLLM engine start takes 1-2 minutes on CPU.
"""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llava_medgpt.constants import IMAGE_TOKEN
from llava_medgpt.eval.runner import main as eval_main
from llava_medgpt.inference.models import load_chat_model
from llava_medgpt.inference.openai_backend import OpenAIBackend, OpenAIServer, RequestRejected
from llava_medgpt.processing.image_io import load_image, read_image_size

REPO = Path(__file__).parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
FIXTURES = Path(__file__).parent / "fixtures" / "eval"
MAX_NEW_TOKENS = 12
MAX_MODEL_LEN = 4096

pytestmark = pytest.mark.skipif(
    not VLLM_PYTHON.exists(), reason=".venv-vllm is absent: build it with `bash scripts/setup.sh --vllm` (CI does)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """scripts/serve.sh in its own process group (vLLM's engine runs in child processes)."""

    def __init__(self, checkpoint: Path, log: Path):
        self.checkpoint, self.log, self.port, self.process = checkpoint, log, _free_port(), None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        env = {**os.environ, "PORT": str(self.port), "OMP_NUM_THREADS": "2"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["bash", str(REPO / "scripts" / "serve.sh"), str(self.checkpoint), "--max-model-len",
                 str(MAX_MODEL_LEN), "--enforce-eager", "--limit-mm-per-prompt", '{"image": 4}', "--seed", "0"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        backend = OpenAIBackend(OpenAIServer(self.base_url, model=str(self.checkpoint)))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve.sh exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                backend.wait_until_ready(timeout=5, poll=1)
                return
            except RuntimeError:
                continue
        raise RuntimeError(f"the server did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def successful_requests(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("vllm:request_success_total"))

    def chat(self, body: dict) -> dict:
        request = urllib.request.Request(self.base_url + "/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A stage output folder as the README's main job writes it, served as it is: stage 0 of the tiny curriculum
    (scripts/stage0_pretrain.sh with PRESET=tiny: the preset's language model pretrained on the demo texts and
    vision tower assembled from parts, DeepSpeed ZeRO-3 on 2 CPU ranks), stopped after two optimizer steps."""
    root = tmp_path_factory.mktemp("curriculum")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PRESET="tiny", OUTPUT_ROOT=str(root), NUM_GPUS="0", NPROC_PER_NODE="2", MAX_STEPS="2",
               SAVE_STEPS="1000")
    run = subprocess.run(["bash", str(REPO / "scripts" / "stage0_pretrain.sh")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    stage = root / "stage0"
    history = json.loads((stage / "log_history.json").read_text())
    assert max(entry.get("step", 0) for entry in history) == 2
    # The preset's head width is one vLLM's CPU attention takes (it refuses 16).
    assert json.loads((stage / "config.json").read_text())["text_config"]["head_dim"] == 32
    return stage


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    server = Server(checkpoint, tmp_path_factory.mktemp("server") / "serve.log")
    server.start()
    yield server
    server.kill(signal.SIGTERM)


def _smooth_rgb(rng, height: int, width: int, block: int = 32) -> np.ndarray:
    """Random colour blocks: JPEG keeps them recognisable, and resizing has real work to do."""
    cells = rng.integers(0, 256, (height // block, width // block, 3), dtype=np.uint8)
    return np.kron(cells, np.ones((block, block, 1), dtype=np.uint8))


@pytest.fixture(scope="module")
def cases(tmp_path_factory, checkpoint):
    """The four items: harness messages, the sources our processor reads, PNG files of the decoded images (offline
    vLLM) and the request images (server). Reference ids and greedy tokens come from transformers."""
    from pydicom.data import get_testdata_file

    folder = tmp_path_factory.mktemp("items")
    rng = np.random.default_rng(16)
    jpeg = folder / "large.jpg"
    Image.fromarray(_smooth_rgb(rng, 2016, 2688)).save(jpeg, "JPEG", quality=90)  # 4x3 grid, decoded at 1/2
    dicom = Path(get_testdata_file("CT_small.dcm"))
    frames = [Image.fromarray(_smooth_rgb(rng, h, w)) for h, w in ((1200, 1600), (1216, 1600), (1024, 800))]
    mcq = "Options:\nA. Pneumothorax\nB. Effusion\nC. Normal\nD. Nodule\nE. Mass\n" \
          "Answer with the option's letter from the given choices directly."
    items = {
        "text": ("A 60-year-old man has sudden chest pain and dyspnea.\n" + mcq, []),
        "tiles": ("<image>\nWhat abnormality is shown?\nAnswer the question using a single word or phrase.", [jpeg]),
        "dicom": ("<image>\nWhich organ does this CT slice show?", [dicom]),
        "frames": ("<image>\n<image>\n<image>\nThe frames come from one examination in this order. "
                   "Which finding do they show?\n" + mcq, frames),
    }
    chat = load_chat_model(str(checkpoint))
    image_processor = chat.processor.image_processor
    out = {}
    for name, (content, sources) in items.items():
        messages = [{"role": "user", "content": content}]
        prompt = chat.adapter.render(chat, messages, {})
        inputs = chat.processor(text=[prompt], images=[list(sources)] if sources else None)
        with torch.inference_mode():
            generated = chat.model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW_TOKENS,
                                            pad_token_id=chat.tokenizer.pad_token_id)
        sizes = [read_image_size(source) for source in sources]
        grids = image_processor.tile_grids_for_sample(sizes)
        decoded, pngs = [], []
        for index, (source, (cols, rows)) in enumerate(zip(sources, grids)):
            # What our processor decodes (JPEG draft included), as the harness and the offline engine get it.
            image = load_image(source, draft_size=(cols * 336, rows * 336))
            path = folder / f"{name}_{index}.png"
            image.save(path)
            decoded.append(image)
            pngs.append(str(path))
        out[name] = {"messages": messages, "prompt": prompt, "pngs": pngs, "decoded": decoded,
                     "jpeg": jpeg.read_bytes() if name == "tiles" else None,
                     "grids": grids, "ids": inputs["input_ids"][0].tolist(),
                     "generated": generated[0, inputs["input_ids"].shape[1]:].tolist()}
    pad = chat.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    tiles = {name: case["ids"].count(pad) // 144 for name, case in out.items()}
    assert tiles == {"text": 0, "tiles": 13, "dicom": 1, "frames": tiles["frames"]}
    # Alone each frame would take 12 tiles + thumbnail; together they share the 26-tile budget.
    assert 3 < tiles["frames"] <= 26 and out["frames"]["grids"] != [(4, 3)] * 3
    return out


def test_offline_llm_prompt_ids_and_greedy_outputs_equal_hf(cases, checkpoint, tmp_path):
    spec = [{"prompt": c["prompt"], "images": c["pngs"], "max_tokens": MAX_NEW_TOKENS} for c in cases.values()]
    (tmp_path / "cases.json").write_text(json.dumps(spec))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "2", "MAX_MODEL_LEN": str(MAX_MODEL_LEN)}
    run = subprocess.run([str(VLLM_PYTHON), str(REPO / "tests" / "vllm_offline_worker.py"), str(checkpoint),
                          str(tmp_path / "cases.json"), str(tmp_path / "out.json")],
                         capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    results = json.loads((tmp_path / "out.json").read_text())
    for (name, case), result in zip(cases.items(), results):
        assert result["prompt_token_ids"] == case["ids"], name
        assert result["output_token_ids"] == case["generated"], name


def test_server_prompt_ids_and_greedy_outputs_equal_hf(cases, server):
    backend = OpenAIBackend(OpenAIServer(server.base_url, model=str(server.checkpoint), image_markers="inline",
                                         keep_special_tokens=True))
    for name, case in cases.items():
        body = backend.request_body(case["messages"], case["decoded"], MAX_NEW_TOKENS)
        if name == "tiles":  # the file's own JPEG bytes, as a client would send them: the plugin decodes them
            url = "data:image/jpeg;base64," + base64.b64encode(case["jpeg"]).decode()
            body["messages"][0]["content"][1]["image_url"]["url"] = url
        answer = server.chat({**body, "return_token_ids": True})
        assert answer["prompt_token_ids"] == case["ids"], name
        assert answer["choices"][0]["token_ids"] == case["generated"], name
    # What the server refuses (here: more new tokens than the context holds) stops with the server's reason.
    with pytest.raises(RequestRejected, match="HTTP 400"):
        backend.generate([cases["text"]["messages"]], [[]], MAX_MODEL_LEN + 1)


EVAL_TASKS = "slake,medframeqa,medqa,pubmedqa"


def _eval(checkpoint: Path, output: Path, tasks: str, *extra: str) -> dict:
    return eval_main(["--model", str(checkpoint), "--tasks", tasks, "--data-dir", str(FIXTURES), "--output",
                      str(output), "--batch-size", "8", "--no-progress", "--no-clinical-metrics", *extra])


def test_openai_backend_results_equal_hf_byte_for_byte(checkpoint, server, tmp_path):
    _eval(checkpoint, tmp_path / "hf", EVAL_TASKS, "--max-new-tokens", "8")
    _eval(checkpoint, tmp_path / "openai", EVAL_TASKS, "--max-new-tokens", "8", "--backend", "openai",
          "--base-url", server.base_url)
    assert (tmp_path / "openai/results.json").read_bytes() == (tmp_path / "hf/results.json").read_bytes()
    for task in EVAL_TASKS.split(","):
        hf = (tmp_path / "hf/predictions" / f"{task}.jsonl").read_bytes()
        assert (tmp_path / "openai/predictions" / f"{task}.jsonl").read_bytes() == hf, task
    images = json.loads((tmp_path / "hf/results.json").read_text())["tasks"]
    assert images["medframeqa"]["scores"]["n"] > 0 and images["slake"]["scores"]["n"] > 0


RESUME_TASKS = "medqa,medmcqa,pubmedqa,mmlu_med,medbullets"  # 19 text items, 10 batches of 2


def test_killed_server_resumes_without_reasking_answered_items(checkpoint, server, tmp_path):
    reference = _eval(checkpoint, tmp_path / "hf", RESUME_TASKS, "--max-new-tokens", "48", "--batch-size", "2")
    total = sum(task["scores"]["n"] for task in reference["tasks"].values())
    output = tmp_path / "openai"
    args = ["--model", str(checkpoint), "--tasks", RESUME_TASKS, "--data-dir", str(FIXTURES), "--output",
            str(output), "--batch-size", "2", "--max-new-tokens", "48", "--no-progress", "--no-clinical-metrics",
            "--backend", "openai", "--base-url", server.base_url, "--request-retries", "1"]
    run = subprocess.Popen([sys.executable, "-m", "llava_medgpt.eval", *args], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    first = output / "predictions" / "medqa.jsonl"
    deadline = time.monotonic() + 300
    while not (first.exists() and first.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        assert run.poll() is None, run.stdout.read().decode()[-3000:]
        time.sleep(0.02)
    server.kill()  # mid-run: SIGKILL, as a node failure would
    log = run.communicate(timeout=300)[0].decode()
    assert run.returncode != 0 and "ServerUnavailable" in log, log[-3000:]
    answered = sum(len(p.read_text().splitlines()) for p in (output / "predictions").glob("*.jsonl"))
    assert 2 <= answered < total

    server.start()  # same port, fresh engine: its request counter starts at zero
    results = _eval(checkpoint, output, RESUME_TASKS, "--max-new-tokens", "48", "--batch-size", "2",
                    "--backend", "openai", "--base-url", server.base_url)
    assert server.successful_requests() == total - answered
    assert (output / "results.json").read_bytes() == (tmp_path / "hf/results.json").read_bytes()
    assert results["tasks"] == reference["tasks"]


def test_text_only_baseline_through_the_server_equals_hf(tmp_path_factory, tmp_path):
    """A baseline served by vLLM's own implementation with its own chat template (a tiny Qwen2 causal LM, ChatML):
    same predictions and results.json as HFBackend; image tasks are not run for a text-only model either way.
    (vLLM's Gemma 3 / Qwen2.5-VL / LLaVA-OneVision modules import torchvision, which the CPU build cannot have;
    they are served on the CUDA build, docs/serving.md.)"""
    from llava_medgpt.model.tiny import create_tiny_language_model

    language_model = create_tiny_language_model(tmp_path_factory.mktemp("qwen") / "tiny_qwen2", "qwen2",
                                                head_dim=32)
    server = Server(language_model, tmp_path / "serve.log")
    server.start()
    try:
        tasks = "medqa,pubmedqa,slake"
        hf = _eval(language_model, tmp_path / "hf", tasks, "--max-new-tokens", "8")
        _eval(language_model, tmp_path / "openai", tasks, "--max-new-tokens", "8", "--backend", "openai",
              "--base-url", server.base_url)
    finally:
        server.kill(signal.SIGTERM)
    assert set(hf["not_run"]) == {"slake"} and hf["model_type"] == "qwen2"
    assert (tmp_path / "openai/results.json").read_bytes() == (tmp_path / "hf/results.json").read_bytes()
    for task in ("medqa", "pubmedqa"):
        hf_lines = (tmp_path / "hf/predictions" / f"{task}.jsonl").read_bytes()
        assert (tmp_path / "openai/predictions" / f"{task}.jsonl").read_bytes() == hf_lines, task


def test_curation_judge_through_the_server(checkpoint, server, tmp_path):
    """`python -m llava_medgpt.data.curate --llm-backend openai`: the llm_relevance step asks the served model once per
    record through the eval's OpenAIBackend, and a tiny random model's replies, which are no verdicts, remove every
    record as unparseable (never kept)."""
    from llava_medgpt.data.curate.__main__ import main as curate_main

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for k in range(3):
        Image.fromarray(_smooth_rgb(rng, 96, 128)).save(images / f"{k}.png")
        lines.append(json.dumps({"id": f"r{k}", "image": f"{k}.png", "conversations": [
            {"from": "human", "value": "<image>\nDescribe the image."}, {"from": "gpt", "value": f"Caption {k}."}]}))
    (tmp_path / "src.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "judge.yaml").write_text("steps:\n  - step: llm_relevance\n    batch_size: 2\n    max_new_tokens: 4\n")
    before = server.successful_requests()
    assert curate_main(["--input", str(tmp_path / "src.jsonl"), "--image-folder", str(images), "--output",
                        str(tmp_path / "out"), "--config", str(tmp_path / "judge.yaml"), "--llm-backend", "openai",
                        "--llm-model", str(checkpoint), "--base-url", server.base_url, "--workers", "1",
                        "--no-progress"]) == 0
    assert server.successful_requests() - before == 3
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    step = report["sources"][0]["steps"][-1]
    assert step == {"step": "llm_relevance", "in": 3, "out": 0, "reasons": {"unparseable_verdict": 3}}
