"""Artifact filters (paper 3.2): overlaid text, desktop / software-interface screenshots, visible narrators.

overlaid_text
    OCR boxes (views.ImageView.text_boxes) with at least `min_chars` recognised characters; single characters are
    ignored, since laterality markers ("L", "R") and arrows' letters belong to clinical images. The image is
    removed when it has `max_boxes` or more such boxes, or they cover at least `max_area_frac` of the image.
    Score: the covered fraction.

software_interface
    Screenshots of desktops and slide-viewer software carry window chrome: a title bar, menu bar, toolbar or
    status bar, i.e. bands along an image edge, each `band_min_frac`..`band_max_frac` of the side, whose lines
    are dominated (on average `band_dominance` of their pixels) by one flat colour (quantised to 16 levels per channel),
    stacked against each other with a sharp colour change (`band_contrast` summed over RGB). Near-black and
    near-white bands (`band_black`, `band_white`) continue a stack but do not count: black and white margins are
    what radiographs and article figures have. A single band is a margin or a caption strip and is kept;
    `min_stacked_bands` counted bands stacked at one edge are chrome. Large flat
    areas of a mid-tone (not near black or white, where the backgrounds of radiographs and figures are) are the
    other sign of an interface: `flat_ui_frac` of the image in exactly flat 8x8 blocks. Score: the band count.

narrator
    Quilt-1M's frames come from narrated videos, some showing the presenter. A frontal-face detector: the LBP
    cascade that scikit-image ships (`skimage.data.lbp_frontal_face_cascade_filename()`, trained by OpenCV), run
    on the image scaled to `detect_max_side`; faces smaller than `min_face_frac` of the short side are ignored.
    Faces are legitimate content in dermatology and surgery photographs, so the stage-0 config applies this step
    to the video source only (`sources:`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from .base import KEEP, ImageStep, RecordContext, Verdict, reject
from .views import ImageView


@dataclass(frozen=True)
class OverlaidTextParams:
    min_chars: int = 3
    max_boxes: int = 1
    max_area_frac: float = 0.01


class OverlaidText(ImageStep):
    name = "overlaid_text"
    Params = OverlaidTextParams

    def check(self, views: Sequence[ImageView], ctx: RecordContext) -> Verdict:
        p = self.params
        for view in views:
            boxes = [b for b in view.text_boxes() if len(b.text.strip()) >= p.min_chars]
            if not boxes:
                continue
            area = sum(b.area for b in boxes) / float(view.width * view.height)
            if len(boxes) >= p.max_boxes or area >= p.max_area_frac:
                texts = "; ".join(b.text.strip() for b in boxes[:4])
                return reject("overlaid_text", area, f"{len(boxes)} text boxes ({area:.1%} of the image): {texts}")
        return KEEP


@dataclass(frozen=True)
class SoftwareInterfaceParams:
    band_min_frac: float = 0.02
    band_max_frac: float = 0.15
    band_dominance: float = 0.45
    band_contrast: int = 64
    max_transition_px: int = 3
    band_black: int = 24  # max channel at most this: near-black
    band_white: int = 232  # min channel at least this: near-white
    min_stacked_bands: int = 2
    flat_ui_frac: float = 0.5
    flat_ui_dark: int = 40  # mid-tone: mean RGB level in (dark, light)
    flat_ui_light: int = 215


def _dominant_colours(quantised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per line (row of `quantised`, [n, w] colour codes 0..4095): the most frequent code and its fraction."""
    n, w = quantised.shape
    codes = np.empty(n, np.int64)
    fractions = np.empty(n, np.float64)
    for i in range(n):
        counts = np.bincount(quantised[i], minlength=4096)
        codes[i] = int(counts.argmax())
        fractions[i] = counts[codes[i]] / w
    return codes, fractions


def _code_rgb(code: int) -> np.ndarray:
    return np.array([(code >> 8) & 15, (code >> 4) & 15, code & 15]) * 16


