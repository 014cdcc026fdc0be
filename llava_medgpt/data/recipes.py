"""Data recipes: which manifests a training stage reads, how much of each, and what Table 1 expects.

A recipe is a YAML file in LLaVA-OneVision's form (see data_recipes/*.yaml):

    seed: 42
    stage: 2
    datasets:
      - name: PMC-VQA                      # Table 1 name
        json_path: ${DATA_ROOT}/stage2/pmc_vqa.jsonl
        image_folder: ${DATA_ROOT}/images/pmc_vqa
        sampling_strategy: "all"           # "all" | "first:N" | "end:N" | "random:N" | "random:10%"
        expected_count: 188229             # Table 1
        modality: image                    # text | image
        reasoning: false
        source: xmcmic/PMC-VQA             # hub id, or ${VAR} placeholder for credentialed data
        converter: pmc_vqa                 # key in llava_medgpt.data.converters.CONVERTERS

`${VAR}` and `${VAR:-default}` are expanded from the environment (or the `env` mapping given to
`load_recipe`). `random:` selections are a pure function of (recipe seed, source name, n_available), so
every rank computes the same indices without communicating and without touching a global RNG.

Run as: python -m llava_medgpt.data.recipes data_recipes/stage2_sft.yaml
"""

import argparse
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

MODALITIES = ("text", "image")
SAMPLING_KINDS = ("all", "first", "end", "random")
MANIFEST_SUFFIXES = (".jsonl", ".json", ".parquet")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_REQUIRED_FIELDS = ("name", "json_path", "sampling_strategy", "expected_count", "modality", "reasoning",
                    "source", "converter")
_OPTIONAL_FIELDS = ("image_folder",)


class RecipeError(ValueError):
    """A malformed recipe; the message names the file and the entry."""


@dataclass(frozen=True)
class SamplingStrategy:
    """How many records of a source to use, and which: `kind` in SAMPLING_KINDS.

    Exactly one of `count` / `percent` is set unless kind == "all".
    """

    kind: str
    count: int | None = None
    percent: float | None = None

    def n_selected(self, n_available: int) -> int:
        if self.kind == "all":
            return n_available
        if self.percent is not None:
            # ceil, as in LLaVA-OneVision: "random:1%" of 50 records still yields one record.
            return min(n_available, math.ceil(self.percent * n_available / 100))
        return min(n_available, self.count)

    def __str__(self) -> str:
        if self.kind == "all":
            return "all"
        amount = f"{self.percent:g}%" if self.percent is not None else str(self.count)
        return f"{self.kind}:{amount}"


@dataclass(frozen=True)
class RecipeSource:
    name: str
    json_path: str
    sampling_strategy: SamplingStrategy
    expected_count: int
    modality: str
    reasoning: bool
    source: str
    converter: str
    image_folder: str | None = None


@dataclass(frozen=True)
class Recipe:
    path: str
    seed: int
    stage: int
    datasets: tuple[RecipeSource, ...]

    def source(self, name: str) -> RecipeSource:
        for entry in self.datasets:
            if entry.name == name:
                return entry
        raise KeyError(f"{self.path}: no dataset named {name!r}")


def parse_sampling_strategy(text: str) -> SamplingStrategy:
    """Parse "all", "first:N", "end:N", "random:N" or "<kind>:P%" (0 < P <= 100)."""
    if not isinstance(text, str):
        raise ValueError(f"sampling strategy must be a string, got {text!r}")
    text = text.strip()
    if text == "all":
        return SamplingStrategy("all")
    kind, sep, amount = text.partition(":")
    if not sep or kind not in SAMPLING_KINDS or kind == "all":
        raise ValueError(f"bad sampling strategy {text!r}; expected all | first:N | end:N | random:N | <kind>:P%")
    amount = amount.strip()
    if amount.endswith("%"):
        try:
            percent = float(amount[:-1])
        except ValueError:
            raise ValueError(f"bad percentage in sampling strategy {text!r}") from None
        if not 0 < percent <= 100:
            raise ValueError(f"percentage in {text!r} must be in (0, 100]")
        return SamplingStrategy(kind, percent=percent)
    if not amount.isdigit() or int(amount) <= 0:
        raise ValueError(f"bad count in sampling strategy {text!r}; expected a positive integer")
    return SamplingStrategy(kind, count=int(amount))


