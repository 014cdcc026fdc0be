"""Peak memory of the causal-LM loss at GPT-oss's vocabulary: the chunked loss vs transformers' loss, one run.

Run as: python bench/bench_loss_memory.py [--tokens 8192 --hidden 2880 --vocab 201088]

Both losses take the same bf16 inputs (final hidden states [T, D], a head [V, D], targets [T], every token scored)
and run forward + backward; the figure is the peak of memory allocated on top of those inputs, gradients included.
transformers' loss needs about 20 GB here, more than this machine has free, so the full-size run is counted
without allocating: torch's MemTracker (the CUDA caching allocator's 512-byte rounding) follows every tensor
created, on fake tensors (shapes and dtypes, no storage). The same count on real tensors at a small size (printed
first) must agree to the byte, which shows the fake run counts what a real run allocates. Target: chunked <= 0.1x.
bench/gpu_check.py measures the real CUDA peak on a GPU.
"""

import argparse
import contextlib

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker
from transformers.loss.loss_utils import ForCausalLMLoss

from llava_medgpt.model.loss import DEFAULT_TOKEN_CHUNK, DEFAULT_VOCAB_BLOCK, chunked_linear_cross_entropy_sum


def chunked(hidden, weight, targets):
    return chunked_linear_cross_entropy_sum(hidden, weight, None, targets) / targets.numel()


def transformers_loss(hidden, weight, targets):
    logits = torch.nn.functional.linear(hidden, weight)[None]  # [1, T, V] as the causal-LM head returns them
    return ForCausalLMLoss(logits, None, weight.shape[0], shift_labels=targets[None])


LOSSES = {"chunked": chunked, "transformers": transformers_loss}


def peak_bytes(loss_fn, tokens: int, hidden: int, vocab: int, train_head: bool, fake: bool) -> tuple[int, float]:
    """(peak bytes allocated above the inputs during forward + backward, loss value or nan when fake)."""
    with FakeTensorMode() if fake else contextlib.nullcontext():
        generator = None if fake else torch.Generator().manual_seed(0)
        weight = (torch.randn(vocab, hidden, generator=generator) * 0.02).to(torch.bfloat16).requires_grad_(train_head)
        states = torch.randn(tokens, hidden, generator=generator).to(torch.bfloat16).requires_grad_()
        targets = torch.randint(0, vocab, (tokens,), generator=generator)
        tracker = MemTracker()
        tracker.track_external(weight, states, targets)
        with tracker:
            inputs = sum(per_device["Total"] for per_device in tracker.get_tracker_snapshot().values())
            loss = loss_fn(states, weight, targets)
            loss.backward()
        peak = sum(per_device["Total"] for per_device in tracker.get_tracker_snapshot("peak").values())
        return peak - inputs, float("nan") if fake else loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=2880)
    parser.add_argument("--vocab", type=int, default=201_088)
    parser.add_argument("--check-tokens", type=int, default=256, help="size of the real-vs-fake agreement check")
    parser.add_argument("--check-hidden", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"chunked tiles: {DEFAULT_TOKEN_CHUNK} tokens x {DEFAULT_VOCAB_BLOCK} vocabulary rows")

    print(f"agreement check, T={args.check_tokens} D={args.check_hidden} V={args.vocab:,}: real vs fake tensors")
    for name, loss_fn in LOSSES.items():
        real, value = peak_bytes(loss_fn, args.check_tokens, args.check_hidden, args.vocab, True, fake=False)
        fake, _ = peak_bytes(loss_fn, args.check_tokens, args.check_hidden, args.vocab, True, fake=True)
        print(f"  {name:<13} real {real:>14,} B  fake {fake:>14,} B  {'equal' if real == fake else 'DIFFER'}  "
              f"loss {value:.6f}")
        if real != fake:
            raise SystemExit("the fake-tensor count disagrees with the real one; the full-size figures are not valid")

    print(f"full size, T={args.tokens:,} D={args.hidden:,} V={args.vocab:,}, bf16, fake tensors")
    for train_head in (True, False):
        peaks = {name: peak_bytes(fn, args.tokens, args.hidden, args.vocab, train_head, fake=True)[0]
                 for name, fn in LOSSES.items()}
        label = "head trained (weight gradient included)" if train_head else "head frozen"
        print(f"  {label}: chunked {peaks['chunked'] / 2**30:.2f} GiB, transformers "
              f"{peaks['transformers'] / 2**30:.2f} GiB, ratio {peaks['chunked'] / peaks['transformers']:.3f}x "
              f"(target <= 0.1x)")


if __name__ == "__main__":
    main()
