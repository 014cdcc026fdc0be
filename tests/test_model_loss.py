"""The training loss without full-vocabulary logits: equal to transformers' loss, gradients included.

Reference values come from transformers' own path (`loss_implementation="full"`: the language model's causal-LM
head and `ForCausalLMLoss` on full logits), never from the code under test. Tiles are made small so that every
batch spans several token chunks and vocabulary blocks.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from transformers.loss.loss_utils import ForCausalLMLoss

from llava_medgpt.constants import IGNORE_INDEX
from llava_medgpt.model.backbones import TINY_TEXT_CONFIGS, TINY_VISION_CONFIGS
from llava_medgpt.model.configuration import MedGptConfig
from llava_medgpt.model.loss import causal_lm_loss, chunked_linear_cross_entropy_sum
from llava_medgpt.model.modeling import MedGptForConditionalGeneration

VOCAB = 1000
IMAGE_TOKEN_ID = 3


def make_model(text_backbone="gpt_oss", loss_implementation="chunked", router_logits=False, seed=0):
    text_config = TINY_TEXT_CONFIGS[text_backbone](VOCAB)
    if text_backbone == "gpt_oss":
        text_config.output_router_logits = router_logits
    text_config._attn_implementation = "eager"
    config = MedGptConfig(
        vision_config=TINY_VISION_CONFIGS["clip"](), text_config=text_config, image_token_id=IMAGE_TOKEN_ID,
        loss_implementation=loss_implementation, loss_token_chunk=7, loss_vocab_block=300,
    )
    torch.manual_seed(seed)
    return MedGptForConditionalGeneration(config).train()


def assert_relative_close(actual, expected, rtol=1e-5, what=""):
    """max |actual - expected| <= rtol * max |expected|: relative to the tensor's scale, as float sums allow (plus
    1e-9 for gradients that are zero up to rounding, such as attention key biases')."""
    assert (actual - expected).abs().max() <= rtol * expected.abs().max() + 1e-9, what


def training_step(model, batch):
    """(loss, {parameter name: gradient}) of one forward + backward in training mode."""
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


def assert_same_step(batch, text_backbone="gpt_oss", router_logits=False):
    chunked, chunked_grads = training_step(make_model(text_backbone, "chunked", router_logits), batch)
    full, full_grads = training_step(make_model(text_backbone, "full", router_logits), batch)
    assert chunked.logits is None  # training returns no full-vocabulary logits
    assert full.logits is not None
    torch.testing.assert_close(chunked.loss, full.loss, rtol=1e-5, atol=0)
    if router_logits:
        torch.testing.assert_close(chunked.aux_loss, full.aux_loss, rtol=1e-5, atol=0)
    assert chunked_grads.keys() == full_grads.keys()
    assert "language_model.lm_head.weight" in chunked_grads
    for name, grad in full_grads.items():
        assert_relative_close(chunked_grads[name], grad, what=name)


def random_ids(batch, length, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(IMAGE_TOKEN_ID + 1, VOCAB, (batch, length), generator=generator)


def padded_batch():
    """Two rows, the second right-padded; prompt tokens and padding labelled IGNORE_INDEX."""
    input_ids = random_ids(2, 40)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 25:] = 0
    labels = input_ids.clone()
    labels[:, :10] = IGNORE_INDEX
    labels[attention_mask == 0] = IGNORE_INDEX
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def packed_batch():
    """One row of three samples (12, 20, 18 tokens), positions restarting, each sample's first label ignored."""
    lengths = [12, 20, 18]
    input_ids = random_ids(1, sum(lengths), seed=2)
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
    labels = input_ids.clone()
    start = 0
    for n in lengths:
        labels[0, start] = IGNORE_INDEX
        labels[0, start + 1 : start + 4] = IGNORE_INDEX  # a short prompt
        start += n
    return {"input_ids": input_ids, "position_ids": position_ids, "labels": labels}


@pytest.mark.parametrize("tiles", [(1, 1000), (7, 300), (64, 64), (5000, 5000)])
def test_chunked_sum_and_gradients_equal_torch_cross_entropy(tiles):
    token_chunk, vocab_block = tiles
    torch.manual_seed(0)
    hidden = torch.randn(50, 16, requires_grad=True)
    weight = torch.randn(VOCAB, 16, requires_grad=True)
    bias = torch.randn(VOCAB, requires_grad=True)
    targets = torch.randint(0, VOCAB, (50,))
    targets[:3] = torch.tensor([0, 299, 300])  # either side of a vocabulary block boundary
    ours = chunked_linear_cross_entropy_sum(hidden, weight, bias, targets, token_chunk, vocab_block)
    our_grads = torch.autograd.grad(ours, (hidden, weight, bias))
    reference = F.cross_entropy(F.linear(hidden, weight, bias), targets, reduction="sum")
    reference_grads = torch.autograd.grad(reference, (hidden, weight, bias))
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=0)
    for mine, theirs in zip(our_grads, reference_grads):
        assert_relative_close(mine, theirs)


def test_causal_lm_loss_equals_transformers_with_num_items_in_batch_and_ignored_labels():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, VOCAB, bias=False)
    hidden = torch.randn(3, 20, 16)
    labels = torch.randint(0, VOCAB, (3, 20))
    labels[0, :8] = IGNORE_INDEX
    labels[2] = IGNORE_INDEX
    for num_items_in_batch in (None, torch.tensor(97), 97):
        ours = causal_lm_loss(head, hidden, labels, num_items_in_batch, token_chunk=5, vocab_block=128)
        reference = ForCausalLMLoss(head(hidden), labels, VOCAB, num_items_in_batch=num_items_in_batch)
        torch.testing.assert_close(ours, reference, rtol=1e-6, atol=0)


