"""Worker of tests/test_model_dequantize.py: stage 0's builder under a live ZeRO-3 config on CPU ranks.

Run as: torchrun --nproc_per_node 2 tests/builder_zero3_worker.py BF16_LM MXFP4_LM VISION_DIR OUTPUT_JSON
Rank 0 writes, per rank: how many language-model parameters were partitioned as they loaded, whether the image
token rows hold the mean of the original rows, and the error the MXFP4 folder raised.
"""

import json
import sys

import deepspeed
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from transformers.integrations import HfDeepSpeedConfig

from llava_medgpt.constants import IMAGE_SPECIAL_TOKENS
from llava_medgpt.model.builder import build_from_parts
from llava_medgpt.model.tiny import create_tiny_vision_tower


def main(bf16_lm: str, mxfp4_lm: str, vision_dir: str, out_path: str) -> None:
    deepspeed.init_distributed(dist_backend="gloo")
    rank = dist.get_rank()
    if rank == 0:
        create_tiny_vision_tower(vision_dir, "clip")
    dist.barrier()
    ds_config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
                 "zero_optimization": {"stage": 3}}
    live = HfDeepSpeedConfig(ds_config)  # noqa: F841  (transformers loads under zero.Init while it lives)

    model, processor = build_from_parts(bf16_lm, vision_dir)
    lm_params = list(model.language_model.parameters())
    partitioned = sum(hasattr(p, "ds_id") and p.numel() == 0 for p in lm_params)

    with open(f"{bf16_lm}/model.safetensors.index.json") as f:
        embedding_file = json.load(f)["weight_map"]["model.embed_tokens.weight"]
    mean = load_file(f"{bf16_lm}/{embedding_file}")["model.embed_tokens.weight"].float().mean(dim=0)
    image_ids = processor.tokenizer.convert_tokens_to_ids(list(IMAGE_SPECIAL_TOKENS))
    weight = model.get_input_embeddings().weight
    with deepspeed.zero.GatheredParameters([weight]):
        rows = weight[image_ids].float()
        at_mean = bool(torch.allclose(rows, mean.expand_as(rows), rtol=1e-2, atol=1e-3) and mean.norm() > 0)

    refusal = ""
    try:
        build_from_parts(mxfp4_lm, vision_dir)
    except ValueError as error:
        refusal = str(error)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, {"rank": rank, "partitioned": partitioned, "total": len(lm_params),
                                      "image_rows_at_mean": at_mean, "mxfp4_refusal": refusal})
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump({"ranks": gathered}, f)
    # Every rank waits for rank 0's file before any closes its connections; a rank leaving early can make a
    # busy peer's gloo threads abort it at exit (SIGABRT once in CI after the result was written).
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:5])
