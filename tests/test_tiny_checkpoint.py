"""Tiny checkpoints load through the Auto classes offline; the builder assembles pretrained parts exactly."""

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

import llava_medgpt
from llava_medgpt.constants import HARMONY_SPECIAL_TOKENS, IMAGE_SPECIAL_TOKENS, IMAGE_TOKEN
from llava_medgpt.model.builder import build_from_parts, resolve_attn_implementation
from llava_medgpt.model.tiny import create_tiny_language_model, create_tiny_vision_tower

RECORD = {
    "id": "cxr-1",
    "image": "a.png",
    "conversations": [
        {"from": "human", "value": "<image>\nDescribe the findings."},
        {"from": "gpt", "value": "No acute cardiopulmonary process."},
    ],
}


@pytest.mark.parametrize("text_backbone", ["gpt_oss", "qwen2", "llama"])
def test_tiny_checkpoint_trains_and_generates_through_auto_classes(tiny_checkpoint, text_backbone):
    folder = tiny_checkpoint(text_backbone)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llava_medgpt"
    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    assert isinstance(model, llava_medgpt.MedGptForConditionalGeneration)
    assert isinstance(processor, llava_medgpt.MedGptProcessor)

    image = Image.new("RGB", (672, 336), (120, 30, 40))  # 2x1 grid + thumbnail = 3 tiles
    sample = processor.tokenize_conversation(RECORD, images=[image])
    assert int((sample["input_ids"] == model.config.image_token_id).sum()) == 3 * 144
    model.train()
    out = model(input_ids=sample["input_ids"][None], labels=sample["labels"][None], pixel_values=sample["pixel_values"])
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.multi_modal_projector.linear_2.weight.grad.abs().sum() > 0

    model.eval()
    prompt = processor.apply_chat_template([{"role": "user", "content": "<image>\nDescribe the findings."}])
    inputs = processor(text=[prompt], images=[[image]], return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4


def test_tiny_gpt_oss_keeps_the_real_architecture_features(tiny_checkpoint):
    text_config = AutoConfig.from_pretrained(tiny_checkpoint("gpt_oss")).text_config
    assert text_config.model_type == "gpt_oss"
    assert text_config.num_local_experts > text_config.num_experts_per_tok > 1  # top-k routed MoE
    assert text_config.layer_types == ["sliding_attention", "full_attention"]
    assert text_config.rope_parameters["rope_type"] == "yarn"
    assert text_config.rope_parameters["factor"] == 32.0
    assert text_config.rope_parameters["original_max_position_embeddings"] == 4096
    model = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint("gpt_oss"))
    assert model.language_model.model.layers[0].self_attn.sinks.shape == (text_config.num_attention_heads,)
    assert model.language_model.config._attn_implementation == "eager"


def test_tiny_tokenizer_is_offline_and_has_the_special_tokens(tiny_checkpoint):
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint("gpt_oss"))
    vocab = tokenizer.get_vocab()
    for token in HARMONY_SPECIAL_TOKENS + IMAGE_SPECIAL_TOKENS:
        assert token in vocab
        assert tokenizer.encode(token, add_special_tokens=False) == [vocab[token]]
    text = "The chest X-ray shows a small pleural effusion. Ünïcödé 中文"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_tiny_checkpoint_is_reproducible(tmp_path):
    a = llava_medgpt.create_tiny_checkpoint(tmp_path / "a")
    b = llava_medgpt.create_tiny_checkpoint(tmp_path / "b")
    weights_a, weights_b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_save_load_round_trip_is_exact_and_safetensors_only(tiny_checkpoint, tmp_path):
    model = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint("gpt_oss")).eval()
    model.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    input_ids = torch.randint(20, 600, (1, 160))
    input_ids[0, 5:149] = model.config.image_token_id
    pixel_values = torch.randn(1, 3, 336, 336)
    assert torch.equal(model(input_ids=input_ids, pixel_values=pixel_values).logits,
                       loaded(input_ids=input_ids, pixel_values=pixel_values).logits)


def test_builder_assembles_separately_pretrained_parts(tmp_path):
    language_model = create_tiny_language_model(tmp_path / "lm", "qwen2", seed=1)
    vision_tower = create_tiny_vision_tower(tmp_path / "vision", "siglip", seed=2)
    # Like a hub LM, its tokenizer lacks our image tokens: the builder adds them and grows the embeddings.
    original_vocab = len(AutoTokenizer.from_pretrained(language_model))
    assert not set(IMAGE_SPECIAL_TOKENS) & set(AutoTokenizer.from_pretrained(language_model).get_vocab())

    model, processor = build_from_parts(str(language_model), str(vision_tower))
    assert len(processor.tokenizer) == original_vocab + len(IMAGE_SPECIAL_TOKENS)
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert model.get_input_embeddings().weight.shape[0] >= len(processor.tokenizer)
    assert model.config.vision_feature_select_strategy == "full"  # SigLIP has no CLS token
    # SigLIP-so400m geometry: 384 / 14 -> 27x27 -> zero-padded 28x28 -> 14x14 = 196 tokens per tile
    assert processor.image_processor.tokens_per_tile == model.config.tokens_per_tile == 196
    assert processor.image_processor.image_mean == [0.5, 0.5, 0.5]  # SigLIP normalisation, not CLIP's

    lm_weights = load_file(language_model / "model.safetensors")
    for name, tensor in lm_weights.items():
        if "embed_tokens" in name or "lm_head" in name:
            ours = dict(model.language_model.named_parameters())[name]
            assert torch.equal(ours[: tensor.shape[0]], tensor)  # old rows kept, new rows appended
        else:
            assert torch.equal(model.language_model.state_dict()[name], tensor), name
    vision_weights = load_file(vision_tower / "model.safetensors")
    vision_state = model.vision_tower.state_dict()
    assert all(torch.equal(vision_state[name], tensor) for name, tensor in vision_weights.items())


def test_backbones_are_chosen_by_config_model_type_not_path(tmp_path):
    # A path that says "gpt_oss" holding a Llama: the registry follows the config.
    language_model = create_tiny_language_model(tmp_path / "gpt_oss-20b-copy", "llama")
    vision_tower = create_tiny_vision_tower(tmp_path / "vision", "clip")
    model, processor = build_from_parts(str(language_model), str(vision_tower))
    assert model.config.text_config.model_type == "llama"
    assert processor.conversation_template == "generic"


def test_attention_implementations_that_drop_gpt_oss_sinks_are_refused():
    from transformers import GptOssConfig

    with pytest.raises(ValueError, match="flash-attention 2 does not support GPT-oss attention sinks"):
        resolve_attn_implementation(GptOssConfig(), "flash_attention_2")
    # GPT-oss's defaults: flex attention (keeps the sinks) on GPU, eager on CPU (flex with sinks raises there).
    assert resolve_attn_implementation(GptOssConfig(), None, on_gpu=True) == "flex_attention"
    assert resolve_attn_implementation(GptOssConfig(), None, on_gpu=False) == "eager"
    assert resolve_attn_implementation(GptOssConfig(), None) == ("flex_attention" if torch.cuda.is_available()
                                                                 else "eager")
