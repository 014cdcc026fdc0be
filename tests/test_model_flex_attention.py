"""GPT-oss's GPU attention path (flex attention with sinks) run on CPU in an emulated GPU mode, against eager.

On a GPU, transformers' `flex_attention_forward` asks torch's flex attention for the log-sum-exp and renormalises
the output with the attention sinks. On CPU it refuses ("Attention sinks cannot be run on CPU with flex attention"),
because torch's compiled CPU flex attention cannot return the LSE. The emulation runs transformers' own function
with exactly two changes: the LSE is requested whatever the device (its `return_lse = query.device.type != "cpu"`
line becomes `return_lse = True`; the test fails if that line changes) and torch's flex attention runs uncompiled
(the reference implementation, which returns the LSE on CPU). The BlockMasks are the real ones: built by the
model from restarting position ids through transformers' flex mask builder (compiled; that compile is most of this
file's ~60 s).

Backward: torch's CPU flex attention has no backward ("FlexAttention does not support backward on CPU", pinned
below), so gradients through the kernel and its LSE into q, k, v run in bench/gpu_check.py on a GPU. What CPU can
check is the sink renormalisation's own backward: with q, k, v constant, the gradient of the sinks.
"""

import inspect

import pytest
import torch

from llava_medgpt.model.backbones import TINY_TEXT_CONFIGS, TINY_VISION_CONFIGS
from llava_medgpt.model.configuration import MedGptConfig
from llava_medgpt.model.modeling import MedGptForConditionalGeneration

VOCAB = 640


@pytest.fixture(scope="module")
def emulated_flex():
    """transformers' flex_attention_forward with the LSE forced and torch's flex uncompiled, registered under
    "flex_attention" for this module's tests (the original is put back afterwards)."""
    import transformers.integrations.flex_attention as hf_flex
    from torch.nn.attention.flex_attention import flex_attention
    from transformers import AttentionInterface

    source = inspect.getsource(hf_flex.flex_attention_forward)
    line = 'return_lse = query.device.type != "cpu"'
    assert line in source, "transformers' flex attention changed: revisit this emulation"

    def uncompiled_flex_attention(query, key, value, training=False, **kwargs):
        return flex_attention(query, key, value, **kwargs)

    namespace = dict(vars(hf_flex), compile_friendly_flex_attention=uncompiled_flex_attention)
    exec(compile(source.replace(line, "return_lse = True"), hf_flex.__file__, "exec"), namespace)
    original = AttentionInterface._global_mapping["flex_attention"]
    AttentionInterface.register("flex_attention", namespace["flex_attention_forward"])
    yield
    AttentionInterface.register("flex_attention", original)


def make_model(attn_implementation: str) -> MedGptForConditionalGeneration:
    text_config = TINY_TEXT_CONFIGS["gpt_oss"](VOCAB)  # layers: sliding (window 128), full
    config = MedGptConfig(vision_config=TINY_VISION_CONFIGS["clip"](), text_config=text_config, image_token_id=5)
    torch.manual_seed(0)
    model = MedGptForConditionalGeneration(config).eval()
    model.language_model.set_attn_implementation(attn_implementation)
    with torch.no_grad():  # sinks start at zero; give them values that matter
        for layer in model.language_model.model.layers:
            layer.self_attn.sinks.normal_(0.0, 1.0)
    assert model.language_model.config._attn_implementation == attn_implementation
    return model


def ids(batch, length, seed=1):
    return torch.randint(10, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_cpu_flex_attention_refuses_sinks_and_has_no_backward():
    """The two facts the emulation works around; if torch or transformers lift them, extend these tests."""
    from torch.nn.attention.flex_attention import flex_attention

    model = make_model("flex_attention")
    with pytest.raises(ValueError, match="Attention sinks cannot be run on CPU with flex attention"):
        model(input_ids=ids(1, 8))
    q = torch.randn(1, 2, 16, 8, requires_grad=True)
    with pytest.raises(NotImplementedError, match="does not support backward on CPU"):
        flex_attention(q, q, q)


def test_padded_batch_flex_equals_eager(emulated_flex):
    input_ids = ids(2, 200)  # longer than the 128-token sliding window
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 150:] = 0
    with torch.no_grad():
        flex = make_model("flex_attention")(input_ids=input_ids, attention_mask=attention_mask).logits
        eager = make_model("eager")(input_ids=input_ids, attention_mask=attention_mask).logits
    real = attention_mask.bool()
    assert (flex - eager)[real].abs().max() < 1e-5


def test_packed_row_flex_equals_eager_and_each_sample_alone(emulated_flex):
    """Position ids only, as the packed collator sends them: the model builds BlockMasks for flex."""
    lengths = [140, 60]
    input_ids = ids(1, sum(lengths), seed=2)
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
    flex_model, eager_model = make_model("flex_attention"), make_model("eager")
    with torch.no_grad():
        flex = flex_model(input_ids=input_ids, position_ids=position_ids).logits
        eager = eager_model(input_ids=input_ids, position_ids=position_ids).logits
        second_alone = flex_model(input_ids=input_ids[:, 140:]).logits
    assert (flex - eager).abs().max() < 1e-5
    assert (flex[0, 140:] - second_alone[0]).abs().max() < 1e-5


def test_sink_gradients_through_the_lse_renormalisation_equal_eager(emulated_flex):
    """Only the last layer's sinks train (so q, k, v are constants and CPU flex needs no backward)."""
    input_ids = ids(2, 160, seed=3)
    grads = {}
    for implementation in ("flex_attention", "eager"):
        model = make_model(implementation)
        for p in model.parameters():
            p.requires_grad_(False)
        sinks = model.language_model.model.layers[-1].self_attn.sinks
        sinks.requires_grad_(True)
        out = model(input_ids=input_ids, labels=input_ids)  # eval mode: transformers' loss on full logits
        (grads[implementation],) = torch.autograd.grad(out.loss, sinks)
    assert grads["eager"].abs().max() > 0
    assert (grads["flex_attention"] - grads["eager"]).abs().max() <= 1e-5 * grads["eager"].abs().max()
