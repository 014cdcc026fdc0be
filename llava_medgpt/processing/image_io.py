"""Reading one image file (or bytes, or a PIL image) into an 8-bit RGB PIL image, safely.

Conventions (also in docs/preprocessing.md):
- Paths from records are resolved with `resolve_image_path`, which refuses anything that leaves the image root
  (absolute paths elsewhere, `..` escapes, symlinks pointing outside).
- 16-bit and 32-bit grayscale (PIL modes I;16*, I, F) are stretched to 8 bit by the image's own min/max:
  medical PNG/TIFF exports often hold 10-14 significant bits in a 16-bit container, so dividing by the
  container's range would give near-black images. A constant image becomes black.
- Transparent images (RGBA, LA, PA, palette or grayscale with a transparent colour) are composited on white:
  most transparent images in the corpora are figures from articles, drawn in dark ink on a transparent page,
  which would vanish on black.
- JPEG EXIF orientation is applied (ImageOps.exif_transpose), so the returned image is upright.
- DICOM (suffix .dcm/.dicom or "DICM" at byte 128) is read with pydicom: modality LUT (rescale slope and
  intercept), then the first VOI LUT or window centre/width of the file, then MONOCHROME1 inversion, then a
  linear map of the VOI output range to 0..255. Without a VOI LUT or window, the image's own min/max range is
  used. Multi-frame files give their middle frame (index n_frames // 2), the frame most likely to show the
  structure a series is centred on; only that frame is decoded.
- Decoding is forced (`.load()`), and anything that goes wrong -- unreadable, truncated, zero-sized, more
  pixels than `PIL.Image.MAX_IMAGE_PIXELS` -- raises `ImageLoadError` naming the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ImageSource = str | os.PathLike | bytes | Image.Image

DICOM_SUFFIXES = (".dcm", ".dicom")
DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
DICOM_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
EXIF_ORIENTATION_TAG = 0x0112
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
TRANSPARENCY_BACKGROUND = (255, 255, 255, 255)


class ImageLoadError(ValueError):
    """An image could not be read; the message names the file and the reason."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"cannot load image {source}: {reason}")
        self.source = source
        self.reason = reason


def resolve_image_path(image_root: str | os.PathLike, relative_path: str | os.PathLike) -> Path:
    """`relative_path` inside `image_root`, with symlinks resolved; ImageLoadError if it leaves the root.

    An absolute path is accepted when it lies inside the root. Every way a path from a record can fail to
    resolve is an ImageLoadError naming it: a NUL byte (ValueError from the OS layer), a symlink loop
    (RuntimeError), a name too long or a folder that cannot be read (OSError).
    """
    name = str(relative_path)
    if "\0" in name:
        raise ImageLoadError(repr(name), "path contains a NUL byte")
    root = Path(image_root).resolve()
    candidate = Path(relative_path)
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        resolved = candidate.resolve()  # follows symlinks and collapses "..", so escapes show up below
    except RuntimeError as err:  # "Symlink loop from ..."
        raise ImageLoadError(name, f"symlink loop ({err})") from err
    except (OSError, ValueError) as err:
        raise ImageLoadError(name, f"path cannot be resolved ({type(err).__name__}: {err})") from err
    if not resolved.is_relative_to(root):
        raise ImageLoadError(name, f"path leaves the image root {root}")
    return resolved


