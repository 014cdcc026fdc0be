"""Worker of tests/test_train_deepspeed.py: one AdamW step of a tiny MedGPT under DeepSpeed ZeRO-3 on CPU ranks.

Run as: torchrun --nproc_per_node 2 tests/train_lr_worker.py OUTPUT_JSON
Writes, from rank 0: the learning rate of every param group inside the DeepSpeed optimizer, the module each
group's parameters belong to, the largest per-module parameter change after the step, and the ZeRO-3 leaf flags.
"""

import json
import sys

import torch

from llava_medgpt.model import MedGptConfig, MedGptForConditionalGeneration
from llava_medgpt.model.backbones import TINY_TEXT_CONFIGS, TINY_VISION_CONFIGS
from llava_medgpt.train.train import _prepare_cpu_deepspeed
from llava_medgpt.train.training_arguments import TrainingArguments
from llava_medgpt.train.trainer import MedGptTrainer

LRS = {"language_model": 1e-3, "multi_modal_projector": 3e-3, "vision_tower": 3e-4}
IMAGE_TOKEN_ID = 5


class Synthetic(torch.utils.data.Dataset):
    """8 samples: 144 image placeholders (one tile) followed by 16 text tokens, all supervised."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        text = torch.randint(10, 600, (16,), generator=g)
        ids = torch.cat([torch.full((144,), IMAGE_TOKEN_ID), text])
        labels = torch.cat([torch.full((144,), -100), text])
        pixels = torch.randn(1, 3, 336, 336, generator=g)
        return {"input_ids": ids, "labels": labels, "pixel_values": pixels}


def collate(items):
    return {
        "input_ids": torch.stack([x["input_ids"] for x in items]),
        "labels": torch.stack([x["labels"] for x in items]),
        "pixel_values": torch.cat([x["pixel_values"] for x in items]),
    }


def main(out_path: str) -> None:
    argv = _prepare_cpu_deepspeed(["--deepspeed", "scripts/deepspeed/zero3.json"])
    use_configured_state = "--accelerator_config" in argv
    args = TrainingArguments(
        output_dir=out_path + ".run", deepspeed="scripts/deepspeed/zero3.json", per_device_train_batch_size=2,
        learning_rate=LRS["language_model"], mm_projector_lr=LRS["multi_modal_projector"],
        mm_vision_tower_lr=LRS["vision_tower"], weight_decay=0.0, lr_scheduler_type="constant", max_steps=1,
        save_strategy="no", report_to=[], logging_steps=1, disable_tqdm=True, seed=0,
        accelerator_config={"use_configured_state": True} if use_configured_state else None,
    )
    torch.manual_seed(0)
    config = MedGptConfig(vision_config=TINY_VISION_CONFIGS["clip"](), text_config=TINY_TEXT_CONFIGS["gpt_oss"](640),
                          image_token_id=IMAGE_TOKEN_ID)
    config.text_config._attn_implementation = "eager"
    # Built after TrainingArguments: under ZeRO-3 the parameters are partitioned as they are created.
    model = MedGptForConditionalGeneration(config)
    trainer = MedGptTrainer(model=model, args=args, train_dataset=Synthetic(), data_collator=collate,
                            tunable_parts=("mm_vision_tower", "mm_mlp_adapter", "mm_language_model"))

    import deepspeed
    from deepspeed.utils import z3_leaf_module

    params = list(model.parameters())
    with deepspeed.zero.GatheredParameters(params):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    with deepspeed.zero.GatheredParameters(params):
        after = {n: p.detach().clone() for n, p in model.named_parameters()}

    engine_optimizer = trainer.model_wrapped.optimizer  # DeepSpeedZeroOptimizer_Stage3
    module_of = {id(p): n.split(".")[0] for n, p in model.named_parameters()}
    groups = []
    # fp16_groups[i] holds the model parameters of the wrapped torch optimizer's param group i.
    for inner_group, model_params in zip(engine_optimizer.optimizer.param_groups, engine_optimizer.fp16_groups):
        groups.append({"name": inner_group.get("name"), "lr": inner_group["lr"],
                       "modules": sorted({module_of[id(p)] for p in model_params})})
    max_change = {}
    for name in before:
        module = name.split(".")[0]
        max_change[module] = max(max_change.get(module, 0.0), (after[name] - before[name]).abs().max().item())
    leaves = sorted({type(m).__name__ for m in model.modules() if z3_leaf_module(m)})
    if trainer.args.process_index == 0:
        with open(out_path, "w") as f:
            json.dump({"optimizer_class": type(engine_optimizer).__name__, "groups": groups,
                       "max_change": max_change, "leaf_modules": leaves, "world_size": trainer.args.world_size}, f)
    # Every rank waits for rank 0's file before any closes its connections; a rank leaving early can make a
    # busy peer's gloo threads abort it at exit (SIGABRT once in CI after the result was written).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
