"""Command-line arguments of `python -m llava_medgpt.train`, in LLaVA-OneVision's three dataclasses.

Names follow LLaVA-OneVision where it has one (model_name_or_path, vision_tower, version, mm_tunable_parts,
mm_projector_lr, mm_vision_tower_lr, data_path, image_folder, model_max_length, group_by_modality_length,
lora_*); everything else of `transformers.TrainingArguments` (learning_rate, weight_decay, lr_scheduler_type,
deepspeed, bf16, gradient_checkpointing, ...) is accepted unchanged. A stage's settings come from YAML files
(`--config configs/stage0_pretrain.yaml`, llava_medgpt.settings), and flags on the command line override them.

This module imports neither torch nor transformers (importing transformers runs llava_medgpt's Auto-class
registration, which loads the model code): `--help` lists the curriculum's own arguments from it at once.
`TrainingArguments` (transformers' class plus CurriculumTrainingFields) lives in training_arguments.py, which
imports torch through transformers, and is loaded only to parse a real command line.
"""

import argparse
import sys
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields

from ..settings import CONFIG_FLAG, SettingsError, as_flags, merged_settings, split_config_flags

# The paper's curriculum trains everything from stage 1 on; stage 0 drops "mm_language_model".
ALL_TUNABLE_PARTS = "mm_vision_tower,mm_mlp_adapter,mm_language_model"


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={
            "help": "A MedGPT checkpoint folder (the previous stage's output) or, together with --vision_tower, a "
            "causal LM to assemble a new model from (stage 0)."
        }
    )
    vision_tower: str | None = field(
        default=None,
        metadata={
            "help": "Vision encoder (e.g. a CLIP-ViT-L/14@336 folder). Set only when starting from separate parts; "
            "a MedGPT checkpoint already contains its vision tower."
        },
    )
    version: str | None = field(
        default=None,
        metadata={"help": "Conversation template name (llava_medgpt.processing.templates); default: the processor's."},
    )
    mm_tunable_parts: str = field(
        default=ALL_TUNABLE_PARTS,
        metadata={"help": "Comma-separated trainable parts: mm_vision_tower, mm_mlp_adapter, mm_language_model."},
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "Text-model attention (eager, flex_attention, sdpa, ...); default: the backbone's choice for "
            "this machine (GPT-oss: flex_attention on GPU, eager on CPU). Refused ones raise with the reason."
        },
    )
    rope_scaling_type: str | None = field(
        default=None, metadata={"help": "Set rope scaling on the text config, e.g. 'yarn' (stage 1 long context)."}
    )
    rope_scaling_factor: float | None = field(default=None, metadata={"help": "YaRN factor (paper: 32)."})
    rope_original_max_position_embeddings: int | None = field(
        default=None, metadata={"help": "Context length the rope was trained for (paper: 4096)."}
    )
    output_router_logits: bool = field(
        default=True,
        metadata={"help": "Add the MoE load-balancing loss (router_aux_loss_coef) to the training loss (passed with "
                  "each training forward call; saved configs keep it off, as generation needs)."},
    )


@dataclass
class DataArguments:
    data_path: str = field(metadata={"help": "A data recipe YAML (data_recipes/*.yaml)."})
    image_folder: str | None = field(
        default=None,
        metadata={"help": "Image folder of recipe entries that give none (as LLaVA's --image_folder); also "
                          "exported as IMAGE_FOLDER while the recipe is read, for recipes that write ${IMAGE_FOLDER}."},
    )
    packing: bool = field(
        default=False, metadata={"help": "Pack several samples per row (position ids restart per sample)."}
    )
    index_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Folder for the record indexes (default: beside each manifest); needed when the dataset "
                          "is on a read-only mount."},
    )


