"""Curriculum pieces without DeepSpeed: freezing, param groups, checkpoint markers, rope scaling, demo data."""

import json
import os
import shutil
import signal

import pytest
import torch
from transformers import Qwen2Config, TrainerControl, TrainingArguments

from llava_medgpt.data.demo import build_demo_dataset
from llava_medgpt.processing.records import validate_record
from llava_medgpt.model import MedGptConfig, MedGptForConditionalGeneration
from llava_medgpt.model.backbones import TINY_TEXT_CONFIGS, TINY_VISION_CONFIGS
from llava_medgpt.train import checkpointing as ckpt
from llava_medgpt.train.arguments import ModelArguments
from llava_medgpt.train.freezing import parameter_counts, parse_tunable_parts, set_trainable_parts
from llava_medgpt.train.param_groups import ModuleLearningRates, build_param_groups
from llava_medgpt.train.preemption import PreemptionCallback
from llava_medgpt.train.train import apply_rope_scaling


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = MedGptConfig(vision_config=TINY_VISION_CONFIGS["clip"](), text_config=TINY_TEXT_CONFIGS["gpt_oss"](640),
                          image_token_id=5)
    return MedGptForConditionalGeneration(config)


def _names_under(model, attr):
    return {f"{attr}.{n}" for n, _ in getattr(model, attr).named_parameters()}


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_parse_tunable_parts_keeps_order_drops_duplicates_and_refuses_unknown():
    assert parse_tunable_parts(" mm_mlp_adapter,mm_vision_tower,mm_mlp_adapter ") == ("mm_mlp_adapter", "mm_vision_tower")
    with pytest.raises(ValueError, match="mm_vision_encoder"):
        parse_tunable_parts("mm_vision_encoder")
    with pytest.raises(ValueError, match="empty"):
        parse_tunable_parts(" , ")


@pytest.mark.parametrize(
    "parts, attrs",
    [
        ("mm_vision_tower,mm_mlp_adapter", ["vision_tower", "multi_modal_projector"]),  # stage 0 (paper text)
        ("mm_mlp_adapter", ["multi_modal_projector"]),  # stage 0 (Table 2)
        ("mm_mlp_adapter,mm_language_model", ["multi_modal_projector", "language_model"]),  # stage 1 (Table 2)
        ("mm_vision_tower,mm_mlp_adapter,mm_language_model",
         ["vision_tower", "multi_modal_projector", "language_model"]),  # stages 1-2
    ],
)
def test_exact_trainable_parameter_set_per_stage(model, parts, attrs):
    set_trainable_parts(model, parse_tunable_parts(parts))
    expected = set().union(*(_names_under(model, a) for a in attrs))
    assert _trainable(model) == expected
    counts = parameter_counts(model)
    for attr in ("vision_tower", "multi_modal_projector", "language_model"):
        trainable, total = counts[attr]
        assert total == sum(p.numel() for p in getattr(model, attr).parameters())
        assert trainable == (total if attr in attrs else 0)


def test_freezing_is_idempotent_whatever_came_before(model):
    stage0 = parse_tunable_parts("mm_mlp_adapter")
    set_trainable_parts(model, stage0)
    alone = _trainable(model)
    set_trainable_parts(model, parse_tunable_parts("mm_vision_tower,mm_mlp_adapter,mm_language_model"))
    set_trainable_parts(model, stage0)
    set_trainable_parts(model, stage0)
    assert _trainable(model) == alone == _names_under(model, "multi_modal_projector")