def source_name(source: ImageSource) -> str:
    """How error messages name a source."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {getattr(source, 'filename', '') or source.mode}>"
    return f"<{type(source).__name__}>"


def read_image_size(source: ImageSource, image_root: str | os.PathLike | None = None) -> tuple[int, int]:
    """(width, height) of the upright image, from the file header only (no pixel decoding)."""
    name = source_name(source)
    try:
        source = _resolve_source(source, image_root)
        if not isinstance(source, Image.Image) and _is_dicom(source):
            ds = _read_dicom(source, header_only=True)
            _check_dicom_has_pixels(ds)
            return _checked_size(int(ds.get("Columns", 0)), int(ds.get("Rows", 0)))
        if isinstance(source, Image.Image):
            return _upright_size(source)
        with Image.open(_as_file(source)) as image:
            return _upright_size(image)
    except ImageLoadError as err:
        raise ImageLoadError(name, err.reason) from err
    except Exception as err:  # PIL and pydicom raise many types for bad files
        raise ImageLoadError(name, f"{type(err).__name__}: {err}") from err


def load_image(
    source: ImageSource,
    image_root: str | os.PathLike | None = None,
    *,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode `source` into an upright 8-bit RGB image (conventions in the module docstring).

    source: a path (resolved inside `image_root` when given), raw file bytes, or a PIL image.
    draft_size: the smallest upright (width, height) the caller will resize to. A JPEG may then be decoded at
        1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling), never below this size; see docs/preprocessing.md.
    """
    name = source_name(source)
    try:
        source = _resolve_source(source, image_root)
        if isinstance(source, Image.Image):
            source.load()
            return _to_rgb(_upright(source))
        if _is_dicom(source):
            return _load_dicom(source)
        with Image.open(_as_file(source)) as image:
            _check_pixel_count(*image.size)
            if draft_size is not None and image.format == "JPEG":
                width, height = draft_size
                if _orientation(image, header_only=True) in TRANSPOSING_ORIENTATIONS:
                    width, height = height, width
                image.draft("RGB", (width, height))
            image.load()
            return _to_rgb(_upright(image))
    except ImageLoadError as err:
        raise ImageLoadError(name, err.reason) from err
    except Exception as err:  # PIL and pydicom raise many types for bad files
        raise ImageLoadError(name, f"{type(err).__name__}: {err}") from err


# --------------------------------------------------------------------------------------------- helpers


def _resolve_source(source: ImageSource, image_root) -> ImageSource:
    if isinstance(source, (str, os.PathLike)):
        path = resolve_image_path(image_root, source) if image_root is not None else Path(source)
        if not path.is_file():
            raise ImageLoadError(str(source), "no such file")
        if path.stat().st_size == 0:
            raise ImageLoadError(str(source), "empty file")
        return path
    if isinstance(source, bytes):
        if not source:
            raise ImageLoadError(source_name(source), "empty file")
        return source
    if isinstance(source, Image.Image):
        return source
    raise ImageLoadError(source_name(source), "expected a path, bytes or a PIL image")


