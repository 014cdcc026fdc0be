"""Curate converted manifests: the paper's stage-0 filters, a kept manifest and a report per source.

Run as: python -m llava_medgpt.data.curate --recipe data_recipes/stage0_pretrain.yaml --output OUT \
            [--config CONFIG.yaml] [--eval-data EVAL_DIR] [--llm-model JUDGE] [--workers N]
   or:  python -m llava_medgpt.data.curate --input converted.jsonl --image-folder IMAGES --output OUT ...

Rerunning the same command after an interruption resumes where the run stopped (docs/data.md, "Curation").
"""

import argparse
import dataclasses
import os
import sys
from typing import Sequence


def _hf_backend(args):
    from ...inference.generate import HFBackend
    from ...inference.models import load_chat_model

    return HFBackend(load_chat_model(args.llm_model))


def _openai_backend(args):
    from ...inference.openai_backend import connect

    if not args.base_url:
        raise SystemExit("--llm-backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    backend, _ = connect(args.llm_model, args.base_url, api_key=os.environ.get("OPENAI_API_KEY"),
                         concurrency=args.llm_concurrency)
    return backend


# --llm-backend NAME -> factory(args) -> GenerationBackend
LLM_BACKENDS = {"hf": _hf_backend, "openai": _openai_backend}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llava_medgpt.data.curate", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--recipe", help="data recipe YAML: curate its manifests (json_path, image_folder)")
    source.add_argument("--input", help="one converted JSONL manifest")
    parser.add_argument("--sources", nargs="*", help="with --recipe: only these dataset names")
    parser.add_argument("--image-folder", help="with --input: the folder its image paths are relative to")
    parser.add_argument("--name", help="with --input: the source name used in the report and by `sources:` "
                        "(default: the file name)")
    parser.add_argument("--output", required=True, help="output folder (kept manifests, report, contact sheets)")
    parser.add_argument("--config", help="curation config YAML (default: the package's stage-0 config)")
    parser.add_argument("--skip-step", action="append", default=[], metavar="STEP",
                        help="drop a step of the config for this run (repeatable)")
    parser.add_argument("--eval-data", help="eval items folder for the eval_overlap step (sets its eval_data)")
    parser.add_argument("--llm-backend", choices=sorted(LLM_BACKENDS), default="hf",
                        help="how the llm_relevance judge is reached (hf: a transformers checkpoint loaded here; "
                        "openai: an OpenAI-compatible server such as vLLM, see docs/serving.md)")
    parser.add_argument("--llm-model", help="the judge: a checkpoint folder (hf), or the name the server serves "
                        "(openai; its local folder, if present, gives the tokenizer and template mode)")
    parser.add_argument("--base-url", help="with --llm-backend openai: the server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--llm-concurrency", type=int, default=8, help="with --llm-backend openai: requests in flight")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the image work")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--allow-unset", action="store_true", help="tolerate unset ${VARS} in the recipe")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..recipes import load_recipe
    from .config import default_config_path, load_config
    from .pipeline import SourceSpec, curate, sources_from_recipe
    from .recipe_output import write_curated_recipe

    config = load_config(args.config or default_config_path())
    steps = [s for s in config.steps if s.step not in args.skip_step]
    unknown = sorted(set(args.skip_step) - {s.step for s in config.steps})
    if unknown:
        raise SystemExit(f"--skip-step: the config has no steps {unknown}")
    if args.eval_data:
        steps = [dataclasses.replace(s, params=dataclasses.replace(s.params, eval_data=args.eval_data))
                 if s.step == "eval_overlap" else s for s in steps]
    if not steps:
        raise SystemExit("no steps left to run")
    config = dataclasses.replace(config, steps=tuple(steps))

    if args.recipe:
        recipe = load_recipe(args.recipe, strict=not args.allow_unset)
        sources = sources_from_recipe(recipe, args.sources)
    else:
        name = args.name or os.path.basename(args.input)
        sources = [SourceSpec(name, args.input, args.image_folder, os.path.basename(args.input))]

    backend = None
    if any(s.step == "llm_relevance" for s in config.steps):
        if not args.llm_model:
            raise SystemExit("the config has the llm_relevance step: pass --llm-model (or --skip-step llm_relevance)")
        backend = LLM_BACKENDS[args.llm_backend](args)

    report = curate(sources, config, args.output, backend=backend, workers=args.workers,
                    progress=not args.no_progress)
    if args.recipe:
        write_curated_recipe(args.recipe, sources, args.output)
    total = report["total"]
    print(f"{total['records']:,} records, {total['kept']:,} kept; report: "
          f"{os.path.join(args.output, 'curation_report.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