def test_param_groups_one_lr_per_module_each_trainable_parameter_once(model):
    set_trainable_parts(model, parse_tunable_parts("mm_vision_tower,mm_mlp_adapter,mm_language_model"))
    decay = {n for n, _ in model.named_parameters() if not n.endswith("bias") and "norm" not in n}
    lrs = ModuleLearningRates(default=1e-5, multi_modal_projector=1e-3, vision_tower=2e-6)
    groups = build_param_groups(model, lrs, weight_decay=0.05, decay_parameter_names=decay)
    name_of = {id(p): n for n, p in model.named_parameters()}
    grouped = [name_of[id(p)] for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(name_of.values())  # every parameter exactly once
    expected_lr = {"language_model": 1e-5, "multi_modal_projector": 1e-3, "vision_tower": 2e-6}
    for group in groups:
        module, kind = group["name"].split("/")
        names = [name_of[id(p)] for p in group["params"]]
        assert all(n.startswith(module + ".") for n in names)
        assert group["lr"] == expected_lr[module]
        assert group["weight_decay"] == (0.05 if kind == "decay" else 0.0)
        assert all((n in decay) == (kind == "decay") for n in names)
    assert {g["name"] for g in groups} >= {"vision_tower/no_decay", "multi_modal_projector/decay", "language_model/decay"}


def test_param_groups_leave_out_frozen_modules_and_default_lrs(model):
    set_trainable_parts(model, parse_tunable_parts("mm_mlp_adapter"))
    groups = build_param_groups(model, ModuleLearningRates(default=1e-3), 0.0, set())
    assert [g["name"] for g in groups] == ["multi_modal_projector/no_decay"]
    assert groups[0]["lr"] == 1e-3
    assert len(groups[0]["params"]) == len(list(model.multi_modal_projector.parameters()))


def test_resume_only_from_complete_checkpoints_and_rotation_keeps_newest_complete(tmp_path):
    for step in (2, 4, 6, 8):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-x").mkdir()  # not a checkpoint name
    for step in (2, 4, 6):
        ckpt.mark_complete(tmp_path / f"checkpoint-{step}")
    # checkpoint-8: a save killed half-way (no marker)
    assert ckpt.latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-6"
    assert not list(tmp_path.glob("checkpoint-*/.COMPLETE.tmp"))
    removed = ckpt.rotate_complete_checkpoints(tmp_path, keep=2)
    assert removed == [tmp_path / "checkpoint-2"]
    assert [s for s, _ in ckpt.checkpoints(tmp_path)] == [4, 6, 8]
    assert ckpt.remove_incomplete_checkpoints(tmp_path) == [tmp_path / "checkpoint-8"]
    assert [s for s, _ in ckpt.checkpoints(tmp_path)] == [4, 6]
    assert ckpt.rotate_complete_checkpoints(tmp_path, keep=None) == []
    assert ckpt.latest_complete_checkpoint(tmp_path / "missing") is None


def _fake_checkpoint(folder, step, payload=b"weights"):
    (folder / f"global_step{step}").mkdir(parents=True)
    (folder / f"global_step{step}" / "zero_pp_rank_0_mp_rank_00_model_states.pt").write_bytes(payload * 1000)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / ".hidden.tmp").write_text("not sealed")


def test_seal_writes_a_sha256sum_manifest_before_the_marker(tmp_path):
    import hashlib
    import subprocess

    folder = tmp_path / "checkpoint-2"
    _fake_checkpoint(folder, 2)
    ckpt.seal_folder(folder, content="global_step=2\n")
    assert ckpt.is_complete(folder) and (folder / "COMPLETE").read_text() == "global_step=2\n"
    shard = folder / "global_step2" / "zero_pp_rank_0_mp_rank_00_model_states.pt"
    assert ckpt.read_manifest(folder) == {
        "global_step2/zero_pp_rank_0_mp_rank_00_model_states.pt": hashlib.sha256(shard.read_bytes()).hexdigest(),
        "trainer_state.json": hashlib.sha256((folder / "trainer_state.json").read_bytes()).hexdigest(),
    }
    # The standard tool checks it too.
    assert subprocess.run(["sha256sum", "-c", "--quiet", "MANIFEST.sha256"], cwd=folder).returncode == 0
    assert ckpt.verify_folder(folder) == []


def test_a_damaged_newest_checkpoint_is_named_set_aside_and_the_previous_one_used(tmp_path):
    for step in (2, 4):
        _fake_checkpoint(tmp_path / f"checkpoint-{step}", step, payload=str(step).encode())
        ckpt.seal_folder(tmp_path / f"checkpoint-{step}")
    shard = tmp_path / "checkpoint-4" / "global_step4" / "zero_pp_rank_0_mp_rank_00_model_states.pt"
    with open(shard, "r+b") as f:
        f.truncate(10)  # cut after COMPLETE: the marker alone would still say "complete"
    (tmp_path / "checkpoint-4" / "trainer_state.json").unlink()
    reports = []
    assert ckpt.newest_intact_checkpoint(tmp_path, report=reports.append) == tmp_path / "checkpoint-2"
    assert len(reports) == 1
    assert f"{shard}: content differs from the manifest (10 bytes now" in reports[0]
    assert f"{tmp_path / 'checkpoint-4' / 'trainer_state.json'}: missing" in reports[0]
    assert [step for step, _ in ckpt.checkpoints(tmp_path)] == [2]  # invisible to resume and rotation
    assert (tmp_path / "checkpoint-4.damaged" / "COMPLETE").is_file()  # kept for inspection
    # Nothing intact at all: a fresh start.
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    assert ckpt.newest_intact_checkpoint(tmp_path, report=reports.append) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2.damaged", "checkpoint-4.damaged"]


def test_a_checkpoint_sealed_without_a_manifest_is_still_resumed(tmp_path):
    folder = tmp_path / "checkpoint-3"
    _fake_checkpoint(folder, 3)
    ckpt.mark_complete(folder)  # what older versions wrote
    assert ckpt.newest_intact_checkpoint(tmp_path) == folder


