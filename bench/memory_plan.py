"""Per-GPU memory plan for training MedGPT-oss (GPT-oss-20b + CLIP-ViT-L/14@336) under DeepSpeed ZeRO-3.

Run as: python bench/memory_plan.py [--gpus 8] [--capacity-gib 80 141 180] [--image-share 1.0] [--headroom 0.10]

Everything comes from the real configs (MedGptConfig()'s defaults, scripts/deepspeed/zero3.json), built on the meta
device or as fake tensors: nothing is downloaded or allocated. Per GPU, for a micro-batch of T tokens:

    partitioned state    bf16 parameters (all), bf16 gradients + fp32 master weights and Adam moments (trained
                         parts), divided by the number of GPUs; the fp32 gradient of one optimizer sub-group at the step
    in flight            gathered bf16 parameters (stage3_max_live_parameters), the full bf16 gradient of the largest
                         trained ZeRO-3 leaf module before its reduce-scatter
    activations          activation checkpointing: every decoder layer's input (T x hidden, bf16) plus the recompute
                         and backward of one layer, measured on fake tensors at the real widths (flex attention stands
                         in as what it keeps: q, k, v, output and the log-sum-exp; no T x T scores)
    vision               the same for CLIP-L's 24 layers (SDPA's memory-efficient kernel keeps what flex keeps), for the
                         tiles behind the image tokens (T x image_share / 144)
    loss                 the chunked loss (model/loss.py), measured on fake tensors at T
    headroom             a share of the GPU kept for the CUDA context, NCCL buffers and fragmentation (an assumption)

The measured parts are linear in T (one sample per row or packed, with flex attention), fitted from two sizes and
checked at a third. The plan prints, per GPU size and stage, the most tokens per GPU per micro-step, and the rows
(per-device batch) of each max length that fit.
"""

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a clone without installing

GIB = 2**30
LENGTHS = (2048, 4096, 8192, 16384, 32768)


def parameter_counts() -> dict:
    """Parameter counts of the default (paper) model, built on the meta device."""
    import torch

    from llava_medgpt.model.configuration import MedGptConfig
    from llava_medgpt.model.modeling import MedGptForConditionalGeneration

    with torch.device("meta"):
        model = MedGptForConditionalGeneration(MedGptConfig())
    lm = model.language_model
    layer = lm.model.layers[0]
    return {
        "language_model": sum(p.numel() for p in lm.parameters()),
        "vision_tower": sum(p.numel() for p in model.vision_tower.parameters()),
        "projector": sum(p.numel() for p in model.multi_modal_projector.parameters()),
        "decoder_layer": sum(p.numel() for p in layer.parameters()),
        "moe_block": sum(p.numel() for p in layer.mlp.parameters()),  # a ZeRO-3 leaf: gathered whole
        "lm_head": lm.get_output_embeddings().weight.numel(),
        "vision_layer": sum(p.numel() for p in model.vision_tower.encoder.layers[0].parameters()),
    }


def _flex_memory_attention():
    """An attention function that keeps what torch's flex attention keeps for its backward (q, k, v, the output and
    the fp32 log-sum-exp) and returns what its backward returns, computing nothing: flex's own working memory is
    blocks, never T x T scores."""
    import torch

    class Flex(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v):
            out = torch.empty_like(q)
            lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
            ctx.save_for_backward(q, k, v, out, lse)
            return out

        @staticmethod
        def backward(ctx, grad):
            q, k, v, _, _ = ctx.saved_tensors
            return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def attention(module, query, key, value, attention_mask, **kwargs):
        return Flex.apply(query, key, value).transpose(1, 2).contiguous(), None

    return attention


