"""One-GPU check of what CPU tests cannot run: flex attention against eager in bf16, the chunked loss's memory and
speed in real training steps, MFU. Random weights at GPT-oss-20b's real widths with 2 layers (one sliding, one
full), CLIP-L widths with 1 layer; nothing is downloaded. Target: under 5 minutes on one 80 GB GPU.

Run as: python bench/gpu_check.py [--only NAME[,NAME...]] [--json results.json] [--peak-tflops 989]
        python bench/gpu_check.py --list
        python bench/gpu_check.py --dry-run      (tiny sizes on CPU, the same code; tests/test_gpu_check.py)

Needs only the project's environment (`bash scripts/setup.sh` on a GPU machine installs CUDA torch).

The checks are a registry: a function decorated with `@check(name, description)` receives a `Context` and records
figures with `ctx.report(...)`; `--only` runs a subset. Figures:

    loss            chunked vs transformers' loss (and Liger's when installed): values and gradients in bf16 against
                    an fp32 reference, and peak memory of forward + backward at V=201,088, T=8,192
    flex_vs_eager   logits and gradients of attention/router parameters, flex attention vs eager in bf16, each
                    against fp32 eager, for a padded batch and a packed row (model-built BlockMasks); bf16
                    rounding can flip a token's top-k experts, so the median position and top-1 agreement are
                    printed beside the maximum
    step_16x2048    one training step (forward + backward, activation checkpointing, flex attention) on 16 packed
                    rows of 2,048 tokens: peak memory and tokens/s with the chunked loss vs transformers' loss, MFU
    step_32k        the same for one packed row of 32,768 tokens

MFU = (6 x active parameters x tokens + attention FLOPs) / step time / the GPU's dense bf16 peak (a table of known
GPUs or --peak-tflops). Active parameters: everything in the language model that multiplies a token except the
embedding lookup, with the experts at top-k / experts. Attention FLOPs count each sample's causal pairs (at most 128
keys in sliding layers), 4 x pairs x heads x head_dim per layer forward, x 3 for training.
"""

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

# Dense bf16 tensor-core peaks (no sparsity), by torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {
    "NVIDIA H100 80GB HBM3": 989.0,
    "NVIDIA H100 PCIe": 756.0,
    "NVIDIA H100 NVL": 835.0,
    "NVIDIA H200": 989.0,
    "NVIDIA GH200 480GB": 989.0,
    "NVIDIA B200": 2250.0,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA L40S": 362.0,
}


@dataclass(frozen=True)
class Sizes:
    """Model and batch sizes of a run: the real widths on GPU, toy ones for --dry-run."""

    text: dict  # GptOssConfig keyword arguments
    vision: dict  # CLIPVisionConfig keyword arguments
    short_rows: int  # packed rows of the short step
    short_samples: tuple[int, ...]  # sample lengths packed in each short row
    long_samples: tuple[int, ...]  # sample lengths packed in the one long row
    loss_tokens: int  # T of the loss memory check
    compare_rows: int  # padded batch of the flex-vs-eager check
    compare_length: int
    packed_samples: tuple[int, ...]  # the packed row of the flex-vs-eager check
    loss_tile: tuple[int, int] | None = None  # (token_chunk, vocab_block) override of the chunked loss


def real_sizes() -> Sizes:
    from llava_medgpt.model.backbones import GPT_OSS_20B_TEXT_CONFIG

    text = dict(GPT_OSS_20B_TEXT_CONFIG, num_hidden_layers=2, layer_types=["sliding_attention", "full_attention"])
    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=1, num_attention_heads=16,
                  image_size=336, patch_size=14, projection_dim=768)
    return Sizes(text=text, vision=vision, short_rows=16, short_samples=(300, 700, 548, 500),
                 long_samples=(4096, 12288, 16384), loss_tokens=8192, compare_rows=2, compare_length=1024,
                 packed_samples=(700, 900, 448))


