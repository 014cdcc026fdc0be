"""Image–caption pairs (stage 0 alignment, stage 1 MedTrinity): one image, a fixed instruction, the caption.

PMC-OA (axiong/pmc_oa, pmc_oa.jsonl):
    raw:    {"image": "PMC212319_Fig3_4.jpg", "caption": "A. Real time image of the translocation of ARF1-GFP ..."}
    record: {"id": "pmc_oa-PMC212319_Fig3_4",
             "image": "PMC212319_Fig3_4.jpg",
             "conversations": [{"from": "human", "value": "<image>\\nDescribe the medical image."},
                               {"from": "gpt", "value": "A. Real time image of the translocation of ARF1-GFP ..."}]}
"""

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Mapping

from .common import gpt, human, make_record, text, with_images

CAPTION_INSTRUCTION = "Describe the medical image."


@dataclass(frozen=True)
class CaptionFields:
    prefix: str  # record id prefix (the converter name)
    image: str  # field holding the image path (relative to the source's image folder)
    caption: str
    id: str | None = None  # field with a stable id; None -> the image path's stem
    image_suffix: str = ""  # appended to the image field (ROCOv2's CSV gives ids, files are <ID>.jpg)


PMC_OA = CaptionFields(prefix="pmc_oa", image="image", caption="caption")
ROCOV2 = CaptionFields(prefix="rocov2", image="ID", caption="Caption", id="ID", image_suffix=".jpg")
QUILT_1M = CaptionFields(prefix="quilt_1m", image="image_path", caption="caption")
BIOMEDICA = CaptionFields(prefix="biomedica", image="image", caption="caption")
MEDTRINITY = CaptionFields(prefix="medtrinity", image="image", caption="caption", id="id")


def convert_caption(fields: CaptionFields, row: Mapping[str, Any], index: int) -> list[dict]:
    image = text(row, fields.image) + fields.image_suffix
    caption = text(row, fields.caption)
    key = text(row, fields.id) if fields.id else PurePosixPath(image).stem
    turns = [human(with_images(CAPTION_INSTRUCTION, 1)), gpt(caption)]
    return [make_record(f"{fields.prefix}-{key}", turns, [image])]