def test_stage_output_seal_leaves_out_checkpoints_and_the_run_status(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 100)
    (tmp_path / "exit_status.json").write_text("{}")
    _fake_checkpoint(tmp_path / "checkpoint-2", 2)
    ckpt.seal_folder(tmp_path, recursive=False, exclude=("exit_status.json",))
    assert list(ckpt.read_manifest(tmp_path)) == ["model.safetensors"]


def test_skip_report_round_trips_and_merges():
    from llava_medgpt.data.skips import SkippedSample, SkipReport

    a = SkipReport(max_ids_per_reason=2)
    a.record(10, [SkippedSample("s/x", "image_load", "cannot load x"), SkippedSample("s/y", "image_load", "y")])
    b = SkipReport.from_dict(json.loads(json.dumps(a.to_dict())))
    assert b.to_dict() == a.to_dict()
    b.record(5, [SkippedSample("s/z", "too_long", "z"), SkippedSample("s/w", "image_load", "w")])
    a.merge(b)
    assert a.num_seen == 25 and dict(a.counts) == {"image_load": 5, "too_long": 1}
    assert a.ids == {"image_load": ["s/x", "s/y"], "too_long": ["s/z"]}  # capped at max_ids_per_reason
    assert a.examples == {"image_load": "cannot load x", "too_long": "z"}


def test_yarn_rope_scaling_extends_context_32x():
    config = Qwen2Config(max_position_embeddings=4096)
    args = ModelArguments(model_name_or_path="x", rope_scaling_type="yarn", rope_scaling_factor=32,
                          rope_original_max_position_embeddings=4096)
    apply_rope_scaling(config, args)
    assert config.rope_parameters["rope_type"] == "yarn"
    assert config.rope_parameters["factor"] == 32.0
    assert config.rope_parameters["original_max_position_embeddings"] == 4096
    assert "rope_theta" in config.rope_parameters  # kept from the original config
    assert config.max_position_embeddings == 131072
    with pytest.raises(ValueError, match="rope_scaling_factor"):
        apply_rope_scaling(config, ModelArguments(model_name_or_path="x", rope_scaling_type="yarn"))


def test_preemption_signal_saves_and_stops_at_step_end():
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        callback = PreemptionCallback()
        args = TrainingArguments(output_dir="unused", use_cpu=True, report_to=[])
        control = callback.on_step_end(args, None, TrainerControl())
        assert not control.should_save and not control.should_training_stop
        os.kill(os.getpid(), signal.SIGUSR1)
        control = callback.on_step_end(args, None, TrainerControl())
        assert control.should_save and control.should_training_stop and callback.stopped_for_preemption
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_demo_dataset_records_are_valid_and_images_are_single_tiles(tmp_path):
    from llava_medgpt.processing.image_io import load_image
    from llava_medgpt.processing.image_processor import MedGptImageProcessor

    counts = build_demo_dataset(tmp_path)
    assert counts == json.loads((tmp_path / "COMPLETE").read_text())
    assert counts == {"stage0/captions.jsonl": 20, "stage1/reports.jsonl": 10, "stage1/longitudinal.jsonl": 3,
                      "stage2/vqa.jsonl": 30, "stage2/text.jsonl": 6, "stage2/reasoning.jsonl": 3,
                      "lm_corpus.txt": 20, "benchmarks/Slake1.0/test.json": 20,
                      "benchmarks/MedQA/data_clean/questions/US/4_options/phrases_no_exclude_test.jsonl": 6}
    processor = MedGptImageProcessor()
    images = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert len(images) == 10 and sum(n.endswith(".dcm") for n in images) == 5
    for name in images:
        assert processor.num_tiles_for_size(*load_image(tmp_path / "images" / name).size) == 1
    for manifest in [m for m in counts if m.startswith("stage")]:
        for line in (tmp_path / manifest).read_text().splitlines():
            record = json.loads(line)
            validate_record(record)
            paths = [record["image"]] if isinstance(record.get("image"), str) else record.get("image", [])
            assert all((tmp_path / p).is_file() for p in paths)
            markers = sum(t["value"].count("<image>") for t in record["conversations"])
            assert markers == len(paths)
            reasoning = [t for t in record["conversations"] if "reasoning" in t]
            assert bool(reasoning) == manifest.endswith("reasoning.jsonl")
    mcq = [json.loads(x) for x in (tmp_path / "stage2/vqa.jsonl").read_text().splitlines() if "mcq" in x]
    assert len({r["conversations"][1]["value"] for r in mcq}) > 1  # the right letter is not always the same