def dry_run_sizes() -> Sizes:
    from llava_medgpt.model.backbones import TINY_TEXT_CONFIGS, TINY_VISION_CONFIGS

    text = TINY_TEXT_CONFIGS["gpt_oss"](640).to_diff_dict()
    text.pop("model_type", None)
    vision = TINY_VISION_CONFIGS["clip"]().to_diff_dict()
    vision.pop("model_type", None)
    return Sizes(text=text, vision=vision, short_rows=2, short_samples=(20, 44), long_samples=(64, 192),
                 loss_tokens=96, compare_rows=2, compare_length=48, packed_samples=(20, 28), loss_tile=(16, 256))


@dataclass
class Result:
    check: str
    metric: str
    value: float | int | str
    unit: str = ""
    note: str = ""


@dataclass
class Context:
    device: "object"  # torch.device
    sizes: Sizes
    dry_run: bool
    peak_tflops: float | None
    flex: str  # the attention implementation under test ("flex_attention"; "eager" in a CPU dry run)
    results: list[Result] = field(default_factory=list)

    def report(self, check: str, metric: str, value, unit: str = "", note: str = "") -> None:
        result = Result(check, metric, value, unit, note)
        self.results.append(result)
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {metric:<58} {shown:>14} {unit:<8} {note}", flush=True)


CHECKS: dict[str, tuple[str, Callable[[Context], None]]] = {}


def check(name: str, description: str):
    """Register a check under `name`; checks run in registration order."""

    def register(function: Callable[[Context], None]):
        if name in CHECKS:
            raise ValueError(f"check {name!r} registered twice")
        CHECKS[name] = (description, function)
        return function

    return register


# ------------------------------------------------------------------------------------------------------ helpers


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak bytes allocated above the level at entry: CUDA's allocator statistics on a GPU; on CPU, torch's
    MemTracker (the tensors created inside the block)."""

    def __init__(self, device):
        self.device, self.bytes = device, None

    def __enter__(self):
        import torch

        _sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            from torch.distributed._tools.mem_tracker import MemTracker

            self._tracker = MemTracker()
            self._tracker.__enter__()
        return self

    def __exit__(self, *exc):
        import torch

        _sync(self.device)
        if self.device.type == "cuda":
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        else:
            self._tracker.__exit__(*exc)
            self.bytes = sum(d["Total"] for d in self._tracker.get_tracker_snapshot("peak").values())
        return False


def _gib(n: int | None) -> float | str:
    return "n/a" if n is None else n / 2**30


def _out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError)


def _free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _relative(actual, expected) -> float:
    """max |actual - expected| / max |expected|, in fp32."""
    actual, expected = actual.float(), expected.float()
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30))


def build_model(ctx: Context, attn_implementation: str, dtype, loss_implementation: str = "chunked"):
    """MedGPT at the run's sizes, random weights (seeded), on the device."""
    import torch
    from transformers import CLIPVisionConfig, GptOssConfig

    from llava_medgpt.model.configuration import MedGptConfig
    from llava_medgpt.model.modeling import MedGptForConditionalGeneration

    kwargs = {}
    if ctx.sizes.loss_tile is not None:
        kwargs = dict(loss_token_chunk=ctx.sizes.loss_tile[0], loss_vocab_block=ctx.sizes.loss_tile[1])
    config = MedGptConfig(text_config=GptOssConfig(**ctx.sizes.text), vision_config=CLIPVisionConfig(**ctx.sizes.vision),
                          loss_implementation=loss_implementation, **kwargs)
    torch.manual_seed(0)
    with torch.device(ctx.device):
        model = MedGptForConditionalGeneration(config)
    model.to(dtype)
    model.sync_vision_tower_on_text_batches = False  # one process: text-only steps skip the tower
    model.language_model.set_attn_implementation(attn_implementation)
    return model


def packed_batch(ctx: Context, rows: int, sample_lengths: tuple[int, ...], seed: int = 0) -> dict:
    """Rows of the given samples back to back: input_ids, position_ids restarting per sample, labels with each
    sample's first label ignored (the packing rule); no attention mask (the model builds the masks)."""
    import torch

    vocab = ctx.sizes.text["vocab_size"]
    width = sum(sample_lengths)
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(10, vocab, (rows, width), generator=generator)
    position_ids = torch.cat([torch.arange(n) for n in sample_lengths]).expand(rows, width).clone()
    labels = input_ids.clone()
    labels[position_ids == 0] = -100
    return {"input_ids": input_ids.to(ctx.device), "position_ids": position_ids.to(ctx.device),
            "labels": labels.to(ctx.device)}


