"""Tiny randomly initialised checkpoints, built offline: the embedded default for demos, tests and benchmarks.

Run as: python -m llava_medgpt.model.tiny OUTPUT_DIR [--text-backbone gpt_oss|qwen2|llama] [--vision-backbone clip]
                                                   [--head-dim 32]  (vLLM's CPU attention needs 32, 64, ...)
        python -m llava_medgpt.model.tiny OUTPUT_DIR --parts   (OUTPUT_DIR/language_model + OUTPUT_DIR/vision_tower,
                                                              the start point of stage 0)
"""

import argparse
import tempfile
from pathlib import Path

# torch, transformers and the builder are imported inside the functions: `--help` answers at once.


def create_tiny_language_model(
    path: str | Path, text_backbone: str = "gpt_oss", seed: int = 0, head_dim: int | None = None
) -> Path:
    """A tiny random causal LM folder (config, safetensors, tokenizer), as a hub LM checkpoint would be: its
    tokenizer lacks the image tokens, which the builder adds.

    head_dim: attention head width; None is backbones.TINY_HEAD_DIM (16). vLLM's CPU attention needs 32, 64, ...
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from .backbones import TINY_HEAD_DIM, TINY_TEXT_CONFIGS
    from .tokenizer import build_tiny_tokenizer

    if text_backbone not in TINY_TEXT_CONFIGS:
        raise ValueError(f"Unknown tiny text backbone {text_backbone!r}; known: {sorted(TINY_TEXT_CONFIGS)}")
    tokenizer = build_tiny_tokenizer(text_backbone, with_image_tokens=False)
    config = TINY_TEXT_CONFIGS[text_backbone](len(tokenizer), head_dim=head_dim or TINY_HEAD_DIM)
    # The config states the tokenizer's special tokens, so transformers' Trainer finds nothing to "align" (and
    # warns about) at every stage.
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.bos_token_id = tokenizer.bos_token_id
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        do_sample=False,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)


def create_tiny_vision_tower(path: str | Path, vision_backbone: str = "clip", seed: int = 0) -> Path:
    import torch
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    from .backbones import TINY_VISION_CONFIGS

    if vision_backbone not in TINY_VISION_CONFIGS:
        raise ValueError(f"Unknown tiny vision backbone {vision_backbone!r}; known: {sorted(TINY_VISION_CONFIGS)}")
    config = TINY_VISION_CONFIGS[vision_backbone]()
    torch.manual_seed(seed)
    MODEL_MAPPING[type(config)](config).save_pretrained(path)
    return Path(path)


def create_tiny_parts(
    path: str | Path, text_backbone: str = "gpt_oss", vision_backbone: str = "clip", seed: int = 0,
    head_dim: int | None = None,
) -> tuple[Path, Path]:
    """Write path/language_model and path/vision_tower: what stage 0 starts from (as a hub LM and a hub CLIP)."""
    path = Path(path)
    return (
        create_tiny_language_model(path / "language_model", text_backbone, seed, head_dim),
        create_tiny_vision_tower(path / "vision_tower", vision_backbone, seed),
    )


def create_tiny_checkpoint(
    path: str | Path, text_backbone: str = "gpt_oss", vision_backbone: str = "clip", seed: int = 0,
    head_dim: int | None = None,
) -> Path:
    """Write a complete tiny MedGPT checkpoint folder: config, safetensors weights, tokenizer and processor.

    It is assembled by the same builder that starts stage 0 from separately pretrained parts.
    """
    import torch

    from .builder import build_from_parts
    from .card import write_model_card

    path = Path(path)
    with tempfile.TemporaryDirectory() as parts:
        language_model, vision_tower = create_tiny_parts(parts, text_backbone, vision_backbone, seed, head_dim)
        torch.manual_seed(seed)
        model, processor = build_from_parts(str(language_model), str(vision_tower))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    write_model_card(path, model.config, processor)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir")
    # Names are checked by the create_* functions (llava_medgpt.model.backbones.TINY_*_CONFIGS), not by argparse,
    # so that --help does not import transformers.
    parser.add_argument("--text-backbone", default="gpt_oss", help="a key of TINY_TEXT_CONFIGS (model/backbones.py)")
    parser.add_argument("--vision-backbone", default="clip", help="a key of TINY_VISION_CONFIGS (model/backbones.py)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--head-dim", type=int, help="attention head width of the language model (default 16; "
                        "vLLM's CPU attention needs 32, 64, ...)")
    parser.add_argument("--parts", action="store_true", help="write the separate language model and vision tower")
    args = parser.parse_args()
    if args.parts:
        for part in create_tiny_parts(args.output_dir, args.text_backbone, args.vision_backbone, args.seed,
                                      args.head_dim):
            print(part)
    else:
        print(create_tiny_checkpoint(args.output_dir, args.text_backbone, args.vision_backbone, args.seed,
                                     args.head_dim))


if __name__ == "__main__":
    main()
