"""One decoded image as the image filters see it, with the expensive analyses computed once and shared.

Every image filter works on the same downscaled copy (`analysis_max_side`, default 512 px on the long side):
the filters look for layout (gutters, window chrome, text boxes, faces), which survives the downscale, and a
fixed analysis size makes thresholds in pixels mean the same on a 300 px ROCOv2 crop and a 4,000 px PMC figure.
OCR (several filters read its boxes) and the perceptual hash are computed lazily, at most once per image.

OCR is RapidOCR on onnxruntime (`rapidocr-onnxruntime`): the PP-OCRv4 detection and recognition models ship
inside its wheel, so it runs offline. One engine per process, single-threaded (the pipeline parallelises over
processes, one per core).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class TextBox:
    """One OCR detection in analysis-image pixels: axis-aligned bounds, recognised text and its confidence."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    confidence: float

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass(frozen=True)
class OcrSettings:
    """How text is detected: shared by every filter that reads OCR boxes, so it is one fact of the config."""

    det_max_side: int = 512  # the detector sees the analysis image scaled to at most this long side
    min_confidence: float = 0.5  # recognition confidence below which a box is ignored


@functools.lru_cache(maxsize=4)
def ocr_engine(det_max_side: int):
    """The process's RapidOCR engine (models from the installed wheel; no download)."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the text filters need rapidocr-onnxruntime: pip install 'llava_medgpt[curate]'") from e
    return RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1, det_limit_side_len=det_max_side,
                    det_limit_type="max", use_cls=False)


class ImageView:
    """A decoded RGB image downscaled for analysis, with cached gray, OCR boxes and perceptual hash."""

    def __init__(self, image: Image.Image, path: str, analysis_max_side: int = 512, ocr: OcrSettings = OcrSettings(),
                 file: str | None = None):
        self.path = path  # as the record names it (reports show this)
        self.file = file or path  # on disk (content hashes read this)
        image = image.convert("RGB")
        self.original = image  # full resolution, for filters that pick their own analysis size
        if max(image.size) > analysis_max_side:
            image = image.copy()
            image.thumbnail((analysis_max_side, analysis_max_side), Image.Resampling.BILINEAR)
        self.image = image
        self.rgb = np.asarray(image)  # [H, W, 3] uint8
        self.ocr_settings = ocr
        self._gray = None
        self._boxes = None
        self._phash = None

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def gray(self) -> np.ndarray:
        """[H, W] float32 luminance in 0..255 (ITU-R 601 weights, as PIL's "L")."""
        if self._gray is None:
            self._gray = self.rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return self._gray

    def text_boxes(self) -> list[TextBox]:
        """OCR boxes with confidence >= ocr.min_confidence, in reading order of the engine (deterministic)."""
        if self._boxes is None:
            engine = ocr_engine(self.ocr_settings.det_max_side)
            result, _ = engine(np.ascontiguousarray(self.rgb[:, :, ::-1]))  # the engine wants BGR
            boxes = []
            for points, text, confidence in result or ():
                confidence = float(confidence)
                if confidence < self.ocr_settings.min_confidence:
                    continue
                xs = [p[0] for p in points]
                ys = [p[1] for p in points]
                boxes.append(TextBox(min(xs), min(ys), max(xs), max(ys), str(text), confidence))
            self._boxes = boxes
        return self._boxes

    def phash(self) -> int:
        """64-bit DCT perceptual hash (imagehash.phash) of the whole image, as an int."""
        if self._phash is None:
            import imagehash

            self._phash = int(str(imagehash.phash(self.image)), 16)
        return self._phash