def attention_flops(ctx: Context, sample_lengths: tuple[int, ...], rows: int) -> float:
    """Training FLOPs of attention scores and values for causal samples (sliding layers see at most the window)."""
    text = ctx.sizes.text
    window = text.get("sliding_window") or 0
    per_layer_pairs = []
    for layer_type in text["layer_types"]:
        pairs = 0
        for n in sample_lengths:
            if layer_type == "sliding_attention" and window:
                w = min(window, n)
                pairs += w * (w + 1) // 2 + (n - w) * w
            else:
                pairs += n * (n + 1) // 2
        per_layer_pairs.append(pairs)
    return 3 * 4 * sum(per_layer_pairs) * rows * text["num_attention_heads"] * text["head_dim"]


def active_parameters(model) -> int:
    text = model.config.text_config
    share = text.num_experts_per_tok / text.num_local_experts
    total = 0
    for name, p in model.language_model.named_parameters():
        if "embed_tokens" in name:
            continue  # a lookup, not a matmul
        total += p.numel() * (share if ".experts." in name else 1)
    return int(total)


def peak_tflops(ctx: Context) -> float | None:
    import torch

    if ctx.peak_tflops is not None:
        return ctx.peak_tflops
    if ctx.device.type != "cuda":
        return None
    return PEAK_BF16_TFLOPS.get(torch.cuda.get_device_name(ctx.device))


# ------------------------------------------------------------------------------------------------------ checks


