"""Baseline checkpoints through their own chat templates: a tiny random Gemma 3 (image-text-to-text, PIL
image processor) and a tiny causal LM (text tasks only). Qwen2.5-VL and LLaVA-OneVision processors need
torchvision for their video processors in transformers 5.23 and cannot be built here (docs/evaluation.md)."""

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from llava_medgpt.eval.models import load_chat_model, split_image_markers
from llava_medgpt.eval.prompts import build_images, build_messages
from llava_medgpt.eval.runner import main
from llava_medgpt.eval.tasks import load_task
from llava_medgpt.model.tokenizer import build_tiny_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
# Gemma 3's turn format, image parts as <start_of_image> (the processor expands them).
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<start_of_image>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
GEMMA_SPECIAL = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
TOKENS_PER_IMAGE = 4


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gemma3")
    base = build_tiny_tokenizer("llama", with_image_tokens=False)
    base.add_special_tokens({"additional_special_tokens": GEMMA_SPECIAL})
    base.save_pretrained(root / "tok")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(root / "tok", extra_special_tokens={
        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in GEMMA_SPECIAL}
    config = Gemma3Config(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=64,
                         max_position_embeddings=2048),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=56, patch_size=14),
        mm_tokens_per_image=TOKENS_PER_IMAGE, boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"], image_token_index=ids["<image_soft_token>"],
        eos_token_id=ids["<end_of_turn>"], pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    Gemma3ForConditionalGeneration(config).save_pretrained(root / "ckpt")
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessorPil(size={"height": 56, "width": 56}),
                                tokenizer=tokenizer, chat_template=GEMMA_TEMPLATE, image_seq_length=TOKENS_PER_IMAGE)
    processor.save_pretrained(root / "ckpt")
    return root / "ckpt"


@pytest.fixture(scope="module")
def tiny_causal_lm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("causal") / "ckpt"
    tokenizer = build_tiny_tokenizer("qwen2", with_image_tokens=False)  # ChatML template
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_split_image_markers():
    assert split_image_markers("<image>\n<image>\nCompare.") == [{"type": "image"}, {"type": "image"},
                                                                {"type": "text", "text": "Compare."}]
    assert split_image_markers("No image.") == [{"type": "text", "text": "No image."}]


def test_gemma3_prompt_goes_through_its_template_and_processor(tiny_gemma3):
    chat = load_chat_model(str(tiny_gemma3))
    assert chat.model_type == "gemma3" and chat.multimodal and not chat.harmony
    task = load_task("medframeqa", FIXTURES)
    item = task.items[1]  # three frames
    prompt = chat.adapter.render(chat, build_messages(item, task.config), {})
    assert prompt.startswith(chat.tokenizer.bos_token + "<start_of_turn>user\n<start_of_image><start_of_image>")
    assert prompt.endswith("<end_of_turn>\n<start_of_turn>model\n")
    other = task.items[0]  # two frames
    inputs = chat.adapter.encode(chat, [prompt, chat.adapter.render(chat, build_messages(other, task.config), {})],
                                 [build_images(item), build_images(other)])
    image_token = chat.tokenizer.convert_tokens_to_ids("<image_soft_token>")
    per_sample = (inputs["input_ids"] == image_token).sum(dim=1).tolist()
    assert per_sample == [3 * TOKENS_PER_IMAGE, 2 * TOKENS_PER_IMAGE]
    assert inputs["pixel_values"].shape[0] == 5
    assert (inputs["attention_mask"][:, -1] == 1).all()  # left padding


def test_gemma3_and_causal_lm_through_the_runner(tiny_gemma3, tiny_causal_lm, tmp_path):
    gemma = main(["--model", str(tiny_gemma3), "--tasks", "slake,medframeqa,medqa", "--data-dir", str(FIXTURES),
                  "--output", str(tmp_path / "g"), "--max-new-tokens", "3", "--no-progress"])
    assert {n: t["scores"]["n"] for n, t in gemma["tasks"].items()} == {"slake": 3, "medframeqa": 3, "medqa": 3}
    text = main(["--model", str(tiny_causal_lm), "--tasks", "medqa,pubmedqa,slake", "--data-dir", str(FIXTURES),
                 "--output", str(tmp_path / "t"), "--max-new-tokens", "3", "--no-progress"])
    assert text["model_type"] == "qwen2"
    assert sorted(text["tasks"]) == ["medqa", "pubmedqa"]
    assert text["not_run"] == {"slake": "ckpt is a text-only model and this task has images"}
    lines = (tmp_path / "t/predictions/pubmedqa.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == ["1000", "1001", "1002"]
    assert "| SLAKE | not run |" in (tmp_path / "t/tables.md").read_text()
