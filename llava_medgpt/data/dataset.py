"""`MedGptDataset`: the samples of a data recipe, read on demand through on-disk record indexes.

    recipe = load_recipe("data_recipes/stage2_sft.yaml")
    dataset = MedGptDataset(recipe, processor, max_length=8192, cache_dir="/scratch/index")
    sampler = ModalityLengthGroupedBatchSampler(dataset.lengths, dataset.has_image, batch_size=4,
                                                num_replicas=world_size, rank=rank, seed=recipe.seed)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=4,
                        collate_fn=MedGptCollator(pad_token_id=tokenizer.pad_token_id))

Sample k of the dataset is record `selected[k - start]` of the source whose range holds k; sources keep the
recipe's order and `select_indices` picks the same records on every rank. Per sample, memory is the index's
13 bytes (memory-mapped, shared by the ranks of a node) plus 8 bytes of selection for subsampled sources.

A sample that cannot be prepared comes back as a `SkippedSample` with its reason (SKIPPED_ERRORS); the collator
drops it and counts it. This is the one place where a record's failures become skips: unparsable JSON, schema
errors, a repeated id, unreadable or escaping image paths (NUL bytes, symlink loops), the tile budget, templates,
length. Any other exception is a bug and propagates.

A record whose id an earlier *selected* record of the same manifest already has is skipped as `duplicate_id`
(the record index lists repeated ids), so a manifest that holds a record twice does not train it twice.
"""

import os
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..processing.image_io import ImageLoadError
from ..processing.processor import SampleError
from ..processing.records import RecordError, record_images
from .index import MalformedRecordError, RecordIndex
from .recipes import Recipe, load_recipe, select_indices
from .skips import SkippedSample


class DuplicateRecordError(RecordError):
    """The record's id was already read from an earlier record of the same manifest."""


# Exception class -> skip reason, checked in order. The processor's SampleError subclasses carry their own
# `reason` (too_long, image_load, no_target, template, ...), so a new kind of bad sample needs no entry here.
SKIPPED_ERRORS: tuple[tuple[type[Exception], str | None], ...] = (
    (MalformedRecordError, "malformed_json"),
    (DuplicateRecordError, "duplicate_id"),
    (RecordError, "invalid_record"),
    (ImageLoadError, "image_load"),
    (SampleError, None),  # None: use error.reason
)
_SKIPPED_TYPES = tuple(error for error, _ in SKIPPED_ERRORS)

# The image size assumed per image when only the record is known (the index does not read image headers). Its
# token count is the processor's own for its vision geometry: with CLIP-336 tiles 2x2 + thumbnail = 5 x 144 = 720
# tokens, with MedSigLIP-448 tiles one tile of 256 tokens.
LENGTH_ESTIMATE_IMAGE_SIZE = (512, 512)


def image_tokens_estimate_of(processor) -> int:
    """Placeholder tokens per image assumed for length estimates (LENGTH_ESTIMATE_IMAGE_SIZE through the processor)."""
    return processor.image_processor.num_image_tokens_for_size(*LENGTH_ESTIMATE_IMAGE_SIZE)


@dataclass(frozen=True)
class Source:
    """One recipe entry as the dataset reads it."""

    name: str
    index: RecordIndex
    selected: np.ndarray | range  # record numbers in the manifest, in reading order
    image_folder: str | None


def _selects(source: Source, record_number: int) -> bool:
    """Whether the source's selection (a range, or sorted record numbers) holds record_number."""
    if isinstance(source.selected, range):
        return record_number in source.selected
    position = int(np.searchsorted(source.selected, record_number))
    return position < len(source.selected) and int(source.selected[position]) == record_number


def skip_reason(error: Exception) -> str:
    for error_type, reason in SKIPPED_ERRORS:
        if isinstance(error, error_type):
            return reason if reason is not None else error.reason
    raise TypeError(f"{type(error).__name__} is not a skippable sample error")