def test_demo_benchmarks_are_read_by_the_eval_harness_and_worded_unlike_the_training_data(tmp_path):
    from llava_medgpt.eval.tasks import load_task

    build_demo_dataset(tmp_path)
    slake = load_task("slake", tmp_path / "benchmarks")
    medqa = load_task("medqa", tmp_path / "benchmarks")
    assert (len(slake.items), len(medqa.items)) == (20, 6) and not slake.skipped and not medqa.skipped
    assert sorted(item.answer for item in slake.items) == ["A"] * 10 + ["B"] * 10  # 10 yes, 10 no
    assert all(len(item.images) == 1 and item.options == {"A": "Yes", "B": "No"} for item in slake.items)
    assert sorted(item.answer for item in medqa.items) == ["A", "B", "B", "C", "C", "D"]
    prompts = set()
    for manifest in tmp_path.glob("stage*/*.jsonl"):
        for line in manifest.read_text().splitlines():
            prompts.update(t["value"] for t in json.loads(line)["conversations"] if t["from"] == "human")
    for item in slake.items + medqa.items:
        assert not any(item.question in prompt for prompt in prompts), item.question


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from llava_medgpt import create_tiny_checkpoint

    return create_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt")


def _training_args(tmp_path, **kwargs):
    from llava_medgpt.train.training_arguments import TrainingArguments as Args

    return Args(output_dir=str(tmp_path), use_cpu=True, report_to=[], **kwargs)


def test_setup_model_refuses_flash_attention_2_for_gpt_oss(tiny_checkpoint, tmp_path):
    from llava_medgpt.train.train import setup_model

    args = ModelArguments(model_name_or_path=str(tiny_checkpoint), attn_implementation="flash_attention_2")
    with pytest.raises(ValueError, match="flash_attention_2.*gpt_oss.*sinks"):
        setup_model(args, _training_args(tmp_path))


def test_setup_model_sets_yarn_eager_attention_and_max_length(tiny_checkpoint, tmp_path):
    from llava_medgpt.train.train import setup_model

    args = ModelArguments(model_name_or_path=str(tiny_checkpoint), rope_scaling_type="yarn", rope_scaling_factor=8,
                          rope_original_max_position_embeddings=1024)
    model, processor = setup_model(args, _training_args(tmp_path, model_max_length=4096))
    text_config = model.language_model.config
    # GPT-oss's default for the machine: flex attention on GPU, eager on CPU.
    assert text_config._attn_implementation == ("flex_attention" if torch.cuda.is_available() else "eager")
    assert text_config.rope_parameters["factor"] == 8.0 and text_config.max_position_embeddings == 8192
    assert processor.tokenizer.model_max_length == 4096


def test_training_switches_go_with_the_call_and_never_into_the_config(tiny_checkpoint, tmp_path):
    """A start checkpoint saved with the training switches on loads with them off (saved stage outputs generate);
    training passes them with every forward call instead."""
    from llava_medgpt.train.train import setup_model, training_forward_kwargs

    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["use_cache"] = False
    config["text_config"].update(output_router_logits=True, use_cache=False)
    start = tmp_path / "start"
    shutil.copytree(tiny_checkpoint, start)
    (start / "config.json").write_text(json.dumps(config))
    args = ModelArguments(model_name_or_path=str(start))
    model, _ = setup_model(args, _training_args(tmp_path / "out"))
    text_config = model.language_model.config
    assert text_config.output_router_logits is False and text_config.use_cache is True
    assert model.config.use_cache is True
    assert training_forward_kwargs(model, args) == {"use_cache": False, "output_router_logits": True}
    args.output_router_logits = False
    assert training_forward_kwargs(model, args) == {"use_cache": False, "output_router_logits": False}


def test_trainer_keeps_the_saved_config_ready_to_generate_and_passes_the_switches_per_call(tiny_checkpoint, tmp_path):
    """transformers' Trainer writes args.use_cache (False) into model.config, which every checkpoint saves; ours
    keeps the config's value and hands the training switches to each forward call instead."""
    from llava_medgpt.train.arguments import ALL_TUNABLE_PARTS
    from llava_medgpt.train.train import setup_model, training_forward_kwargs
    from llava_medgpt.train.trainer import MedGptTrainer

    args = ModelArguments(model_name_or_path=str(tiny_checkpoint))
    training_args = _training_args(tmp_path)
    model, processor = setup_model(args, training_args)
    trainer = MedGptTrainer(model=model, args=training_args, processing_class=processor,
                            tunable_parts=parse_tunable_parts(ALL_TUNABLE_PARTS),
                            forward_kwargs=training_forward_kwargs(model, args))
    assert model.config.use_cache is True and model.config.text_config.output_router_logits is False
    calls = []
    model.register_forward_pre_hook(lambda module, a, kw: calls.append(dict(kw)), with_kwargs=True)
    input_ids = torch.randint(10, 600, (1, 12))
    loss = trainer.compute_loss(model, {"input_ids": input_ids, "labels": input_ids})
    assert torch.isfinite(loss)
    assert calls[0]["use_cache"] is False and calls[0]["output_router_logits"] is True