class LiveBytes:
    """Peak bytes of the tensor storages created inside the block (rounded up to 512 B, as the CUDA caching allocator
    rounds), freed when their last tensor goes: what torch's MemTracker counts, without its module hooks (which need
    every parameter to require grad)."""

    def __init__(self):
        import weakref

        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                import torch

                for t in out if isinstance(out, (tuple, list)) else [out]:
                    if isinstance(t, torch.Tensor):
                        tracker._add(t.untyped_storage())
                return out

        self._weakref, self._mode = weakref, Mode()
        self._seen, self._refs, self.live, self.peak = {}, {}, 0, 0

    def _add(self, storage) -> None:
        key = id(storage)
        if key in self._seen:
            return
        size = -(-storage.nbytes() // 512) * 512
        self._seen[key] = size
        self.live += size
        self.peak = max(self.peak, self.live)

        def release(_, key=key):
            self.live -= self._seen.pop(key, 0)
            self._refs.pop(key, None)

        self._refs[key] = self._weakref.ref(storage, release)

    def ignore(self, *tensors) -> "LiveBytes":
        """Storages that exist before the block (weights, inputs): views of them allocate nothing."""
        for t in tensors:
            self._seen[id(t.untyped_storage())] = 0
            self._keep = getattr(self, "_keep", []) + [t]
        return self

    def __enter__(self):
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)


