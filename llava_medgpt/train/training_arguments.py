"""`TrainingArguments`: transformers' class plus the curriculum's fields (arguments.CurriculumTrainingFields).

Kept apart from arguments.py because importing transformers.TrainingArguments imports torch; `--help` does not
need it.
"""

import os
from dataclasses import dataclass

import transformers

from .arguments import CurriculumTrainingFields


@dataclass
class TrainingArguments(CurriculumTrainingFields, transformers.TrainingArguments):
    def __post_init__(self):
        if self.save_total_limit:
            raise ValueError("Use --keep_checkpoints N instead of --save_total_limit: the Trainer's rotation runs "
                             "before a checkpoint is marked complete and could leave none to resume from")
        # The two derived settings are written into transformers' own fields before it checks them.
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio < 1:
                raise ValueError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
            if self.warmup_steps:
                raise ValueError("Give --warmup_ratio or --warmup_steps, not both")
            self.warmup_steps = self.warmup_ratio
        if self.global_batch_size is not None:
            self.gradient_accumulation_steps = gradient_accumulation_for(
                self.global_batch_size, self.per_device_train_batch_size, int(os.environ.get("WORLD_SIZE", "1"))
            )
        super().__post_init__()


def gradient_accumulation_for(global_batch_size: int, per_device: int, world_size: int) -> int:
    """Steps to accumulate so that per_device x world_size x steps == global_batch_size."""
    per_step = per_device * world_size
    if global_batch_size < per_step or global_batch_size % per_step:
        raise ValueError(f"--global_batch_size {global_batch_size} is not a multiple of per_device_train_batch_size "
                         f"{per_device} x {world_size} processes")
    return global_batch_size // per_step


__all__ = ["TrainingArguments", "gradient_accumulation_for"]
