"""Single-panel filter: find compound figures (several panels in one image) and remove them; never crop.

A figure is split recursively (an XY-cut, at most `max_depth` levels) wherever a straight line crosses the whole
region and separates two pieces that each hold content:

  * gutter: a run of rows (or columns) of uniform colour, `min_gutter_px`..`max_gutter_frac` thick. A line is
    uniform when the standard deviation of its gray levels is at most `flat_std` (a white or black gutter is
    exactly flat; a line through an image is not). Uniform runs that touch the region's border are margins,
    trimmed before looking for gutters.
  * seam: panels pasted edge to edge, without a gutter: the mean absolute step between two neighbouring lines is
    `seam_ratio` times (or more) the median step between the lines around them (+2 gray levels): inside one
    picture neighbouring lines are alike, across a seam they are two different pictures. A seam is looked for only
    in regions of at least `min_seam_side_px` lines and must leave `min_seam_panel_frac` on each side (it is the
    weaker signal).

The figure is analysed at `analysis_max_side` with nearest-neighbour downscaling, which keeps a gutter's pixels
exactly flat (an interpolating resize would blend a 2 px gutter into its neighbours). Each piece must span `min_panel_frac` of the region and have a gray-level std of at least `min_panel_std` (a blank
strip is not a panel). The number of leaves is the panel count. Panel letters are a second signal: at least
`min_letters` distinct single-letter OCR boxes from A-L including A (upper or lower case, with or without
brackets), each at most `max_letter_height_frac` of the image height, mark a compound figure even when its
panels touch on a background that hides the gutters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from .base import KEEP, ImageStep, RecordContext, Verdict, reject
from .views import ImageView

PANEL_LETTERS = "ABCDEFGHIJKL"


@dataclass(frozen=True)
class SinglePanelParams:
    analysis_max_side: int = 2048
    flat_std: float = 2.5
    min_gutter_px: int = 2
    max_gutter_frac: float = 0.12
    min_panel_frac: float = 0.12
    min_panel_std: float = 6.0
    seam_ratio: float = 8.0
    min_seam_panel_frac: float = 0.25
    min_seam_side_px: int = 64
    max_depth: int = 3
    min_panels: int = 2
    panel_letters: bool = True
    min_letters: int = 2
    max_letter_height_frac: float = 0.2


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in a 1-D boolean array."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _trim(region: np.ndarray, p: SinglePanelParams) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the region without its uniform margins."""
    rows = region.std(axis=1) > p.flat_std
    cols = region.std(axis=0) > p.flat_std
    if not rows.any() or not cols.any():
        return 0, 0, 0, 0
    r = np.flatnonzero(rows)
    c = np.flatnonzero(cols)
    return int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1


def _cuts(region: np.ndarray, p: SinglePanelParams) -> list[tuple[int, int]]:
    """[start, end) of the gutters/seams that split `region` (rows = lines) into content pieces."""
    n = region.shape[0]
    flat = region.std(axis=1) <= p.flat_std
    candidates = [(a, b) for a, b in _runs(flat) if a > 0 and b < n and p.min_gutter_px <= b - a
                  <= max(p.min_gutter_px, p.max_gutter_frac * n)]
    if n >= p.min_seam_side_px:
        step = np.abs(np.diff(region, axis=0)).mean(axis=1)  # [n-1]: step between line i and i+1
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(step, 4, mode="edge"), 9)  # [n-1, 9], centred
        around = np.median(windows[:, [0, 1, 2, 6, 7, 8]], axis=1)
        seam = step >= p.seam_ratio * (around + 2.0)
        near_flat = np.convolve(flat.astype(np.int8), np.ones(5, np.int8), mode="same") > 0
        for i in np.flatnonzero(seam).tolist():
            if 4 <= i < n - 5 and not near_flat[i] and not near_flat[i + 1]:  # gutter borders are gutters already
                candidates.append((i + 1, i + 1))
    candidates.sort()
    cuts: list[tuple[int, int]] = []
    start = 0
    for a, b in candidates:
        min_len = (p.min_seam_panel_frac if a == b else p.min_panel_frac) * n
        if a - start < min_len or n - b < min_len:
            continue
        if region[start:a].std() < p.min_panel_std or region[b:].std() < p.min_panel_std:
            continue
        cuts.append((a, b))
        start = b
    return cuts


def count_panels(gray: np.ndarray, p: SinglePanelParams, depth: int = 0) -> int:
    """Leaves of the recursive gutter/seam split of a [H, W] gray image."""
    top, bottom, left, right = _trim(gray, p)
    region = gray[top:bottom, left:right]
    if region.size == 0 or depth >= p.max_depth:
        return 1
    for transposed in (False, True):
        lines = region.T if transposed else region
        cuts = _cuts(lines, p)
        if not cuts:
            continue
        bounds = [0] + [x for cut in cuts for x in cut] + [lines.shape[0]]
        total = 0
        for s, e in zip(bounds[0::2], bounds[1::2]):
            piece = lines[s:e]
            total += count_panels(piece.T if transposed else piece, p, depth + 1)
        return total
    return 1


def analysis_gray(image: Image.Image, max_side: int) -> np.ndarray:
    """[H, W] float32 gray levels, nearest-neighbour downscaled to at most max_side (gutters stay flat)."""
    gray = image.convert("L")
    if max(gray.size) > max_side:
        gray = gray.copy()
        gray.thumbnail((max_side, max_side), Image.Resampling.NEAREST)
    return np.asarray(gray, dtype=np.float32)


def panel_letters(view: ImageView, p: SinglePanelParams) -> list[str]:
    """Distinct single panel letters (A-L, upper-cased) the OCR found, sorted."""
    letters = set()
    for box in view.text_boxes():
        text = box.text.strip().strip("()[].:").strip()
        if len(text) == 1 and text.upper() in PANEL_LETTERS and box.height <= p.max_letter_height_frac * view.height:
            letters.add(text.upper())
    return sorted(letters)


class SinglePanel(ImageStep):
    """Keep single-panel images; remove compound figures (reason compound_figure or panel_letters)."""

    name = "single_panel"
    Params = SinglePanelParams

    def check(self, views: Sequence[ImageView], ctx: RecordContext) -> Verdict:
        p = self.params
        for view in views:
            panels = count_panels(analysis_gray(view.original, p.analysis_max_side), p)
            if panels >= p.min_panels:
                return reject("compound_figure", panels, f"{panels} panels split by gutters/seams in {view.path}")
            if p.panel_letters:
                letters = panel_letters(view, p)
                if len(letters) >= p.min_letters and "A" in letters:
                    return reject("panel_letters", len(letters), f"panel letters {','.join(letters)} in {view.path}")
        return KEEP
