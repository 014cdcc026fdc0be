"""Data recipes: which manifests a training stage reads, how much of each, and what Table 1 expects.

A recipe is a YAML file in LLaVA-OneVision's form. The smallest one, for your own already-converted LLaVA
JSON / JSONL data, needs only paths (as in LLaVA-NeXT's `--data_path x.yaml`):

    datasets:
      - json_path: /data/my_vqa.jsonl      # .jsonl, .json (a list) or .parquet of LLaVA records
        image_folder: /data/my_images      # needed when the records have images
      - json_path: /data/my_notes.json
        sampling_strategy: "first:1000"    # default "all" | "first:N" | "end:N" | "random:N" | "<kind>:P%"

The project's own recipes (data_recipes/*.yaml) add the Table 1 bookkeeping:

    seed: 42                               # default 42: random: selections (LLaVA's YAML has no seed)
    stage: 2
    datasets:
      - name: PMC-VQA                      # default: the json_path's file name without suffix
        json_path: ${DATA_ROOT}/stage2/pmc_vqa.jsonl
        image_folder: ${DATA_ROOT}/images/pmc_vqa
        sampling_strategy: "all"
        expected_count: 188229             # Table 1; counts are compared with it when given
        modality: image                    # text | image; image requires an image_folder
        reasoning: false
        source: xmcmic/PMC-VQA             # hub id, or ${VAR} placeholder for credentialed data
        converter: pmc_vqa                 # key in llava_medgpt.data.converters.CONVERTERS, when converted here

`${VAR}` and `${VAR:-default}` are expanded from the environment (or the `env` mapping given to
`load_recipe`). `random:` selections are a pure function of (recipe seed, source name, n_available), so
every rank computes the same indices without communicating and without touching a global RNG.

Every problem of a recipe is reported at once: `load_recipe` raises one RecipeError listing all schema problems,
and `validate_recipe` adds what only the files can tell (missing manifests and image folders, records that are not
LLaVA records, images the first records name but the image folder lacks). The launch scripts run it before any
training process starts:

Run as: python -m llava_medgpt.data.recipes my_recipe.yaml [--image-folder DIR]
"""

import argparse
import difflib
import hashlib
import math
import os
from pathlib import Path
import re
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from ..rows import count_rows
from ..settings import expand_config_flags

MODALITIES = ("text", "image")
SAMPLING_KINDS = ("all", "first", "end", "random")
MANIFEST_SUFFIXES = (".jsonl", ".json", ".parquet")
DEFAULT_SEED = 42  # the paper recipes' seed
DEFAULT_SAMPLING_STRATEGY = "all"  # LLaVA-OneVision's default
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ENTRY_FIELDS = ("name", "json_path", "image_folder", "sampling_strategy", "expected_count", "modality",
                 "reasoning", "source", "converter")
_TOP_LEVEL_FIELDS = ("seed", "stage", "datasets")
RECORDS_CHECKED = 20  # first records of each manifest that validate_recipe reads


