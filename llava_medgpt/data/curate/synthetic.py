"""Generated, labelled images for the curation tests, benchmark and filter precision/recall (no downloads).

Single images come from scikit-image's bundled samples (histology, retina, microscopy, a CT-like phantom, ...)
and pydicom's bundled CT/MR files; compound figures, overlaid text and desktop screenshots are drawn on them with
PIL (its built-in scalable font, so no system font is needed). Everything is a pure function of its seed.

    labelled_set(240, seed=0) -> [LabelledImage(name, image, compound=..., text=..., screenshot=...)]
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Samples without faces (the narrator filter's negatives); astronaut() is its positive.
SKIMAGE_SAMPLES = ("immunohistochemistry", "retina", "microaneurysms", "moon", "coins", "cell", "shepp_logan_phantom",
                   "hubble_deep_field", "chelsea", "coffee", "rocket", "grass", "gravel", "brick")
DICOM_SAMPLES = ("CT_small.dcm", "MR_small.dcm")
WORDS = ("Figure", "H&E", "x40", "scale", "50 um", "patient", "axial", "T2-weighted", "ROI", "Case 3", "arrow",
         "lesion", "10 mm", "biopsy", "week 4", "left", "contrast", "follow-up", "Slide 12", "IHC CD20")


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=None)
def skimage_sample(name: str) -> Image.Image:
    from skimage import data

    array = getattr(data, name)()
    if array.dtype != np.uint8:
        array = (255 * (array - array.min()) / max(float(np.ptp(array)), 1e-9)).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


@functools.lru_cache(maxsize=None)
def dicom_sample(name: str) -> Image.Image:
    from pydicom.data import get_testdata_file

    from ...processing.image_io import load_image

    return load_image(get_testdata_file(name))


def single_images() -> list[tuple[str, Image.Image]]:
    """The clean single images every generator starts from."""
    return ([(n, skimage_sample(n)) for n in SKIMAGE_SAMPLES] +
            [(n, dicom_sample(n)) for n in DICOM_SAMPLES])


def panel_grid(panels: list[Image.Image], rows: int, cols: int, panel_size: tuple[int, int] = (240, 200),
               gutter: int = 8, colour: tuple[int, int, int] = (255, 255, 255), letters: bool = True,
               margin: int | None = None, letter_size: int = 22) -> Image.Image:
    """rows x cols panels (resized to panel_size) separated by `gutter` px of `colour`, with A, B, ... letters."""
    w, h = panel_size
    margin = gutter if margin is None else margin
    sheet = Image.new("RGB", (2 * margin + cols * w + (cols - 1) * gutter,
                              2 * margin + rows * h + (rows - 1) * gutter), colour)
    draw = ImageDraw.Draw(sheet)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        x, y = margin + c * (w + gutter), margin + r * (h + gutter)
        sheet.paste(panels[k % len(panels)].convert("RGB").resize((w, h), Image.Resampling.BILINEAR), (x, y))
        if letters:
            letter = "ABCDEFGHIJKL"[k]
            draw.rectangle([x + 4, y + 4, x + 8 + letter_size, y + 8 + letter_size], fill=(255, 255, 255))
            draw.text((x + 8, y + 5), letter, fill=(0, 0, 0), font=font(letter_size))
    return sheet


def with_text(image: Image.Image, text: str, xy: tuple[int, int], size: int = 24,
              colour: tuple[int, int, int] = (255, 255, 0)) -> Image.Image:
    out = image.convert("RGB").copy()
    ImageDraw.Draw(out).text(xy, text, fill=colour, font=font(size), stroke_width=1, stroke_fill=(0, 0, 0))
    return out


def desktop_screenshot(content: Image.Image, size: tuple[int, int] = (800, 600), title: str = "SlideViewer 2.1 - case_0042.svs",
                       seed: int = 0) -> Image.Image:
    """A window: title bar (text, buttons), menu bar, toolbar of icons, side panel, content area, status bar."""
    rng = random.Random(seed)
    w, h = size
    shot = Image.new("RGB", size, (240, 240, 240))
    d = ImageDraw.Draw(shot)
    d.rectangle([0, 0, w, 29], fill=(32, 84, 160))  # title bar
    d.text((10, 6), title, fill=(255, 255, 255), font=font(16))
    for i, fill in enumerate([(200, 60, 60), (230, 180, 40), (60, 170, 60)]):
        d.rectangle([w - 30 - 26 * i, 7, w - 14 - 26 * i, 22], fill=fill)
    d.rectangle([0, 30, w, 53], fill=(250, 250, 250))  # menu bar
    for i, item in enumerate(["File", "Edit", "View", "Tools", "Help"]):
        d.text((10 + 60 * i, 34), item, fill=(20, 20, 20), font=font(14))
    d.rectangle([0, 54, w, 89], fill=(214, 214, 214))  # toolbar
    for i in range(18):
        x = 8 + 34 * i
        d.rectangle([x, 60, x + 24, 84], fill=tuple(rng.randrange(40, 220) for _ in range(3)))
    d.rectangle([0, h - 24, w, h], fill=(200, 200, 200))  # status bar
    d.text((8, h - 20), "Zoom 40x  |  x: 10234 y: 88121", fill=(20, 20, 20), font=font(13))
    d.rectangle([0, 90, 170, h - 25], fill=(226, 226, 226))  # side panel
    for i in range(8):
        d.text((10, 100 + 26 * i), f"Layer {i + 1}", fill=(30, 30, 30), font=font(14))
    shot.paste(content.convert("RGB").resize((w - 180, h - 125)), (175, 95))
    return shot


@dataclass(frozen=True)
class LabelledImage:
    name: str
    image: Image.Image
    compound: bool = False
    text: bool = False
    screenshot: bool = False


def _crop(image: Image.Image, rng: random.Random) -> Image.Image:
    w, h = image.size
    cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
    x, y = rng.randrange(0, w - cw + 1), rng.randrange(0, h - ch + 1)
    return image.crop((x, y, x + cw, y + ch))


def labelled_set(n: int = 240, seed: int = 0) -> list[LabelledImage]:
    """n images, in turn: single, compound, single with overlaid text, compound, single with a laterality letter
    or margin, screenshot... (each drawn from its own seeded generator: the set is a pure function of (n, seed))."""
    singles = single_images()
    layouts = [(1, 2), (2, 1), (2, 2), (1, 3), (3, 1), (2, 3)]
    out = []
    for i in range(n):
        rng = random.Random(seed * 1_000_003 + i)
        kind = i % 6
        name, base = singles[rng.randrange(len(singles))]
        base = _crop(base, rng)
        scale = rng.uniform(0.6, 1.6)
        base = base.resize((max(64, int(base.width * scale)), max(64, int(base.height * scale))))
        if kind in (1, 3):
            rows, cols = layouts[rng.randrange(len(layouts))]
            panels = [_crop(singles[rng.randrange(len(singles))][1], rng) for _ in range(rows * cols)]
            gutter = rng.choice([0, 2, 4, 8, 12]) if kind == 3 else rng.choice([3, 6, 10])
            colour = rng.choice([(255, 255, 255), (0, 0, 0), (255, 255, 255)])
            image = panel_grid(panels, rows, cols, (rng.randrange(160, 300), rng.randrange(140, 260)), gutter, colour,
                               letters=rng.random() < 0.6, margin=rng.choice([0, gutter]))
            out.append(LabelledImage(f"{i:04d}-grid{rows}x{cols}-g{gutter}", image, compound=True))
        elif kind == 2:
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 4)))
            size = rng.randrange(12, 36)
            x, y = rng.randrange(0, max(1, base.width // 2)), rng.randrange(0, max(1, base.height - size - 4))
            colour = rng.choice([(255, 255, 0), (255, 255, 255), (0, 0, 0), (255, 0, 0)])
            out.append(LabelledImage(f"{i:04d}-text-{name}", with_text(base, words, (x, y), size, colour), text=True))
        elif kind == 4:
            image = base
            if rng.random() < 0.5:  # a laterality marker: one letter, clinical, not "overlaid text"
                image = with_text(image, rng.choice("LR"), (6, 6), rng.randrange(14, 28), (255, 255, 255))
            if rng.random() < 0.5:  # a white page margin around the image
                m = rng.randrange(4, 30)
                framed = Image.new("RGB", (image.width + 2 * m, image.height + 2 * m), (255, 255, 255))
                framed.paste(image, (m, m))
                image = framed
            out.append(LabelledImage(f"{i:04d}-single-{name}", image))
        elif kind == 5:
            out.append(LabelledImage(f"{i:04d}-screenshot-{name}", desktop_screenshot(base, seed=i), text=True,
                                     screenshot=True))
        else:
            out.append(LabelledImage(f"{i:04d}-single-{name}", base))
    return out
