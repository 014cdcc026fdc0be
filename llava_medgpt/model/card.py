"""Model cards: the README.md every checkpoint folder carries (stage outputs, tiny checkpoints, exports).

    write_model_card(folder, model.config, processor, training=TrainingRecord.from_args(...))

A card states the architecture (from the saved config), how the checkpoint was made (stage, data recipe, settings),
how to load and use it, the intended use and the licence terms of the MedGPT-oss repository (research only).
It is written atomically (temporary file, fsync, rename) after the weights, so a folder with a card is complete.
"""

import os
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

LICENCE_TERMS = (
    "The data, code, and model checkpoints are intended and licensed for research use only. They are also subject "
    "to additional restrictions dictated by the Terms of Use: GPT-oss respectively. The data is made available "
    "under CC BY NC 4.0. The data, code, and model checkpoints may be used for non-commercial purposes and any "
    "models trained using the dataset should be used only for research purposes. It is expressly prohibited for "
    "models trained on this data to be used in clinical care or for any clinical decision making purposes."
)  # the MedGPT-oss repository's "Usage and License Notices", verbatim

# The curriculum's stages (paper, section 3.4), by the `stage:` key of a data recipe.
STAGE_NAMES = {0: "image-caption alignment", 1: "long-context mid-training", 2: "mixed instruction tuning"}

# Training arguments a card reports (TrainingArguments / ModelArguments field names).
CARD_SETTINGS = (
    "learning_rate", "mm_projector_lr", "mm_vision_tower_lr", "num_train_epochs", "max_steps",
    "per_device_train_batch_size", "gradient_accumulation_steps", "model_max_length", "lr_scheduler_type",
    "warmup_ratio", "weight_decay", "bf16", "gradient_checkpointing", "deepspeed", "seed", "lora_enable",
)


@dataclass(frozen=True)
class TrainingRecord:
    """How a stage output was trained."""

    start_from: str  # model_name_or_path (+ vision tower for stage 0)
    data_recipe: str | None = None  # path of the recipe YAML
    recipe_text: str | None = None  # its contents (the data mixture)
    mm_tunable_parts: str | None = None
    settings: dict = field(default_factory=dict)
    global_step: int | None = None
    world_size: int | None = None
    stage: int | None = None  # the recipe's `stage:`

    @classmethod
    def from_args(cls, model_args, data_args, training_args, global_step: int | None = None) -> "TrainingRecord":
        start = model_args.model_name_or_path
        if getattr(model_args, "vision_tower", None):
            start += f" + vision tower {model_args.vision_tower}"
        recipe_text = None
        if data_args.data_path and os.path.isfile(data_args.data_path):
            recipe_text = Path(data_args.data_path).read_text(encoding="utf-8")
        settings = {name: _plain(getattr(training_args, name)) for name in CARD_SETTINGS if hasattr(training_args, name)}
        stage = None
        if recipe_text is not None:
            import yaml

            recipe = yaml.safe_load(recipe_text)
            stage = recipe.get("stage") if isinstance(recipe, dict) else None
        return cls(start, data_args.data_path, recipe_text, model_args.mm_tunable_parts, settings, global_step,
                   getattr(training_args, "world_size", None), stage)


def _plain(value):
    return value.value if isinstance(value, Enum) else value  # e.g. SchedulerType.LINEAR -> "linear"


def _count(config) -> str:
    text = config.text_config
    parts = [f"{text.model_type}: {text.num_hidden_layers} layers, hidden {text.hidden_size}, "
             f"vocab {text.vocab_size}"]
    if getattr(text, "num_local_experts", None):
        parts.append(f"{text.num_local_experts} experts, top-{text.num_experts_per_tok}")
    return ", ".join(parts)


