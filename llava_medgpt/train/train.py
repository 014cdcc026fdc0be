"""Train one stage of the MedGPT-oss curriculum: setup -> train -> save -> exit code.

Run as: torchrun --nproc_per_node 8 -m llava_medgpt.train --model_name_or_path PREV_STAGE_DIR \
            --data_path data_recipes/stage2_sft.yaml --output_dir outputs/stage2 \
            --deepspeed scripts/deepspeed/zero3.json [any transformers.TrainingArguments flag]
        (scripts/stage{0,1,2}_*.sh build this command; see docs/training.md)

A stage starts from the previous stage's output folder (from_pretrained), or for stage 0 from a separately
pretrained language model plus `--vision_tower` (model.builder.build_from_parts). It resumes by itself from the
newest intact checkpoint in --output_dir, and ends by writing the stage's hand-off folder: config.json,
model.safetensors, the processor files, MANIFEST.sha256 and a COMPLETE marker written last. Exit codes (also in
OUTPUT_DIR/exit_status.json, since torchrun reports 1 for any failure; train/exit_status.py): 0 done, 1 error,
65 too many bad samples, 74 disk full, 75 stopped on SIGTERM/SIGUSR1 after saving a checkpoint (run it again).
"""

import json
import logging
import os
import sys
from dataclasses import replace

import torch
import torch.distributed as dist
import transformers
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from ..data.collator import MedGptCollator
from ..data.dataset import MedGptDataset
from ..data.skips import TooManyBadSamplesError
from ..model.builder import resolve_attn_implementation
from ..model.card import TrainingRecord, write_model_card
from ..settings import effective_values
from .arguments import DataArguments, ModelArguments, parse_args
from .checkpointing import (
    RankGroup,
    is_complete,
    newest_intact_checkpoint,
    remove_incomplete_checkpoints,
    seal_folder,
    verify_folder,
)
from .exit_status import (
    EXIT_DISK_FULL,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TOO_MANY_BAD,
    STATUS_FILE,
    disk_full_error,
    write_exit_status,
)
from .freezing import parse_tunable_parts
from .known_warnings import filter_known_warnings
from .lora import add_lora, merge_lora
from .preemption import REQUEUE_EXIT_CODE, PreemptionCallback
from .trainer import MedGptTrainer
from .training_arguments import TrainingArguments

logger = logging.getLogger("llava_medgpt.train")


def _prepare_cpu_deepspeed(argv: list[str]) -> list[str]:
    """On a machine without GPUs, make DeepSpeed and the Trainer agree on the process group (gloo).

    Left alone, accelerate sees no GPU, calls the run single-process (world size 1: every rank would read the same
    batches and the DeepSpeed batch-size check fails), while DeepSpeed itself joins all ranks. Creating accelerate's
    DeepSpeed state with the gloo backend first, and telling the Trainer to use it, gives both the real world size.
    """
    uses_deepspeed = bool(effective_values(argv, ["deepspeed"])["deepspeed"])  # from a flag or a settings file
    if torch.cuda.is_available() or "LOCAL_RANK" not in os.environ or not uses_deepspeed:
        return argv
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        PartialState(backend="gloo")
    finally:
        del os.environ["ACCELERATE_USE_DEEPSPEED"]
    return list(argv) + ["--accelerator_config", json.dumps({"use_configured_state": True})]


def _dtype(training_args: TrainingArguments) -> torch.dtype:
    if training_args.bf16:
        return torch.bfloat16
    if training_args.fp16:
        return torch.float16
    return torch.float32


def apply_rope_scaling(text_config, model_args: ModelArguments) -> None:
    """Set YaRN (or another rope type) on the text config; max_position_embeddings becomes factor * original."""
    if model_args.rope_scaling_type is None:
        return
    if model_args.rope_scaling_factor is None or model_args.rope_original_max_position_embeddings is None:
        raise ValueError("--rope_scaling_type needs --rope_scaling_factor and --rope_original_max_position_embeddings")
    rope = dict(getattr(text_config, "rope_parameters", None) or {})
    rope.update(
        rope_type=model_args.rope_scaling_type,
        factor=float(model_args.rope_scaling_factor),
        original_max_position_embeddings=int(model_args.rope_original_max_position_embeddings),
    )
    text_config.rope_parameters = rope
    text_config.max_position_embeddings = int(
        model_args.rope_scaling_factor * model_args.rope_original_max_position_embeddings
    )


