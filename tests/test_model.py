"""The model on tiny configs: the pixel shuffle, the feature scatter, losses, generation, save/load."""

import pytest
import torch

from llava_medgpt.model.backbones import TINY_TEXT_CONFIGS, TINY_VISION_CONFIGS, VISION_BACKBONES, VISION_ENCODERS
from llava_medgpt.model.configuration import MedGptConfig
from llava_medgpt.model.modeling import MedGptForConditionalGeneration, pixel_shuffle

VOCAB = 96
IMAGE_TOKEN_ID = 7


def make_model(text_backbone="gpt_oss", vision_backbone="clip", seed=0):
    text_config = TINY_TEXT_CONFIGS[text_backbone](VOCAB)
    family = VISION_BACKBONES[VISION_ENCODERS[vision_backbone].model_type]
    config = MedGptConfig(
        vision_config=TINY_VISION_CONFIGS[vision_backbone](),
        text_config=text_config,
        image_token_id=IMAGE_TOKEN_ID,
        vision_feature_layer=family.feature_layer,
        vision_feature_select_strategy=family.feature_select_strategy,
    )
    config.text_config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return MedGptForConditionalGeneration(config).eval()


def text_ids(batch, length, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(IMAGE_TOKEN_ID + 1, VOCAB, (batch, length), generator=generator)


def test_tokens_per_tile_is_144_for_336px_tiles_of_14px_patches():
    assert make_model().config.tokens_per_tile == 144


def test_pixel_shuffle_is_a_permutation_of_2x2_blocks():
    features = torch.arange(2 * 4 * 4 * 3, dtype=torch.float32).reshape(2, 4, 4, 3)
    shuffled = pixel_shuffle(features, 0.5)
    assert shuffled.shape == (2, 2, 2, 12)
    assert torch.equal(shuffled.flatten().sort().values, features.flatten().sort().values)
    # Output position (i, j) holds the 2x2 input block at rows 2i..2i+1, cols 2j..2j+1, row-major.
    for i in range(2):
        for j in range(2):
            block = features[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, :].reshape(2, 12)
            assert torch.equal(shuffled[:, i, j], block)


def test_image_features_land_at_placeholders_in_reading_order():
    model = make_model()
    n = 5
    input_ids = text_ids(2, 8)
    input_ids[0, [1, 4]] = IMAGE_TOKEN_ID
    input_ids[1, [0, 2, 7]] = IMAGE_TOKEN_ID
    embeds = model.get_input_embeddings()(input_ids)
    features = torch.arange(n, dtype=torch.float32)[:, None].expand(n, embeds.shape[-1]) + 1000
    merged = model.merge_image_features(input_ids, embeds, features)
    positions = [(0, 1), (0, 4), (1, 0), (1, 2), (1, 7)]
    for k, (b, t) in enumerate(positions):
        assert torch.equal(merged[b, t], features[k])
    text_mask = input_ids != IMAGE_TOKEN_ID
    assert torch.equal(merged[text_mask], embeds[text_mask])


def test_placeholder_feature_mismatch_names_both_counts():
    model = make_model()
    input_ids = text_ids(1, 150)
    input_ids[0, :144] = IMAGE_TOKEN_ID
    pixel_values = torch.randn(2, 3, 336, 336)  # two tiles -> 288 features for 144 placeholders
    with pytest.raises(ValueError, match=r"144 image placeholder tokens but the images give 288"):
        model(input_ids=input_ids, pixel_values=pixel_values)


def test_uint8_pixels_are_refused_with_a_hint():
    model = make_model()
    input_ids = text_ids(1, 150)
    input_ids[0, :144] = IMAGE_TOKEN_ID
    with pytest.raises(ValueError, match="normalize_on_device"):
        model(input_ids=input_ids, pixel_values=torch.zeros(1, 3, 336, 336, dtype=torch.uint8))


def test_text_only_batch_matches_bare_language_model():
    model = make_model()
    input_ids = text_ids(2, 12)
    ours = model(input_ids=input_ids, labels=input_ids)
    bare = model.language_model(input_ids=input_ids, labels=input_ids)
    assert torch.equal(ours.logits, bare.logits)
    assert torch.equal(ours.loss, bare.loss)


def test_images_change_only_positions_at_and_after_placeholders():
    model = make_model()
    input_ids = text_ids(1, 160)
    input_ids[0, 10:154] = IMAGE_TOKEN_ID
    torch.manual_seed(3)
    a = model(input_ids=input_ids, pixel_values=torch.randn(1, 3, 336, 336)).logits
    b = model(input_ids=input_ids, pixel_values=torch.randn(1, 3, 336, 336)).logits
    assert torch.equal(a[:, :10], b[:, :10])  # causal: text before the image cannot see it
    assert not torch.allclose(a[:, 154:], b[:, 154:])


def test_several_images_and_tiles_per_sample_with_labels():
    model = make_model().train()
    # sample 0: an image of 3 tiles (2x1 + thumbnail) and one of 1 tile; sample 1: one 1-tile image
    input_ids = text_ids(2, 4 * 144 + 20)
    input_ids[0, 2 : 2 + 3 * 144] = IMAGE_TOKEN_ID
    input_ids[0, 5 + 3 * 144 : 5 + 4 * 144] = IMAGE_TOKEN_ID
    input_ids[1, 0:144] = IMAGE_TOKEN_ID
    labels = input_ids.clone()
    labels[input_ids == IMAGE_TOKEN_ID] = -100
    out = model(input_ids=input_ids, pixel_values=torch.randn(5, 3, 336, 336), labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.multi_modal_projector.linear_1.weight.grad.abs().sum() > 0
    assert model.vision_tower.get_input_embeddings().weight.grad.abs().sum() > 0


def test_text_only_training_step_still_runs_the_vision_tower():
    """Every ZeRO-3 rank must gather the vision weights each step, image batch or not (forced here: one process)."""
    model = make_model().train()
    model.sync_vision_tower_on_text_batches = True
    input_ids = text_ids(2, 10)
    out = model(input_ids=input_ids, labels=input_ids)
    out.loss.backward()
    vision_grad = model.vision_tower.get_input_embeddings().weight.grad
    assert vision_grad is not None and torch.count_nonzero(vision_grad) == 0
    assert torch.equal(out.loss, model.language_model(input_ids=input_ids, labels=input_ids).loss)


def test_router_aux_loss_is_added_for_moe_backbones():
    model = make_model()
    input_ids = text_ids(2, 16)
    plain = model(input_ids=input_ids, labels=input_ids)
    with_aux = model(input_ids=input_ids, labels=input_ids, output_router_logits=True)
    coef = model.config.text_config.router_aux_loss_coef
    assert with_aux.aux_loss is not None and with_aux.aux_loss > 0
    torch.testing.assert_close(with_aux.loss, plain.loss + coef * with_aux.aux_loss)


def test_gradient_checkpointing_gives_the_same_gradients():
    input_ids = text_ids(1, 150)
    input_ids[0, 3:147] = IMAGE_TOKEN_ID
    pixel_values = torch.randn(1, 3, 336, 336)
    grads = []
    for checkpointing in (False, True):
        model = make_model().train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert model.language_model.model.gradient_checkpointing
        model(input_ids=input_ids, pixel_values=pixel_values, labels=input_ids).loss.backward()
        grads.append(model.multi_modal_projector.linear_1.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("text_backbone,vision_backbone", [("gpt_oss", "clip"), ("qwen2", "siglip"), ("llama", "clip")])
def test_generate_feeds_images_only_at_prefill(text_backbone, vision_backbone):
    model = make_model(text_backbone, vision_backbone)
    tile, tokens = model.config.vision_geometry.tile_size, model.config.tokens_per_tile
    input_ids = text_ids(1, tokens + 6)
    input_ids[0, 2 : 2 + tokens] = IMAGE_TOKEN_ID
    pixel_values = torch.randn(1, 3, tile, tile)
    calls = []
    model.vision_tower.register_forward_hook(lambda *args: calls.append(1))
    generated = model.generate(input_ids=input_ids, pixel_values=pixel_values, max_new_tokens=4, do_sample=False)
    prompt = tokens + 6
    assert generated.shape == (1, prompt + 4)
    assert len(calls) == 1
    # Greedy decoding with the cache equals the argmax of a full forward over the generated prefix.
    logits = model(input_ids=generated[:, :-1], pixel_values=pixel_values).logits
    assert torch.equal(logits[0, prompt - 1 :].argmax(-1), generated[0, prompt:])


def test_save_load_round_trip_is_exact(tmp_path):
    import llava_medgpt  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModelForImageTextToText

    model = make_model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is MedGptForConditionalGeneration
    input_ids = text_ids(1, 150)
    input_ids[0, 2:146] = IMAGE_TOKEN_ID
    pixel_values = torch.randn(1, 3, 336, 336)
    assert torch.equal(
        model(input_ids=input_ids, pixel_values=pixel_values).logits,
        loaded(input_ids=input_ids, pixel_values=pixel_values).logits,
    )


def test_packed_rows_with_router_aux_loss_match_the_unpacked_language_model():
    """Per-layer-type packed masks + output_router_logits: same CE loss as one sample alone, aux loss present."""
    from llava_medgpt.model.packed_masks import packed_attention_masks

    model = make_model()
    ids = text_ids(1, 24)
    position_ids = torch.cat([torch.arange(10), torch.arange(14)])[None]
    labels = ids.clone()
    labels[0, 10] = -100  # a sample's first token is never predicted from the previous sample
    masks = packed_attention_masks(model.config.text_config, position_ids, torch.float32)
    packed = model(input_ids=ids, attention_mask=masks, position_ids=position_ids, labels=labels,
                   output_router_logits=True)
    assert packed.aux_loss is not None and packed.aux_loss > 0
    first = model(input_ids=ids[:, :10], labels=labels[:, :10])
    second = model(input_ids=ids[:, 10:], labels=labels[:, 10:])
    torch.testing.assert_close(packed.logits[0, :10], first.logits[0])
    torch.testing.assert_close(packed.logits[0, 10:], second.logits[0], atol=1e-5, rtol=1e-5)
    coef = model.config.text_config.router_aux_loss_coef
    expected_ce = (first.loss * 9 + second.loss * 13) / 22
    torch.testing.assert_close(packed.loss - coef * packed.aux_loss, expected_ce, atol=1e-5, rtol=1e-5)


def test_packed_rows_without_a_mask_are_separated_by_the_model():
    """The packed collator sends only position_ids: the model must not let samples attend across the boundary."""
    model = make_model()
    ids = text_ids(1, 20)
    position_ids = torch.cat([torch.arange(8), torch.arange(12)])[None]
    packed = model(input_ids=ids, position_ids=position_ids).logits
    alone = model(input_ids=ids[:, 8:]).logits
    torch.testing.assert_close(packed[0, 8:], alone[0], atol=1e-5, rtol=1e-5)


def test_single_process_text_only_training_skips_the_vision_tower():
    """With one rank there is nothing to keep in step: the text-only step costs what the bare LM costs."""
    model = make_model().train()
    assert model.sync_vision_tower_on_text_batches is None  # auto: only when world size > 1
    input_ids = text_ids(2, 10)
    model(input_ids=input_ids, labels=input_ids).loss.backward()
    assert model.vision_tower.get_input_embeddings().weight.grad is None