def stacked_bands(quantised: np.ndarray, p: SoftwareInterfaceParams) -> int:
    """Number of counted flat-colour bands stacked against the first line of `quantised` ([n, w] codes).

    Lines are grouped into runs of the same dominant colour. Runs shorter than a band (the one or two blended
    lines between two bars) are stepped over, up to `max_transition_px` lines in a row; more means the colours
    keep changing, i.e. picture content, and the stack ends there, as it does at a run that is not flat enough,
    too tall (a background), or too close in colour to the band before it.
    """
    n = quantised.shape[0]
    codes, fractions = _dominant_colours(quantised)
    change = (np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist()
    bands, skipped, previous = 0, 0, None
    for s, e in zip([0] + change, change + [n]):
        height = e - s
        if height < p.band_min_frac * n:
            skipped += height
            if skipped > p.max_transition_px:
                break
            continue
        colour = _code_rgb(int(codes[s]))
        if fractions[s:e].mean() < p.band_dominance or height > p.band_max_frac * n:
            break
        if previous is not None and np.abs(colour - previous).sum() < p.band_contrast:
            break
        skipped = 0
        if not (colour.max() <= p.band_black or colour.min() >= p.band_white):
            bands += 1
        previous = colour
    return bands


def flat_ui_fraction(rgb: np.ndarray, p: SoftwareInterfaceParams) -> float:
    """Fraction of the image in exactly flat 8x8 blocks of a mid-tone colour."""
    h, w = (rgb.shape[0] // 8) * 8, (rgb.shape[1] // 8) * 8
    if h == 0 or w == 0:
        return 0.0
    blocks = rgb[:h, :w].reshape(h // 8, 8, w // 8, 8, 3).astype(np.int16)
    flat = (blocks.max(axis=(1, 3)) - blocks.min(axis=(1, 3))).max(axis=-1) <= 1
    level = blocks.mean(axis=(1, 3, 4))
    mid = (level > p.flat_ui_dark) & (level < p.flat_ui_light)
    return float((flat & mid).mean())


class SoftwareInterface(ImageStep):
    name = "software_interface"
    Params = SoftwareInterfaceParams

    def check(self, views: Sequence[ImageView], ctx: RecordContext) -> Verdict:
        p = self.params
        for view in views:
            q = view.rgb >> 4
            codes = (q[..., 0].astype(np.int64) << 8) | (q[..., 1].astype(np.int64) << 4) | q[..., 2]
            edges = {"top": codes, "bottom": codes[::-1], "left": codes.T, "right": codes.T[::-1]}
            bands = {edge: stacked_bands(lines, p) for edge, lines in edges.items()}
            edge, most = max(bands.items(), key=lambda kv: kv[1])
            if most >= p.min_stacked_bands:
                return reject("software_interface", most, f"{most} stacked UI bands at the {edge} of {view.path}")
            flat = flat_ui_fraction(view.rgb, p)
            if flat >= p.flat_ui_frac:
                return reject("software_interface", flat, f"{flat:.0%} flat mid-tone UI area in {view.path}")
        return KEEP


@dataclass(frozen=True)
class NarratorParams:
    detect_max_side: int = 320
    min_face_frac: float = 0.08
    scale_factor: float = 1.25
    min_neighbours: int = 6
    min_faces: int = 1


@functools.lru_cache(maxsize=1)
def face_cascade():
    from skimage import data
    from skimage.feature import Cascade

    return Cascade(data.lbp_frontal_face_cascade_filename())


def detect_faces(image: Image.Image, p: NarratorParams) -> list[dict]:
    small = image.convert("L")
    if max(small.size) > p.detect_max_side:
        small = small.copy()
        small.thumbnail((p.detect_max_side, p.detect_max_side), Image.Resampling.BILINEAR)
    gray = np.asarray(small, dtype=np.float64) / 255.0
    side = int(max(24, p.min_face_frac * min(gray.shape)))
    return face_cascade().detect_multi_scale(img=gray, scale_factor=p.scale_factor, step_ratio=1,
                                             min_size=(side, side), max_size=gray.shape,
                                             min_neighbor_number=p.min_neighbours)


class Narrator(ImageStep):
    name = "narrator"
    Params = NarratorParams

    def check(self, views: Sequence[ImageView], ctx: RecordContext) -> Verdict:
        p = self.params
        for view in views:
            faces = detect_faces(view.image, p)
            if len(faces) >= p.min_faces:
                where = ", ".join(f"({f['c']},{f['r']}) {f['width']}px" for f in faces[:3])
                return reject("narrator_face", len(faces), f"{len(faces)} face(s) at {where} in {view.path}")
        return KEEP
