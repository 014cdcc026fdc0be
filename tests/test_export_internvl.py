"""`llava-medgpt-export --to transformers-internvl`: what maps exactly is checked in a process that cannot import
llava_medgpt (an import blocker on sys.meta_path, `python -I`); what cannot map makes the export refuse."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from chat_fixtures import ANSWER_1, QUESTION_1, REASONING_1, dicom_path
from PIL import Image
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh `python -I` (no PYTHONPATH, no user site) with llava_medgpt blocked even though the venv has
# it installed: only stock transformers is used.
STOCK_SIDE = textwrap.dedent('''
    import json, sys
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name == "llava_medgpt" or name.startswith("llava_medgpt."):
                raise ImportError("llava_medgpt is blocked in this process")
    sys.meta_path.insert(0, Blocker())

    import torch
    from PIL import Image
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, InternVLProcessor

    out, cases_file, result_file = sys.argv[1:4]
    report = {}
    plain = AutoModelForImageTextToText.from_pretrained(out)
    report["plain_vision_tower"] = type(plain.model.vision_tower).__name__
    vision_config = AutoConfig.for_model(**json.load(open(f"{out}/config.json"))["vision_config"])
    model = AutoModelForImageTextToText.from_pretrained(out, vision_config=vision_config).eval()
    report["vision_tower"] = type(model.model.vision_tower).__name__
    try:
        processor = AutoProcessor.from_pretrained(out)
        report["auto_processor"] = "ok"
    except Exception as err:  # InternVL's video processor imports torchvision
        report["auto_processor"] = str(err)
        image_only = ["image_processor", "tokenizer"]
        processor = type("InternVLImageOnly", (InternVLProcessor,),
                         {"get_attributes": classmethod(lambda cls: list(image_only))}).from_pretrained(out)
    report["image_processor"] = type(processor.image_processor).__name__
    tensors = {}
    for name, case in json.load(open(cases_file)).items():
        images = iter([Image.open(path).convert("RGB") for path in case["images"]])
        messages = [{"role": m["role"], "content": [{"type": "image", "image": next(images)} if part == "<image>"
                     else {"type": "text", "text": part} for part in m["parts"]]} for m in case["messages"]]
        inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt", **case.get("kwargs", {}))
        with torch.no_grad():
            logits = model(**inputs).logits
            generated = model.generate(**inputs, max_new_tokens=40, do_sample=False)
        tensors[f"{name}.input_ids"] = inputs["input_ids"]
        tensors[f"{name}.logits"] = logits.contiguous()
        if "pixel_values" in inputs:
            tensors[f"{name}.pixel_values"] = inputs["pixel_values"].contiguous()
        report[f"{name}.reply"] = processor.tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:])
    save_file(tensors, result_file + ".safetensors")
    report["llava_medgpt_imported"] = any(m.startswith("llava_medgpt") for m in sys.modules)
    json.dump(report, open(result_file, "w"))
''')


def _parts(content: str) -> list[str]:
    """"<image>\\nQ" -> ["<image>", "\\nQ"] (the split the stock side turns into content items)."""
    pieces = []
    for n, text in enumerate(content.split("<image>")):
        if n:
            pieces.append("<image>")
        if text:
            pieces.append(text)
    return pieces


@pytest.fixture(scope="module")
def exported(trained_chat_checkpoint, tmp_path_factory):
    from llava_medgpt.export.internvl import export_internvl

    checkpoint, _ = trained_chat_checkpoint
    out = tmp_path_factory.mktemp("export") / "internvl"
    report = export_internvl(checkpoint, out, vision_config_override=True)
    return checkpoint, out, report


def test_export_refuses_by_default_and_writes_nothing(trained_chat_checkpoint, tmp_path):
    checkpoint, _ = trained_chat_checkpoint
    result = subprocess.run([sys.executable, "-m", "llava_medgpt.export", "--to", "transformers-internvl",
                             str(checkpoint), str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    assert result.returncode == 2
    assert "reads the vision_config of config.json as its own InternVLVisionConfig" in result.stderr
    assert "CLIP applies a LayerNorm to the embeddings before the first layer" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_parts_that_cannot_map_are_refused_by_name(trained_chat_checkpoint):
    import llava_medgpt  # noqa: F401
    from transformers import AutoConfig, AutoProcessor

    from llava_medgpt.export.internvl import ExportRefused, check_exportable

    checkpoint, _ = trained_chat_checkpoint
    config = AutoConfig.from_pretrained(checkpoint)
    processor = AutoProcessor.from_pretrained(checkpoint)
    check_exportable(config, processor, vision_config_override=True)  # the tiny checkpoint maps
    processor.image_processor.min_tiles = 2
    processor.image_processor.use_thumbnail = False
    with pytest.raises(ExportRefused) as refused:
        check_exportable(config, processor, vision_config_override=True)
    assert "min_tiles=2" in str(refused.value) and "use_thumbnail=False" in str(refused.value)


def test_projector_permutation_is_exact_and_the_weights_are_ours(exported):
    from llava_medgpt.model.modeling import pixel_shuffle

    from transformers import AutoConfig, InternVLForConditionalGeneration

    checkpoint, out, report = exported
    ours = load_file(checkpoint / "model.safetensors")
    vision_config = AutoConfig.for_model(**json.loads((out / "config.json").read_text())["vision_config"])
    stock = InternVLForConditionalGeneration.from_pretrained(out, vision_config=vision_config).state_dict()
    assert report.tensors == len(ours)
    for name, tensor in ours.items():  # every tensor but the projector's input side, bit for bit
        if "multi_modal_projector.norm" not in name and "linear_1.weight" not in name:
            new = (name.replace("language_model.model.", "model.language_model.")
                   .replace("language_model.lm_head.", "lm_head.").replace("vision_tower.", "model.vision_tower.")
                   .replace("multi_modal_projector.", "model.multi_modal_projector."))
            assert torch.equal(stock[new], tensor), name
    assert torch.equal(stock["lm_head.weight"], ours["language_model.lm_head.weight"])
    # transformers' InternVL shuffle, written out: [N, W, H, C] -> ... (modeling_internvl.pixel_shuffle)
    grid = torch.randn(2, 24, 24, 32)
    n, w, h, c = grid.shape
    x = grid.view(n, w, h // 2, c * 2).permute(0, 2, 1, 3).contiguous().view(n, h // 2, w // 2, c * 4)
    internvl = x.permute(0, 2, 1, 3).contiguous()
    perm = torch.arange(4 * c)  # the export found the identity (report.permuted_channels == 0)
    assert report.permuted_channels == 0 and torch.equal(pixel_shuffle(grid, 0.5)[..., perm], internvl)
    assert torch.equal(stock["model.multi_modal_projector.linear_1.weight"],
                       ours["multi_modal_projector.linear_1.weight"][:, perm])
    assert torch.equal(stock["model.multi_modal_projector.layer_norm.weight"],
                       ours["multi_modal_projector.norm.weight"][perm])


def test_stock_transformers_without_llava_medgpt_matches_ours(exported, trained_chat_checkpoint, tmp_path):
    import llava_medgpt  # noqa: F401
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from llava_medgpt.processing.image_io import load_image
    from llava_medgpt.processing.tiling import tile_image

    checkpoint, out, _ = exported
    _, png = trained_chat_checkpoint
    wide = tmp_path / "wide.png"
    Image.new("RGB", (700, 340), (20, 120, 200)).save(wide)
    dicom_png = tmp_path / "dicom.png"  # stock processors read PIL images: decode the DICOM with our loader
    load_image(dicom_path()).save(dicom_png)
    cases = {
        "trained": {"messages": [{"role": "user", "content": "<image>\n" + QUESTION_1}], "images": [str(png)]},
        "two_images": {"messages": [{"role": "user", "content": "<image>\n<image>\nCompare."}],
                       "images": [str(wide), str(dicom_png)], "kwargs": {"reasoning_effort": "high"}},
        "text_only": {"messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Define edema."}], "images": []},
    }
    cases_file = tmp_path / "cases.json"
    cases_file.write_text(json.dumps({name: {**case, "messages": [
        {"role": m["role"], "parts": _parts(m["content"])} for m in case["messages"]]} for name, case in
        cases.items()}))
    result_file = tmp_path / "stock.json"
    run = subprocess.run([sys.executable, "-I", "-c", STOCK_SIDE, str(out), str(cases_file), str(result_file)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(result_file.read_text())
    stock = load_file(str(result_file) + ".safetensors")
    assert report["llava_medgpt_imported"] is False
    assert report["vision_tower"] == "CLIPVisionModel"
    assert report["plain_vision_tower"] == "InternVLVisionModel"  # the reason the export refuses by default
    assert report["auto_processor"] == "ok" or "torchvision" in report["auto_processor"]
    assert report["image_processor"] == "GotOcr2ImageProcessorPil"
    assert report["trained.reply"].startswith(
        f"<|channel|>analysis<|message|>{REASONING_1}<|end|><|start|>assistant<|channel|>final<|message|>{ANSWER_1}")

    model = AutoModelForImageTextToText.from_pretrained(checkpoint).eval()
    processor = AutoProcessor.from_pretrained(checkpoint)
    image_processor = processor.image_processor
    for name, case in cases.items():
        images = [load_image(path) for path in case["images"]]
        prompt = processor.apply_chat_template(case["messages"], **case.get("kwargs", {}))
        ours = processor(text=[prompt], images=[images])
        assert torch.equal(stock[f"{name}.input_ids"], ours["input_ids"]), name  # identical prompt tokens
        with torch.no_grad():
            # Same ids and the stock side's pixel values through our model: the weights map exactly.
            pixels = stock.get(f"{name}.pixel_values")
            logits = model(input_ids=ours["input_ids"], pixel_values=pixels).logits
        torch.testing.assert_close(stock[f"{name}.logits"], logits, atol=1e-4, rtol=1e-4)
        if not images:
            assert f"{name}.pixel_values" not in stock
            continue
        # Tiles: the same grids and order; pixel values equal to our plain-PIL reference tiles, and within the
        # documented 2/255 of our torch-resampled tiles.
        assert pixels.shape == ours["pixel_values"].shape, name
        reference = torch.cat([image_processor.normalize_on_device(torch.stack([
            torch.from_numpy(np.asarray(tile)).permute(2, 0, 1) for tile in
            tile_image(image, *grid, image_processor.tile_size, image_processor.use_thumbnail)]))
            for image, grid in zip(images, image_processor.tile_grids_for_sample([im.size for im in images]))])
        torch.testing.assert_close(pixels, reference, atol=1e-5, rtol=0)
        bound = 2 / 255 / min(image_processor.image_std) + 1e-5
        assert float((pixels - ours["pixel_values"]).abs().max()) <= bound, name


def test_multi_image_budget_maps_with_the_common_cap(exported):
    """Three 1344x1008 images exceed our 26-tile sample budget: GotOcr2 alone tiles them 13 each, with
    max_patches = the largest grid our rule picked it tiles them as we do."""
    import llava_medgpt  # noqa: F401
    from transformers import AutoProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    checkpoint, out, _ = exported
    ours = AutoProcessor.from_pretrained(checkpoint).image_processor
    stock = GotOcr2ImageProcessorPil.from_pretrained(out)
    sizes = [(1344, 1008)] * 3
    grids = ours.tile_grids_for_sample(sizes)
    ours_tiles = [c * r + 1 for c, r in grids]
    assert sum(ours_tiles) <= ours.max_tiles_per_sample < 3 * 13
    images = [Image.new("RGB", size) for size in sizes]
    assert stock(images, return_tensors="pt")["num_patches"].tolist() == [13, 13, 13]
    cap = max(c * r for c, r in grids)
    assert stock(images, max_patches=cap, return_tensors="pt")["num_patches"].tolist() == ours_tiles