def setup_model(model_args: ModelArguments, training_args: TrainingArguments):
    """(model, processor): assembled from parts for stage 0, else loaded from the previous stage's folder."""
    dtype = _dtype(training_args)
    if model_args.vision_tower:
        if model_args.rope_scaling_type is not None:
            raise ValueError("Set rope scaling in a later stage (it is applied when loading a MedGPT checkpoint)")
        from ..model.builder import build_from_parts

        model, processor = build_from_parts(
            model_args.model_name_or_path, model_args.vision_tower, model_args.attn_implementation, dtype=dtype
        )
    else:
        from ..model.auto import register_auto_classes

        register_auto_classes()  # a previous stage's MedGPT folder, through the Auto classes
        config = AutoConfig.from_pretrained(model_args.model_name_or_path)
        apply_rope_scaling(config.text_config, model_args)
        attn = resolve_attn_implementation(config.text_config, model_args.attn_implementation)
        config.text_config._attn_implementation = attn
        model = AutoModelForImageTextToText.from_pretrained(
            model_args.model_name_or_path, config=config, dtype=dtype, use_safetensors=True
        )
        processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
    model.config.check_image_processor(processor.image_processor)  # tiles and placeholders fit the tower
    clear_training_switches(model.config)
    processor.tokenizer.model_max_length = training_args.model_max_length
    if model_args.version is not None:
        processor.conversation_template = model_args.version
        processor.template()  # fail now on an unknown template name
    if training_args.lora_enable:
        model = add_lora(model, training_args)
    return model, processor


def clear_training_switches(config) -> None:
    """Inference defaults for the switches training passes per call (training_forward_kwargs), also when the
    start checkpoint was saved with them on: every checkpoint and stage output then loads ready to generate."""
    for cfg in (config, config.text_config):
        cfg.use_cache = True
    if hasattr(config.text_config, "output_router_logits"):
        config.text_config.output_router_logits = False


def training_forward_kwargs(model, model_args: ModelArguments) -> dict:
    """Flags of every training forward call that must not live in the model's config.

    The config is saved with every checkpoint and stage output, and whatever loads a stage output (generation,
    the eval harness, the next stage) inherits it: `output_router_logits` left on there makes GPT-oss compute its
    load-balancing loss during batched generation, which fails on padded prompts. So the training switches are
    passed per call: no KV cache (nothing is generated; gradient checkpointing refuses one anyway) and the MoE
    router aux loss for backbones that have one.
    """
    kwargs = {"use_cache": False}
    if hasattr(model.config.text_config, "output_router_logits"):
        kwargs["output_router_logits"] = model_args.output_router_logits
    return kwargs


def setup_data(data_args: DataArguments, training_args: TrainingArguments, processor):
    env = dict(os.environ)
    if data_args.image_folder:
        env["IMAGE_FOLDER"] = data_args.image_folder
    # The first process builds the record indexes; the others then load them.
    with training_args.main_process_first(desc="record indexes"):
        dataset = MedGptDataset(data_args.data_path, processor, max_length=training_args.model_max_length, env=env,
                                image_folder=data_args.image_folder, cache_dir=data_args.index_cache_dir)
    collator = MedGptCollator(
        pad_token_id=processor.tokenizer.pad_token_id,
        layout="packed" if data_args.packing else "padded",
        max_length=training_args.model_max_length,
    )
    return dataset, collator


def find_resume_checkpoint(training_args: TrainingArguments) -> str | None:
    """--resume_from_checkpoint if given (it must be complete and match its manifest), else the newest complete
    checkpoint in output_dir that matches its manifest; a damaged one is reported file by file, set aside
    (checkpoint-N.damaged) and the previous one tried. None: fresh start. Run on every rank."""
    group = RankGroup()
    if training_args.resume_from_checkpoint:
        folder = training_args.resume_from_checkpoint
        if not is_complete(folder):
            raise ValueError(f"{folder} has no COMPLETE marker: the save was cut short")
        problems = verify_folder(folder, group)
        if problems:
            raise ValueError(f"{folder} is damaged ({len(problems)} file(s) differ from its manifest):\n  "
                             + "\n  ".join(problems))
        return folder
    if training_args.should_save:
        for folder in remove_incomplete_checkpoints(training_args.output_dir):
            logger.warning("Removed incomplete checkpoint %s (its save was interrupted)", folder)
    group.barrier()
    intact = newest_intact_checkpoint(training_args.output_dir, group, report=logger.error)
    return None if intact is None else str(intact)