def test_no_scored_token_gives_what_transformers_gives():
    head = torch.nn.Linear(16, VOCAB, bias=False)
    hidden = torch.randn(1, 6, 16, requires_grad=True)
    labels = torch.full((1, 6), IGNORE_INDEX)
    assert torch.isnan(causal_lm_loss(head, hidden, labels)) and torch.isnan(ForCausalLMLoss(head(hidden), labels, VOCAB))
    # The collator's all-skipped batch: zero loss and zero gradients with the step's token count.
    loss = causal_lm_loss(head, hidden, labels, num_items_in_batch=torch.tensor(10))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(head.weight.grad) == 0 and torch.count_nonzero(hidden.grad) == 0


@pytest.mark.parametrize("text_backbone", ["gpt_oss", "qwen2", "llama"])
def test_training_step_equals_transformers_loss_padded(text_backbone):
    assert_same_step(padded_batch(), text_backbone)


@pytest.mark.parametrize("text_backbone", ["gpt_oss", "qwen2"])
def test_training_step_equals_transformers_loss_packed(text_backbone):
    assert_same_step(packed_batch(), text_backbone)


def test_moe_router_aux_loss_unchanged_padded_and_packed():
    assert_same_step(padded_batch(), "gpt_oss", router_logits=True)
    assert_same_step(packed_batch(), "gpt_oss", router_logits=True)


def test_training_step_with_images_equals_transformers_loss():
    input_ids = random_ids(1, 170, seed=3)
    input_ids[0, 5:149] = IMAGE_TOKEN_ID
    labels = input_ids.clone()
    labels[0, :149] = IGNORE_INDEX
    torch.manual_seed(4)
    batch = {"input_ids": input_ids, "labels": labels, "pixel_values": torch.randn(1, 3, 336, 336)}
    assert_same_step(batch)


def test_num_items_in_batch_keeps_gradient_accumulation_exact():
    """Two micro-batches normalised by the step's token count give the gradients of the one combined batch."""
    batch = padded_batch()
    total = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    model = make_model()
    model.zero_grad(set_to_none=True)
    for row in range(2):
        micro = {k: v[row : row + 1] for k, v in batch.items()}
        model(**micro, num_items_in_batch=torch.tensor(total)).loss.backward()
    accumulated = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    full = make_model("gpt_oss", "full")
    _, combined = training_step(full, batch)
    for name, grad in combined.items():
        assert_relative_close(accumulated[name], grad, what=name)


def test_evaluation_still_returns_logits():
    model = make_model().eval()
    batch = padded_batch()
    with torch.no_grad():
        out = model(**batch)
        reference = model.language_model(**batch)
    assert out.logits.shape == (2, 40, VOCAB)
    torch.testing.assert_close(out.loss, reference.loss)


class LargestVocabularyTensor(TorchDispatchMode):
    """Records, over every tensor an operation creates, the most rows of any tensor with a vocabulary-sized dim."""

    def __init__(self, vocab_sizes):
        super().__init__()
        self.vocab_sizes, self.most_rows = set(vocab_sizes), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] in self.vocab_sizes:
                self.most_rows = max(self.most_rows, t.numel() // t.shape[-1])
        return out


def test_training_never_materialises_full_vocabulary_logits():
    """Fails on the old main, whose training forward built [B, T, V] logits (and their fp32 copy and gradient)."""
    model = make_model()  # tiles of 7 tokens x 300 vocabulary rows
    batch = {"input_ids": random_ids(4, 64), "labels": random_ids(4, 64, seed=5)}
    tracker = LargestVocabularyTensor({VOCAB, model.config.loss_vocab_block, VOCAB % model.config.loss_vocab_block})
    with tracker:
        model(**batch).loss.backward()
    # Only [V, D]-shaped weight gradients (D = 64 rows) and [7, block] tiles carry a vocabulary dimension.
    hidden = model.config.text_config.hidden_size
    assert 0 < tracker.most_rows <= max(hidden, model.config.loss_token_chunk)
    assert 4 * 64 > hidden  # full logits would have 256 rows


def test_zero3_partitioned_head_gives_transformers_loss_and_gradients_on_two_ranks(tmp_path):
    """DeepSpeed ZeRO-3 on 2 CPU ranks (gloo), every parameter partitioned, ranks with 30 and 75 tokens (5 and 11
    tiles): the chunked loss gathers the head once per pass, so the ranks stay in step, and the losses and the
    reduced gradients equal transformers' loss path in the same engine. About 50 s (two processes start)."""
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "result.json"
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1",
               PYTHONPATH=f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(repo / "tests" / "loss_zero3_worker.py"), str(out)]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = json.loads(out.read_text())
    for rank in result["ranks"]:
        assert rank["head_partitioned"]
        assert rank["losses"]["chunked"] == pytest.approx(rank["losses"]["full"], rel=1e-5)
    worst = result["worst_relative_grad_difference"]
    assert "language_model.lm_head.weight" in worst and len(worst) > 30
    assert max(worst.values()) < 1e-5, worst
