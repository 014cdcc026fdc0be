"""Evaluate one checkpoint on the paper's benchmarks and write predictions, results, tables and a chart.

Run as: python -m llava_medgpt.eval --model CKPT --tasks slake,medqa --data-dir DATA --output OUT
        python -m llava_medgpt.eval --backend openai --base-url http://HOST:8000/v1 --model CKPT ...
            (generation by an OpenAI-compatible server, e.g. scripts/serve.sh CKPT; docs/serving.md)

Outputs in OUT:
    predictions/<task>.jsonl   raw output per example, written as produced (a rerun resumes from it)
    results.json               per-task scores with 95% intervals, n scored / skipped, macro averages
                               (deterministic: no timestamps); rewritten atomically after every task, so a
                               later task's failure (named under "failed") keeps the finished tasks' scores
    tables.md                  Tables 4 / 5 / 6 / Figure 2 layout with the paper's rows beside this checkpoint
    chart.png                  bars of the same rows with the checkpoint's 95% intervals
    summary.txt                the end-of-run table printed on stdout, with wall time per task

torch, transformers and the model code are imported only once arguments are parsed, so --help is instant.
"""

import argparse
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

from .tasks import (PAPER_SETTING, TASK_DIR, MissingData, load_config, load_task, parse_task_paths, parse_tasks,
                    task_names)

logger = logging.getLogger("llava_medgpt.eval")


def parse_settings(specs: list[str], names: list[str], task_dir: Path) -> dict[str, str]:
    """--setting values -> task name -> setting. "TASK=NAME" sets one task; a bare "NAME" every task that
    defines it (a name no selected task defines is an error). Unnamed tasks keep the paper's setting."""
    configs = {name: load_config(name, task_dir) for name in names}
    chosen = {name: PAPER_SETTING for name in names}
    for spec in specs:
        task, sep, setting = spec.rpartition("=")
        if sep:
            if task not in configs:
                raise SystemExit(f"--setting {spec}: task {task!r} is not among --tasks")
            defined = configs[task].settings or {PAPER_SETTING: {}}
            if setting not in defined:
                raise SystemExit(f"--setting {spec}: task {task} defines {', '.join(sorted(defined))}")
            chosen[task] = setting
            continue
        matching = [name for name, config in configs.items() if setting in config.settings]
        if not matching:
            raise SystemExit(f"--setting {spec}: no selected task defines a setting {setting!r}")
        chosen.update(dict.fromkeys(matching, setting))
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llava_medgpt.eval", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder (or hub id when online)")
    parser.add_argument("--tasks", required=True,
                        help="comma list of task names, 'all', or table4 / table5 / table6 / figure2; tasks: "
                        + ", ".join(task_names(TASK_DIR)))
    parser.add_argument("--output", required=True, type=Path, help="output folder (reused to resume)")
    parser.add_argument("--data-dir", type=Path, help="folder holding each benchmark in its release layout")
    parser.add_argument("--task-path", action="append", default=[], metavar="NAME=PATH",
                        help="data folder for one task (MIMIC-CXR, patient-trial collections)")
    parser.add_argument("--task-dir", type=Path, default=TASK_DIR, help="folder of task YAML files")
    parser.add_argument("--label", help="column name in the tables (default: the checkpoint folder name)")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per generate() call")
    parser.add_argument("--max-new-tokens", type=int, help="override every task's max_new_tokens")
    parser.add_argument("--limit", type=int, help="first N examples of each task (smoke runs)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed set before each batch")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto")
    parser.add_argument("--attn-implementation", help="e.g. eager (GPT-oss on CPU) or flex_attention (GPU)")
    parser.add_argument("--chat-template-kwargs", default="{}",
                        help='JSON passed to the chat template, e.g. \'{"reasoning_effort": "low"}\'')
    parser.add_argument("--backend", choices=["hf", "openai"], default="hf",
                        help="hf: transformers generate in this process; openai: an OpenAI-compatible server")
    parser.add_argument("--base-url", help="server URL for --backend openai, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="server key (or OPENAI_API_KEY)")
    parser.add_argument("--concurrency", type=int, help="requests in flight for --backend openai (default: --batch-size)")
    parser.add_argument("--image-markers", choices=["auto", "inline", "parts"], default="auto",
                        help="openai: keep '<image>' markers in the text (inline, MedGPT-oss) or send image parts in "
                             "their place (parts, HF-template baselines); auto picks by the checkpoint's model_type")
    parser.add_argument("--server-wait", type=float, default=600.0, help="seconds to wait for the server to answer")
    parser.add_argument("--request-retries", type=int, default=5,
                        help="openai: retries of a failed request (backoff 2 s, doubling) before the run stops")
    parser.add_argument("--no-clinical-metrics", action="store_true", help="skip RadGraph / RaTEScore / RadCliQ")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--setting", action="append", default=[], metavar="[TASK=]NAME",
                        help="item selection: 'paper' (default, Table 3 counts) or a task's other setting, e.g. "
                             "'release' (the release's full set: SLAKE 2,094, PubMedQA 1,000, Medbullets 308) or "
                             "slake=english; see docs/evaluation.md")
    return parser


