"""Image loading (image_io.py) and pixel output of MedGptImageProcessor (image_processor.py).

Expected pixels are computed independently in the tests (numpy formulas, PIL reference resizes, DICOM window
formulas from PS3.3 C.11.2.1.2), then compared with what the code under test returns.
"""

import io
import struct
import zlib

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from llava_medgpt.processing.image_io import ImageLoadError, load_image, read_image_size, resolve_image_path
from llava_medgpt.processing.image_processor import MedGptImageProcessor, resize_pixels
from llava_medgpt.processing.tiling import select_tile_grid, tile_image

T = 336


def natural_image(width, height):
    """A photo-like RGB image (smooth regions and edges), deterministic and offline."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def as_array(image):
    return np.asarray(image).astype(np.int64)


# ------------------------------------------------------------------------------------------ modes


def test_grayscale_becomes_equal_rgb_channels():
    gray = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) % 256
    rgb = as_array(load_image(png_bytes(Image.fromarray(gray.astype(np.uint8), mode="L"))))
    assert rgb.shape == (48, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_high_bit_depth_is_stretched_by_its_own_range(mode):
    values = np.linspace(1000, 5000, 40 * 30).reshape(30, 40).round().astype(np.int64)
    if mode == "I;16B":
        image = Image.frombytes("I;16B", (40, 30), values.astype(">u2").tobytes())
    elif mode == "I;16":
        image = Image.fromarray(values.astype(np.uint16))
    else:
        image = Image.fromarray(values.astype(np.int32), mode="I")
    expected = np.rint((values - 1000) / 4000 * 255)
    source = png_bytes(image) if mode != "I" else image  # PNG cannot store mode I; pass the PIL image
    got = as_array(load_image(source))
    np.testing.assert_array_equal(got[..., 0], expected)
    np.testing.assert_array_equal(got[..., 2], expected)


def test_rgba_is_composited_on_white():
    rgba = np.zeros((4, 3, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 40, 10)
    rgba[0, :, 3] = 0  # transparent row
    rgba[1, :, 3] = 255  # opaque row
    rgba[2, :, 3] = 128  # half
    got = as_array(load_image(png_bytes(Image.fromarray(rgba, mode="RGBA"))))
    np.testing.assert_array_equal(got[0], np.full((3, 3), 255))
    np.testing.assert_array_equal(got[1], np.tile([200, 40, 10], (3, 1)))
    alpha = 128 / 255
    half = np.array([200, 40, 10]) * alpha + 255 * (1 - alpha)
    assert np.abs(got[2] - half).max() <= 1


def test_palette_transparency_and_la():
    palette_image = Image.new("P", (4, 2), 0)
    palette_image.putpalette([10, 20, 30, 250, 0, 0] + [0] * (256 * 3 - 6))
    palette_image.putpixel((1, 0), 1)
    palette_image.info["transparency"] = 0  # colour 0 is transparent
    got = as_array(load_image(png_bytes(palette_image)))
    assert got[0, 1].tolist() == [250, 0, 0]
    assert got[0, 0].tolist() == [255, 255, 255] and got[1, 3].tolist() == [255, 255, 255]

    la = np.stack([np.full((2, 2), 40, np.uint8), np.array([[0, 255], [255, 0]], np.uint8)], axis=-1)
    got = as_array(load_image(png_bytes(Image.fromarray(la, mode="LA"))))
    assert got[0, 0].tolist() == [255, 255, 255] and got[0, 1].tolist() == [40, 40, 40]


def test_exif_orientation_is_applied(tmp_path):
    # Stored 60 wide x 40 high, top-left quadrant red, rest blue. EXIF orientation 6 means "rotate 90 degrees
    # clockwise to display": the upright image is 40 x 60 and the red quadrant ends up top-right.
    stored = np.zeros((40, 60, 3), dtype=np.uint8)
    stored[...] = (0, 0, 255)
    stored[:20, :30] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, "JPEG", quality=95, exif=exif)

    assert read_image_size(path) == (40, 60)
    upright = as_array(load_image(path))
    assert upright.shape == (60, 40, 3)
    top_right = upright[2:28, 22:38].mean(axis=(0, 1))
    top_left = upright[2:28, 2:18].mean(axis=(0, 1))
    assert top_right[0] > 200 and top_right[2] < 50
    assert top_left[2] > 200 and top_left[0] < 50


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_raises_naming_it(tmp_path, fmt):
    path = tmp_path / f"cut.{fmt.lower()}"
    natural_image(200, 150).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="cut"):
        load_image(path)


def _png_with_size(width, height):
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_zero_sized_and_empty_and_garbage_files_raise(tmp_path):
    zero = tmp_path / "zero.png"
    zero.write_bytes(_png_with_size(0, 10))
    with pytest.raises(ImageLoadError, match="zero.png"):
        load_image(zero)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.jpg: empty file"):
        load_image(empty)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageLoadError, match="notes.png"):
        load_image(text)
    with pytest.raises(ImageLoadError, match="missing.png: no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="zero-sized"):
        load_image(Image.new("RGB", (0, 5)))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_raises_instead_of_warning(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (40, 30)).save(path)  # 1200 pixels
    # Between 1x and 2x the limit PIL would only warn; the loader must refuse.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match="bomb.png.*MAX_IMAGE_PIXELS"):
        load_image(path)
    with pytest.raises(ImageLoadError, match="bomb.png"):
        read_image_size(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # beyond 2x: PIL's own error, also wrapped
    with pytest.raises(ImageLoadError, match="bomb.png"):
        load_image(path)


def test_paths_may_not_leave_the_image_root(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    inside = root / "sub" / "a.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(inside)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    (root / "link_out.png").symlink_to(outside)
    (root / "link_in.png").symlink_to(inside)

    assert resolve_image_path(root, "sub/a.png") == inside.resolve()
    assert resolve_image_path(root, "sub/../sub/a.png") == inside.resolve()
    assert resolve_image_path(root, str(inside)) == inside.resolve()  # absolute but inside
    assert resolve_image_path(root, "link_in.png") == inside.resolve()
    for escape in ["../secret.png", "sub/../../secret.png", str(outside), "link_out.png", "/etc/passwd"]:
        with pytest.raises(ImageLoadError, match="leaves the image root"):
            resolve_image_path(root, escape)
    assert as_array(load_image("sub/a.png", image_root=root))[0, 0].tolist() == [1, 2, 3]
    with pytest.raises(ImageLoadError, match="leaves the image root"):
        load_image("link_out.png", image_root=root)


def test_paths_that_cannot_resolve_are_image_load_errors_naming_them(tmp_path):
    """A NUL byte (ValueError from the OS layer) and a symlink loop (RuntimeError) used to escape as crashes."""
    root = tmp_path / "images"
    root.mkdir()
    (root / "loop_a.png").symlink_to(root / "loop_b.png")
    (root / "loop_b.png").symlink_to(root / "loop_a.png")
    with pytest.raises(ImageLoadError, match="NUL byte"):
        resolve_image_path(root, "scan\x00.png")
    with pytest.raises(ImageLoadError, match="loop_a.png: symlink loop"):
        resolve_image_path(root, "loop_a.png")
    with pytest.raises(ImageLoadError, match="loop_a.png"):
        load_image("loop_a.png", image_root=root)
    with pytest.raises(ImageLoadError, match="NUL byte"):
        load_image("a\x00b.png", image_root=root)


def test_sixteen_bit_stretch_needs_no_full_size_float_copies():
    """A 9400 x 9400 16-bit PNG (under the pixel limit) took 3.3 GB per worker: full-image float64 temporaries."""
    import tracemalloc

    from llava_medgpt.processing.image_io import _stretch_to_uint8

    rng = np.random.default_rng(0)
    values = rng.integers(100, 4000, size=(2000, 3000), dtype=np.uint16)
    tracemalloc.start()
    try:
        got = _stretch_to_uint8(values)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    low, high = int(values.min()), int(values.max())
    np.testing.assert_array_equal(got, np.rint((values.astype(np.float64) - low) / (high - low) * 255))
    # The uint8 result (6 MB) plus float64 chunks of 8 MiB; one full-size float64 copy alone would be 48 MB.
    assert peak <= got.nbytes + (24 << 20), peak


# ------------------------------------------------------------------------------------------- DICOM


def _linear_window(values, center, width):
    """PS3.3 C.11.2.1.2.1 LINEAR window mapped to 0..255, written out independently of the loader."""
    c, w = center - 0.5, width - 1
    out = ((values - c) / w + 0.5) * 255
    out = np.where(values <= c - w / 2, 0, out)
    out = np.where(values > c + w / 2, 255, out)
    return np.rint(out)


def _assert_close_uint8(got, expected):
    difference = np.abs(got - expected)
    assert difference.max() <= 1  # rounding of values that land on .5 may differ
    assert (difference == 0).mean() > 0.99


@pytest.mark.parametrize("name", ["MR_small.dcm", "examples_overlay.dcm"])
def test_dicom_window_center_width(name):
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    center = float(ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter)  # first window
    width = float(ds.WindowWidth[0] if ds["WindowWidth"].VM > 1 else ds.WindowWidth)
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    expected = _linear_window(ds.pixel_array.astype(np.float64) * slope + intercept, center, width)
    got = as_array(load_image(path))
    assert got.shape == (*ds.pixel_array.shape, 3)
    _assert_close_uint8(got[..., 0], expected)
    assert 0 < (expected == 255).sum() or 0 < (expected == 0).sum()  # the window clips something


def test_dicom_without_window_uses_its_rescaled_range():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    assert "WindowCenter" not in ds
    hounsfield = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.rint((hounsfield - hounsfield.min()) / (hounsfield.max() - hounsfield.min()) * 255)
    np.testing.assert_array_equal(as_array(load_image(path))[..., 1], expected)


def test_dicom_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "inverted.dcm"
    ds.save_as(path)
    normal = as_array(load_image(get_testdata_file("MR_small.dcm")))
    np.testing.assert_array_equal(as_array(load_image(path)), 255 - normal)


def test_dicom_multiframe_gives_middle_frame():
    path = get_testdata_file("rtdose.dcm")
    frames = pydicom.dcmread(path).pixel_array.astype(np.float64)  # [15, 10, 10]
    assert frames.shape[0] == 15
    middle = frames[7]
    expected = np.rint((middle - middle.min()) / (middle.max() - middle.min()) * 255)
    got = as_array(load_image(path))[..., 0]
    np.testing.assert_array_equal(got, expected)
    first = frames[0]
    assert not np.array_equal(got, np.rint((first - first.min()) / (first.max() - first.min()) * 255))


def test_dicom_detected_by_magic_in_bytes_and_rgb_dicom():
    path = get_testdata_file("MR_small.dcm")
    with open(path, "rb") as handle:
        data = handle.read()
    np.testing.assert_array_equal(as_array(load_image(data)), as_array(load_image(path)))
    assert read_image_size(data) == (64, 64)
    rgb_path = get_testdata_file("SC_rgb_small_odd.dcm")
    np.testing.assert_array_equal(as_array(load_image(rgb_path)), pydicom.dcmread(rgb_path).pixel_array)


def test_dicom_without_pixel_data_says_so(tmp_path):
    """It was reported as a "zero-sized" image (the header read stopped before the pixels)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData, ds.Rows, ds.Columns
    path = tmp_path / "report.dcm"
    ds.save_as(path)
    for read in (read_image_size, load_image):
        with pytest.raises(ImageLoadError, match="report.dcm: DICOM file has no pixel data"):
            read(path)
    with open(path, "rb") as handle:
        with pytest.raises(ImageLoadError, match="no pixel data"):
            read_image_size(handle.read())


