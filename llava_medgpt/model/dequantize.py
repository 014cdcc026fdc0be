"""One-time conversion of an MXFP4 GPT-oss checkpoint (the hub's openai/gpt-oss-20b layout) to bf16 safetensors.

Run as: python -m llava_medgpt.model.dequantize SRC DST [--dtype bfloat16] [--max-shard-size-gb 4]
        python -m llava_medgpt.model.dequantize SRC --if-needed --cache-dir DIR   (prints the folder to train from:
            SRC itself unless it is MXFP4, else DIR/<name>, converted on first use; stage 0 calls this)

Why: transformers dequantises MXFP4 at load (`Mxfp4Config(dequantize=True)`), but with a quantizer present it skips
DeepSpeed's `zero.Init` and ZeRO-3's partitioned state-dict loading, so every rank would hold the whole bf16 model
(~42 GB host RAM per rank at 20B). A bf16 folder loads partitioned.

The hub layout stores each expert matrix as `<name>_blocks` [E, rows, K/32, 16] uint8 (32 FP4 E2M1 values per
block, two per byte, the low nibble first) and `<name>_scales` [E, rows, K/32] uint8 (E8M0: the block's scale is
2^(byte - 127)), the OCP Microscaling format. Dequantised, `<name>` is [E, K, rows], the layout GptOssExperts keeps
(gate_up_proj [E, hidden, 2*intermediate], down_proj [E, intermediate, hidden]). Every other tensor is copied.

Memory stays bounded: output shards are planned from the source headers alone, then filled one at a time, each
expert matrix dequantised expert by expert; the peak is about one output shard plus one expert matrix. The output
is written to DST.partial and renamed to DST when complete, so an interrupted run leaves no half folder at DST.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

# E2M1 code points in code order (OCP Microscaling Formats v1.0, table 5): sign bit, 2 exponent bits, 1 mantissa bit.
FP4_E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
E8M0_BIAS = 127
BLOCKS_SUFFIX, SCALES_SUFFIX = "_blocks", "_scales"
INDEX_NAME = "model.safetensors.index.json"


def dequantize_mxfp4(blocks, scales, dtype):
    """[..., G, 16] uint8 blocks and [..., G] uint8 E8M0 scales -> [..., G * 32] values in `dtype`.

    FP4 values and powers of two are exact in bf16, so each value is exact (up to bf16's range).
    """
    import torch

    table = torch.tensor(FP4_E2M1_VALUES, dtype=dtype, device=blocks.device)
    low = table[(blocks & 0x0F).long()]  # [..., G, 16] the even elements
    high = table[(blocks >> 4).long()]  # [..., G, 16] the odd elements
    values = torch.stack((low, high), dim=-1).flatten(-2)  # [..., G, 32]
    scale = torch.exp2(scales.to(torch.float32) - E8M0_BIAS).to(dtype)  # [..., G]
    return (values * scale[..., None]).flatten(-2)  # [..., G * 32]


def dequantize_experts(blocks, scales, dtype):
    """Hub [E, rows, K/32, 16] + [E, rows, K/32] -> the model's [E, K, rows], one expert at a time."""
    import torch

    experts, rows, groups, _ = blocks.shape
    out = torch.empty(experts, groups * 32, rows, dtype=dtype)  # [E, K, rows]
    for e in range(experts):
        out[e] = dequantize_mxfp4(blocks[e], scales[e], dtype).T  # [rows, K] -> [K, rows]
    return out


def is_mxfp4(folder: Path) -> bool:
    config = json.loads((folder / "config.json").read_text())
    return (config.get("quantization_config") or {}).get("quant_method") == "mxfp4"


def _weight_files(src: Path) -> dict[str, str]:
    """tensor name -> file name, from the index or the single model.safetensors."""
    index = src / INDEX_NAME
    if index.exists():
        return json.loads(index.read_text())["weight_map"]
    from safetensors import safe_open

    with safe_open(src / "model.safetensors", framework="pt") as f:
        return {name: "model.safetensors" for name in f.keys()}


# Bytes per element of the safetensors dtypes a checkpoint holds.
_SAFETENSORS_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "BF16": 2, "F16": 2, "I16": 2,
                         "F32": 4, "I32": 4, "F64": 8, "I64": 8}


def _plan(src: Path, weight_map: dict[str, str], dtype) -> list[tuple[str, tuple[int, ...], int]]:
    """(output tensor name, shape, bytes) in file order, read from the file headers only."""
    import math

    from safetensors import safe_open

    plan = []
    by_file: dict[str, list[str]] = {}
    for name, file in weight_map.items():
        by_file.setdefault(file, []).append(name)
    for file in sorted(by_file):
        with safe_open(src / file, framework="pt") as f:
            for name in by_file[file]:
                if name.endswith(SCALES_SUFFIX) and name.removesuffix(SCALES_SUFFIX) + BLOCKS_SUFFIX in weight_map:
                    continue  # dequantised with its blocks
                piece = f.get_slice(name)
                shape = tuple(piece.get_shape())
                if name.endswith(BLOCKS_SUFFIX):
                    base = name.removesuffix(BLOCKS_SUFFIX)
                    if base + SCALES_SUFFIX not in weight_map:
                        raise ValueError(f"{src / file}: {name} has no {base + SCALES_SUFFIX} tensor")
                    experts, rows, groups, _ = shape
                    shape = (experts, groups * 32, rows)
                    plan.append((base, shape, math.prod(shape) * dtype.itemsize))
                else:
                    plan.append((name, shape, math.prod(shape) * _SAFETENSORS_ITEMSIZE[piece.get_dtype()]))
    return plan