@dataclass
class CurriculumTrainingFields:
    """The curriculum's training arguments beside transformers.TrainingArguments' own (and the defaults of two of
    those changed); see training_arguments.TrainingArguments for how the derived ones are applied."""

    global_batch_size: int | None = field(
        default=None,
        metadata={"help": "Samples (packed rows, with --packing) per optimizer step over all processes (Table 2: 128); "
                          "sets gradient_accumulation_steps = global / (per_device_train_batch_size x world size), "
                          "which must divide. Default: --gradient_accumulation_steps as given."},
    )
    keep_checkpoints: int | None = field(
        default=None,
        metadata={"help": "Complete checkpoints to keep in output_dir (default: all). Older ones are deleted only "
                          "after a newer one is complete, so an interrupted save never leaves none to resume from; "
                          "it replaces transformers' --save_total_limit, whose rotation runs before that."},
    )
    warmup_ratio: float | None = field(
        default=None,
        metadata={"help": "Fraction of the training steps that warm the learning rate up (Table 2: 0.01-0.03); "
                          "transformers' --warmup_steps then takes it (a value below 1 there is such a fraction)."},
    )
    model_max_length: int = field(
        default=32768, metadata={"help": "Maximum sequence length in tokens; longer samples are skipped and counted."}
    )
    mm_projector_lr: float | None = field(
        default=None, metadata={"help": "Learning rate of the projector (default: --learning_rate)."}
    )
    mm_vision_tower_lr: float | None = field(
        default=None, metadata={"help": "Learning rate of the vision tower (default: --learning_rate)."}
    )
    group_by_modality_length: bool = field(
        default=False, metadata={"help": "Batch image and text-only samples apart, each grouped by length."}
    )
    lora_enable: bool = field(default=False, metadata={"help": "Train LoRA adapters on the language model (peft)."})
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_bias: str = "none"
    lora_target_modules: str = field(
        default="q_proj,k_proj,v_proj,o_proj",
        metadata={"help": "Comma-separated module names inside the language model to adapt."},
    )
    max_bad_sample_fraction: float = field(
        default=0.01,
        metadata={"help": "Stop (exit 65) when more than this fraction of the samples seen, summed over all ranks, "
                          "were skipped as bad; checked after every step once --bad_sample_min_samples were seen, "
                          "and at the end of training whatever the number. The counts are saved in checkpoints."},
    )
    bad_sample_min_samples: int = field(
        default=1000, metadata={"help": "Samples to see (all ranks) before the bad-sample limit is checked mid-run."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Train even if output_dir already holds a complete stage output."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the model's forward takes pixel_values through **kwargs."}
    )


ARGUMENT_CLASSES_WITHOUT_TORCH = (ModelArguments, DataArguments, CurriculumTrainingFields)


def parse_args(argv: Sequence[str] | None = None):
    """(ModelArguments, DataArguments, TrainingArguments) from settings files and flags (flags win)."""
    from transformers import HfArgumentParser

    from .training_arguments import TrainingArguments  # imports torch

    argv = list(sys.argv[1:] if argv is None else argv)
    files, rest = split_config_flags(argv)
    settings = merged_settings(files)
    known = {f.name for cls in (ModelArguments, DataArguments, TrainingArguments) for f in fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise SettingsError(f"{', '.join(files)}: unknown training argument(s) {unknown}; "
                            "see python -m llava_medgpt.train --help")
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=as_flags(settings) + rest)
    if training_args.remove_unused_columns:
        raise ValueError("--remove_unused_columns must be False: the Trainer would drop pixel_values")
    return model_args, data_args, training_args


def handle_help(argv: Sequence[str]) -> bool:
    """Print the help if asked (-h / --help: the curriculum's arguments, fast; --help-all: every argument)."""
    if "--help-all" in argv:
        print_full_help()
        return True
    if any(arg in ("-h", "--help") for arg in argv):
        print_help()
        return True
    return False


def print_help(prog: str = "python -m llava_medgpt.train") -> None:
    """The curriculum's arguments, without importing torch or transformers (every argument: --help-all)."""
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [--config FILE ...] [--ARGUMENT VALUE ...]",
        description="Train one stage of the MedGPT-oss curriculum (scripts/stage{0,1,2}_*.sh build the command).",
        epilog="Every transformers.TrainingArguments flag is accepted too (learning_rate, weight_decay,\n"
               "lr_scheduler_type, warmup_steps, num_train_epochs, per_device_train_batch_size, deepspeed, bf16,\n"
               "gradient_checkpointing, save_steps, seed, ...): --help-all lists them (imports torch).")
    parser.add_argument(CONFIG_FLAG, metavar="FILE", action="append",
                        help="a YAML file of these arguments (configs/stage*.yaml); several: later files win; flags "
                             "on the command line win over every file")
    for cls in ARGUMENT_CLASSES_WITHOUT_TORCH:
        group = parser.add_argument_group(cls.__name__)
        for f in fields(cls):
            required = f.default is MISSING and f.default_factory is MISSING
            default = "required" if required else f"default: {f.default}"
            group.add_argument(f"--{f.name}", metavar=f.name.upper(),
                               help=f"{f.metadata.get('help', '')} ({default})".lstrip())
    parser.print_help()


def print_full_help(prog: str = "python -m llava_medgpt.train") -> None:
    from transformers import HfArgumentParser

    from .known_warnings import filter_known_warnings
    from .training_arguments import TrainingArguments

    filter_known_warnings()

    HfArgumentParser((ModelArguments, DataArguments, TrainingArguments), prog=prog).print_help()
