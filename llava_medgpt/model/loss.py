"""Causal-LM cross-entropy that never holds full-vocabulary logits.

transformers' causal-LM loss builds logits [B, T, V] and upcasts them to fp32: at GPT-oss's 201,088-token vocabulary
that is 2.77 MB per token before the backward doubles it, more than an 80 GB GPU holds at 16 rows of 2,048 tokens.
Here the head's matmul, the log-softmax and their gradients run tile by tile over (tokens x vocabulary); only
per-token statistics (the log-sum-exp, fp32, 4 bytes a token) are kept between forward and backward, and each
tile's logits are recomputed in the backward. The numbers are the same as transformers' loss (`ForCausalLMLoss`):

    logits  = head(hidden) in the head's dtype, then upcast to fp32         (the same rounding, tile by tile)
    loss    = sum over scored tokens of (logsumexp(logits) - logits[target]) / denominator
    denominator = num_items_in_batch if given (the Trainer's token count across gradient accumulation) else the
                  number of scored tokens (the mean)

so only the order of floating-point reductions differs. Labels shift left as transformers shifts them (the logit at
t is scored against labels[t + 1]), positions labelled IGNORE_INDEX are dropped before the head runs (prompt and
image tokens cost no head compute), and packing's rule (a sample's first label is IGNORE_INDEX) carries over as is.

Under DeepSpeed ZeRO-3 the head's weight is a partitioned shard outside its module's forward; it is gathered once
for the forward and once for the backward (the same count on every rank, whatever its token count, so ranks stay in
step) and its gradient is returned at full shape like any linear layer's.

Implementations (`MedGptConfig.loss_implementation`): "chunked" (this module, plain torch, CPU and GPU), "liger"
(Liger-Kernel's fused Triton kernel, GPU only), "auto" (liger when it is installed and the batch is on a GPU, else
chunked) and "full" (transformers' loss on full logits, for comparison).
"""

from contextlib import contextmanager, nullcontext
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import IGNORE_INDEX

# Tile sizes of the chunked loss: one tile's fp32 logits are token_chunk x vocab_block x 4 bytes (128 MB by default);
# the head matmuls stay large enough to run at full speed on a GPU.
DEFAULT_TOKEN_CHUNK = 2048
DEFAULT_VOCAB_BLOCK = 16384

LOSS_IMPLEMENTATIONS = ("auto", "chunked", "liger", "full")


@contextmanager
def gathered(*params):
    """Gather ZeRO-3-partitioned parameters for the duration of the block (a no-op for ordinary tensors)."""
    partitioned = [p for p in params if p is not None and hasattr(p, "ds_id")]
    if not partitioned:
        yield
        return
    import deepspeed
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    # Parameters already gathered by someone else (a tied embedding inside its forward) stay as they are.
    missing = [p for p in partitioned if p.ds_status == ZeroParamStatus.NOT_AVAILABLE]
    with deepspeed.zero.GatheredParameters(missing, modifier_rank=None) if missing else nullcontext():
        yield


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype the head's matmul runs in: autocast's if it is on (as nn.Linear under autocast), else hidden's."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return hidden.dtype


def _tile_logits(hidden, weight, bias, v0, v1, dtype):
    """[C, D] hidden x rows v0:v1 of the head -> [C, v1 - v0] fp32 logits, rounded to `dtype` first as nn.Linear does."""
    w = weight[v0:v1].to(dtype)
    b = None if bias is None else bias[v0:v1].to(dtype)
    with torch.autocast(hidden.device.type, enabled=False):
        return F.linear(hidden.to(dtype), w, b).float()


def _target_columns(targets, v0, v1):
    """([C, 1] column of each row's target in the tile v0:v1 (0 when outside), [C, 1] whether it is inside).

    Dense (no data-dependent shapes), so the tile loops never wait for the device.
    """
    inside = (targets >= v0) & (targets < v1)
    columns = torch.where(inside, targets - v0, 0)
    return columns[:, None], inside[:, None]


