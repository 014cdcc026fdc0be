"""The recipe to train on curated data: the input recipe with each curated entry's json_path pointing at its kept
manifest in the output folder (everything else, ${VARS} included, as written)."""

import os
from pathlib import Path

import yaml


def write_curated_recipe(recipe_path: str, sources, output: str | os.PathLike) -> Path:
    from .pipeline import _atomic_write

    with open(recipe_path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    curated = {s.name: os.path.abspath(os.path.join(output, s.output_name)) for s in sources}
    raw["datasets"] = [dict(entry, json_path=curated[entry["name"]]) for entry in raw["datasets"]
                       if entry.get("name") in curated]
    path = Path(output) / "recipe.yaml"
    header = f"# {recipe_path} after curation (python -m llava_medgpt.data.curate); see curation_report.md.\n"
    _atomic_write(path, (header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)).encode())
    return path