class MedGptDataset(Dataset):
    """Map-style dataset over all sources of a recipe; items are tokenized samples or SkippedSample markers.

    Items: {"input_ids": LongTensor[T], "labels": LongTensor[T], "pixel_values": uint8 [tiles, 3, S, S] or
    None (S: the vision tower's tile size), "num_tiles": list, "id": str} as MedGptProcessor.tokenize_conversation returns them.
    """

    def __init__(
        self,
        recipe: Recipe | str | os.PathLike,
        processor,
        max_length: int,
        cache_dir: str | os.PathLike | None = None,
        image_tokens_estimate: int | None = None,
        env: dict[str, str] | None = None,
        image_folder: str | None = None,
    ):
        # image_folder: for the entries of a recipe file that give none (LLaVA's --image_folder).
        self.recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, env=env, image_folder=image_folder)
        self.processor = processor
        self.max_length = max_length
        # Default: derived from the processor's vision geometry (image_tokens_estimate_of).
        self.image_tokens_estimate = (
            image_tokens_estimate if image_tokens_estimate is not None else image_tokens_estimate_of(processor)
        )
        self.sources: list[Source] = []
        for entry in self.recipe.datasets:
            index = RecordIndex.open(entry.json_path, cache_dir)
            selected = select_indices(entry.sampling_strategy, len(index), self.recipe.seed, entry.name)
            if entry.sampling_strategy.kind == "all":
                selected = range(len(index))  # O(1) memory for the common case
            self.sources.append(Source(entry.name, index, selected, entry.image_folder))
        self._starts = np.cumsum([0] + [len(s.selected) for s in self.sources]).tolist()
        self._lengths: np.ndarray | None = None
        self._has_image: np.ndarray | None = None

    def __len__(self) -> int:
        return self._starts[-1]

    def locate(self, k: int) -> tuple[Source, int]:
        """(source, record number in its manifest) of sample k."""
        if not 0 <= k < len(self):
            raise IndexError(f"sample {k} out of range ({len(self)} samples)")
        s = bisect_right(self._starts, k) - 1
        source = self.sources[s]
        return source, int(source.selected[k - self._starts[s]])

    def read_record(self, k: int) -> Any:
        source, record_number = self.locate(k)
        return source.index.read(record_number)

    def __getitem__(self, k: int) -> dict | SkippedSample:
        source, record_number = self.locate(k)
        sample_id = source.index.record_name(record_number)
        try:
            record = source.index.read(record_number)
            if isinstance(record, dict) and isinstance(record.get("id"), str) and record["id"]:
                sample_id = record["id"]  # name the sample by its id even if the rest of it is invalid
            earlier = next((i for i in source.index.earlier_duplicates(record_number) if _selects(source, i)), None)
            if earlier is not None:
                raise DuplicateRecordError(sample_id, f"record {record_number} of {source.index.manifest.name} "
                                                      f"repeats the id of record {earlier}")
            if record_images(record) and source.image_folder is None:
                # Without a root, image paths would resolve against the working directory.
                raise RecordError(sample_id, f"refers to images but source {source.name!r} has no image_folder")
            return self.processor.tokenize_conversation(
                record, image_root=source.image_folder, max_length=self.max_length, return_uint8=True
            )
        except _SKIPPED_TYPES as error:
            return SkippedSample(sample_id=f"{source.name}/{sample_id}", reason=skip_reason(error), detail=str(error))

    # ------------------------------------------------------------------------------------------- lengths

    def _estimate(self) -> None:
        lengths, has_image = [], []
        for source in self.sources:
            selected = np.asarray(source.selected) if isinstance(source.selected, np.ndarray) else slice(
                source.selected.start, source.selected.stop
            )
            images = np.asarray(source.index.num_images[selected], dtype=np.int64)
            tokens = np.asarray(source.index.text_tokens[selected], dtype=np.int64)
            lengths.append(np.minimum(tokens + images * self.image_tokens_estimate, np.iinfo(np.int32).max))
            has_image.append(images > 0)
        self._lengths = np.concatenate(lengths).astype(np.int32) if lengths else np.zeros(0, np.int32)
        self._has_image = np.concatenate(has_image) if has_image else np.zeros(0, bool)

    @property
    def lengths(self) -> np.ndarray:
        """[N] int32 estimated tokens per sample (text estimate + images * image_tokens_estimate)."""
        if self._lengths is None:
            self._estimate()
        return self._lengths

    @property
    def has_image(self) -> np.ndarray:
        """[N] bool: the sample's record refers to at least one image."""
        if self._has_image is None:
            self._estimate()
        return self._has_image


__all__ = [
    "DuplicateRecordError",
    "LENGTH_ESTIMATE_IMAGE_SIZE",
    "MedGptDataset",
    "SKIPPED_ERRORS",
    "Source",
    "image_tokens_estimate_of",
    "skip_reason",
]
