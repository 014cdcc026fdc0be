"""OmniMedVQA release files -> EvalItems; the item format is parsed by `llava_medgpt.benchmarks.omnimedvqa`.

Every QA file of the split's folder (`QA_information/<split>/*.json`, split Open-access) is read; each item becomes
an MCQ over its one image, resolved under the release root (it may not leave it), with metadata modality /
question_type / dataset for the per-modality and per-question-type breakdowns.
"""

from pathlib import Path

from ...benchmarks import omnimedvqa
from ...rows import read_rows
from .base import BadRecord, EvalItem, ImageRef, TaskConfig, mcq_item
from .sources import glob_files


def omnimedvqa_records(config: TaskConfig, root: Path, split: str) -> list[dict]:
    """Items of every QA file of the split's folder, each tagged with its file's stem and its position."""
    patterns = [pattern.format(split=split) for pattern in config.options["files"]]
    records = []
    for path in glob_files(root, patterns):
        records.extend({**record, "_file": path.stem, "_position": n} for n, record in enumerate(read_rows(path, strict=True)))
    return records


def convert_omnimedvqa(record: dict, config: TaskConfig, root: Path | None) -> EvalItem:
    question = omnimedvqa.parse(record, record["_file"], record["_position"])
    if root is None:
        raise BadRecord("image_path needs the release folder")
    return mcq_item(question.mcq, config, images=[ImageRef(path=question.image, root=str(root))])


__all__ = ["convert_omnimedvqa", "omnimedvqa_records"]