def stable_seed(seed: int, name: str) -> int:
    """A 64-bit seed from (seed, name) that is the same in every process (unlike Python's hash())."""
    digest = hashlib.sha256(f"{seed}:{name}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def select_indices(strategy: SamplingStrategy | str, n_available: int, seed: int, name: str = "") -> np.ndarray:
    """Indices (int64, ascending) of the records a strategy keeps out of `n_available`.

    `random:` draws without replacement from numpy's Generator seeded by stable_seed(seed, name); the
    indices are returned sorted so manifests are still read front to back (shuffling is the sampler's job).
    """
    if isinstance(strategy, str):
        strategy = parse_sampling_strategy(strategy)
    if n_available < 0:
        raise ValueError(f"n_available must be >= 0, got {n_available}")
    k = strategy.n_selected(n_available)
    if strategy.kind in ("all", "first"):
        return np.arange(k, dtype=np.int64)
    if strategy.kind == "end":
        return np.arange(n_available - k, n_available, dtype=np.int64)
    rng = np.random.default_rng(stable_seed(seed, name))
    return np.sort(rng.choice(n_available, size=k, replace=False)).astype(np.int64)


def expand_vars(text: str, env: Mapping[str, str], strict: bool = True) -> str:
    """Expand ${VAR} / ${VAR:-default}; unknown variables raise KeyError when strict, else stay as written."""

    def substitute(match: re.Match) -> str:
        var, default = match.group(1), match.group(2)
        if var in env and env[var] != "":
            return env[var]
        if default is not None:
            return default
        if strict:
            raise KeyError(var)
        return match.group(0)

    return _VAR_RE.sub(substitute, text)


def load_recipe(path: str | os.PathLike, env: Mapping[str, str] | None = None, strict: bool = True) -> Recipe:
    """Read and validate a recipe YAML. `env` defaults to os.environ.

    With strict=False, unset variables are left in the paths as `${VAR}` (those manifests then count as
    missing in `report_counts`) instead of raising.
    """
    path = str(path)
    env = os.environ if env is None else env
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"{path}: cannot read recipe: {e}") from e
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping with 'seed' and 'datasets'")
    unknown = set(raw) - {"seed", "stage", "datasets"}
    if unknown:
        raise RecipeError(f"{path}: unknown top-level keys {sorted(unknown)}")
    seed, stage = raw.get("seed"), raw.get("stage", -1)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise RecipeError(f"{path}: 'seed' must be an integer, got {seed!r}")
    if not isinstance(stage, int) or isinstance(stage, bool):
        raise RecipeError(f"{path}: 'stage' must be an integer, got {stage!r}")
    entries = raw.get("datasets")
    if not isinstance(entries, list) or not entries:
        raise RecipeError(f"{path}: 'datasets' must be a non-empty list")

    datasets = []
    for i, entry in enumerate(entries):
        datasets.append(_parse_entry(path, i, entry, env, strict))
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RecipeError(f"{path}: duplicate dataset names {duplicates}")
    return Recipe(path=path, seed=seed, stage=stage, datasets=tuple(datasets))


