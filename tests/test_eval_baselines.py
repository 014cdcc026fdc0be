"""Baseline checkpoints through their own chat templates, on tiny random checkpoints built offline: Gemma 3
(MedGemma), Qwen2.5-VL (Lingshu) and LLaVA-OneVision (image-text-to-text, processors loaded image-only with
PIL image processors: their video processors need torchvision) and a causal LM (text tasks only)."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2VLImageProcessorPil,
)

from llava_medgpt.inference.models import load_chat_model, split_image_markers
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

# Qwen2.5-VL's ChatML turns, image parts as <|vision_start|><|image_pad|><|vision_end|> (one pad, expanded).
QWEN_VL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_VL_SPECIAL = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
# LLaVA-OneVision's (llava-onevision-qwen2-*-hf) layout: all images of a turn first, then "\n" + each text.
LLAVA_OV_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}<image>{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\\n' + part['text'] }}"
    "{% endfor %}"
    "{% endif %}<|im_end|>{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
OV_TILE = 56  # SigLIP image_size: one 56-px tile -> (56 / 14)^2 = 16 features
OV_FEATURES_PER_TILE = 16
OV_PINPOINTS = [[56, 56], [56, 112], [112, 56], [112, 112]]
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "max_position_embeddings": 2048}


def _tiny_vlm_tokenizer(root: Path, special: list[str], template: str):
    """The offline ChatML tokenizer plus a VLM's vision tokens, saved where the checkpoint's processor finds it."""
    tokenizer = build_tiny_tokenizer("qwen2", with_image_tokens=False)
    tokenizer.add_special_tokens({"additional_special_tokens": special})
    tokenizer.chat_template = template  # saved as chat_template.jinja, which the processor loads
    tokenizer.save_pretrained(root)
    return tokenizer, {t: tokenizer.convert_tokens_to_ids(t) for t in special}


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
        text_config={"vocab_size": len(tokenizer), **TINY_TEXT, "head_dim": 16, "sliding_window": 64},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 56, "patch_size": 14},
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


@pytest.fixture(scope="module")
def tiny_qwen2_5_vl(tmp_path_factory) -> Path:
    """Laid out as a hub Qwen2.5-VL folder (config, weights, preprocessor_config.json, tokenizer, chat template)."""
    root = tmp_path_factory.mktemp("qwen2_5_vl")
    tokenizer, ids = _tiny_vlm_tokenizer(root, QWEN_VL_SPECIAL, QWEN_VL_TEMPLATE)
    special = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id, "bos_token_id": None}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), **TINY_TEXT, **special,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}),
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
                       "fullatt_block_indexes": [0], "window_size": 56},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"], **special)
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(root)
    # 56x56 .. 112x112 pixels: 2x2 .. 4x4 merged 28-px cells per image.
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def tiny_llava_onevision(tmp_path_factory) -> Path:
    """Laid out as a hub LLaVA-OneVision folder, with processor_config.json as the -hf checkpoints ship it."""
    root = tmp_path_factory.mktemp("llava_onevision")
    tokenizer, ids = _tiny_vlm_tokenizer(root, ["<image>", "<video>"], LLAVA_OV_TEMPLATE)
    special = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id, "bos_token_id": None}
    config = LlavaOnevisionConfig(
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), **TINY_TEXT, **special),
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": OV_TILE, "patch_size": 14,
                       "vision_use_head": False},
        image_token_index=ids["<image>"], video_token_index=ids["<video>"], vision_feature_select_strategy="full",
        image_grid_pinpoints=OV_PINPOINTS, vision_aspect_ratio="anyres_max_9", **special)
    torch.manual_seed(0)
    LlavaOnevisionForConditionalGeneration(config).save_pretrained(root)
    LlavaOnevisionImageProcessorPil(size={"height": OV_TILE, "width": OV_TILE},
                                    image_grid_pinpoints=OV_PINPOINTS).save_pretrained(root)
    (root / "processor_config.json").write_text(json.dumps({
        "processor_class": "LlavaOnevisionProcessor", "image_token": "<image>", "video_token": "<video>",
        "num_image_tokens": OV_FEATURES_PER_TILE, "vision_feature_select_strategy": "full",
        "vision_aspect_ratio": "anyres_max_9"}))
    return root


def test_split_image_markers():
    assert split_image_markers("<image>\n<image>\nCompare.") == [{"type": "image"}, {"type": "image"},
                                                                {"type": "text", "text": "Compare."}]
    assert split_image_markers("No image.") == [{"type": "text", "text": "No image."}]


def test_gemma3_prompt_goes_through_its_template_and_processor(tiny_gemma3):
    chat = load_chat_model(str(tiny_gemma3))
    assert chat.model_type == "gemma3" and chat.multimodal and not chat.harmony
    assert type(chat.processor) is Gemma3Processor  # no video processor to drop: the class itself
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
    assert {n: t["scores"]["n"] for n, t in gemma["tasks"].items()} == {"slake": 5, "medframeqa": 3, "medqa": 3}
    text = main(["--model", str(tiny_causal_lm), "--tasks", "medqa,pubmedqa,slake", "--data-dir", str(FIXTURES),
                 "--output", str(tmp_path / "t"), "--max-new-tokens", "3", "--no-progress"])
    assert text["model_type"] == "qwen2"
    assert sorted(text["tasks"]) == ["medqa", "pubmedqa"]
    assert text["not_run"] == {"slake": "ckpt is a text-only model and this task has images"}
    lines = (tmp_path / "t/predictions/pubmedqa.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == ["1000", "1001", "1002"]
    assert "| SLAKE | not run |" in (tmp_path / "t/tables.md").read_text()


def _image_token_counts(chat, inputs) -> list[int]:
    return (inputs["input_ids"] == chat.processor.image_token_id).sum(dim=1).tolist()


def test_qwen2_5_vl_loads_image_only_and_expands_one_token_per_merged_cell(tiny_qwen2_5_vl):
    chat = load_chat_model(str(tiny_qwen2_5_vl))
    assert chat.model_type == "qwen2_5_vl" and chat.multimodal and not hasattr(chat.processor, "video_processor")
    assert type(chat.processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    task = load_task("slake", FIXTURES)
    prompt = chat.adapter.render(chat, build_messages(task.items[0], task.config), {})
    assert prompt == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Is the lung healthy?\n\n"
                      "Options:\nA. Yes\nB. No\n\nAnswer with the option's letter from the given choices directly."
                      "<|im_end|>\n<|im_start|>assistant\n")
    # 24x24 -> smart_resize up to min_pixels 56x56 -> 4x4 patches of 14 -> 2x2 merged = 4 tokens.
    # 60x100 (h x w) -> rounded to multiples of 28: 56x112 -> 4x8 patches -> 2x4 merged = 8 tokens.
    images = [[build_images(task.items[0])[0]], [Image.new("RGB", (100, 60), (90, 30, 200))]]
    inputs = chat.adapter.encode(chat, [prompt, prompt], images)
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 8]]
    merge = chat.processor.image_processor.merge_size
    assert _image_token_counts(chat, inputs) == [4, 8] == (inputs["image_grid_thw"].prod(dim=1) // merge**2).tolist()
    assert inputs["pixel_values"].shape == (16 + 32, 3 * 2 * 14 * 14)  # [patches, C * T * P * P]
    assert (inputs["attention_mask"][:, -1] == 1).all() and inputs["attention_mask"][0, 0] == 0  # left padding
    with torch.inference_mode():
        logits = chat.model(**inputs).logits  # raises if image features and placeholders disagree
    assert logits.shape[:2] == inputs["input_ids"].shape


def test_llava_onevision_counts_anyres_and_multi_image_tokens(tiny_llava_onevision):
    chat = load_chat_model(str(tiny_llava_onevision))
    assert chat.model_type == "llava_onevision" and not hasattr(chat.processor, "video_processor")
    assert chat.processor.num_image_tokens == OV_FEATURES_PER_TILE  # from processor_config.json
    slake, frames = load_task("slake", FIXTURES), load_task("medframeqa", FIXTURES)
    single = chat.adapter.render(chat, build_messages(slake.items[0], slake.config), {})
    assert single.startswith("<|im_start|>user <image>\nIs the lung healthy?")
    # Single images take the anyres path: base tile (16) + best-fit grid of 4x4-feature tiles, unpadded, plus
    # one newline feature per row. 24x24 fits the 56x56 pinpoint: 4x4 grid + 4 newlines + 16 = 36.
    # 60x100 (h x w) best fits 112x112 (2x2 tiles, 8x8 features); unpadding the 0.6 aspect keeps 4 of 8 rows:
    # 4x8 + 4 newlines + 16 = 52, from 1 base + 4 tiles.
    images = [[build_images(slake.items[0])[0]], [Image.new("RGB", (100, 60), (90, 30, 200))]]
    inputs = chat.adapter.encode(chat, [single, single], images)
    assert _image_token_counts(chat, inputs) == [36, 52]
    assert inputs["pixel_values"].shape == (2, 5, 3, OV_TILE, OV_TILE)  # [images, max tiles, C, H, W]
    assert inputs["image_sizes"].tolist() == [[24, 24], [60, 100]]
    # Multi-image samples skip anyres: each image is one tile (16) + one newline feature.
    three, two = frames.items[1], frames.items[0]
    prompts = [chat.adapter.render(chat, build_messages(item, frames.config), {}) for item in (three, two)]
    assert prompts[0].startswith("<|im_start|>user <image><image><image>\nAcross the 3 frames")
    inputs = chat.adapter.encode(chat, prompts, [build_images(three), build_images(two)])
    assert _image_token_counts(chat, inputs) == [3 * (OV_FEATURES_PER_TILE + 1), 2 * (OV_FEATURES_PER_TILE + 1)]
    assert inputs["batch_num_images"].tolist() == [3, 2]
    with torch.inference_mode():
        logits = chat.model(**inputs).logits  # raises if image features and placeholders disagree
    assert logits.shape[:2] == inputs["input_ids"].shape


@pytest.mark.parametrize("checkpoint", ["tiny_qwen2_5_vl", "tiny_llava_onevision"])
def test_vlm_baselines_through_the_runner_are_deterministic(checkpoint, request, tmp_path):
    path = request.getfixturevalue(checkpoint)
    runs = [main(["--model", str(path), "--tasks", "slake,medqa", "--data-dir", str(FIXTURES), "--output",
                  str(tmp_path / run), "--max-new-tokens", "4", "--batch-size", "2", "--no-progress"])
            for run in ("a", "b")]
    assert {n: t["scores"]["n"] for n, t in runs[0]["tasks"].items()} == {"slake": 5, "medqa": 3}
    assert runs[0]["not_run"] == {}
    for name, count in (("slake.jsonl", 5), ("medqa.jsonl", 3)):
        lines = (tmp_path / "a/predictions" / name).read_text().splitlines()
        assert len(lines) == count and all(json.loads(line)["output"] for line in lines)  # 4 new tokens decoded
        assert (tmp_path / "a/predictions" / name).read_bytes() == (tmp_path / "b/predictions" / name).read_bytes()
    assert (tmp_path / "a/results.json").read_bytes() == (tmp_path / "b/results.json").read_bytes()


def test_custom_code_checkpoints_are_refused_without_asking(tmp_path, monkeypatch):
    """Hulu-Med ships its architecture as code (config auto_map). transformers' default would ask on stdin
    whether to run it; we refuse outright."""
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "hulumed_qwen3", "architectures": ["HulumedQwen3ForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_hulumed_qwen3.HulumedQwen3Config",
                     "AutoModelForCausalLM": "modeling_hulumed_qwen3.HulumedQwen3ForCausalLM"}}))

    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "n")
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_chat_model(str(tmp_path))
    assert asked == []