def evaluate(args: argparse.Namespace, seconds: dict[str, float] | None = None) -> dict:
    """Run every task; `seconds` (if given) receives the wall time of each task (loading + generation + scoring)."""
    import torch

    from ..inference.fingerprint import checkpoint_fingerprint, normalized_model_name
    from .generation import GenerationSettings, PredictionFile, run_generation, task_config_hash
    from .results import PAPER_TABLES, macro_averages, score_task, task_entry

    seconds = {} if seconds is None else seconds
    names = parse_tasks(args.tasks, args.task_dir)
    task_paths = parse_task_paths(args.task_path)
    settings = parse_settings(args.setting, names, args.task_dir)
    loaded, not_run = {}, {}
    for name in names:
        start = time.perf_counter()
        try:
            loaded[name] = load_task(name, args.data_dir, task_paths.get(name), task_dir=args.task_dir,
                                     limit=args.limit, setting=settings[name])
        except MissingData as err:
            logger.warning("task %s not run: %s", name, err)
            not_run[name] = str(err)
        seconds[name] = time.perf_counter() - start

    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    template_kwargs = json.loads(args.chat_template_kwargs)
    backend, model_type, multimodal = make_backend(args, dtype, template_kwargs)
    label = args.label or Path(str(args.model).rstrip("/")).name
    identity = dict(model=normalized_model_name(args.model), model_fingerprint=checkpoint_fingerprint(args.model),
                    backend=args.backend, **loaded_model_settings(backend))

    tasks, failed = {}, {}

    def results() -> dict:
        out = {"model": str(args.model).rstrip("/") or "/", "model_type": model_type, "label": label,
               "settings": {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "limit": args.limit,
                            "seed": args.seed, "chat_template_kwargs": template_kwargs},
               "tasks": dict(tasks), "not_run": dict(not_run), "macro_average": macro_averages(tasks),
               "tables": PAPER_TABLES}
        if failed:
            out["failed"] = dict(failed)
        return out

    for name, task in loaded.items():
        start = time.perf_counter()
        config = task.config
        if not multimodal and any(item.images or any(d.images for d in item.demos) for item in task.items):
            not_run[name] = f"{label} is a text-only model and this task has images"
            continue
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens or config.max_new_tokens,
                                      batch_size=args.batch_size, seed=args.seed, template_kwargs=template_kwargs,
                                      task_config=task_config_hash(config), **identity)
        try:
            store = PredictionFile(args.output / "predictions" / f"{name}.jsonl", settings)
            outputs = run_generation(backend, task.items, config, store, progress=not args.no_progress)
            scored = [item for item in task.items if item.id in outputs]
            scores = score_task(config, scored, outputs, clinical=not args.no_clinical_metrics)
            skipped = task.skipped + Counter(reason for reason, _ in store.skipped.values())
            tasks[name] = task_entry(config, scores, skipped, task.source)
        except Exception as err:
            # Finished tasks keep their results: results.json is rewritten (atomically) with this failure named.
            failed[name] = f"{type(err).__name__}: {err}"
            write_results(results(), args.output)
            raise
        seconds[name] += time.perf_counter() - start
        write_results(results(), args.output)  # each task's scores are on disk as soon as it is done
        if store.skipped:
            logger.warning("task %s: %d item(s) skipped (%s)", name, len(store.skipped),
                           ", ".join(f"{reason}: {n}" for reason, n in Counter(r for r, _ in store.skipped.values())
                                     .most_common()))
    return results()


def loaded_model_settings(backend) -> dict:
    """dtype and attention implementation(s) the loaded model really uses (None for a server backend)."""
    chat = getattr(backend, "chat", None)
    if chat is None:
        return {"dtype": None, "attn_implementation": None}
    config = chat.model.config
    attn = {"text": getattr(config.get_text_config(), "_attn_implementation", None)}
    vision = getattr(config, "vision_config", None)
    if vision is not None:
        attn["vision"] = getattr(vision, "_attn_implementation", None)
    return {"dtype": str(chat.model.dtype).removeprefix("torch."), "attn_implementation": attn}


def make_backend(args: argparse.Namespace, dtype, template_kwargs: dict):
    """(GenerationBackend, model_type, multimodal) for --backend hf (load the checkpoint) or openai (a server)."""
    if args.backend == "hf":
        from ..inference.generate import HFBackend
        from ..inference.models import load_chat_model

        chat = load_chat_model(args.model, dtype=dtype, attn_implementation=args.attn_implementation,
                               template_kwargs=template_kwargs)
        return HFBackend(chat), chat.model_type, chat.multimodal
    from ..inference.openai_backend import connect

    if not args.base_url:
        raise SystemExit("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    backend, served = connect(str(args.model), args.base_url, api_key=args.api_key,
                              concurrency=args.concurrency or args.batch_size, image_markers=args.image_markers,
                              template_kwargs=template_kwargs, max_retries=args.request_retries,
                              server_wait=args.server_wait)
    return backend, served.model_type, served.multimodal


def write_results(results: dict, output: Path) -> None:
    """results.json, atomically (llava_medgpt.fileio): a reader sees the previous version or this one."""
    from ..fileio import atomic_write

    with atomic_write(output / "results.json") as f:
        f.write(json.dumps(results, indent=2, sort_keys=True) + "\n")


def write_outputs(results: dict, output: Path, summary: str | None = None) -> None:
    """results.json, tables.md, chart.png (and summary.txt), each written atomically (llava_medgpt.fileio)."""
    from ..fileio import atomic_write
    from .chart import draw_chart
    from .tables import render_tables

    write_results(results, output)
    with atomic_write(output / "tables.md") as f:
        f.write(render_tables(results))
    with atomic_write(output / "chart.png", "wb") as f:
        draw_chart(results, f)
    if summary is not None:
        with atomic_write(output / "summary.txt") as f:
            f.write(summary + "\n")


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    import torch

    from .tables import render_summary

    started = time.perf_counter()
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    seconds: dict[str, float] = {}
    try:
        results = evaluate(args, seconds)
    finally:  # leave the process as found (the runner is also called in-process by tests and scripts)
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    summary = render_summary(results, seconds, time.perf_counter() - started)
    write_outputs(results, args.output, summary)
    print(summary, flush=True)
    logger.info("wrote %s", args.output / "results.json")
    return results
