"""Command-line arguments of `python -m llava_medgpt.train`, in LLaVA-OneVision's three dataclasses.

Names follow LLaVA-OneVision where it has one (model_name_or_path, vision_tower, version, mm_tunable_parts,
mm_projector_lr, mm_vision_tower_lr, data_path, image_folder, model_max_length, group_by_modality_length,
lora_*); everything else of `transformers.TrainingArguments` (learning_rate, weight_decay, lr_scheduler_type,
warmup_ratio, deepspeed, bf16, gradient_checkpointing, ...) is accepted unchanged.
"""

from dataclasses import dataclass, field

import transformers

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
class TrainingArguments(transformers.TrainingArguments):
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
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Train even if output_dir already holds a complete stage output."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the model's forward takes pixel_values through **kwargs."}
    )


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    parser = transformers.HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if training_args.remove_unused_columns:
        raise ValueError("--remove_unused_columns must be False: the Trainer would drop pixel_values")
    return model_args, data_args, training_args
