"""MXFP4 -> bf16 conversion of a hub-layout GPT-oss folder: bit-exact against transformers' own dequantisation, and
the ZeRO-3 load of the result partitioned (2 CPU ranks), where the MXFP4 folder itself is refused.

The hub-layout folder is written here the way openai/gpt-oss-20b stores its experts: `*_blocks` [E, rows, K/32, 16]
uint8 and `*_scales` [E, rows, K/32] uint8 (E8M0), split over two shards with an index (one layer's blocks and
scales in different shards); every other tensor bf16, and a quantization_config in config.json.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, Mxfp4Config

from llava_medgpt.model.dequantize import convert, dequantize_mxfp4, main, resolve_start
from llava_medgpt.model.tiny import create_tiny_language_model

REPO = Path(__file__).resolve().parents[1]
QUANTIZATION_CONFIG = {  # as in openai/gpt-oss-20b's config.json
    "quant_method": "mxfp4",
    "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
                               "lm_head"],
}


PADDED_VOCAB = 704  # the tiny tokenizer's 640 entries padded to a multiple of 64 with zero rows, as GPT-oss pads


def write_hub_mxfp4_folder(path: Path, seed: int = 0) -> Path:
    """A tiny GPT-oss (hidden 64, intermediate 64, 4 experts, 2 layers) in the hub's MXFP4 layout."""
    create_tiny_language_model(path, "gpt_oss", seed=seed)
    state = load_file(path / "model.safetensors")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        state[name] = torch.cat([state[name], state[name].new_zeros(PADDED_VOCAB - state[name].shape[0], 64)])
    (path / "model.safetensors").unlink()
    generator = torch.Generator().manual_seed(seed)
    hub = {}
    for name, tensor in state.items():
        if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            experts, k, rows = tensor.shape  # the model's [E, K, rows]; the hub stores [E, rows, K/32, 16]
            hub[name + "_blocks"] = torch.randint(0, 256, (experts, rows, k // 32, 16), generator=generator,
                                                  dtype=torch.uint8)
            scales = torch.randint(118, 134, (experts, rows, k // 32), generator=generator, dtype=torch.uint8)
            scales.view(-1)[:3] = torch.tensor([0, 1, 254], dtype=torch.uint8)  # the E8M0 range's ends
            hub[name + "_scales"] = scales
        else:
            hub[name] = tensor.to(torch.bfloat16)
    names = sorted(hub)
    first = [n for n in names if ".layers.1." not in n or n.endswith("gate_up_proj_blocks")]
    shards = {"model-00001-of-00002.safetensors": first,
              "model-00002-of-00002.safetensors": [n for n in names if n not in first]}
    weight_map = {}
    for file, shard_names in shards.items():
        save_file({n: hub[n].contiguous() for n in shard_names}, path / file, metadata={"format": "pt"})
        weight_map.update({n: file for n in shard_names})
    assert weight_map["model.layers.1.mlp.experts.gate_up_proj_blocks"] != \
        weight_map["model.layers.1.mlp.experts.gate_up_proj_scales"]
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = json.loads((path / "config.json").read_text())
    config["quantization_config"] = QUANTIZATION_CONFIG
    config["vocab_size"] = PADDED_VOCAB
    config["dtype"] = "bfloat16"
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    return write_hub_mxfp4_folder(tmp_path_factory.mktemp("hub") / "gpt-oss-tiny")


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16) if t.dtype in (torch.bfloat16, torch.float16) else t


def test_e2m1_and_e8m0_by_hand():
    # byte 0x71: low nibble 1 (+0.5) is the even element, high nibble 7 (+6.0) the odd one; 0xF8: -0.0 then -6.0
    blocks = torch.tensor([[[0x71] + [0x00] * 15, [0xF8] + [0x00] * 15]], dtype=torch.uint8)  # [1, G=2, 16]
    scales = torch.tensor([[127, 130]], dtype=torch.uint8)  # 2^0, 2^3
    out = dequantize_mxfp4(blocks, scales, torch.bfloat16)
    assert out.shape == (1, 64)
    assert out[0, :2].tolist() == [0.5, 6.0] and out[0, 2:32].abs().sum() == 0
    assert out[0, 32:34].tolist() == [-0.0, -48.0] and torch.signbit(out[0, 32])


def test_conversion_is_bit_exact_against_transformers_dequantisation(hub_folder, tmp_path):
    dst = convert(hub_folder, tmp_path / "bf16", max_shard_size_gb=60_000 / 2**30)  # tiny shards: several files
    reference = AutoModelForCausalLM.from_pretrained(
        hub_folder, quantization_config=Mxfp4Config(dequantize=True), dtype=torch.bfloat16
    ).state_dict()
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and all((dst / f).exists() for f in files)
    ours = {}
    for f in files:
        ours.update(load_file(dst / f))
    assert set(ours) == set(reference)
    for name, expected in reference.items():
        assert ours[name].dtype == expected.dtype == torch.bfloat16, name
        assert torch.equal(bits(ours[name]), bits(expected)), name
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in ours.values())

    config = json.loads((dst / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    assert (dst / "tokenizer.json").exists() and not (tmp_path / "bf16.partial").exists()
    # It loads as a plain checkpoint with the same weights.
    loaded = AutoModelForCausalLM.from_pretrained(dst).state_dict()
    assert all(torch.equal(bits(loaded[n]), bits(t)) for n, t in reference.items())


def test_command_line_and_the_stage0_resolver(hub_folder, tmp_path, capsys):
    with pytest.raises(FileExistsError):
        convert(hub_folder, hub_folder)
    with pytest.raises(ValueError, match="nothing to dequantise"):
        convert(create_tiny_language_model(tmp_path / "plain", "gpt_oss"), tmp_path / "out")
    assert main([str(tmp_path / "missing"), "--if-needed", "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err
    # --if-needed: a plain folder is used as it is; an MXFP4 one is converted once, then reused.
    assert resolve_start(str(tmp_path / "plain"), tmp_path / "cache") == str(tmp_path / "plain")
    assert main([str(hub_folder), "--if-needed", "--cache-dir", str(tmp_path / "cache")]) == 0
    target = Path(capsys.readouterr().out.strip())
    assert target == tmp_path / "cache" / "gpt-oss-tiny-bfloat16" and (target / "config.json").exists()
    stamp = (target / "config.json").stat().st_mtime_ns
    assert resolve_start(str(hub_folder), tmp_path / "cache") == str(target)
    assert (target / "config.json").stat().st_mtime_ns == stamp


def test_zero3_loads_the_converted_folder_partitioned_and_refuses_the_mxfp4_one(hub_folder, tmp_path):
    """2 CPU ranks (gloo) with a live ZeRO-3 config, as stage 0 runs: every language-model parameter of the bf16
    folder is partitioned as it loads (the image tokens take padding rows, so no resize; on the old main the MXFP4
    start itself loaded with none partitioned), the image rows hold the mean, and the MXFP4 folder is refused with
    the conversion command. About 40 s (two processes start)."""
    bf16 = convert(hub_folder, tmp_path / "bf16")
    out = tmp_path / "result.json"
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1",
               PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(REPO / "tests" / "builder_zero3_worker.py"), str(bf16), str(hub_folder), str(tmp_path / "vision"),
           str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = json.loads(out.read_text())
    for rank in result["ranks"]:
        assert rank["partitioned"] == rank["total"] > 30, rank
        assert rank["image_rows_at_mean"]
        assert "python -m llava_medgpt.model.dequantize" in rank["mxfp4_refusal"]
