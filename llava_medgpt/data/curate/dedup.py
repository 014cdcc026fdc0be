"""Duplicate filters: exact and near-duplicate images and captions, within and across sources, and overlap with
the evaluation sets. The first record of a group (in recipe order, then line order) is kept.

duplicate_image
    exact: the same file bytes (`decontaminate.hash_image`, sha256; its first 8 bytes are the key). near: a 64-bit
    DCT perceptual hash (imagehash.phash) within `max_distance` bits of a kept image's; -1 turns near matching off.
    Near lookups use multi-index hashing: the hash is cut into max_distance + 1 bands, and by the pigeonhole
    principle two hashes within max_distance bits agree exactly on at least one band, so only records sharing a
    band are compared.
duplicate_caption
    exact: the same caption text; near: the same caption after `decontaminate.normalize_question` (case, accents
    (NFKC), punctuation and whitespace). Captions of fewer than `min_words` words are not compared: short generic
    captions ("H&E stain") on different images are not copies.
eval_overlap
    `decontaminate.find_overlap` against the evaluation items in `eval_data` (the same rules as
    `python -m llava_medgpt.data.decontaminate`), plus perceptual-hash near duplicates of evaluation images
    (`max_distance`), which catch resized or re-compressed copies that content hashes miss.

Reasons end in `_across_sources` when the kept record is from another source. State grows with the kept records
(about 200 bytes each for images, 100 for captions; measured in docs/data.md) and is rebuilt from the step's log
on resume.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from dataclasses import dataclass
from typing import Any, Sequence

from ...processing.records import ASSISTANT_ROLE, record_turns
from ..decontaminate import (DEFAULT_MIN_WORDS, build_eval_index, eval_item_images, find_overlap, hash_image,
                             load_eval_items, normalize_question)
from .base import KEEP, OrderedStep, RecordContext, Verdict, reject
from .views import ImageView


class HammingIndex:
    """64-bit hashes with their first owner; `find(h)` returns an owner within max_distance bits, else None."""

    def __init__(self, max_distance: int, bits: int = 64):
        self.max_distance = max_distance
        n_bands = max_distance + 1
        widths = [bits // n_bands + (1 if i < bits % n_bands else 0) for i in range(n_bands)]
        self.bands = []
        start = 0
        for width in widths:
            self.bands.append((start, (1 << width) - 1))
            start += width
        self.tables: list[dict[int, Any]] = [{} for _ in self.bands]  # band value -> ordinal | [ordinals]
        self.hashes = array("Q")
        self.owners: list[str] = []

    def __len__(self) -> int:
        return len(self.hashes)

    def find(self, h: int) -> str | None:
        best = None
        for (shift, mask), table in zip(self.bands, self.tables):
            hit = table.get((h >> shift) & mask)
            if hit is None:
                continue
            for ordinal in (hit if isinstance(hit, list) else (hit,)):
                if (best is None or ordinal < best) and (self.hashes[ordinal] ^ h).bit_count() <= self.max_distance:
                    best = ordinal
        return None if best is None else self.owners[best]

    def add(self, h: int, owner: str) -> None:
        ordinal = len(self.hashes)
        self.hashes.append(h)
        self.owners.append(owner)
        for (shift, mask), table in zip(self.bands, self.tables):
            key = (h >> shift) & mask
            hit = table.get(key)
            if hit is None:
                table[key] = ordinal
            elif isinstance(hit, list):
                hit.append(ordinal)
            else:
                table[key] = [hit, ordinal]


def _owner(record_id: str, source: str) -> str:
    return f"{source}\t{record_id}"


def _duplicate(kind: str, owner: str, source: str) -> Verdict:
    owner_source, owner_id = owner.split("\t", 1)
    suffix = "" if owner_source == source else "_across_sources"
    return reject(f"{kind}{suffix}", 1.0, f"duplicate of {owner_id} ({owner_source})")


@dataclass(frozen=True)
class DuplicateImageParams:
    exact: bool = True
    max_distance: int = 4  # phash bits; -1: exact only


class DuplicateImage(OrderedStep):
    name = "duplicate_image"
    Params = DuplicateImageParams

    def __init__(self, params):
        super().__init__(params)
        self.exact: dict[int, str] = {}
        self.near = HammingIndex(params.max_distance) if params.max_distance >= 0 else None

    def fingerprint(self, views: Sequence[ImageView], ctx: RecordContext) -> list[tuple[int, int]]:
        out = []
        for view in views:
            exact = int(hash_image(view.file)[:16], 16) if self.params.exact else 0
            out.append((exact, view.phash() if self.near is not None else 0))
        return out

    def check(self, fingerprint, ctx: RecordContext) -> tuple[Verdict, str | None]:
        for exact, near in fingerprint:
            if self.params.exact and exact in self.exact:
                return _duplicate("exact_duplicate_image", self.exact[exact], ctx.source), None
            if self.near is not None:
                owner = self.near.find(near)
                if owner is not None:
                    return _duplicate("near_duplicate_image", owner, ctx.source), None
        if not fingerprint:
            return KEEP, None
        owner = _owner(str(ctx.record.get("id")), ctx.source)
        self._add(fingerprint, owner)
        return KEEP, owner + "\t" + " ".join(f"{e:016x}:{n:016x}" for e, n in fingerprint)

    def _add(self, fingerprint, owner: str) -> None:
        for exact, near in fingerprint:
            if self.params.exact:
                self.exact.setdefault(exact, owner)
            if self.near is not None:
                self.near.add(near, owner)

    def replay(self, line: str) -> None:
        source, record_id, hashes = line.split("\t")
        fingerprint = [tuple(int(x, 16) for x in pair.split(":")) for pair in hashes.split()]
        self._add(fingerprint, _owner(record_id, source))


def record_caption(record: dict) -> str:
    """The assistant text of a record (the caption of a stage-0 pair)."""
    return "\n".join(t["value"] for t in record_turns(record) if t.get("from") == ASSISTANT_ROLE)


def _text_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class DuplicateCaptionParams:
    min_words: int = 4
    near: bool = True


class DuplicateCaption(OrderedStep):
    name = "duplicate_caption"
    Params = DuplicateCaptionParams
    needs_images = False

    def __init__(self, params):
        super().__init__(params)
        self.exact: dict[int, str] = {}
        self.near: dict[int, str] = {}

    def _keys(self, record: dict) -> tuple[int, int] | None:
        caption = record_caption(record)
        normalised = normalize_question(caption)
        if len(normalised.split()) < self.params.min_words:
            return None
        return _text_key(caption), _text_key(normalised)

    def check(self, fingerprint, ctx: RecordContext) -> tuple[Verdict, str | None]:
        keys = self._keys(ctx.record)
        if keys is None:
            return KEEP, None
        exact, near = keys
        if exact in self.exact:
            return _duplicate("exact_duplicate_caption", self.exact[exact], ctx.source), None
        if self.params.near and near in self.near:
            return _duplicate("near_duplicate_caption", self.near[near], ctx.source), None
        owner = _owner(str(ctx.record.get("id")), ctx.source)
        self._add(exact, near, owner)
        return KEEP, f"{owner}\t{exact:016x}:{near:016x}"

    def _add(self, exact: int, near: int, owner: str) -> None:
        self.exact.setdefault(exact, owner)
        self.near.setdefault(near, owner)

    def replay(self, line: str) -> None:
        source, record_id, keys = line.split("\t")
        exact, near = (int(x, 16) for x in keys.split(":"))
        self._add(exact, near, _owner(record_id, source))


@dataclass(frozen=True)
class EvalOverlapParams:
    eval_data: str = ""  # folder (or file) of eval items *.jsonl, or the eval harness data folder
    tasks: tuple[str, ...] = ()
    ngram: int = 0
    min_words: int = DEFAULT_MIN_WORDS
    pixel_hash: bool = False
    max_distance: int = 4  # phash bits against eval images; -1: content hashes only


class EvalOverlap(OrderedStep):
    name = "eval_overlap"
    Params = EvalOverlapParams

    def setup(self) -> None:
        p = self.params
        if not p.eval_data:
            raise ValueError("curation step 'eval_overlap' needs eval_data (a folder of eval items)")
        items = load_eval_items(p.eval_data, list(p.tasks) or None)
        self.index = build_eval_index(items, p.ngram, p.min_words, p.pixel_hash)
        self.near = HammingIndex(p.max_distance) if p.max_distance >= 0 else None
        if self.near is not None:
            from ...processing.image_io import load_image

            for item in items:
                # Files under the release root or bytes embedded in its rows, decoded as training images are (DICOM
                # windowing included); None is a path leaving its root, never opened; build_eval_index counts
                # missing files.
                name = f"{item.task}/{item.id}"
                for image_input in eval_item_images(item):
                    if isinstance(image_input, bytes) or (image_input is not None and os.path.isfile(image_input)):
                        self.near.add(ImageView(load_image(image_input), name).phash(), f"eval\t{name}")
        self.n_items = len(items)

    def fingerprint(self, views: Sequence[ImageView], ctx: RecordContext) -> list[int]:
        return [view.phash() for view in views] if self.params.max_distance >= 0 else []

    def check(self, fingerprint, ctx: RecordContext) -> tuple[Verdict, str | None]:
        p = self.params
        overlap = find_overlap(ctx.record, self.index, ctx.image_folder, p.ngram, p.pixel_hash)
        if overlap is not None:
            return reject(f"eval_{overlap.kind.replace('+', '_')}", 1.0,
                          f"overlaps {', '.join(overlap.eval_items[:3])}"), None
        if self.near is not None:
            for h in fingerprint or ():
                owner = self.near.find(h)
                if owner is not None:
                    return reject("eval_near_image", 1.0, f"near duplicate of {owner.split(chr(9), 1)[1]}"), None
        return KEEP, None