def save_stage_output(trainer: MedGptTrainer, processor, output_dir: str, record: TrainingRecord | None = None) -> None:
    """The hand-off folder the next stage starts from; COMPLETE is written after everything else.

    record: how the stage was trained, for the model card (README.md) the folder gets beside chat_template.jinja.
    """
    merge_lora(trainer.model)  # LoRA: the next stage starts from plain weights
    trainer.save_model(output_dir)  # safetensors; under ZeRO-3 the weights are gathered first
    if trainer.args.should_save:
        # The Trainer also pickles its arguments (training_args.bin); the hand-off folder keeps them as JSON only.
        pickled = os.path.join(output_dir, "training_args.bin")
        if os.path.exists(pickled):
            os.remove(pickled)
        with open(os.path.join(output_dir, "training_args.json"), "w", encoding="utf-8") as f:
            f.write(trainer.args.to_json_string())
        processor.save_pretrained(output_dir)
        with open(os.path.join(output_dir, "log_history.json"), "w", encoding="utf-8") as f:
            json.dump(trainer.state.log_history, f, indent=1)
        record = replace(record, global_step=trainer.state.global_step) if record is not None else None
        write_model_card(output_dir, trainer.model.config, processor, training=record)
    # The hand-off files only: checkpoints, the run's status and lock stay outside the manifest.
    seal_folder(output_dir, content=f"global_step={trainer.state.global_step}\n", recursive=False,
                exclude=(STATUS_FILE,))


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def main(argv: list[str] | None = None) -> int:
    """Train one stage; the exit code (and OUTPUT_DIR/exit_status.json) says how it ended (exit_status.py)."""
    filter_known_warnings()
    argv = sys.argv[1:] if argv is None else list(argv)
    argv = _prepare_cpu_deepspeed(argv)
    model_args, data_args, training_args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if training_args.should_log else logging.WARNING)
    output_dir, rank = training_args.output_dir, training_args.process_index
    try:
        code = train_stage(model_args, data_args, training_args)
    except TooManyBadSamplesError as err:  # raised on every rank at the same step (bad_samples.py)
        logger.error("%s", err)
        if training_args.should_save:
            write_exit_status(output_dir, EXIT_TOO_MANY_BAD, "too_many_bad_samples", str(err), rank)
        _shutdown()
        return EXIT_TOO_MANY_BAD
    except Exception as err:
        full = disk_full_error(err, output_dir)
        if full is None:
            write_exit_status(output_dir, EXIT_FAILED, "error", f"{type(err).__name__}: {err}", rank, first_wins=True)
            raise
        logger.error("%s", full)
        # The save that failed is incomplete anyway (and the next start would delete it): give its space back, from
        # whichever rank found the disk full.
        for folder in remove_incomplete_checkpoints(output_dir):
            logger.error("Removed the incomplete checkpoint %s", folder)
        write_exit_status(output_dir, EXIT_DISK_FULL, "disk_full", str(full), rank)
        return EXIT_DISK_FULL
    if training_args.should_save:
        write_exit_status(output_dir, code, "preempted" if code == REQUEUE_EXIT_CODE else "complete", rank=rank)
    _shutdown()
    return code


def train_stage(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> int:
    """setup -> resume -> train -> stage output; returns EXIT_OK, or REQUEUE_EXIT_CODE after a preemption save."""
    if is_complete(training_args.output_dir) and not training_args.overwrite_output_dir:
        logger.info("%s is already a complete stage output; nothing to do", training_args.output_dir)
        return EXIT_OK
    tunable_parts = parse_tunable_parts(model_args.mm_tunable_parts)
    transformers.set_seed(training_args.seed)  # before the model: stage 0 initialises the projector

    model, processor = setup_model(model_args, training_args)
    dataset, collator = setup_data(data_args, training_args, processor)
    resume = find_resume_checkpoint(training_args)
    if resume:
        logger.info("Resuming from %s", resume)

    preemption = PreemptionCallback()
    trainer = MedGptTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=[preemption],
        tunable_parts=tunable_parts,
        keep_checkpoints=training_args.keep_checkpoints,
        forward_kwargs=training_forward_kwargs(model, model_args),
    )
    if resume:
        trainer.bad_samples.restore(resume, training_args.process_index, training_args.world_size)
    trainer.train(resume_from_checkpoint=resume)
    if preemption.stopped_for_preemption:
        trainer.bad_samples.write_reports(training_args)
        logger.warning("Stopped on a signal after saving checkpoint-%d; exit %d to be requeued",
                       trainer.state.global_step, REQUEUE_EXIT_CODE)
        return REQUEUE_EXIT_CODE
    # Also after a resume that trained no step: the restored counts decide.
    trainer.bad_samples.check(training_args, final=True)
    trainer.bad_samples.write_reports(training_args)

    save_stage_output(trainer, processor, training_args.output_dir,
                      TrainingRecord.from_args(model_args, data_args, training_args))
    if training_args.should_save:
        logger.info("Stage output (hand-off folder for the next stage): %s", os.path.abspath(training_args.output_dir))
    return EXIT_OK


def _shutdown() -> None:
    """Destroy the process group on a clean finish (every rank gets here).

    Left to interpreter exit, gloo's worker threads can outlive the interpreter's teardown and the rank dies with
    SIGABRT ("terminate called without an active exception") after its work is done, which fails a finished job.
    After an exception we do not call it, since other ranks may still be inside a collective. The barrier first:
    rank 0 works on after the last collective (COMPLETE marker, logs), and a rank that tears down its connections
    while a peer is still busy can make that peer's gloo threads abort the same way.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
