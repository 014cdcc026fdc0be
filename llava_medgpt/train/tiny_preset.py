"""The start point of the tiny curriculum (PRESET=tiny): a tiny language model, a tiny vision tower, the demo data.

Run as: python -m llava_medgpt.train.tiny_preset OUTPUT_ROOT/tiny_assets   (scripts/_launch.sh does this once)

    language_model/   a tiny GPT-oss (head_dim HEAD_DIM), pretrained here on the demo's lm_corpus.txt written as
                      harmony assistant replies (next-token prediction)
    vision_tower/     a tiny random CLIP vision tower
    demo_data/        llava_medgpt.data.demo: stage 0-2 records, lm_corpus.txt, benchmarks/
    COMPLETE          written last

A randomly initialised language model cannot stand in for GPT-oss in stage 0: the LLM is frozen there, and a
random one has near-uniform output logits (its lm_head is too small to move them), so no projector can lower the
caption loss. Real stage 0 starts from a model that already knows the language and learns which words belong to
which image; the tiny one is first fit to the demo's image descriptions for the same reason.
"""

import argparse
import json
import random
from pathlib import Path

import torch

from ..constants import HARMONY_CHANNEL, HARMONY_MESSAGE, HARMONY_RETURN, HARMONY_START

# vLLM's CPU attention takes head sizes 32, 64, 80, ... and refuses the tiny default (16): with 32 every stage output
# of the tiny curriculum serves as it is (scripts/serve.sh), like the real model's (64).
HEAD_DIM = 32
PRETRAIN_STEPS = 200
PRETRAIN_LR = 3e-3
PRETRAIN_BATCH = 8


def pretrain_language_model(folder: Path, texts: list[str], steps: int = PRETRAIN_STEPS, lr: float = PRETRAIN_LR,
                            batch_size: int = PRETRAIN_BATCH, seed: int = 0) -> list[float]:
    """Fit the causal LM in `folder` to `texts` (each text <bos> ... <eos>) and save it in place; returns the losses."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    encoded = []
    for text in texts:
        ids = prefix + tokenizer(text, add_special_tokens=False)["input_ids"]
        encoded.append(torch.tensor(ids if ids[-1] == tokenizer.eos_token_id else ids + [tokenizer.eos_token_id]))
    torch.manual_seed(seed)
    order = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        batch = order.sample(encoded, min(batch_size, len(encoded)))
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)  # [B, T]
        labels = torch.full((len(batch), width), -100)  # [B, T]
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)  # [B, T]
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)], labels[row, : len(ids)], attention_mask[row, : len(ids)] = ids, ids, 1
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.save_pretrained(folder)
    return losses


def as_assistant_replies(texts: list[str]) -> list[str]:
    """Each text as the final-channel assistant message of a harmony chat: GPT-oss writes its replies in this
    format, and stage 0's captions are such replies."""
    return [f"{HARMONY_START}assistant{HARMONY_CHANNEL}final{HARMONY_MESSAGE}{text}{HARMONY_RETURN}" for text in texts]


def prepare_tiny_assets(output: str | Path, seed: int = 0) -> dict:
    """Write the tiny curriculum's start point into `output` (see the module docstring); returns a summary."""
    from ..data.demo import build_demo_dataset
    from ..model.tiny import create_tiny_parts

    output = Path(output)
    (output / "COMPLETE").unlink(missing_ok=True)
    counts = build_demo_dataset(output / "demo_data")
    language_model, _ = create_tiny_parts(output, "gpt_oss", seed=seed, head_dim=HEAD_DIM)
    corpus = (output / "demo_data" / "lm_corpus.txt").read_text(encoding="utf-8").splitlines()
    losses = pretrain_language_model(language_model, as_assistant_replies(corpus), seed=seed)
    summary = {"demo_data": counts, "language_model_pretraining": {
        "texts": len(corpus), "steps": len(losses), "first_loss": losses[0], "last_loss": losses[-1]}}
    (output / "COMPLETE").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="folder to write (OUTPUT_ROOT/tiny_assets)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = prepare_tiny_assets(args.output, args.seed)
    pretraining = summary["language_model_pretraining"]
    print(f"tiny assets in {args.output}: language model pretrained on {pretraining['texts']} demo texts "
          f"(loss {pretraining['first_loss']:.2f} -> {pretraining['last_loss']:.2f} in {pretraining['steps']} steps)")


if __name__ == "__main__":
    main()
