"""LoRA adapters on the language model (peft), and the merge that hands plain weights to the next stage.

The stage output is always a plain MedGPT checkpoint: adapters are merged into their base weights before saving.
Under ZeRO-3 each rank holds only a slice of every weight, so the merge goes one adapted layer at a time inside
`deepspeed.zero.GatheredParameters`: that layer's base weight and adapters are gathered, merged, and rank 0's
result is partitioned back. The extra memory is one layer's weight, never the whole model.
"""

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

from .training_arguments import TrainingArguments


def add_lora(model, args: TrainingArguments):
    """Wrap model.language_model with LoRA adapters on `args.lora_target_modules`; returns the model."""
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        bias=args.lora_bias,
        target_modules=[name.strip() for name in args.lora_target_modules.split(",") if name.strip()],
    )
    # Seeded on its own: the adapters' initial values must not depend on how much randomness loading the model
    # used (ZeRO-3's partitioned init uses some), so a run gives the same adapters under ZeRO-2 and ZeRO-3.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model.language_model = get_peft_model(model.language_model, config)
    return model


def merge_lora(model) -> None:
    """Merge the language model's adapters into its weights and drop the peft wrapper, in place (no-op without)."""
    peft_model = model.language_model
    if not hasattr(peft_model, "merge_and_unload"):
        return
    if is_deepspeed_zero3_enabled():
        import deepspeed

        for layer in peft_model.modules():
            if isinstance(layer, BaseTunerLayer):
                with deepspeed.zero.GatheredParameters(list(layer.parameters()), modifier_rank=0):
                    layer.merge()
        model.language_model = peft_model.unload()  # the layers already hold the merged weights
    else:
        model.language_model = peft_model.merge_and_unload()