@check("loss", "chunked vs transformers' loss (and Liger's): bf16 values/gradients vs fp32, peak memory")
def check_loss(ctx: Context) -> None:
    import torch
    from transformers.loss.loss_utils import ForCausalLMLoss

    from llava_medgpt.model.loss import causal_lm_loss, liger_available

    tokens, hidden, vocab = ctx.sizes.loss_tokens, ctx.sizes.text["hidden_size"], ctx.sizes.text["vocab_size"]
    generator = torch.Generator().manual_seed(0)
    weight32 = (torch.randn(vocab, hidden, generator=generator) * 0.02).to(ctx.device)
    states32 = torch.randn(1, tokens, hidden, generator=generator).to(ctx.device)
    labels = torch.randint(0, vocab, (1, tokens), generator=generator).to(ctx.device)
    labels[0, : tokens // 8] = -100  # a prompt
    tile = ctx.sizes.loss_tile or (None, None)
    chunk_kwargs = {} if tile[0] is None else dict(token_chunk=tile[0], vocab_block=tile[1])

    losses = {
        "transformers": lambda head, h: ForCausalLMLoss(head(h), labels, vocab),
        "chunked": lambda head, h: causal_lm_loss(head, h, labels, implementation="chunked", **chunk_kwargs),
    }
    if ctx.device.type == "cuda" and liger_available():
        losses["liger"] = lambda head, h: causal_lm_loss(head, h, labels, implementation="liger")

    def run(loss_fn, dtype):
        head = torch.nn.Linear(hidden, vocab, bias=False, device=ctx.device, dtype=dtype)
        with torch.no_grad():
            head.weight.copy_(weight32)
        states = states32.to(dtype).detach().clone().requires_grad_()
        with PeakMemory(ctx.device) as peak:
            loss = loss_fn(head, states)
            loss.backward()
        return loss.detach().float(), states.grad.float(), head.weight.grad.float(), peak.bytes

    reference = run(losses["transformers"], torch.float32)
    for name, loss_fn in losses.items():
        try:
            loss, grad_states, grad_weight, peak = run(loss_fn, torch.bfloat16)
        except BaseException as error:
            if not _out_of_memory(error):
                raise
            _free(ctx.device)
            ctx.report("loss", f"{name}: forward + backward", "out of memory")
            continue
        ctx.report("loss", f"{name} bf16: loss relative error vs fp32", _relative(loss, reference[0]))
        ctx.report("loss", f"{name} bf16: d hidden max relative error vs fp32", _relative(grad_states, reference[1]))
        ctx.report("loss", f"{name} bf16: d head max relative error vs fp32", _relative(grad_weight, reference[2]))
        ctx.report("loss", f"{name} bf16: peak memory (T={tokens:,}, V={vocab:,})", _gib(peak), "GiB")
        _free(ctx.device)


@check("flex_vs_eager", "flex attention vs eager in bf16, each against fp32 eager: logits and gradients")
def check_flex_vs_eager(ctx: Context) -> None:
    import torch

    sizes = ctx.sizes
    generator = torch.Generator().manual_seed(1)
    vocab = sizes.text["vocab_size"]
    padded_ids = torch.randint(10, vocab, (sizes.compare_rows, sizes.compare_length), generator=generator)
    mask = torch.ones_like(padded_ids)
    mask[-1, sizes.compare_length // 2 :] = 0
    labels = padded_ids.masked_fill(mask == 0, -100)
    batches = {
        "padded": {"input_ids": padded_ids.to(ctx.device), "attention_mask": mask.to(ctx.device),
                   "labels": labels.to(ctx.device)},
        "packed": packed_batch(ctx, 1, sizes.packed_samples, seed=2),
    }
    compared = ("self_attn", "router", "layernorm", "norm.weight")  # attention sees flex directly; the rest follows

    def run(model, batch):
        model.eval()
        with torch.no_grad():
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        model.train()
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        grads = {n: p.grad.float().clone() for n, p in model.language_model.named_parameters()
                 if p.grad is not None and any(c in n for c in compared)}
        keep = batch.get("attention_mask")
        return (logits if keep is None else logits[keep.bool()]), grads

    model = build_model(ctx, "eager", torch.float32)
    with torch.no_grad():  # sinks start near zero; make them matter
        for layer in model.language_model.model.layers:
            layer.self_attn.sinks.normal_(0.0, 1.0)
    outputs = {name: {"eager fp32": run(model, batch)} for name, batch in batches.items()}
    model.to(torch.bfloat16)
    for name, batch in batches.items():
        outputs[name]["eager bf16"] = run(model, batch)
    model.language_model.set_attn_implementation(ctx.flex)
    for name, batch in batches.items():
        if ctx.device.type == "cpu" and ctx.flex != "eager":
            raise RuntimeError("flex attention has no CPU backward")
        outputs[name][f"{ctx.flex} bf16"] = run(model, batch)
    del model
    _free(ctx.device)

    for name, by_variant in outputs.items():
        ref_logits, ref_grads = by_variant["eager fp32"]
        pairs = [(f"{ctx.flex} bf16", "eager fp32"), ("eager bf16", "eager fp32"), (f"{ctx.flex} bf16", "eager bf16")]
        for left, right in dict.fromkeys(p for p in pairs if p[0] != p[1]):  # a CPU dry run has eager twice
            logits_l, grads_l = by_variant[left]
            logits_r, grads_r = by_variant[right]
            per_position = (logits_l - logits_r).abs().amax(dim=-1)  # [positions]
            ctx.report("flex_vs_eager", f"{name}: logits {left} vs {right}: max abs", per_position.max().item())
            ctx.report("flex_vs_eager", f"{name}: logits {left} vs {right}: relative", _relative(logits_l, logits_r))
            # A position whose MoE routing flips under rounding differs a lot; the median position shows the rest.
            ctx.report("flex_vs_eager", f"{name}: logits {left} vs {right}: median position max abs",
                       per_position.median().item())
            ctx.report("flex_vs_eager", f"{name}: logits {left} vs {right}: same top-1 token",
                       (logits_l.argmax(-1) == logits_r.argmax(-1)).float().mean().item(), "share")
            worst = max(grads_r, key=lambda n: _relative(grads_l[n], grads_r[n]))
            ctx.report("flex_vs_eager", f"{name}: gradients {left} vs {right}: worst relative",
                       _relative(grads_l[worst], grads_r[worst]), note=worst)
        sinks = [n for n in ref_grads if n.endswith("sinks")]
        ctx.report("flex_vs_eager", f"{name}: sinks gradient {ctx.flex} bf16 vs eager fp32",
                   max(_relative(by_variant[f"{ctx.flex} bf16"][1][n], ref_grads[n]) for n in sinks))


def _training_steps(ctx: Context, check_name: str, rows: int, samples: tuple[int, ...]) -> None:
    import torch

    batch = packed_batch(ctx, rows, samples)
    tokens = rows * sum(samples)
    peak = peak_tflops(ctx)
    active = None
    for loss_implementation in ("chunked", "full"):
        model = build_model(ctx, ctx.flex, torch.bfloat16, loss_implementation)
        active = active_parameters(model)
        model.activation_checkpointing_enable({"use_reentrant": False})
        model.train()
        label = "chunked loss" if loss_implementation == "chunked" else "transformers' loss"
        try:
            model(**batch).loss.backward()  # warm-up: compiles flex attention for these shapes
            model.zero_grad(set_to_none=True)
            _sync(ctx.device)
            start = time.perf_counter()
            with PeakMemory(ctx.device) as memory:
                model(**batch).loss.backward()
            seconds = time.perf_counter() - start
        except BaseException as error:
            if not _out_of_memory(error):
                raise
            del model
            _free(ctx.device)
            ctx.report(check_name, f"{label}: forward + backward", "out of memory")
            continue
        flops = 6 * active * tokens + attention_flops(ctx, samples, rows)
        ctx.report(check_name, f"{label}: peak memory above the weights (gradients included)", _gib(memory.bytes),
                   "GiB")
        ctx.report(check_name, f"{label}: tokens/s", tokens / seconds, "tok/s", f"{seconds * 1e3:.1f} ms")
        if peak is None:
            ctx.report(check_name, f"{label}: MFU", "n/a", note="unknown GPU: pass --peak-tflops")
        else:
            ctx.report(check_name, f"{label}: MFU", flops / seconds / (peak * 1e12), note=f"peak {peak:g} TFLOPS")
        del model
        _free(ctx.device)
    ctx.report(check_name, f"active parameters ({ctx.sizes.text['num_hidden_layers']}-layer model)", active)


@check("step_16x2048", "training step on 16 packed rows of 2,048 tokens: memory, tokens/s, MFU, both losses")
def check_step_short(ctx: Context) -> None:
    _training_steps(ctx, "step_16x2048", ctx.sizes.short_rows, ctx.sizes.short_samples)


@check("step_32k", "training step on one packed row of 32,768 tokens: memory, tokens/s, MFU, both losses")
def check_step_long(ctx: Context) -> None:
    _training_steps(ctx, "step_32k", 1, ctx.sizes.long_samples)


# ------------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated check names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for MFU")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU: the same code in seconds")
    args = parser.parse_args(argv)
    if args.list:
        for name, (description, _) in CHECKS.items():
            print(f"{name:<16} {description}")
        return 0
    names = list(CHECKS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        parser.error(f"unknown checks {unknown}; known: {list(CHECKS)}")

    import torch

    if args.dry_run:
        device, sizes = torch.device("cpu"), dry_run_sizes()
        torch.set_num_threads(2)
        flex = "eager"  # torch's flex attention has no CPU backward: tests/test_model_flex_attention.py covers it
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device (use --dry-run to exercise the script on CPU)")
        device, sizes, flex = torch.device("cuda"), real_sizes(), "flex_attention"
    ctx = Context(device=device, sizes=sizes, dry_run=args.dry_run, peak_tflops=args.peak_tflops, flex=flex)
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu (dry run)'}, "
          f"torch {torch.__version__}, attention under test: {flex}")
    started = time.perf_counter()
    timings = {}
    for name in names:
        description, function = CHECKS[name]
        print(f"[{name}] {description}", flush=True)
        check_start = time.perf_counter()
        function(ctx)
        timings[name] = time.perf_counter() - check_start
        print(f"  ({timings[name]:.1f} s)")
    total = time.perf_counter() - started
    print(f"total {total:.1f} s (target < 300 s on one GPU)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": str(device), "dry_run": args.dry_run, "attention": flex, "seconds": timings, "total_seconds": total,
            "results": [asdict(r) for r in ctx.results],
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