class LinearCrossEntropySum(torch.autograd.Function):
    """sum_i (logsumexp(hidden_i W^T + b) - (hidden_i W^T + b)[target_i]) over rows i; every target is scored.

    hidden [N, D], weight [V, D], bias [V] or None, targets [N] in [0, V). Returns a 0-d fp32 tensor.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, token_chunk, vocab_block):
        dtype = _compute_dtype(hidden)
        n = hidden.shape[0]
        lse = torch.empty(n, dtype=torch.float32, device=hidden.device)  # [N]
        target_logits = torch.zeros(n, dtype=torch.float32, device=hidden.device)  # [N]
        with gathered(weight, bias):
            vocab = weight.shape[0]
            for start in range(0, n, token_chunk):
                h, t = hidden[start : start + token_chunk], targets[start : start + token_chunk]
                picked = target_logits[start : start + token_chunk]
                running_max = running_sum = None
                for v0 in range(0, vocab, vocab_block):
                    v1 = min(v0 + vocab_block, vocab)
                    z = _tile_logits(h, weight, bias, v0, v1, dtype)  # [C, Vb] fp32
                    columns, inside = _target_columns(t, v0, v1)
                    picked += torch.where(inside, z.gather(1, columns), 0.0).squeeze(1)
                    # Online log-sum-exp over vocabulary blocks (exact when the vocabulary is one block).
                    block_max = z.amax(dim=1)
                    new_max = block_max if running_max is None else torch.maximum(running_max, block_max)
                    block_sum = z.sub_(new_max[:, None]).exp_().sum(dim=1)
                    running_sum = block_sum if running_sum is None else running_sum * (running_max - new_max).exp() + block_sum
                    running_max = new_max
                    del z
                if running_max is not None:
                    lse[start : start + token_chunk] = running_max + running_sum.log()
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.token_chunk, ctx.vocab_block, ctx.dtype = token_chunk, vocab_block, dtype
        return (lse - target_logits).sum()

    @staticmethod
    def backward(ctx, grad_loss):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        token_chunk, vocab_block, dtype = ctx.token_chunk, ctx.vocab_block, ctx.dtype
        n = hidden.shape[0]
        grad_hidden = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device) if need_hidden else None
        grad_weight = grad_bias = None
        with gathered(weight, bias):
            vocab = weight.shape[0]
            if need_weight:
                grad_weight = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device)
            if need_bias:
                grad_bias = torch.empty(bias.shape, dtype=bias.dtype, device=bias.device)
            # Vocabulary blocks outside, tokens inside: each block's weight gradient is summed over all tokens in
            # fp32 and rounded once, without an fp32 accumulator the size of the whole head.
            for v0 in range(0, vocab, vocab_block):
                v1 = min(v0 + vocab_block, vocab)
                w = weight[v0:v1].to(dtype)
                block_grad_weight = torch.zeros(v1 - v0, weight.shape[1], dtype=torch.float32, device=weight.device) if need_weight else None
                block_grad_bias = torch.zeros(v1 - v0, dtype=torch.float32, device=weight.device) if need_bias else None
                for start in range(0, n, token_chunk):
                    h = hidden[start : start + token_chunk].to(dtype)
                    t = targets[start : start + token_chunk]
                    # d loss / d logits = softmax - onehot(target), times the incoming gradient.
                    z = _tile_logits(h, weight, bias, v0, v1, dtype)  # [C, Vb] fp32
                    z.sub_(lse[start : start + token_chunk, None]).exp_()
                    columns, inside = _target_columns(t, v0, v1)
                    z.scatter_add_(1, columns, -inside.to(z.dtype))
                    z.mul_(grad_loss)
                    if need_bias:
                        block_grad_bias += z.sum(dim=0)
                    g = z.to(dtype)
                    del z
                    if need_hidden:
                        grad_hidden[start : start + token_chunk] += g @ w  # [C, D]
                    if need_weight:
                        block_grad_weight += g.T @ h  # [Vb, D]
                    del g
                if need_weight:
                    grad_weight[v0:v1] = block_grad_weight
                if need_bias:
                    grad_bias[v0:v1] = block_grad_bias
        if need_hidden:
            grad_hidden = grad_hidden.to(hidden.dtype)
        return grad_hidden, grad_weight, grad_bias, None, None, None


def chunked_linear_cross_entropy_sum(
    hidden, weight, bias, targets, token_chunk: int = DEFAULT_TOKEN_CHUNK, vocab_block: int = DEFAULT_VOCAB_BLOCK
) -> torch.Tensor:
    return LinearCrossEntropySum.apply(hidden, weight, bias, targets, token_chunk, vocab_block)


def liger_linear_cross_entropy_sum(hidden, weight, bias, targets, **_) -> torch.Tensor:
    """Liger-Kernel's fused linear cross-entropy (Triton, GPU): computes the gradients during the forward, so the
    head only needs gathering for the forward under ZeRO-3."""
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    with gathered(weight, bias):
        loss = liger_fused_linear_cross_entropy(hidden, weight, targets, bias=bias, reduction="sum")
    return loss.float()


@cache
def liger_available() -> bool:
    try:
        import liger_kernel.transformers.functional  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_loss_implementation(requested: str, device: torch.device) -> str:
    if requested not in LOSS_IMPLEMENTATIONS:
        raise ValueError(f"loss_implementation must be one of {LOSS_IMPLEMENTATIONS}, got {requested!r}")
    if requested == "auto":
        return "liger" if device.type == "cuda" and liger_available() else "chunked"
    if requested == "liger" and (device.type != "cuda" or not liger_available()):
        raise ValueError(
            "loss_implementation='liger' needs the liger-kernel package and a CUDA device; use 'chunked' (plain "
            "torch, the same numbers) elsewhere"
        )
    return requested


SUM_IMPLEMENTATIONS = {"chunked": chunked_linear_cross_entropy_sum, "liger": liger_linear_cross_entropy_sum}


def causal_lm_loss(
    head: nn.Linear,
    hidden_states: torch.Tensor,
    labels: torch.Tensor | None = None,
    num_items_in_batch: torch.Tensor | int | None = None,
    shift_labels: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    implementation: str = "chunked",
    token_chunk: int = DEFAULT_TOKEN_CHUNK,
    vocab_block: int = DEFAULT_VOCAB_BLOCK,
) -> torch.Tensor:
    """transformers' causal-LM loss of `head(hidden_states)` against `labels`, without full logits.

    hidden_states [B, T, D] (the decoder's last hidden state), labels [B, T] (or shift_labels, already shifted).
    """
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]  # [B, T]: the logit at t predicts t + 1
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])  # [B*T, D]
    targets = shift_labels.reshape(-1).to(hidden.device)  # [B*T]
    scored = (targets != ignore_index).nonzero().squeeze(1)  # [N]
    implementation = resolve_loss_implementation(implementation, hidden.device)
    loss_sum = SUM_IMPLEMENTATIONS[implementation](
        hidden[scored], head.weight, head.bias, targets[scored], token_chunk=token_chunk, vocab_block=vocab_block
    )
    if num_items_in_batch is None:
        return loss_sum / scored.numel()  # the mean; 0/0 = nan with no scored token, as transformers gives
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss_sum.device)
    return loss_sum / num_items_in_batch


__all__ = [
    "LOSS_IMPLEMENTATIONS",
    "LinearCrossEntropySum",
    "causal_lm_loss",
    "chunked_linear_cross_entropy_sum",
    "gathered",
    "resolve_loss_implementation",
]
