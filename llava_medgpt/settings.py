"""Settings files: a stage's training arguments as one YAML mapping, read as command-line flags.

    # configs/stage2_sft.yaml
    learning_rate: 1.0e-5
    warmup_ratio: 0.03
    gradient_checkpointing: true
    gradient_checkpointing_kwargs: {use_reentrant: false}
    data_path: ${CONFIG_DIR}/../data_recipes/stage2_sft.yaml

    python -m llava_medgpt.train --config configs/stage2_sft.yaml --config configs/tiny.yaml --learning_rate 2e-5

Rules (the one place they are implemented):
- keys are the training entrypoint's argument names (`python -m llava_medgpt.train --help`);
- `--config` may be given several times: later files override earlier ones, and a `null` value removes a setting
  an earlier file made (back to the argument's default);
- every flag on the command line overrides every file;
- `${CONFIG_DIR}` in a value is the folder of the file that holds it, so a config names files relative to itself.
Values become flags: booleans `True`/`False`, mappings JSON, lists one flag followed by each item.

This module is below every other layer (it imports only PyYAML): the trainer, the recipe check and the launch
scripts all expand the same files the same way.

Run as: python -m llava_medgpt.settings --get KEY [KEY ...] [--prefix P] -- TRAIN_ARGS...
        (prints P+KEY=VALUE lines for a shell's eval; scripts/_launch.sh uses it)
"""

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

CONFIG_FLAG = "--config"


class SettingsError(ValueError):
    """A settings file that cannot be used; names the file."""


def load_settings(path: str | os.PathLike) -> dict[str, Any]:
    """One settings file as a flat mapping of argument name -> value, with ${CONFIG_DIR} expanded."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as err:
        raise SettingsError(f"cannot read settings file {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise SettingsError(f"{path}: not valid YAML ({err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: a settings file is a mapping of argument names to values")
    folder = str(path.resolve().parent)
    settings = {}
    for key, value in data.items():
        if not isinstance(key, str) or key.startswith("-"):
            raise SettingsError(f"{path}: {key!r} is not an argument name (write learning_rate, not --learning_rate)")
        if isinstance(value, str) and "${CONFIG_DIR}" in value:
            value = os.path.normpath(value.replace("${CONFIG_DIR}", folder))
        settings[key] = value
    return settings


def split_config_flags(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(settings files in order, the other arguments); accepts `--config FILE` and `--config=FILE`."""
    files, rest, i = [], [], 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        if arg == CONFIG_FLAG:
            if i + 1 == len(argv):
                raise SettingsError(f"{CONFIG_FLAG} needs a file")
            files.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith(CONFIG_FLAG + "="):
            files.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return files, rest


def merged_settings(files: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The files' settings, later files overriding earlier ones; a null value removes the setting."""
    merged: dict[str, Any] = {}
    for path in files:
        for key, value in load_settings(path).items():
            merged.pop(key, None)  # a later file also decides the position (the flags' order follows the files)
            if value is not None:
                merged[key] = value
    return merged


def as_flags(settings: dict[str, Any]) -> list[str]:
    """Settings -> command-line flags."""
    flags = []
    for key, value in settings.items():
        flag = f"--{key}"
        if isinstance(value, bool):
            flags += [flag, str(value)]
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value)]
        elif isinstance(value, list):
            flags += [flag, *(str(v) for v in value)]
        else:
            flags += [flag, str(value)]
    return flags


def expand_config_flags(argv: Sequence[str]) -> list[str]:
    """argv with every `--config FILE` replaced by the files' settings, placed before the other flags (which win)."""
    files, rest = split_config_flags(argv)
    return as_flags(merged_settings(files)) + rest


def effective_values(argv: Sequence[str], keys: Sequence[str]) -> dict[str, str | None]:
    """The value each of `keys` takes for this command line (files expanded, last occurrence wins); None if unset."""
    parser = argparse.ArgumentParser(add_help=False)
    for key in keys:
        parser.add_argument(f"--{key}", dest=key)
    known, _ = parser.parse_known_args(expand_config_flags(argv))
    return {key: getattr(known, key) for key in keys}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" not in argv:
        argv.append("--")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m llava_medgpt.settings",
                                     description="Print the values training arguments take, as KEY=VALUE lines "
                                                 "a shell can eval (empty when unset).")
    parser.add_argument("--get", nargs="+", required=True, metavar="KEY", help="argument names")
    parser.add_argument("--prefix", default="", help="put before each variable name, e.g. CFG_")
    args = parser.parse_args(argv[:split])
    try:
        values = effective_values(argv[split + 1:], args.get)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for key, value in values.items():
        print(f"{args.prefix}{key.upper()}={shlex.quote(value or '')}")
    return 0


__all__ = ["SettingsError", "as_flags", "effective_values", "expand_config_flags", "load_settings",
           "merged_settings", "split_config_flags"]

if __name__ == "__main__":
    sys.exit(main())
