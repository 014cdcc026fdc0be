"""Image–caption pairs (stage 0 alignment, stage 1 MedTrinity): one image, a fixed instruction, the caption.

Field names per source, and where they were read, are listed in docs/data.md ("Source schemas").

PMC-OA (axiong/pmc_oa, pmc_oa.jsonl):
    raw:    {"image": "PMC212319_Fig3_4.jpg", "caption": "A. Real time image of the translocation of ARF1-GFP ..."}
    record: {"id": "pmc_oa-PMC212319_Fig3_4",
             "image": "PMC212319_Fig3_4.jpg",
             "conversations": [{"from": "human", "value": "<image>\\nDescribe the medical image."},
                               {"from": "gpt", "value": "A. Real time image of the translocation of ARF1-GFP ..."}]}

BIOMEDICA (WebDataset shards; one sample = <key>.jpg + <key>.txt (caption) + <key>.json (metadata)):
    raw:    {"__key__": "0-PMC1234-0-fig1", "jpg": "biomedica/1-jpg.jpeg" (written by the reader),
             "txt": "Dermoscopy of a pigmented lesion ...", "json": {"image_primary_label": [...], ...}}
    record: {"id": "biomedica-0-PMC1234-0-fig1", "image": "biomedica/1-jpg.jpeg", "conversations": [...]}
"""

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Mapping

from .common import SkipRow, any_of, first_key, gpt, human, is_missing, make_record, text, with_images

CAPTION_INSTRUCTION = "Describe the medical image."


@dataclass(frozen=True)
class CaptionFields:
    prefix: str  # record id prefix (the converter name)
    images: tuple[str, ...]  # candidate image fields, first present wins (path, or an embedded image made a path)
    caption: str
    id: str | None = None  # field with a stable id; None -> the image path's stem
    image_suffix: str = ""  # appended to the image field (ROCOv2's CSV gives ids, files are <ID>.jpg)

    def columns(self) -> tuple[str, ...]:
        """Input columns a row needs (alternatives joined by '|')."""
        return (any_of(self.images), self.caption)


# A source published in several layouts gives one CaptionFields per layout; the first whose caption field
# the row carries is used (the layouts' caption names differ, e.g. ROCOv2 "Caption" vs "caption").
Layouts = CaptionFields | tuple[CaptionFields, ...]

PMC_OA = CaptionFields(prefix="pmc_oa", images=("image",), caption="caption")
# Zenodo release: {train,valid,test}_captions.csv (ID, Caption) beside <split>/<ID>.jpg.
ROCOV2_ZENODO = CaptionFields(prefix="rocov2", images=("ID",), caption="Caption", id="ID", image_suffix=".jpg")
# Hub copy eltorio/ROCOv2-radiology: parquet with an embedded image, image_id, caption, cui.
ROCOV2_HUB = CaptionFields(prefix="rocov2", images=("image",), caption="caption", id="image_id")
ROCOV2 = (ROCOV2_ZENODO, ROCOV2_HUB)
QUILT_1M = CaptionFields(prefix="quilt_1m", images=("image_path",), caption="caption")
# WebDataset samples: the image member's extension names the field; the caption is the .txt member.
BIOMEDICA = CaptionFields(prefix="biomedica", images=("jpg", "jpeg", "png", "webp"), caption="txt", id="__key__")
# 25M_demo / 25M_full hub configs: image (embedded), id, caption.
MEDTRINITY = CaptionFields(prefix="medtrinity", images=("image",), caption="caption", id="id")


def layout_columns(layouts: Layouts) -> list[tuple[str, ...]]:
    """Columns of each published layout."""
    return [f.columns() for f in (layouts if isinstance(layouts, tuple) else (layouts,))]


def _layout(layouts: Layouts, row: Mapping[str, Any]) -> CaptionFields:
    if isinstance(layouts, CaptionFields):
        return layouts
    for fields in layouts:
        if fields.caption in row:
            return fields
    raise SkipRow(f"missing field '{layouts[0].caption}'")


def convert_caption(layouts: Layouts, row: Mapping[str, Any], index: int) -> list[dict]:
    fields = _layout(layouts, row)
    image = text(row, first_key(row, fields.images)) + fields.image_suffix
    caption = text(row, fields.caption)
    key = text(row, fields.id) if fields.id and not is_missing(row.get(fields.id)) else PurePosixPath(image).stem
    turns = [human(with_images(CAPTION_INSTRUCTION, 1)), gpt(caption)]
    return [make_record(f"{fields.prefix}-{key}", turns, [image])]
