"""Examples per second on the same MCQ items: the harness's HF generate (batch 8) vs a vLLM server (concurrency 8).

Run as: python bench/bench_vllm_serving.py                       # tiny checkpoint (head_dim 32), CPU code path
        python bench/bench_vllm_serving.py --model outputs/stage2 # a real checkpoint on a GPU box, same script

Both backends go through the harness's own `run_generation` (same items, same prediction-file path, greedy), so
the figures are what `python -m llava_medgpt.eval --backend hf|openai` would see. The server is started with
scripts/serve.sh (.venv-vllm; bash scripts/setup.sh --vllm), timed from its first answer (startup is reported
separately), and stopped at the end. Items: the MedQA / MedMCQA / MMLU-Med fixtures repeated with distinct ids.
Prints a JSON report; --min-ratio makes it exit non-zero when vLLM is below that multiple of HF.
"""

import argparse
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "eval"


def bench_items(count: int):
    from llava_medgpt.eval.tasks import load_task

    tasks = [load_task(name, FIXTURES) for name in ("medqa", "medmcqa", "mmlu_med")]
    pool = [item for task in tasks for item in task.items]
    return tasks[0].config, [dataclasses.replace(pool[n % len(pool)], id=f"bench-{n}") for n in range(count)]


def timed_run(backend, config, items, batch_size: int, max_new_tokens: int, output: Path) -> tuple[float, dict]:
    from llava_medgpt.eval.generation import GenerationSettings, PredictionFile, run_generation

    settings = GenerationSettings(model="bench", max_new_tokens=max_new_tokens, batch_size=batch_size, seed=0,
                                  template_kwargs={})
    store = PredictionFile(output, settings)
    start = time.perf_counter()
    outputs = run_generation(backend, items, config, store, progress=False)
    return time.perf_counter() - start, outputs


def start_server(model: Path, port: int, max_model_len: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PORT": str(port)}
    flags = ["--max-model-len", str(max_model_len), "--seed", "0", "--max-num-seqs", "8"]
    with log.open("wb") as out:
        return subprocess.Popen(["bash", str(REPO / "scripts" / "serve.sh"), str(model), *flags], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: a tiny random one, head_dim 32)")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8, help="HF batch and server concurrency")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for HF (the server uses its own)")
    parser.add_argument("--min-ratio", type=float, default=0.0, help="fail when vLLM / HF examples/s is below this")
    args = parser.parse_args()

    import torch

    from llava_medgpt.inference.generate import HFBackend
    from llava_medgpt.inference.models import load_chat_model
    from llava_medgpt.inference.openai_backend import (
        OpenAIBackend, OpenAIServer, describe_served_model, load_local_tokenizer)
    from llava_medgpt.model.tiny import create_tiny_checkpoint

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or create_tiny_checkpoint(tmp / "tiny", head_dim=32)
        config, items = bench_items(args.examples)

        chat = load_chat_model(str(model))
        hf = HFBackend(chat)
        timed_run(hf, config, items[:2], 2, 2, tmp / "warmup.jsonl")
        hf_seconds, hf_outputs = timed_run(hf, config, items, args.batch_size, args.max_new_tokens, tmp / "hf.jsonl")
        device = str(chat.model.device)
        del chat, hf

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        served = describe_served_model(str(model))
        backend = OpenAIBackend(OpenAIServer(f"http://127.0.0.1:{port}/v1", model=str(model),
                                             concurrency=args.batch_size, image_markers=served.image_markers,
                                             keep_special_tokens=served.harmony),
                                tokenizer=load_local_tokenizer(str(model)))
        started = time.perf_counter()
        server = start_server(model, port, args.max_model_len, tmp / "serve.log")
        try:
            backend.wait_until_ready(timeout=900)
            startup = time.perf_counter() - started
            timed_run(backend, config, items[:2], 2, 2, tmp / "warmup-vllm.jsonl")
            vllm_seconds, vllm_outputs = timed_run(backend, config, items, args.batch_size, args.max_new_tokens,
                                                   tmp / "vllm.jsonl")
        except Exception:
            print((tmp / "serve.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            backend.close()
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=120)

    same = sum(hf_outputs[i.id] == vllm_outputs[i.id] for i in items)
    report = {
        "model": str(args.model or "tiny random (head_dim 32)"), "hf_device": device, "examples": args.examples,
        "max_new_tokens": args.max_new_tokens, "hf_batch_size": args.batch_size,
        "server_concurrency": args.batch_size, "hf_threads": args.threads,
        "hf_examples_per_s": round(args.examples / hf_seconds, 3),
        "vllm_examples_per_s": round(args.examples / vllm_seconds, 3),
        "vllm_over_hf": round(hf_seconds / vllm_seconds, 2),
        "vllm_server_startup_s": round(startup, 1),
        "identical_outputs": f"{same}/{len(items)}",
    }
    print(json.dumps(report, indent=2))
    if report["vllm_over_hf"] < args.min_ratio:
        print(f"FAIL: vLLM is {report['vllm_over_hf']}x HF, below {args.min_ratio}x", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