def _as_file(source: Path | bytes):
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _is_dicom(source: Path | bytes) -> bool:
    if isinstance(source, Path):
        if source.suffix.lower() in DICOM_SUFFIXES:
            return True
        with open(source, "rb") as handle:
            head = handle.read(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))
    else:
        head = source[: DICOM_MAGIC_OFFSET + len(DICOM_MAGIC)]
    return head[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC


def _checked_size(width: int, height: int) -> tuple[int, int]:
    if width <= 0 or height <= 0:
        raise ImageLoadError("", f"zero-sized image ({width}x{height})")
    _check_pixel_count(width, height)
    return width, height


def _check_pixel_count(width: int, height: int) -> None:
    # PIL only warns between MAX_IMAGE_PIXELS and twice that; a loader must refuse (read at call time so
    # that users and tests can change the limit).
    limit = Image.MAX_IMAGE_PIXELS
    if width <= 0 or height <= 0:
        raise ImageLoadError("", f"zero-sized image ({width}x{height})")
    if limit is not None and width * height > limit:
        raise ImageLoadError(
            "", f"{width}x{height} pixels exceed PIL.Image.MAX_IMAGE_PIXELS={limit} (decompression bomb?)"
        )


def _orientation(image: Image.Image, header_only: bool = False) -> int:
    if header_only and image.format == "PNG" and "exif" not in image.info:
        # PIL decodes a whole PNG to look for an eXIf chunk after the pixels; header-only callers skip it
        # (such files are rare, and the pixels are still rotated upright once loaded).
        return 1
    return int(image.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)


def _upright_size(image: Image.Image) -> tuple[int, int]:
    width, height = _checked_size(*image.size)
    rotated = _orientation(image, header_only=True) in TRANSPOSING_ORIENTATIONS
    return (height, width) if rotated else (width, height)


def _upright(image: Image.Image) -> Image.Image:
    if _orientation(image) == 1:
        return image
    return ImageOps.exif_transpose(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    _checked_size(*image.size)
    if image.mode in HIGH_BIT_DEPTH_MODES:
        return Image.fromarray(_stretch_to_uint8(np.asarray(image)), mode="L").convert("RGB")
    if image.mode in TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, TRANSPARENCY_BACKGROUND)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    return image.convert("RGB")


# Elements converted to float64 at a time by _stretch_to_uint8 (8 MiB of temporaries per step).
STRETCH_CHUNK_ELEMENTS = 1 << 20


def _stretch_to_uint8(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Linear map of [low, high] (default: the array's min/max) to 0..255, clipped and rounded.

    Computed in float64 one chunk at a time: a 9400 x 9400 16-bit image would otherwise need several
    full-size float64 temporaries (about 0.7 GB each); the extra memory is now the uint8 result plus 8 MiB.
    """
    low = float(values.min()) if low is None else low
    high = float(values.max()) if high is None else high
    out = np.zeros(values.shape, dtype=np.uint8)
    if high <= low or values.size == 0:
        return out
    flat_in, flat_out = values.reshape(-1), out.reshape(-1)
    for start in range(0, flat_in.size, STRETCH_CHUNK_ELEMENTS):
        chunk = flat_in[start : start + STRETCH_CHUNK_ELEMENTS].astype(np.float64)
        chunk -= low
        chunk /= high - low
        chunk *= 255.0
        np.clip(chunk, 0.0, 255.0, out=chunk)
        flat_out[start : start + STRETCH_CHUNK_ELEMENTS] = np.rint(chunk, out=chunk)
    return out


# ---------------------------------------------------------------------------------------------- DICOM


def _read_dicom(source: Path | bytes, header_only: bool = False):
    import pydicom

    # force=True also reads files without the 128-byte preamble (named .dcm but no "DICM" magic). header_only
    # defers every large value (the pixel data) instead of stopping before it, so that a file without pixel
    # data is told apart from one with them.
    return pydicom.dcmread(_as_file(source), force=True, defer_size=1024 if header_only else None)


def _check_dicom_has_pixels(ds) -> None:
    if not any(tag in ds for tag in DICOM_PIXEL_TAGS):
        raise ImageLoadError("", "DICOM file has no pixel data (e.g. a structured report or presentation state)")


def _load_dicom(source: Path | bytes) -> Image.Image:
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

    ds = _read_dicom(source)
    _check_dicom_has_pixels(ds)
    _checked_size(int(ds.get("Columns", 0)), int(ds.get("Rows", 0)))
    num_frames = int(ds.get("NumberOfFrames", 1) or 1)
    frame = pixel_array(ds, index=num_frames // 2) if num_frames > 1 else pixel_array(ds)

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        gray = _dicom_gray_to_uint8(frame, ds, apply_modality_lut, apply_voi_lut)
        if photometric == "MONOCHROME1":  # stored with 0 = white
            gray = 255 - gray
        return Image.fromarray(gray, mode="L").convert("RGB")
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(frame, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return Image.fromarray(_stretch_to_uint8(rgb, 0, 2**bits - 1), mode="RGB")
    # RGB and YBR_*: pydicom converts YBR to RGB while decoding.
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ImageLoadError("", f"unsupported DICOM photometric interpretation {photometric}")
    bits = int(ds.get("BitsStored", 8))
    rgb = frame if frame.dtype == np.uint8 else _stretch_to_uint8(frame, 0, 2**bits - 1)
    return Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")


def _dicom_gray_to_uint8(frame: np.ndarray, ds, apply_modality_lut, apply_voi_lut) -> np.ndarray:
    values = apply_modality_lut(frame, ds)
    if ds.get("VOILUTSequence"):
        # A VOI LUT's output range is fixed by its entry bit depth (PS3.3 C.11.2.1.1).
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        lut_input = values if np.issubdtype(values.dtype, np.integer) else np.rint(values).astype(np.int64)
        return _stretch_to_uint8(apply_voi_lut(lut_input, ds), 0, 2**bits - 1)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        # The window's output range (e.g. the full signed 16-bit range for an MR) is where it sends values
        # far below and far above the window: probe it with such values.
        probe = np.array([values.min() - 2.0**32, values.max() + 2.0**32])
        with np.errstate(over="ignore"):  # SIGMOID windows overflow exp() on the probe, harmlessly
            low, high = sorted(float(v) for v in apply_voi_lut(probe, ds))
        return _stretch_to_uint8(apply_voi_lut(values, ds), low, high)
    return _stretch_to_uint8(values)


__all__ = ["ImageLoadError", "ImageSource", "load_image", "read_image_size", "resolve_image_path", "source_name"]
