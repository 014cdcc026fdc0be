"""Settings files (llava_medgpt.settings) and the training arguments they feed: merge order, overrides, derived
settings, errors naming the file; `--help` without torch."""

import subprocess
import sys
from pathlib import Path

import pytest

from llava_medgpt.settings import SettingsError, effective_values, expand_config_flags, load_settings
from llava_medgpt.settings import main as settings_main
from llava_medgpt.train.arguments import parse_args
from llava_medgpt.train.training_arguments import gradient_accumulation_for

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_later_files_win_null_removes_and_flags_win_over_files(tmp_path):
    base = write(tmp_path / "base.yaml", "learning_rate: 1.0e-5\nweight_decay: 0.05\nseed: 7\n"
                                         "gradient_checkpointing: true\n"
                                         "gradient_checkpointing_kwargs: {use_reentrant: false}\nreport_to: [none]\n")
    overlay = write(tmp_path / "tiny.yaml", "learning_rate: 2.0e-3\nseed: null\n")
    argv = expand_config_flags(["--config", str(base), f"--config={overlay}", "--weight_decay", "0.1"])
    assert argv == ["--weight_decay", "0.05", "--gradient_checkpointing", "True",
                    "--gradient_checkpointing_kwargs", '{"use_reentrant": false}', "--report_to", "none",
                    "--learning_rate", "0.002", "--weight_decay", "0.1"]
    values = effective_values(["--config", str(base), "--config", str(overlay), "--weight_decay", "0.1"],
                              ["learning_rate", "weight_decay", "seed"])
    assert values == {"learning_rate": "0.002", "weight_decay": "0.1", "seed": None}


def test_config_dir_names_files_beside_the_config(tmp_path):
    (tmp_path / "configs").mkdir()
    path = write(tmp_path / "configs" / "s.yaml", "data_path: ${CONFIG_DIR}/../data_recipes/s.yaml\n")
    assert load_settings(path) == {"data_path": f"{tmp_path / 'configs'}/../data_recipes/s.yaml"}


def test_bad_files_are_named(tmp_path):
    with pytest.raises(SettingsError, match="cannot read settings file .*absent.yaml"):
        load_settings(tmp_path / "absent.yaml")
    with pytest.raises(SettingsError, match="list.yaml: a settings file is a mapping"):
        load_settings(write(tmp_path / "list.yaml", "- 1\n"))
    with pytest.raises(SettingsError, match="write learning_rate, not --learning_rate"):
        load_settings(write(tmp_path / "dash.yaml", "--learning_rate: 1\n"))
    typo = write(tmp_path / "typo.yaml", "learnig_rate: 1.0e-5\n")
    with pytest.raises(SettingsError, match=r"typo.yaml: unknown training argument\(s\) \['learnig_rate'\]"):
        parse_args(["--config", str(typo), "--model_name_or_path", "m", "--data_path", "d"])


def test_settings_cli_prints_shell_assignments(tmp_path, capsys):
    path = write(tmp_path / "s.yaml", "model_name_or_path: openai/gpt-oss-20b\nvision_tower: a b\n")
    assert settings_main(["--get", "model_name_or_path", "vision_tower", "data_path", "--", "--config", str(path),
                          "--data_path", "r.yaml"]) == 0
    assert capsys.readouterr().out.splitlines() == ["MODEL_NAME_OR_PATH=openai/gpt-oss-20b", "VISION_TOWER='a b'",
                                                     "DATA_PATH=r.yaml"]


def test_parse_args_takes_files_then_flags_and_derives_warmup_and_accumulation(tmp_path):
    config = write(tmp_path / "stage.yaml", "model_name_or_path: m\ndata_path: d.yaml\nlearning_rate: 1.0e-5\n"
                                            "warmup_ratio: 0.03\nper_device_train_batch_size: 4\n"
                                            "global_batch_size: 32\nreport_to: none\n")
    model_args, data_args, args = parse_args(["--config", str(config), "--output_dir", str(tmp_path / "out"),
                                              "--learning_rate", "3e-5", "--use_cpu", "True"])
    assert (model_args.model_name_or_path, data_args.data_path) == ("m", "d.yaml")
    assert args.learning_rate == 3e-5  # the flag wins over the file
    assert args.warmup_ratio == 0.03 and args.warmup_steps == 0.03  # transformers reads a value < 1 as a fraction
    assert args.get_warmup_steps(1000) == 30
    assert args.gradient_accumulation_steps == 32 // 4  # one process (WORLD_SIZE unset)
    assert gradient_accumulation_for(128, 16, 8) == 1 and gradient_accumulation_for(128, 2, 16) == 4  # Table 2
    with pytest.raises(ValueError, match="global_batch_size 30 is not a multiple of per_device_train_batch_size 4 x 1"):
        parse_args(["--config", str(config), "--global_batch_size", "30", "--output_dir", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="--warmup_ratio or --warmup_steps, not both"):
        parse_args(["--config", str(config), "--warmup_steps", "10", "--output_dir", str(tmp_path / "o")])


def test_help_answers_without_torch_and_lists_the_curriculum_arguments():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "llava_medgpt.train", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "transformers", "deepspeed", "peft"}
    for flag in ("--config FILE", "--model_name_or_path", "--mm_tunable_parts", "--global_batch_size",
                 "--warmup_ratio", "--packing", "--help-all"):
        assert flag in out.stdout