def render_model_card(config, processor, training: TrainingRecord | None = None,
                      exported_from: str | Path | None = None) -> str:
    vision, text = config.vision_config, config.text_config
    image_processor = processor.image_processor
    shuffled = vision.hidden_size * int(round(1 / config.downsample_ratio)) ** 2
    if exported_from is not None:
        title = "MedGPT-oss checkpoint, exported to transformers InternVL"
    elif training is not None and training.stage in STAGE_NAMES:
        title = f"MedGPT-oss stage {training.stage} output ({STAGE_NAMES[training.stage]})"
    elif training is not None:
        title = "MedGPT-oss stage output"
    else:
        title = "MedGPT-oss checkpoint (untrained: random or assembled from parts)"
    lines = [
        "---",
        "license: other",
        "license_name: research-only (MedGPT-oss repository terms, CC BY-NC 4.0 data)",
        "pipeline_tag: image-text-to-text",
        "library_name: transformers",
        "tags: [medical, vision-language, gpt-oss, llava_medgpt]",
        "---",
        f"# {title}",
        "",
        "## Architecture",
        f"- Vision tower: {vision.model_type} ({vision.num_hidden_layers} layers, hidden {vision.hidden_size}, "
        f"{vision.image_size}-px input, {vision.patch_size}-px patches), features from layer "
        f"{config.vision_feature_layer} ({config.vision_feature_select_strategy} token selection).",
        f"- Projector: pixel shuffle {config.downsample_ratio} -> LayerNorm({shuffled}) -> Linear({shuffled}, "
        f"{text.hidden_size}) -> {config.projector_hidden_act.upper()} -> Linear({text.hidden_size}, "
        f"{text.hidden_size}); {config.tokens_per_tile} tokens per tile.",
        f"- Language model: {_count(config)}.",
        f"- Images: up to {image_processor.max_tiles} tiles of {image_processor.tile_size} px plus a thumbnail "
        f"per image, {image_processor.max_tiles_per_sample} tiles per sample at most.",
    ]
    if exported_from is None:
        lines.append(f"- Conversation template: {processor.conversation_template} "
                     f"(options {processor.template_options or 'default'}); `chat_template.jinja` renders it.")
    lines.append("")
    if training is not None:
        lines += ["## Training", f"- Started from: {training.start_from}",
                  f"- Trained parts (mm_tunable_parts): {training.mm_tunable_parts}",
                  f"- Optimizer steps: {training.global_step}, ranks: {training.world_size}"]
        lines += [f"- {name}: {value}" for name, value in training.settings.items()]
        lines.append(f"- Data recipe: {training.data_recipe}")
        if training.recipe_text:
            lines += ["", "```yaml", training.recipe_text.rstrip(), "```"]
        lines.append("")
    lines.append("## Use")
    if exported_from is not None:
        lines += [
            f"Exported from `{exported_from}` by `llava-medgpt-export --to transformers-internvl`. Stock "
            "transformers loads it without llava_medgpt:",
            "",
            "```python",
            "from transformers import AutoModelForImageTextToText, AutoProcessor",
            "model = AutoModelForImageTextToText.from_pretrained(path)  # InternVLForConditionalGeneration",
            "processor = AutoProcessor.from_pretrained(path)",
            "```",
            "Limits of the export (tile budget across several images, resampling) are in llava_medgpt's "
            "docs/inference.md.",
        ]
    else:
        lines += [
            "Needs the `llava_medgpt` package: `import llava_medgpt` registers the model with transformers' Auto "
            "classes (without it transformers reports an unknown model type `llava_medgpt`).",
            "",
            "```bash",
            "llava-medgpt-chat --model PATH --image scan.dcm        # terminal chat, streaming",
            "llava-medgpt-demo --model PATH                         # web demo on 127.0.0.1",
            "llava-medgpt-export --to transformers-internvl PATH OUT  # a stock-transformers copy",
            "```",
            "```python",
            "import llava_medgpt",
            "from transformers import AutoModelForImageTextToText, AutoProcessor",
            "model = AutoModelForImageTextToText.from_pretrained(path)",
            "processor = AutoProcessor.from_pretrained(path)",
            "```",
        ]
    lines += [
        "",
        "## Intended use",
        "Research on medical vision-language modelling only. Not a medical device; not validated for, and not to "
        "be used in, clinical care or clinical decision making.",
        "",
        "## Licence",
        LICENCE_TERMS,
        "",
    ]
    return "\n".join(lines)


def write_model_card(folder: str | Path, config, processor, training: TrainingRecord | None = None,
                     exported_from: str | Path | None = None) -> Path:
    folder = Path(folder)
    path = folder / "README.md"
    text = render_model_card(config, processor, training, exported_from)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".README.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


__all__ = ["LICENCE_TERMS", "TrainingRecord", "render_model_card", "write_model_card"]