def _tracked_peak(build, run) -> int:
    """Peak bytes created while `run(module, *inputs)` does forward + backward, on fake tensors."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            module, inputs = build()
        finally:
            torch.set_default_dtype(previous)
        existing = [*module.parameters(), *module.buffers(), *inputs]
        with LiveBytes().ignore(*existing) as tracker:
            run(module, *inputs)
        return tracker.peak


def decoder_layer_bytes(tokens: int, layer_type: str) -> int:
    """Recompute + backward of one GPT-oss-20b decoder layer at T tokens, weights frozen (their gradients are
    counted apart), the input requiring grad as under activation checkpointing."""
    import torch
    from transformers import AttentionInterface, GptOssConfig
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssDecoderLayer, GptOssRotaryEmbedding

    from llava_medgpt.model.backbones import GPT_OSS_20B_TEXT_CONFIG

    AttentionInterface.register("memory_plan_flex", _flex_memory_attention())
    config = GptOssConfig(**GPT_OSS_20B_TEXT_CONFIG)
    config._attn_implementation = "memory_plan_flex"
    config._experts_implementation = "grouped_mm"  # transformers' default for GPT-oss models
    index = config.layer_types.index(layer_type)

    def build():
        layer = GptOssDecoderLayer(config, index).requires_grad_(False)
        hidden = torch.randn(1, tokens, config.hidden_size, requires_grad=True)
        return layer, (hidden,)

    def run(layer, hidden):
        position_ids = torch.arange(tokens)[None]
        embeddings = GptOssRotaryEmbedding(config)(hidden, position_ids)
        out = layer(hidden, attention_mask=None, position_ids=position_ids, position_embeddings=embeddings)
        out = out[0] if isinstance(out, tuple) else out
        out.backward(torch.empty_like(out))

    return _tracked_peak(build, run)


def vision_layer_bytes(tiles: int) -> int:
    """Recompute + backward of one CLIP-L/14@336 encoder layer for `tiles` tiles of 577 tokens, weights frozen."""
    import torch
    from transformers import AttentionInterface
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer

    from llava_medgpt.model.configuration import MedGptConfig

    AttentionInterface.register("memory_plan_flex", _flex_memory_attention())
    config = MedGptConfig().vision_config
    config._attn_implementation = "memory_plan_flex"  # SDPA's memory-efficient kernel on GPU keeps the same
    tokens = (config.image_size // config.patch_size) ** 2 + 1

    def build():
        layer = CLIPEncoderLayer(config).requires_grad_(False)
        return layer, (torch.randn(tiles, tokens, config.hidden_size, requires_grad=True),)

    def run(layer, hidden):
        out = layer(hidden, attention_mask=None)
        out = out[0] if isinstance(out, tuple) else out
        out.backward(torch.empty_like(out))

    return _tracked_peak(build, run)


def loss_bytes(tokens: int, train_head: bool) -> int:
    """Forward + backward of the chunked loss on T scored tokens (the head's full gradient when it trains)."""
    import torch

    from llava_medgpt.model.backbones import GPT_OSS_20B_TEXT_CONFIG
    from llava_medgpt.model.loss import chunked_linear_cross_entropy_sum

    hidden, vocab = GPT_OSS_20B_TEXT_CONFIG["hidden_size"], GPT_OSS_20B_TEXT_CONFIG["vocab_size"]

    def build():
        weight = torch.randn(vocab, hidden).requires_grad_(train_head)
        states = torch.randn(tokens, hidden, requires_grad=True)
        return torch.nn.Module(), (weight, states, torch.randint(0, vocab, (tokens,)))

    def run(_, weight, states, targets):
        (chunked_linear_cross_entropy_sum(states, weight, None, targets) / tokens).backward()

    return _tracked_peak(build, run)


def linear_fit(measure, small: int, large: int, check: int) -> tuple[float, float]:
    """(a, b) with measure(n) = a + b n, fitted at two sizes; refuses if a third is off by more than 1%."""
    y1, y2 = measure(small), measure(large)
    b = (y2 - y1) / (large - small)
    a = y1 - b * small
    predicted, actual = a + b * check, measure(check)
    if abs(predicted - actual) > 0.01 * actual:
        raise RuntimeError(f"not linear: predicted {predicted:.0f} B at {check}, measured {actual:.0f} B")
    return a, b


def tracker_agreement() -> float:
    """Relative difference between LiveBytes and torch's MemTracker on the same fake forward + backward (transformers'
    loss at a small size); bench/bench_loss_memory.py shows MemTracker's fake count equal to its real one."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    from transformers.loss.loss_utils import ForCausalLMLoss

    peaks = []
    for use_memtracker in (False, True):
        with FakeTensorMode():
            weight = torch.randn(201_088, 64, dtype=torch.bfloat16, requires_grad=True)
            states = torch.randn(256, 64, dtype=torch.bfloat16, requires_grad=True)
            targets = torch.randint(0, 201_088, (256,))

            def run():
                logits = torch.nn.functional.linear(states, weight)[None]
                ForCausalLMLoss(logits, None, weight.shape[0], shift_labels=targets[None]).backward()

            if use_memtracker:
                tracker = MemTracker()
                tracker.track_external(weight, states, targets)
                with tracker:
                    start = sum(d["Total"] for d in tracker.get_tracker_snapshot().values())
                    run()
                peaks.append(sum(d["Total"] for d in tracker.get_tracker_snapshot("peak").values()) - start)
            else:
                with LiveBytes().ignore(weight, states, targets) as live:
                    run()
                peaks.append(live.peak)
    return abs(peaks[0] - peaks[1]) / peaks[1]


def zero3_settings() -> dict:
    return json.loads((ROOT / "scripts" / "deepspeed" / "zero3.json").read_text())["zero_optimization"]


def plan(args) -> dict:
    from llava_medgpt.model.backbones import GPT_OSS_20B_TEXT_CONFIG

    counts = parameter_counts()
    zero = zero3_settings()
    hidden, layers = GPT_OSS_20B_TEXT_CONFIG["hidden_size"], GPT_OSS_20B_TEXT_CONFIG["num_hidden_layers"]
    total = counts["language_model"] + counts["vision_tower"] + counts["projector"]
    trained = {"stage 0 (LLM frozen)": counts["vision_tower"] + counts["projector"], "stages 1-2 (all)": total}

    print("measuring activations on fake tensors (real widths) ...", file=sys.stderr)
    layer_fit = max((linear_fit(lambda t, k=k: decoder_layer_bytes(t, k), 2048, 4096, 8192)
                     for k in ("sliding_attention", "full_attention")), key=lambda ab: ab[0] + ab[1] * 32768)
    vision_fit = linear_fit(vision_layer_bytes, 1, 2, 4)
    vision_config_layers = 24
    vision_tokens, vision_hidden = 577, 1024
    loss = {True: loss_bytes(32768, True), False: loss_bytes(32768, False)}  # ~constant in T (tiles)

    def breakdown(stage: str, tokens: int) -> dict:
        p_train = trained[stage]
        lm_trains = stage != "stage 0 (LLM frozen)"
        tiles = math.ceil(tokens * args.image_share / 144)
        parts = {
            "bf16 parameters (partitioned)": 2 * total / args.gpus,
            "bf16 gradients (partitioned)": 2 * p_train / args.gpus,
            # ZeRO-Offload (scripts/deepspeed/zero3_offload.json) keeps these two in host memory instead.
            "fp32 master + Adam moments (partitioned)": 0 if args.offload_optimizer else 12 * p_train / args.gpus,
            "fp32 gradient of one sub-group at the step": 0 if args.offload_optimizer
            else 4 * min(float(zero["sub_group_size"]), p_train / args.gpus),
            "gathered parameters in flight": 2 * float(zero["stage3_max_live_parameters"]),
            "full gradient of the largest leaf before reduce-scatter": 2 * (counts["moe_block"] if lm_trains
                                                                            else counts["vision_layer"]),
            "LM checkpointed layer inputs": (layers + 2) * tokens * hidden * 2,
            "LM one layer recompute + backward": layer_fit[0] + layer_fit[1] * tokens,
            "vision checkpointed inputs + one layer": (vision_config_layers + 1) * tiles * vision_tokens * vision_hidden * 2
                                                      + vision_fit[0] + vision_fit[1] * tiles,
            "chunked loss": loss[lm_trains],
        }
        return parts

    results = {"counts": counts, "gpus": args.gpus, "image_share": args.image_share, "headroom": args.headroom,
               "offload_optimizer": args.offload_optimizer, "tracker_agreement": tracker_agreement(),
               "per_token_bytes": {}, "plans": []}
    for stage in trained:
        empty, million = breakdown(stage, 0), breakdown(stage, 2**20)
        results["per_token_bytes"][stage] = {k: (million[k] - empty[k]) / 2**20 for k in empty}
    for capacity in args.capacity_gib:
        usable = capacity * GIB * (1 - args.headroom)
        for stage in trained:
            low, high = 0, 1 << 22
            while low < high:  # the most tokens whose total fits
                middle = (low + high + 1) // 2
                if sum(breakdown(stage, middle).values()) <= usable:
                    low = middle
                else:
                    high = middle - 1
            rows = {length: low // length for length in LENGTHS}
            results["plans"].append({"capacity_gib": capacity, "stage": stage, "max_tokens": low, "rows": rows,
                                     "at_max": breakdown(stage, low), "fixed": sum(breakdown(stage, 0).values())})
    return results


def print_markdown(results: dict) -> None:
    counts = results["counts"]
    print(f"Parameters (meta build): LM {counts['language_model'] / 1e9:.2f}B, vision {counts['vision_tower'] / 1e6:.1f}M, "
          f"projector {counts['projector'] / 1e6:.1f}M; {results['gpus']} GPUs, ZeRO-3"
          f"{' with the optimizer offloaded' if results['offload_optimizer'] else ''}, image share "
          f"{results['image_share']:.0%}, headroom {results['headroom']:.0%}; byte counter vs MemTracker "
          f"{results['tracker_agreement']:.1e} relative\n")
    print("| GPU | stage | fixed (GiB) | max tokens / GPU / micro-step | rows of " +
          " | rows of ".join(f"{n // 1024}k" for n in LENGTHS) + " |")
    print("|---|---|---|---|" + "---|" * len(LENGTHS))
    for p in results["plans"]:
        rows = " | ".join(str(p["rows"][n]) for n in LENGTHS)
        print(f"| {p['capacity_gib']} GiB | {p['stage']} | {p['fixed'] / GIB:.1f} | {p['max_tokens']:,} | {rows} |")
    plans = results["plans"]
    print("\nBreakdown at each limit (GiB):\n")
    print("| part | " + " | ".join(f"{p['capacity_gib']:g} GiB, {p['stage'].split(' (')[0]}" for p in plans) + " |")
    print("|---|" + "---|" * len(plans))
    for name in plans[0]["at_max"]:
        print(f"| {name} | " + " | ".join(f"{p['at_max'][name] / GIB:.2f}" for p in plans) + " |")
    for stage, per_token in results["per_token_bytes"].items():
        parts = ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in per_token.items() if v > 0)
        print(f"\nPer token, {stage}: {parts}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--capacity-gib", type=float, nargs="+", default=[80, 141, 180])
    parser.add_argument("--image-share", type=float, default=1.0,
                        help="share of the LM tokens that are image placeholders (1.0: the worst case)")
    parser.add_argument("--headroom", type=float, default=0.10, help="share of each GPU left unplanned")
    parser.add_argument("--offload-optimizer", action="store_true",
                        help="fp32 master weights and Adam moments in host memory (zero3_offload.json)")
    parser.add_argument("--json", help="also write the plan as JSON")
    args = parser.parse_args(argv)
    results = plan(args)
    print_markdown(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