def test_truncated_dicom_raises_naming_it():
    with pytest.raises(ImageLoadError, match="MR_truncated.dcm"):
        load_image(get_testdata_file("MR_truncated.dcm"))


# ----------------------------------------------------------------------------------- processor pixels


def test_tiles_are_crops_of_the_resized_image_and_thumbnail_is_the_whole_image():
    image = natural_image(700, 500)  # aspect 1.4: 4x3 (1.333, off 0.067) beats 3x2 (1.5, off 0.1)
    processor = MedGptImageProcessor()
    cols, rows = processor.tile_grid_for_size(700, 500)
    assert (cols, rows) == (4, 3)
    tiles = processor([image], return_uint8=True)["pixel_values"]  # [13, 3, T, T]
    assert tiles.shape == (13, 3, T, T) and tiles.dtype == torch.uint8

    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
    resized = resize_pixels(pixels, rows * T, cols * T)[0]  # [3, 1008, 1344]
    for index in range(12):
        row, col = divmod(index, cols)
        assert torch.equal(tiles[index], resized[:, row * T : (row + 1) * T, col * T : (col + 1) * T])
    assert torch.equal(tiles[12], resize_pixels(pixels, T, T)[0])

    # The resampler is PIL's bicubic filter: compare with the plain-PIL reference tiler.
    reference = np.stack([np.asarray(t) for t in tile_image(image, cols, rows, T, True)])  # [13, T, T, 3]
    difference = np.abs(tiles.permute(0, 2, 3, 1).numpy().astype(np.int64) - reference)
    assert difference.max() <= 2 and difference.mean() < 0.05