def _shards(plan, max_shard_bytes: int) -> list[list[tuple[str, tuple[int, ...], int]]]:
    shards, current, size = [], [], 0
    for entry in plan:
        if current and size + entry[2] > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry[2]
    if current:
        shards.append(current)
    return shards


def _load(src: Path, weight_map: dict[str, str], name: str):
    from safetensors import safe_open

    with safe_open(src / weight_map[name], framework="pt") as f:
        return f.get_tensor(name)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def convert(src: str | os.PathLike, dst: str | os.PathLike, dtype: str = "bfloat16",
            max_shard_size_gb: float = 4.0) -> Path:
    """Write the dequantised checkpoint folder `dst` (refuses to overwrite); returns it."""
    import torch
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    torch_dtype = getattr(torch, dtype)
    if not (src / "config.json").exists():
        raise FileNotFoundError(f"{src} has no config.json; download the checkpoint first "
                                "(e.g. `hf download openai/gpt-oss-20b --local-dir DIR`)")
    if not is_mxfp4(src):
        raise ValueError(f"{src}/config.json has no MXFP4 quantization_config; nothing to dequantise")
    if dst.exists():
        raise FileExistsError(f"{dst} exists; remove it or choose another destination")
    partial = dst.with_name(dst.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a previous interrupted run
    partial.mkdir(parents=True)

    weight_map = _weight_files(src)
    shards = _shards(_plan(src, weight_map, torch_dtype), int(max_shard_size_gb * 2**30))
    out_map, total = {}, 0
    for k, shard in enumerate(shards, start=1):
        file = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name, shape, nbytes in shard:
            if name + BLOCKS_SUFFIX in weight_map:  # [E, K, rows] from blocks and scales
                tensors[name] = dequantize_experts(_load(src, weight_map, name + BLOCKS_SUFFIX),
                                                   _load(src, weight_map, name + SCALES_SUFFIX), torch_dtype)
            else:
                tensors[name] = _load(src, weight_map, name)
            assert tuple(tensors[name].shape) == shape, (name, tensors[name].shape, shape)
            out_map[name] = file
            total += nbytes
        save_file(tensors, partial / file, metadata={"format": "pt"})
        _fsync(partial / file)
        del tensors
        print(f"[dequantize] {file}: {len(shard)} tensors", file=sys.stderr)
    (partial / INDEX_NAME).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": out_map},
                                                 indent=2, sort_keys=True) + "\n")

    config = json.loads((src / "config.json").read_text())
    config.pop("quantization_config")
    config["dtype"] = dtype
    config.pop("torch_dtype", None)
    (partial / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for item in src.iterdir():  # tokenizer, chat template, generation config; not the weights or subfolders
        if item.is_file() and item.suffix != ".safetensors" and item.name not in (INDEX_NAME, "config.json"):
            shutil.copy2(item, partial / item.name)
    for item in partial.iterdir():
        _fsync(item)
    os.replace(partial, dst)
    return dst


def resolve_start(model_name_or_path: str, cache_dir: str | os.PathLike, dtype: str = "bfloat16") -> str:
    """The folder (or hub id) to train from: `model_name_or_path` unless it is MXFP4, else its conversion in
    cache_dir, written on first use. A hub id is fetched to the hub cache first, without the `original/` and
    `metal/` copies of the weights."""
    local = Path(model_name_or_path)
    if not local.is_dir() and (local.is_absolute() or model_name_or_path.startswith(".") or local.exists()):
        raise FileNotFoundError(f"{model_name_or_path}: no such checkpoint folder")
    if local.is_dir():
        if not is_mxfp4(local):
            return model_name_or_path
        folder, name = local, local.resolve().name
    else:
        from huggingface_hub import snapshot_download

        if not is_mxfp4(Path(snapshot_download(model_name_or_path, allow_patterns=["config.json"]))):
            return model_name_or_path
        folder = Path(snapshot_download(model_name_or_path, ignore_patterns=["original/*", "metal/*"]))
        name = model_name_or_path.replace("/", "--")
    target = Path(cache_dir) / f"{name}-{dtype}"
    if not (target / "config.json").exists():  # the folder appears only once complete
        print(f"[dequantize] {model_name_or_path} is MXFP4: writing a {dtype} copy to {target} (once)", file=sys.stderr)
        convert(folder, target, dtype)
    return str(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="MXFP4 checkpoint folder (hub layout) or, with --if-needed, a hub id")
    parser.add_argument("dst", nargs="?", help="output folder (must not exist)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--max-shard-size-gb", type=float, default=4.0)
    parser.add_argument("--if-needed", action="store_true",
                        help="print the folder to train from: SRC unless it is MXFP4, else its conversion in --cache-dir")
    parser.add_argument("--cache-dir", help="where --if-needed keeps conversions")
    args = parser.parse_args(argv)
    if args.if_needed and not args.cache_dir:
        parser.error("--if-needed needs --cache-dir")
    if not args.if_needed and not args.dst:
        parser.error("give DST (or --if-needed --cache-dir DIR)")
    try:
        if args.if_needed:
            print(resolve_start(args.src, args.cache_dir, args.dtype))
        else:
            print(convert(args.src, args.dst, args.dtype, args.max_shard_size_gb))
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
