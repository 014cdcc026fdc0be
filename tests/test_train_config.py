"""Settings files (llava_medgpt.settings) and the training arguments they feed: merge order, overrides, derived
settings, errors naming the file; `--help` without torch."""

import os
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
    assert load_settings(path) == {"data_path": str(tmp_path / "data_recipes" / "s.yaml")}


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
    with pytest.raises(ValueError, match="Use --keep_checkpoints N instead of --save_total_limit"):
        parse_args(["--config", str(config), "--save_total_limit", "2", "--output_dir", str(tmp_path / "o")])
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


# ------------------------------------------------------------------------------------------- the stage configs

CONFIGS = REPO / "configs"
STAGES = {0: "stage0_pretrain", 1: "stage1_midtrain", 2: "stage2_sft"}
# Table 2 (docs/training.md, "Stage configs"), the same in every stage.
TABLE_2 = {"weight_decay": 0.05, "lr_scheduler_type": "cosine", "model_max_length": 32768,
           "per_device_train_batch_size": 16, "global_batch_size": 128, "bf16": True, "gradient_checkpointing": True,
           "num_train_epochs": 1, "packing": False}
# Table 2's learning-rate cells are not legible in our copy; these are LLaVA-OneVision's (docs/training.md).
LEARNING_RATES = {0: (1e-3, 1e-3, 2e-6), 1: (1e-5, 1e-5, 2e-6), 2: (1e-5, 1e-5, 2e-6)}
PARTS = {0: {"mm_vision_tower", "mm_mlp_adapter"},  # the LLM is frozen in stage 0; the tower trains (paper text)
         1: {"mm_vision_tower", "mm_mlp_adapter", "mm_language_model"},
         2: {"mm_vision_tower", "mm_mlp_adapter", "mm_language_model"}}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_config_holds_table_2(stage):
    settings = load_settings(CONFIGS / f"{STAGES[stage]}.yaml")
    assert {key: settings[key] for key in TABLE_2} == TABLE_2
    assert 0.01 <= settings["warmup_ratio"] <= 0.03
    assert Path(settings["deepspeed"]) == REPO / "scripts" / "deepspeed" / "zero3.json"  # ZeRO-3
    assert Path(settings["data_path"]) == REPO / "data_recipes" / f"{STAGES[stage]}.yaml"
    assert (settings["learning_rate"], settings["mm_projector_lr"], settings["mm_vision_tower_lr"]) == \
        LEARNING_RATES[stage]
    assert set(settings["mm_tunable_parts"].split(",")) == PARTS[stage]
    yarn = {k: settings.get(k) for k in ("rope_scaling_type", "rope_scaling_factor",
                                         "rope_original_max_position_embeddings")}
    assert yarn == ({"rope_scaling_type": "yarn", "rope_scaling_factor": 32,
                     "rope_original_max_position_embeddings": 4096} if stage == 1 else dict.fromkeys(yarn))
    assert ("vision_tower" in settings) == (stage == 0)  # later stages start from the previous stage's folder


@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize("overlay", [None, "packing", "tiny"])
def test_each_stage_config_parses_into_the_training_arguments(stage, overlay, tmp_path):
    argv = ["--config", str(CONFIGS / f"{STAGES[stage]}.yaml")]
    if overlay:
        argv += ["--config", str(CONFIGS / f"{overlay}.yaml")]
    # What the launcher adds on a CPU machine, and a start for the later stages.
    argv += ["--model_name_or_path", "start", "--output_dir", str(tmp_path), "--bf16", "False",
             "--dataloader_pin_memory", "False"]
    model_args, data_args, args = parse_args(argv)
    assert args.lr_scheduler_type == "cosine" and args.weight_decay == 0.05 and args.warmup_steps == 0.03
    assert args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert args.deepspeed.endswith("zero3.json") and data_args.data_path.endswith(f"{STAGES[stage]}.yaml")
    assert args.report_to == [] and args.keep_checkpoints == 2 and args.save_total_limit is None and args.seed == 42
    batch, accumulation, packing, length = {None: (16, 128 // 16, False, 32768), "packing": (1, 8, True, 32768),
                                            "tiny": (1, 1, True, 4096)}[overlay]
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (batch, accumulation)  # 1 process
    assert (data_args.packing, args.model_max_length) == (packing, length)
    assert model_args.rope_scaling_factor == (32 if stage == 1 else None)


def test_the_stage_script_help_shows_files_and_environment_overrides():
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAIN_VISION_TOWER": "0", "PACKING": "False",
           "LEARNING_RATE": "5e-4", "OUTPUT_ROOT": "/nonexistent/out"}
    out = subprocess.run(["bash", str(REPO / "scripts" / "stage1_midtrain.sh"), "--help"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    values = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.startswith("  "))
    assert "Settings files: configs/stage1_midtrain.yaml\n" in out.stdout  # PACKING=False: no packing.yaml
    assert values["learning_rate"] == "5e-4" and values["mm_projector_lr"] == "1e-05"
    assert values["mm_tunable_parts"] == "mm_mlp_adapter,mm_language_model"  # Table 2: tower frozen in stage 1
    assert values["per_device_train_batch_size"] == "16" and values["rope_scaling_type"] == "yarn"
    assert values["output_dir"] == "/nonexistent/out/stage1"
    assert "model_name_or_path" not in values and "/nonexistent/out/stage0" in out.stdout  # starts from stage 0
