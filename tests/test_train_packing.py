"""Packed training batches on the tiny GPT-oss: the router aux loss switched on the way training switches it on, and
the packed losses equal the padded layout's where docs/data_pipeline.md says they do.

The packed collator sends input_ids / labels / position_ids only; the model builds per-layer-type block-diagonal
masks (a dict) from the restarting position ids. With the MoE load-balancing loss on, those dict masks must not
reach transformers' load-balancing loss (it reads attention_mask as a 2D padding mask).
"""

import pytest
import torch

from llava_medgpt.constants import IGNORE_INDEX
from llava_medgpt.data.collator import MedGptCollator
from llava_medgpt.model import MedGptConfig, MedGptForConditionalGeneration
from llava_medgpt.model.backbones import TINY_TEXT_CONFIGS, TINY_VISION_CONFIGS

VOCAB = 320
PAD = 0


def make_model(router_logits_in_config: bool) -> MedGptForConditionalGeneration:
    torch.manual_seed(0)
    text_config = TINY_TEXT_CONFIGS["gpt_oss"](VOCAB)
    text_config.output_router_logits = router_logits_in_config
    text_config.pad_token_id = PAD
    config = MedGptConfig(vision_config=TINY_VISION_CONFIGS["clip"](), text_config=text_config,
                          image_token_id=VOCAB - 1)
    return MedGptForConditionalGeneration(config).eval()


def make_samples(lengths: list[int], seed: int = 0) -> list[dict]:
    """Text-only samples (ids 1 .. VOCAB-2: no padding id, no image placeholder), the last 60% of each trained."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for k, n in enumerate(lengths):
        input_ids = torch.randint(1, VOCAB - 1, (n,), generator=generator)
        labels = input_ids.clone()
        labels[: (2 * n) // 5] = IGNORE_INDEX
        samples.append({"input_ids": input_ids, "labels": labels, "pixel_values": None, "id": f"s{k}"})
    return samples


# 200 + 150 + 162 = 512 and 300 + 212 = 512: with max_length 512 both packed rows are full (no padding), and
# every sample is longer than GPT-oss's 128-token sliding window.
LENGTHS = [200, 300, 150, 212, 162]


def _forward(model, batch: dict):
    inputs = {k: v for k, v in batch.items() if k not in ("meta", "pixel_values")}
    with torch.no_grad():
        return model(**inputs)


def test_packed_batch_with_router_logits_from_the_config_trains():
    """The config (not the call) switches the router aux loss on, as a loaded training config does: no crash."""
    model = make_model(router_logits_in_config=True)
    batch = MedGptCollator(pad_token_id=PAD, layout="packed", max_length=512)(make_samples([40, 30, 50]))
    assert "attention_mask" not in batch
    out = _forward(model, batch)
    assert out.aux_loss is not None and float(out.aux_loss) > 0
    assert torch.isfinite(out.loss)


def test_packed_losses_equal_the_padded_layout():
    """Packed rows without padding: LM loss and MoE load-balancing loss equal the padded batch's (whose aux loss
    weights out padding with the 2D attention mask), i.e. the same tokens counted the same way."""
    model = make_model(router_logits_in_config=True)
    samples = make_samples(LENGTHS)
    packed_batch = MedGptCollator(pad_token_id=PAD, layout="packed", max_length=512)(samples)
    assert packed_batch["input_ids"].shape == (2, 512)
    assert int((packed_batch["position_ids"] == 0).sum()) == len(LENGTHS)  # every row full: no padding sequence
    padded_batch = MedGptCollator(pad_token_id=PAD, layout="padded")(samples)
    assert int((padded_batch["attention_mask"] == 0).sum()) > 0  # the padded layout does pad

    packed, padded = _forward(model, packed_batch), _forward(model, padded_batch)
    coef = model.config.text_config.router_aux_loss_coef
    torch.testing.assert_close(packed.aux_loss, padded.aux_loss, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(packed.loss - coef * packed.aux_loss, padded.loss - coef * padded.aux_loss,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.loss, padded.loss, atol=1e-5, rtol=1e-5)

    # The LM loss is the token-weighted mean of each sample's own loss (computed alone, without aux loss).
    total, count = 0.0, 0
    for s in samples:
        with torch.no_grad():
            alone = model(input_ids=s["input_ids"][None], labels=s["labels"][None], output_router_logits=False)
        n = int((s["labels"][1:] != IGNORE_INDEX).sum())
        total, count = total + float(alone.loss) * n, count + n
    assert float(packed.loss - coef * packed.aux_loss) == pytest.approx(total / count, abs=1e-5)


def test_packed_padding_counts_in_the_load_balancing_statistics():
    """What the docs say about padded packed rows: the padding sequence is routed like any token and counts in the
    load-balancing statistics (packed rows carry almost no padding); the LM loss is unaffected."""
    model = make_model(router_logits_in_config=True)
    samples = make_samples([200, 150])
    packed_batch = MedGptCollator(pad_token_id=PAD, layout="packed", max_length=512)(samples)
    padded_batch = MedGptCollator(pad_token_id=PAD, layout="padded")(samples)
    assert packed_batch["input_ids"].shape == (1, 350)  # one row, no padding yet
    packed = _forward(model, packed_batch)
    padded = _forward(model, padded_batch)
    torch.testing.assert_close(packed.aux_loss, padded.aux_loss, atol=1e-6, rtol=1e-5)

    # Add a padding sequence at the end of the row (what pack_rows writes when rows differ in length).
    extra = {k: v for k, v in packed_batch.items() if k in ("input_ids", "labels", "position_ids")}
    extra["input_ids"] = torch.cat([extra["input_ids"], torch.full((1, 40), PAD)], dim=1)
    extra["labels"] = torch.cat([extra["labels"], torch.full((1, 40), IGNORE_INDEX)], dim=1)
    extra["position_ids"] = torch.cat([extra["position_ids"], torch.arange(40)[None]], dim=1)
    with_padding = _forward(model, extra)
    coef = model.config.text_config.router_aux_loss_coef
    torch.testing.assert_close(with_padding.loss - coef * with_padding.aux_loss, packed.loss - coef * packed.aux_loss,
                               atol=1e-5, rtol=1e-5)
    assert not torch.allclose(with_padding.aux_loss, packed.aux_loss, atol=1e-7, rtol=0)
