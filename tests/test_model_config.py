"""MedGptConfig() is the paper's model: GPT-oss-20b as published, CLIP-ViT-L/14@336's vision tower.

The expected values are copied from the published config.json files (openai/gpt-oss-20b; the vision_config of
openai/clip-vit-large-patch14-336), not from the code. Fails on the old main, whose default text config was
transformers' GptOssConfig() (the 120b shape: 36 layers, 128 experts, aux coefficient 0.001).
"""

import torch

from llava_medgpt.model import MedGptConfig

# openai/gpt-oss-20b config.json (rope_scaling + rope_theta are transformers 5's rope_parameters).
PUBLISHED_GPT_OSS_20B = {
    "model_type": "gpt_oss", "vocab_size": 201088, "hidden_size": 2880, "intermediate_size": 2880,
    "num_hidden_layers": 24, "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
    "num_local_experts": 32, "num_experts_per_tok": 4, "router_aux_loss_coef": 0.9, "sliding_window": 128,
    "max_position_embeddings": 131072, "attention_bias": True, "attention_dropout": 0.0, "rms_norm_eps": 1e-05,
    "swiglu_limit": 7.0, "hidden_act": "silu", "initializer_range": 0.02, "tie_word_embeddings": False,
    "pad_token_id": 199999, "eos_token_id": 200002, "output_router_logits": False, "use_cache": True,
}
PUBLISHED_ROPE = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                  "original_max_position_embeddings": 4096, "rope_theta": 150000}
# openai/clip-vit-large-patch14-336 config.json, vision_config
PUBLISHED_CLIP_L14_336 = {
    "model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
    "num_attention_heads": 16, "patch_size": 14, "image_size": 336, "projection_dim": 768,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "num_channels": 3,
}


def test_default_text_config_is_the_published_gpt_oss_20b():
    text = MedGptConfig().text_config
    for key, value in PUBLISHED_GPT_OSS_20B.items():
        assert getattr(text, key) == value, key
    assert text.layer_types == ["sliding_attention", "full_attention"] * 12
    assert {k: text.rope_parameters[k] for k in PUBLISHED_ROPE} == PUBLISHED_ROPE


def test_default_vision_config_is_clip_l14_336_and_the_projector_sizes_follow():
    config = MedGptConfig()
    for key, value in PUBLISHED_CLIP_L14_336.items():
        assert getattr(config.vision_config, key) == value, key
    assert config.tokens_per_tile == 144
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (-2, "default")
    # <|image_pad|> with GPT-oss's 200,019-entry tokenizer (tests/test_model_vocab.py builds it).
    assert config.image_token_id == 200020


def test_default_config_round_trips_through_json(tmp_path):
    MedGptConfig().save_pretrained(tmp_path)
    loaded = MedGptConfig.from_pretrained(tmp_path)
    assert loaded.text_config.to_dict() == MedGptConfig().text_config.to_dict()
    assert loaded.vision_config.to_dict() == MedGptConfig().vision_config.to_dict()


def test_meta_build_has_gpt_oss_20b_parameter_counts():
    """The default model, built on the meta device, against counts written out from the published shapes."""
    from llava_medgpt.model.modeling import MedGptForConditionalGeneration

    with torch.device("meta"):
        model = MedGptForConditionalGeneration(MedGptConfig())
    h, v, layers, experts, inter, q, kv = 2880, 201088, 24, 32, 2880, 64 * 64, 8 * 64
    attention = (h * q + q) + 2 * (h * kv + kv) + (q * h + h) + 64  # q, k, v, o with biases; one sink per head
    router = experts * h + experts
    expert_weights = experts * (h * 2 * inter + 2 * inter + inter * h + h)
    per_layer = attention + router + expert_weights + 2 * h  # two RMSNorms
    expected_lm = 2 * v * h + layers * per_layer + h  # embedding, untied head, final norm
    lm = sum(p.numel() for p in model.language_model.parameters())
    assert lm == expected_lm
    assert round(lm / 1e9, 2) == 20.91
    experts_total = sum(p.numel() for n, p in model.language_model.named_parameters() if ".experts." in n)
    assert experts_total == layers * expert_weights and round(experts_total / 1e9, 2) == 19.12
    vision = sum(p.numel() for p in model.vision_tower.parameters())
    assert round(vision / 1e6, 1) == 303.5  # CLIP-ViT-L/14@336 vision tower
    projector = sum(p.numel() for p in model.multi_modal_projector.parameters())
    assert projector == 2 * 4096 + (4096 * h + h) + (h * h + h)  # LayerNorm(4C) -> Linear -> GELU -> Linear