@pytest.mark.parametrize("size", [(3, 1000), (8, 1200), (2, 500), (1000, 3), (640, 480)])
def test_resampler_stays_within_2_of_pil_also_for_tall_thin_images(size):
    """Noise (the hardest content for clipping) at extreme aspect ratios; PIL resizes images taller than 100x
    their width vertically first, and so must we (the horizontal-first order was 18/255 off on 3x1000)."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    cols, rows = select_tile_grid(*size)
    reference = np.stack([np.asarray(t) for t in tile_image(image, cols, rows, T, True)]).astype(np.int64)
    ours = MedGptImageProcessor(use_jpeg_draft=False)([image], return_uint8=True)["pixel_values"]
    assert np.abs(ours.permute(0, 2, 3, 1).numpy().astype(np.int64) - reference).max() <= 2


def test_float_output_is_clip_normalised_uint8():
    image = natural_image(500, 400)
    processor = MedGptImageProcessor()
    as_uint8 = processor(image, return_uint8=True)["pixel_values"]
    as_float = processor(image)["pixel_values"]
    assert as_float.dtype == torch.float32
    mean = np.array(OPENAI_CLIP_MEAN).reshape(3, 1, 1)
    std = np.array(OPENAI_CLIP_STD).reshape(3, 1, 1)
    expected = (as_uint8.numpy() / 255.0 - mean) / std
    np.testing.assert_allclose(as_float.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(processor.normalize_on_device(as_uint8).numpy(), expected, atol=1e-5)
    bf16 = processor.normalize_on_device(as_uint8, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    np.testing.assert_allclose(bf16.float().numpy(), expected, atol=0.02)
    with pytest.raises(ValueError, match="uint8"):
        processor.normalize_on_device(as_float)


def test_paths_bytes_and_pil_images_give_the_same_tiles(tmp_path):
    image = natural_image(640, 480)
    path = tmp_path / "a.png"
    image.save(path)
    processor = MedGptImageProcessor()
    from_pil = processor([image], return_uint8=True)["pixel_values"]
    assert torch.equal(processor([path], return_uint8=True)["pixel_values"], from_pil)
    assert torch.equal(processor([path.read_bytes()], return_uint8=True)["pixel_values"], from_pil)
    # One sample with two images equals the two images tiled one after the other.
    both = processor([image, natural_image(336, 336)], return_uint8=True)
    assert both["num_tiles"].tolist() == [13, 1]
    assert torch.equal(both["pixel_values"][:13], from_pil)


def test_jpeg_draft_decodes_at_reduced_scale_but_never_below_target(tmp_path):
    path = tmp_path / "big.jpg"
    natural_image(3000, 2500).save(path, "JPEG", quality=90)
    # Target 1344x1008 (4x3 grid): min(3000 // 1344, 2500 // 1008) = 2 -> decoded at 1/2.
    assert load_image(path, draft_size=(1344, 1008)).size == (1500, 1250)
    # Target 336x336: scale min(8, 7) = 7 -> the largest power of two not above it is 4.
    assert load_image(path, draft_size=(336, 336)).size == (750, 625)
    assert load_image(path).size == (3000, 2500)
    # EXIF orientation 6: upright target (1008, 1344) maps to the stored (1344, 1008).
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = tmp_path / "rotated.jpg"
    natural_image(3000, 2500).save(rotated, "JPEG", quality=90, exif=exif)
    assert load_image(rotated, draft_size=(1008, 1344)).size == (1250, 1500)

    with_draft = MedGptImageProcessor()([path], return_uint8=True)["pixel_values"].float()
    without = MedGptImageProcessor(use_jpeg_draft=False)([path], return_uint8=True)["pixel_values"].float()
    assert with_draft.shape == without.shape == (13, 3, T, T)
    assert 0 < (with_draft - without).abs().mean() < 2.0  # small but real difference (see docs)


def test_empty_input_and_numpy_output_and_bad_arguments():
    processor = MedGptImageProcessor()
    empty = processor([], return_uint8=True)
    assert tuple(empty["pixel_values"].shape) == (0, 3, T, T) and empty["num_tiles"].tolist() == []
    out = processor([natural_image(336, 336)], return_tensors="np")
    assert isinstance(out["pixel_values"], np.ndarray) and out["num_image_tokens"].tolist() == [144]
    assert processor([natural_image(672, 336)], max_tiles=1)["num_tiles"].tolist() == [1]  # per-call override
    with pytest.raises(ValueError, match="do_resize"):
        processor([natural_image(336, 336)], do_resize=True)
    with pytest.raises(ImageLoadError, match="nope.png"):
        processor(["nope.png"])


# ----------------------------------------------------------------------------------- save / load


def test_config_round_trip_and_auto_registration(tmp_path):
    from transformers import AutoImageProcessor

    from llava_medgpt.model import MedGptConfig

    # 336 / 21 = 16x16 patches -> 8x8 = 64 tokens per tile
    processor = MedGptImageProcessor(patch_size=21, max_tiles=6, max_tiles_per_sample=14, use_thumbnail=False)
    processor.save_pretrained(tmp_path)
    saved = (tmp_path / "preprocessor_config.json").read_text()
    for key in ("tile_size", "patch_size", "downsample_ratio", "max_tiles", "max_tiles_per_sample", "tokens_per_tile",
                "image_mean", "image_std"):
        assert f'"{key}"' in saved
    loaded = MedGptImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    assert (loaded.max_tiles, loaded.max_tiles_per_sample, loaded.tokens_per_tile) == (6, 14, 64)
    assert loaded.num_image_tokens_for_size(2048, 1536) == 6 * 64  # 3x2, no thumbnail
    assert loaded.model_input_names == ["pixel_values"]

    # The package registers the class in llava_medgpt/__init__.py; register here too (idempotent).
    AutoImageProcessor.register(MedGptConfig, image_processor_classes={"pil": MedGptImageProcessor}, exist_ok=True)
    MedGptConfig().save_pretrained(tmp_path)
    auto = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(auto) is MedGptImageProcessor and auto.to_dict() == processor.to_dict()


def test_zero_copy_and_copying_paths_give_identical_tiles(monkeypatch):
    import llava_medgpt.processing.image_processor as module

    image = natural_image(900, 500)
    assert module.image_to_pixels(image).shape[1] == (4 if module.pyarrow is not None else 3)
    zero_copy = MedGptImageProcessor()([image], return_uint8=True)["pixel_values"]
    monkeypatch.setattr(module, "pyarrow", None)
    assert module.image_to_pixels(image).shape[1] == 3
    assert torch.equal(MedGptImageProcessor()([image], return_uint8=True)["pixel_values"], zero_copy)