def _parse_entry(path: str, i: int, entry: Any, env: Mapping[str, str], strict: bool) -> RecipeSource:
    where = f"{path}: datasets[{i}]"
    if not isinstance(entry, dict):
        raise RecipeError(f"{where}: each dataset must be a mapping")
    if isinstance(entry.get("name"), str):
        where += f" ({entry['name']})"
    missing = [k for k in _REQUIRED_FIELDS if k not in entry]
    if missing:
        raise RecipeError(f"{where}: missing fields {missing}")
    unknown = set(entry) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS)
    if unknown:
        raise RecipeError(f"{where}: unknown fields {sorted(unknown)}")

    def string(key: str, optional: bool = False) -> str | None:
        value = entry.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            raise RecipeError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
        try:
            return expand_vars(value, env, strict)
        except KeyError as e:
            raise RecipeError(f"{where}: '{key}' uses ${{{e.args[0]}}}, which is not set "
                              f"(export it, or write ${{{e.args[0]}:-default}})") from None

    try:
        strategy = parse_sampling_strategy(entry["sampling_strategy"])
    except ValueError as e:
        raise RecipeError(f"{where}: {e}") from None
    expected = entry["expected_count"]
    if not isinstance(expected, int) or isinstance(expected, bool) or expected <= 0:
        raise RecipeError(f"{where}: 'expected_count' must be a positive integer, got {expected!r}")
    modality = entry["modality"]
    if modality not in MODALITIES:
        raise RecipeError(f"{where}: 'modality' must be one of {MODALITIES}, got {modality!r}")
    if not isinstance(entry["reasoning"], bool):
        raise RecipeError(f"{where}: 'reasoning' must be true or false, got {entry['reasoning']!r}")
    json_path = string("json_path")
    if not json_path.endswith(MANIFEST_SUFFIXES):
        raise RecipeError(f"{where}: 'json_path' must end with one of {MANIFEST_SUFFIXES}, got {json_path!r}")
    image_folder = string("image_folder", optional=True)
    if modality == "image" and image_folder is None:
        raise RecipeError(f"{where}: image datasets need an 'image_folder'")

    from .converters import CONVERTERS  # late import: converters are not needed to read a recipe's paths

    converter = string("converter")
    if converter not in CONVERTERS:
        raise RecipeError(f"{where}: unknown converter {converter!r}; known: {sorted(CONVERTERS)}")
    return RecipeSource(
        name=entry["name"].strip(),
        json_path=json_path,
        sampling_strategy=strategy,
        expected_count=expected,
        modality=modality,
        reasoning=entry["reasoning"],
        source=string("source"),
        converter=converter,
        image_folder=image_folder,
    )


# ---------------------------------------------------------------------------------------------- counting


def count_records(path: str | os.PathLike) -> int:
    """Records in a manifest: non-blank lines of JSONL, length of a JSON list, rows of a Parquet file."""
    path = str(path)
    if path.endswith(".jsonl"):
        n = 0
        with open(path, "rb") as f:  # binary line iteration: no JSON parsing, no decoding
            for line in f:
                if line.strip():
                    n += 1
        return n
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, list):
            raise ValueError(f"{path}: a JSON manifest must be a list of records")
        return len(data)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows  # footer only
    raise ValueError(f"{path}: unsupported manifest type (expected {MANIFEST_SUFFIXES})")


@dataclass(frozen=True)
class CountRow:
    source: str
    expected: int
    found: int | None  # None: manifest missing
    selected: int | None


def report_counts(recipe: Recipe) -> list[CountRow]:
    """Table-1 expected counts against what is on disk, and how many records the strategy keeps."""
    rows = []
    for entry in recipe.datasets:
        if os.path.isfile(entry.json_path):
            found = count_records(entry.json_path)
            selected = entry.sampling_strategy.n_selected(found)
        else:
            found = selected = None
        rows.append(CountRow(entry.name, entry.expected_count, found, selected))
    return rows


def format_report(recipe: Recipe, rows: Sequence[CountRow]) -> str:
    width = max(len(r.source) for r in rows)
    lines = [f"recipe {recipe.path} (stage {recipe.stage}, seed {recipe.seed})",
             f"{'source':<{width}}  {'expected':>11}  {'found':>11}  {'selected':>11}  status"]

    def num(n: int | None) -> str:
        return "-" if n is None else f"{n:,}"

    for r in rows:
        status = "missing" if r.found is None else ("ok" if r.found == r.expected else f"{r.found - r.expected:+,}")
        lines.append(f"{r.source:<{width}}  {num(r.expected):>11}  {num(r.found):>11}  {num(r.selected):>11}  {status}")
    total_expected = sum(r.expected for r in rows)
    total_found = sum(r.found or 0 for r in rows)
    total_selected = sum(r.selected or 0 for r in rows)
    lines.append(f"{'total':<{width}}  {total_expected:>11,}  {total_found:>11,}  {total_selected:>11,}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare a recipe's Table-1 counts with the manifests on disk.")
    parser.add_argument("recipe", help="path to a data recipe YAML")
    parser.add_argument("--allow-unset", action="store_true",
                        help="leave unset ${VARS} in paths (those sources are reported missing) instead of failing")
    args = parser.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, strict=not args.allow_unset)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(recipe, report_counts(recipe)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
