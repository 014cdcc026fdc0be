"""Worker of tests/test_model_loss.py: the chunked loss under DeepSpeed ZeRO-3 on CPU ranks vs transformers' loss.

Run as: torchrun --nproc_per_node 2 tests/loss_zero3_worker.py OUTPUT_JSON
Every parameter is partitioned (persistence threshold 0), so the head is a shard outside its module's forward and
the loss must gather it. The ranks hold batches of different lengths, hence different numbers of loss tiles: a
gather per tile would leave the ranks' collectives out of step. Rank 0 writes each rank's losses and the largest
relative difference of every full (reduced) gradient between the two loss implementations.
"""

import json
import sys

import deepspeed
import torch
import torch.distributed as dist
from deepspeed.utils import safe_get_full_grad

from llava_medgpt.model import MedGptConfig, MedGptForConditionalGeneration
from llava_medgpt.model.backbones import TINY_TEXT_CONFIGS, TINY_VISION_CONFIGS

VOCAB = 640
LENGTHS = {0: 30, 1: 75}  # tokens per rank


def main(out_path: str) -> None:
    deepspeed.init_distributed(dist_backend="gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    text_config = TINY_TEXT_CONFIGS["gpt_oss"](VOCAB)
    text_config._attn_implementation = "eager"
    config = MedGptConfig(vision_config=TINY_VISION_CONFIGS["clip"](), text_config=text_config, image_token_id=5,
                          loss_implementation="chunked", loss_token_chunk=7, loss_vocab_block=200)
    model = MedGptForConditionalGeneration(config)
    ds_config = {
        "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "zero_allow_untested_optimizer": True,
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    }
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                                      config=ds_config)
    head = model.get_output_embeddings().weight
    head_partitioned = hasattr(head, "ds_id") and head.numel() == 0

    generator = torch.Generator().manual_seed(100 + rank)
    input_ids = torch.randint(10, VOCAB, (1, LENGTHS[rank]), generator=generator)
    labels = input_ids.clone()
    labels[0, :5] = -100
    losses, grads = {}, {}
    for implementation in ("chunked", "full"):
        model.config.loss_implementation = implementation
        out = engine(input_ids=input_ids, labels=labels)
        engine.backward(out.loss)
        losses[implementation] = out.loss.item()
        grads[implementation] = {n: safe_get_full_grad(p).clone() for n, p in model.named_parameters()}
        engine.step()  # lr 0: clears the gradients, leaves the weights

    worst = {n: ((grads["chunked"][n] - g).abs().max() / g.abs().max().clamp_min(1e-30)).item()
             for n, g in grads["full"].items() if g.abs().max() > 1e-9}
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, {"rank": rank, "losses": losses, "head_partitioned": head_partitioned})
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump({"ranks": gathered, "worst_relative_grad_difference": worst}, f)
    # Every rank waits for rank 0's file before any closes its connections; a rank leaving early can make a
    # busy peer's gloo threads abort it at exit (SIGABRT once in CI after the result was written).
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