class RecipeError(ValueError):
    """A malformed recipe. `problems` lists every problem found, each naming the file and the entry."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


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
    """One `datasets:` entry. Only json_path is required; the Table 1 fields are None when not given."""

    name: str
    json_path: str
    sampling_strategy: SamplingStrategy = SamplingStrategy("all")
    expected_count: int | None = None
    modality: str | None = None
    reasoning: bool | None = None
    source: str | None = None
    converter: str | None = None
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


def load_recipe(path: str | os.PathLike, env: Mapping[str, str] | None = None, strict: bool = True,
                image_folder: str | None = None) -> Recipe:
    """Read and check a recipe YAML; RecipeError lists every problem of the file at once. `env` defaults to
    os.environ.

    image_folder: the folder of entries that give none (LLaVA's `--image_folder`).
    With strict=False, unset variables are left in the paths as `${VAR}` (those manifests then count as
    missing in `report_counts`) instead of being problems.
    """
    recipe, problems = _parse(str(path), os.environ if env is None else env, strict, image_folder)
    if problems:
        raise RecipeError(problems)
    return recipe


def _parse(path: str, env: Mapping[str, str], strict: bool,
           image_folder: str | None) -> tuple[Recipe | None, list[str]]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        return None, [f"{path}: cannot read recipe: {e}"]
    if isinstance(raw, list):  # a bare list of entries
        raw = {"datasets": raw}
    if not isinstance(raw, dict):
        return None, [f"{path}: a recipe is a mapping with a 'datasets' list"]
    problems = []
    unknown = sorted(set(raw) - set(_TOP_LEVEL_FIELDS))
    if unknown:
        problems.append(f"{path}: unknown top-level keys {unknown}{_suggest(unknown, _TOP_LEVEL_FIELDS)}")
    # An empty value (`seed:`) means the default, as an absent key does.
    seed = DEFAULT_SEED if raw.get("seed") is None else raw["seed"]
    stage = -1 if raw.get("stage") is None else raw["stage"]
    if not isinstance(seed, int) or isinstance(seed, bool):
        problems.append(f"{path}: 'seed' must be an integer, got {seed!r}")
    if not isinstance(stage, int) or isinstance(stage, bool):
        problems.append(f"{path}: 'stage' must be an integer, got {stage!r}")
    entries = raw.get("datasets")
    if not isinstance(entries, list) or not entries:
        problems.append(f"{path}: 'datasets' must be a non-empty list of entries with at least a json_path")
        return None, problems

    datasets = []
    for i, entry in enumerate(entries):
        source, entry_problems = _parse_entry(path, i, entry, env, strict, image_folder)
        problems += entry_problems
        if source is not None:
            datasets.append((i, source))
    by_name: dict[str, list[int]] = {}
    for i, source in datasets:
        by_name.setdefault(source.name, []).append(i)
    for name, positions in by_name.items():
        if len(positions) > 1:
            where = ", ".join(f"datasets[{i}]" for i in positions)
            problems.append(f"{path}: {where} share the name {name!r} (names default to the json_path's file "
                            "name); give each a distinct 'name'")
    if problems:
        return None, problems
    return Recipe(path=path, seed=seed, stage=stage, datasets=tuple(s for _, s in datasets)), []


def _suggest(unknown: Sequence[str], known: Sequence[str]) -> str:
    hints = [f"{u!r} -> {m[0]!r}" for u in unknown for m in [difflib.get_close_matches(u, known, n=1)] if m]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def _parse_entry(path: str, i: int, entry: Any, env: Mapping[str, str], strict: bool,
                 default_image_folder: str | None) -> tuple[RecipeSource | None, list[str]]:
    where = f"{path}: datasets[{i}]"
    if not isinstance(entry, dict):
        return None, [f"{where}: each dataset must be a mapping with at least a json_path, got {entry!r}"]
    if isinstance(entry.get("name"), str):
        where += f" ({entry['name']})"
    problems: list[str] = []
    unknown = sorted(set(entry) - set(_ENTRY_FIELDS))
    if unknown:
        problems.append(f"{where}: unknown fields {unknown}{_suggest(unknown, _ENTRY_FIELDS)}")

    def string(key: str, required: bool = False) -> str | None:
        value = entry.get(key)
        if value is None:
            if required:
                problems.append(f"{where}: missing '{key}'")
            return None
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: '{key}' must be a non-empty string, got {value!r}")
            return None
        try:
            return expand_vars(value, env, strict)
        except KeyError as e:
            problems.append(f"{where}: '{key}' uses ${{{e.args[0]}}}, which is not set "
                            f"(export it, or write ${{{e.args[0]}:-default}})")
            return None

    json_path = string("json_path", required=True)
    if json_path is not None and not json_path.endswith(MANIFEST_SUFFIXES):
        problems.append(f"{where}: 'json_path' must end with one of {MANIFEST_SUFFIXES}, got {json_path!r}")
    name = entry.get("name")
    if name is None and json_path is not None:
        name = os.path.splitext(os.path.basename(json_path))[0]
    elif name is not None and (not isinstance(name, str) or not name.strip()):
        problems.append(f"{where}: 'name' must be a non-empty string, got {name!r}")
    strategy = None
    try:
        strategy = parse_sampling_strategy(entry.get("sampling_strategy") or DEFAULT_SAMPLING_STRATEGY)
    except ValueError as e:
        problems.append(f"{where}: {e}")
    expected = entry.get("expected_count")
    if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool) or expected <= 0):
        problems.append(f"{where}: 'expected_count' must be a positive integer, got {expected!r}")
    modality = entry.get("modality")
    if modality is not None and modality not in MODALITIES:
        problems.append(f"{where}: 'modality' must be one of {MODALITIES}, got {modality!r}")
    reasoning = entry.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, bool):
        problems.append(f"{where}: 'reasoning' must be true or false, got {reasoning!r}")
    image_folder = string("image_folder") or default_image_folder
    if modality == "image" and image_folder is None:
        problems.append(f"{where}: image datasets need an 'image_folder'")
    source = string("source")
    converter = string("converter")
    if converter is not None:
        from .converters import CONVERTERS  # late import: converters are not needed to read a recipe's paths

        if converter not in CONVERTERS:
            problems.append(f"{where}: unknown converter {converter!r} (omit 'converter' for data converted "
                            f"elsewhere); known: {sorted(CONVERTERS)}")
    if problems or json_path is None:
        return None, problems
    return RecipeSource(name=name.strip(), json_path=json_path, sampling_strategy=strategy,
                        expected_count=expected, modality=modality, reasoning=reasoning, source=source,
                        converter=converter, image_folder=image_folder), []


# ---------------------------------------------------------------------------------------------- validation


def check_manifests(recipe: Recipe, records_checked: int = RECORDS_CHECKED) -> list[str]:
    """What only the files can tell, for every entry: the manifest and image folder exist, the first records are
    LLaVA records, and the images they name are in the image folder."""
    from .index import head_records
    from ..processing.records import RecordError, record_images, validate_record

    problems = []
    for i, entry in enumerate(recipe.datasets):
        where = f"{recipe.path}: datasets[{i}] ({entry.name})"
        if "${" in entry.json_path:
            problems.append(f"{where}: json_path {entry.json_path} has an unset variable")
            continue
        if not os.path.isfile(entry.json_path):
            problems.append(f"{where}: json_path {os.path.abspath(entry.json_path)} does not exist")
            continue
        folder = entry.image_folder
        if folder is not None and "${" not in folder and not os.path.isdir(folder):
            problems.append(f"{where}: image_folder {os.path.abspath(folder)} does not exist")
            folder = None
        try:
            head = head_records(entry.json_path, records_checked)
        except (OSError, ValueError) as e:
            problems.append(f"{where}: cannot read {entry.json_path}: {e}")
            continue
        if not head:
            problems.append(f"{where}: {entry.json_path} holds no records")
        for n, record in enumerate(head, 1):
            try:
                if record is None:
                    raise RecordError(None, "not valid JSON")
                validate_record(record, allow_absolute_paths=True)  # as the dataset does
            except RecordError as e:
                problems.append(f"{where}: record {n} of {entry.json_path} is not a LLaVA record: {e}")
                break
            images = record_images(record)
            if images and entry.image_folder is None:
                problems.append(f"{where}: records have images (record {record['id']!r}: {images[0]!r}) but the "
                                "entry has no 'image_folder'")
                break
            outside = [p for p in images if folder is not None and os.path.isabs(p)
                       and not Path(p).resolve().is_relative_to(Path(folder).resolve())]
            if outside:
                problems.append(f"{where}: record {record['id']!r} names an absolute image path outside the image "
                                f"folder {os.path.abspath(folder)}: {outside[0]}")
                break
            missing = [p for p in images if folder is not None and not os.path.isfile(os.path.join(folder, p))]
            if missing:
                problems.append(f"{where}: record {record['id']!r} names an image that is not in the image folder: "
                                f"{os.path.abspath(os.path.join(folder, missing[0]))}")
                break
    return problems


def validate_recipe(path: str | os.PathLike, env: Mapping[str, str] | None = None, strict: bool = True,
                    image_folder: str | None = None, check_files: bool = True) -> list[str]:
    """Every problem of a recipe, schema and (with check_files) files, as messages naming file and entry.
    An empty list means the recipe can be trained on."""
    recipe, problems = _parse(str(path), os.environ if env is None else env, strict, image_folder)
    if recipe is not None and check_files:
        problems += check_manifests(recipe)
    return problems


# ---------------------------------------------------------------------------------------------- counting


def count_records(path: str | os.PathLike) -> int:
    """Records in a manifest (JSONL lines and Parquet rows counted without parsing; a .json manifest is a list)."""
    if not str(path).endswith(MANIFEST_SUFFIXES):
        raise ValueError(f"{path}: unsupported manifest type (expected {MANIFEST_SUFFIXES})")
    return count_rows(path, json_objects=False)


@dataclass(frozen=True)
class CountRow:
    source: str
    expected: int | None  # None: the recipe gives no expected_count
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
        if r.found is None:
            status = "missing"
        elif r.expected is None:
            status = "found"
        else:
            status = "ok" if r.found == r.expected else f"{r.found - r.expected:+,}"
        lines.append(f"{r.source:<{width}}  {num(r.expected):>11}  {num(r.found):>11}  {num(r.selected):>11}  {status}")
    total_expected = sum(r.expected or 0 for r in rows)
    total_found = sum(r.found or 0 for r in rows)
    total_selected = sum(r.selected or 0 for r in rows)
    lines.append(f"{'total':<{width}}  {total_expected:>11,}  {total_found:>11,}  {total_selected:>11,}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llava_medgpt.data.recipes",
        description="Check a data recipe (every problem at once) and compare its counts with the manifests. "
                    "Exit status 2 when there is any problem.")
    parser.add_argument("recipe", help="path to a data recipe YAML")
    parser.add_argument("--image-folder", help="image folder of entries that give none (LLaVA's --image_folder)")
    parser.add_argument("--allow-unset", action="store_true",
                        help="leave unset ${VARS} in paths (those sources are reported missing) instead of failing")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                        help="the training command's arguments (--config files expanded): its --data_path / "
                             "--image_folder, if any, win (used by the launch scripts)")
    args = parser.parse_args(argv)
    recipe_path, image_folder = args.recipe, args.image_folder
    if args.train_args:
        train = argparse.ArgumentParser(add_help=False)
        train.add_argument("--data_path")
        train.add_argument("--image_folder")
        known, _ = train.parse_known_args(expand_config_flags(args.train_args))
        recipe_path, image_folder = known.data_path or recipe_path, known.image_folder or image_folder
    env = os.environ
    recipe, problems = _parse(recipe_path, env, not args.allow_unset, image_folder)
    if recipe is not None:
        problems += [p for p in check_manifests(recipe)
                     if not (args.allow_unset and "has an unset variable" in p)]
        print(format_report(recipe, report_counts(recipe)))
    if problems:
        print(f"error: {len(problems)} problem(s) in {recipe_path}:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
