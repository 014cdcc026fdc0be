"""Record index, recipe-driven dataset, and bad-sample accounting."""

import hashlib
import json
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from llava_medgpt.constants import IGNORE_INDEX, IMAGE_TOKEN
from llava_medgpt.data.collator import MedGptCollator
from llava_medgpt.data.dataset import MedGptDataset
from llava_medgpt.data.index import (
    CHARS_PER_TOKEN,
    TOKENS_PER_TURN,
    MalformedRecordError,
    ManifestFormatError,
    RecordIndex,
    estimate_record_length,
    index_dir_for,
)
from llava_medgpt.data.skips import BatchMeta, SkippedSample, SkipReport, TooManyBadSamplesError
from llava_medgpt.model.tokenizer import build_tiny_tokenizer
from llava_medgpt.processing.image_processor import MedGptImageProcessor
from llava_medgpt.processing.processor import MedGptProcessor


def text_record(i, words=3):
    answer = " ".join(["effusion"] * words)
    return {"id": f"t{i}", "conversations": [{"from": "human", "value": f"Question {i} ✓?"},
                                             {"from": "gpt", "value": f"Answer {i}: {answer}"}]}


def image_record(i, path):
    return {"id": f"m{i}", "image": path, "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"},
                                                            {"from": "gpt", "value": f"Finding {i}."}]}


# ------------------------------------------------------------------------------------------------ index


@pytest.fixture
def records():
    rng = random.Random(0)
    out = []
    for i in range(300):
        record = text_record(i, rng.randint(1, 40)) if i % 3 else image_record(i, f"img/{i}.png")
        if i % 7 == 0:
            record["conversations"][-1]["reasoning"] = "ünïcode reasoning " * rng.randint(1, 5)
        out.append(record)
    return out


def write_manifests(tmp_path, records):
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" + ("\n" if i % 50 == 0 else "")
                             for i, r in enumerate(records)), encoding="utf-8")
    json_list = tmp_path / "m.json"
    json_list.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    return [jsonl, json_list, parquet]


def test_index_random_access_equals_sequential_read_for_every_format(tmp_path, records):
    for manifest in write_manifests(tmp_path, records):
        index = RecordIndex.open(manifest, cache_dir=tmp_path / "cache")
        assert len(index) == len(records), manifest.name
        assert isinstance(index.offsets, np.memmap) and index.offsets.dtype == np.int64
        order = list(range(len(records)))
        random.Random(1).shuffle(order)
        for i in order:
            assert index.read(i) == records[i], (manifest.name, i)
        # The estimate's rule, written out: characters of every value and reasoning / CHARS_PER_TOKEN, plus
        # TOKENS_PER_TURN per turn; images counted from "image".
        chars = [sum(len(t["value"]) + len(t.get("reasoning", "")) for t in r["conversations"]) for r in records]
        turns = [len(r["conversations"]) for r in records]
        assert index.text_tokens.tolist() == [c // CHARS_PER_TOKEN + TOKENS_PER_TURN * n for c, n in zip(chars, turns)]
        assert index.num_images.tolist() == [1 if "image" in r else 0 for r in records]


def test_index_pickles_by_path_for_spawned_workers(tmp_path, records):
    import pickle

    index = RecordIndex.open(write_manifests(tmp_path, records)[0], cache_dir=tmp_path / "cache")
    payload = pickle.dumps(index)
    assert len(payload) < 1000  # the arrays are re-mapped in the worker, not copied
    clone = pickle.loads(payload)
    assert [clone.read(i) for i in (0, 150, 299)] == [records[0], records[150], records[299]]


def test_jsonl_offsets_point_at_line_starts(tmp_path, records):
    jsonl = write_manifests(tmp_path, records[:20])[0]
    data = jsonl.read_bytes()
    line_starts = [0] + [k + 1 for k, byte in enumerate(data) if byte == ord("\n")][:-1]
    nonblank = [s for s in line_starts if data[s : s + 1] not in (b"\n", b"")]
    index = RecordIndex.open(jsonl, cache_dir=tmp_path / "cache")
    assert index.offsets.tolist() == nonblank + [len(data)]


def test_length_estimate_counts_characters_turns_and_images():
    record = {"id": "a", "image": ["x.png", "y.png"], "conversations": [
        {"from": "human", "value": "a" * 40}, {"from": "gpt", "value": "b" * 21, "reasoning": "c" * 19}]}
    assert estimate_record_length(record) == ((40 + 21 + 19) // CHARS_PER_TOKEN + 2 * TOKENS_PER_TURN, 2)
    assert estimate_record_length(["not", "a", "record"]) == (0, 0)


def test_malformed_line_is_indexed_and_raises_naming_the_line_on_read(tmp_path):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text(json.dumps(text_record(0)) + "\n{\"id\": \"t1\", oops\n" + json.dumps(text_record(2)) + "\n")
    index = RecordIndex.open(manifest, cache_dir=tmp_path / "cache")
    assert len(index) == 3
    assert index.read(2)["id"] == "t2"
    with pytest.raises(MalformedRecordError, match=r"bad\.jsonl#1"):
        index.read(1)


def test_index_is_cached_and_rebuilt_when_the_manifest_changes(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(text_record(i)) + "\n" for i in range(5)))
    first = RecordIndex.open(manifest, cache_dir=tmp_path / "cache")
    meta_mtime = (first.index_dir / "meta.json").stat().st_mtime_ns
    again = RecordIndex.open(manifest, cache_dir=tmp_path / "cache")
    assert again.index_dir == first.index_dir
    assert (again.index_dir / "meta.json").stat().st_mtime_ns == meta_mtime  # loaded, not rebuilt
    with open(manifest, "a") as f:
        f.write(json.dumps(text_record(5)) + "\n")
    changed = RecordIndex.open(manifest, cache_dir=tmp_path / "cache")
    assert changed.index_dir != first.index_dir and len(changed) == 6
    assert changed.read(5)["id"] == "t5"
    assert not first.index_dir.exists()  # the stale index was removed
    assert index_dir_for(manifest, tmp_path / "cache") == changed.index_dir


def test_a_json_manifest_that_is_not_a_list_is_refused(tmp_path):
    manifest = tmp_path / "obj.json"
    manifest.write_text('{"id": "x"}')
    with pytest.raises(ManifestFormatError, match="obj.json"):
        RecordIndex.open(manifest, cache_dir=tmp_path / "cache")


# ------------------------------------------------------------------------------------------ skip report


def test_skip_report_counts_reasons_and_raises_above_the_fraction(tmp_path):
    report = SkipReport(max_fraction=0.01, min_samples=100)
    report.update(BatchMeta(num_samples=99, skipped=[SkippedSample("s/a", "too_long", "record 'a': 9 tokens")]))
    report.update(BatchMeta(num_samples=1))
    assert report.fraction == pytest.approx(0.01)  # exactly 1% is allowed
    with pytest.raises(TooManyBadSamplesError) as excinfo:
        report.update(BatchMeta(num_samples=1, skipped=[SkippedSample("s/b", "image_load", "cannot load image b")]))
    message = str(excinfo.value)
    assert "2 of 101 samples skipped" in message
    assert "too_long: 1 (e.g. s/a)" in message and "image_load: 1 (e.g. s/b)" in message
    written = json.loads(report.write_json(tmp_path / "skips.json").read_text())
    assert written["counts"] == {"too_long": 1, "image_load": 1}
    assert written["ids"] == {"too_long": ["s/a"], "image_load": ["s/b"]}


def test_skip_report_waits_for_min_samples_but_finalize_checks():
    report = SkipReport(max_fraction=0.01, min_samples=1000)
    report.update(BatchMeta(num_samples=10, skipped=[SkippedSample("s/a", "malformed_json", "")]))
    with pytest.raises(TooManyBadSamplesError, match="1 of 10"):
        report.finalize()


# ------------------------------------------------------------------------------------------- dataset


@pytest.fixture(scope="module")
def processor():
    return MedGptProcessor(image_processor=MedGptImageProcessor(), tokenizer=build_tiny_tokenizer("gpt_oss"),
                           conversation_template="medical_harmony")


MAX_LENGTH = 2048


@pytest.fixture
def corpus(tmp_path):
    """An image source with every kind of bad sample, and a text source; returns the recipe path."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.new("RGB", (300 + 40 * i, 200), (10 * i, 20, 30)).save(images / f"ok{i}.png")
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    outside = tmp_path / "secret.png"
    Image.new("RGB", (50, 50)).save(outside)
    os.symlink(outside, images / "link.png")
    image_lines = [json.dumps(image_record(i, f"ok{i}.png")) for i in range(4)]
    image_lines += [
        '{"id": "broken", "image": "ok0.png", "conversations": [',  # malformed JSON
        json.dumps(image_record(10, "missing.png")),
        json.dumps(image_record(11, "corrupt.png")),
        json.dumps(image_record(12, "../secret.png")),  # refused by the record schema
        json.dumps(image_record(13, "link.png")),  # a symlink that leaves the image folder
    ]
    (tmp_path / "vqa.jsonl").write_text("\n".join(image_lines) + "\n")
    text_lines = [json.dumps(text_record(i)) for i in range(6)]
    (tmp_path / "chat.jsonl").write_text("\n".join(text_lines) + "\n")
    (tmp_path / "long.jsonl").write_text(json.dumps(text_record(99, words=3000)) + "\n")  # >> MAX_LENGTH tokens
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
seed: 7
datasets:
  - name: VQA
    json_path: {tmp_path}/vqa.jsonl
    image_folder: {images}
    sampling_strategy: all
    expected_count: 9
    modality: image
    reasoning: false
    source: test
    converter: pmc_vqa
  - name: Chat
    json_path: {tmp_path}/chat.jsonl
    sampling_strategy: "random:5"
    expected_count: 6
    modality: text
    reasoning: false
    source: test
    converter: alpacare
  - name: Long
    json_path: {tmp_path}/long.jsonl
    sampling_strategy: all
    expected_count: 1
    modality: text
    reasoning: false
    source: test
    converter: alpacare
""")
    return recipe


def test_dataset_follows_the_recipe_selection(corpus, processor, tmp_path):
    dataset = MedGptDataset(corpus, processor, max_length=MAX_LENGTH, cache_dir=tmp_path / "cache")
    assert len(dataset) == 9 + 5 + 1
    # random:5 of 6 records: numpy's Generator seeded with the first 8 bytes (little-endian) of sha256("7:Chat")
    # draws 5 without replacement, sorted (docs/data.md); the draw leaves out record 4.
    seed = int.from_bytes(hashlib.sha256(b"7:Chat").digest()[:8], "little")
    chat_selected = sorted(np.random.default_rng(seed).choice(6, 5, replace=False).tolist())
    assert chat_selected == [0, 1, 2, 3, 5]
    assert [dataset.read_record(k)["id"] for k in range(9, 14)] == [f"t{i}" for i in chat_selected]
    assert dataset.read_record(14)["id"] == "t99"
    # The malformed line (sample 4) cannot be parsed, so the index knows no image for it.
    assert dataset.has_image.tolist() == [True] * 4 + [False] + [True] * 4 + [False] * 6
    # Estimated length of sample 0 ("<image>\nWhat is shown?" + "Finding 0.", one image): 32 characters // 4 + 2
    # turns x 8, plus one image at the assumed 512 x 512 with CLIP-336 tiles: 2 x 2 tiles + thumbnail = 5 x 144.
    assert dataset.image_tokens_estimate == 5 * 144
    assert dataset.lengths[0] == 32 // 4 + 2 * 8 + 5 * 144


def test_good_items_are_exactly_the_processor_output(corpus, processor, tmp_path):
    dataset = MedGptDataset(corpus, processor, max_length=MAX_LENGTH, cache_dir=tmp_path / "cache")
    item = dataset[1]
    expected = processor.tokenize_conversation(image_record(1, "ok1.png"), image_root=tmp_path / "images",
                                               return_uint8=True)
    assert item["id"] == "m1"
    assert torch.equal(item["input_ids"], expected["input_ids"]) and torch.equal(item["labels"], expected["labels"])
    assert item["pixel_values"].dtype == torch.uint8 and torch.equal(item["pixel_values"], expected["pixel_values"])
    # And on its own terms: ok1.png is a flat 340 x 200 image of (10, 20, 30), so every tile is that colour; each
    # tile is 144 placeholder tokens; the labels are exactly the harmony answer.
    assert item["pixel_values"].shape[1:] == (3, 336, 336) and sum(item["num_tiles"]) == len(item["pixel_values"])
    assert (item["pixel_values"] == torch.tensor([10, 20, 30], dtype=torch.uint8)[:, None, None]).all()
    image_token = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert int((item["input_ids"] == image_token).sum()) == 144 * sum(item["num_tiles"])
    labelled = item["input_ids"][item["labels"] != IGNORE_INDEX]
    assert processor.tokenizer.decode(labelled) == "<|channel|>final<|message|>Finding 1.<|return|>"


def test_every_bad_kind_is_skipped_with_its_reason_through_loader_workers(corpus, processor, tmp_path):
    dataset = MedGptDataset(corpus, processor, max_length=MAX_LENGTH, cache_dir=tmp_path / "cache")
    collate = MedGptCollator(pad_token_id=processor.tokenizer.pad_token_id, layout="padded")
    loader = DataLoader(dataset, batch_size=4, shuffle=False, num_workers=2, collate_fn=collate)
    report = SkipReport(max_fraction=1.0, min_samples=0)
    trained_ids = []
    for batch in loader:
        meta = batch.pop("meta")
        report.update(meta)
        trained_ids += meta.sample_ids
        # Skipped samples are dropped, not replaced; a batch of only bad samples is one untrained padding row.
        assert batch["input_ids"].shape[0] == max(1, len(meta.sample_ids))
        if not meta.sample_ids:
            assert (batch["labels"] == -100).all()
        n_tiles = 0 if batch["pixel_values"] is None else batch["pixel_values"].shape[0]
        image_tokens = int((batch["input_ids"] == processor.image_token_id).sum())
        assert image_tokens == n_tiles * 144
    assert report.num_seen == len(dataset) == 15
    assert dict(report.counts) == {"malformed_json": 1, "image_load": 3, "invalid_record": 1, "too_long": 1}
    assert sorted(report.ids["image_load"]) == ["VQA/m10", "VQA/m11", "VQA/m13"]
    assert report.ids["malformed_json"] == ["VQA/vqa.jsonl#4"]
    assert report.ids["invalid_record"] == ["VQA/m12"]
    assert "missing.png" in report.examples["image_load"] or "corrupt.png" in report.examples["image_load"]
    assert report.ids["too_long"] == ["Long/t99"]
    chat_ids = [dataset.read_record(k)["id"] for k in range(9, 14)]
    assert sorted(trained_ids) == sorted(["m0", "m1", "m2", "m3"] + chat_ids)


def test_too_long_sample_is_skipped_not_truncated(corpus, processor, tmp_path):
    dataset = MedGptDataset(corpus, processor, max_length=MAX_LENGTH, cache_dir=tmp_path / "cache")
    item = dataset[14]
    assert isinstance(item, SkippedSample) and item.reason == "too_long" and item.sample_id == "Long/t99"
    assert f"exceed max_length {MAX_LENGTH}" in item.detail


def test_the_threshold_stops_a_run_with_too_many_bad_samples(corpus, processor, tmp_path):
    dataset = MedGptDataset(corpus, processor, max_length=MAX_LENGTH, cache_dir=tmp_path / "cache")
    collate = MedGptCollator(pad_token_id=processor.tokenizer.pad_token_id)
    report = SkipReport(max_fraction=0.01, min_samples=5)
    with pytest.raises(TooManyBadSamplesError, match=r"malformed_json: 1 \(e\.g\. VQA/vqa\.jsonl#4\)"):
        for batch in DataLoader(dataset, batch_size=5, shuffle=False, collate_fn=collate):
            report.update(batch["meta"])


def test_samples_with_more_images_than_the_tile_budget_are_counted_skips_in_loader_workers(processor, tmp_path):
    """27 and 300 images against max_tiles_per_sample=26: a counted skip, not a dead loader worker."""
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 64), (90, 20, 30)).save(images / "a.png")

    def many(record_id, n):
        return {"id": record_id, "image": ["a.png"] * n,
                "conversations": [{"from": "human", "value": "<image>\n" * n + "Compare."},
                                  {"from": "gpt", "value": "Same."}]}

    records = [image_record(0, "a.png"), many("m27", 27), image_record(1, "a.png"), many("m300", 300)]
    (tmp_path / "many.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
seed: 0
datasets:
  - name: many
    json_path: {tmp_path}/many.jsonl
    image_folder: {images}
    sampling_strategy: all
    expected_count: 4
    modality: image
    reasoning: false
    source: test
    converter: pmc_vqa
""")
    dataset = MedGptDataset(recipe, processor, max_length=MAX_LENGTH, cache_dir=tmp_path / "cache")
    report, trained = _skips_through_workers(dataset, processor)
    assert trained == ["m0", "m1"]
    assert dict(report.counts) == {"too_many_images": 2}
    assert sorted(report.ids["too_many_images"]) == ["many/m27", "many/m300"]
    assert "27 images cannot fit max_tiles_per_sample=26" in report.examples["too_many_images"]


def _one_source_recipe(tmp_path, manifest, images=None, strategy="all"):
    recipe = tmp_path / f"{manifest.stem}.yaml"
    folder = f"\n    image_folder: {images}" if images is not None else ""
    recipe.write_text(f"""
seed: 0
datasets:
  - name: src
    json_path: {manifest}{folder}
    sampling_strategy: "{strategy}"
""")
    return recipe


def _skips_through_workers(dataset, processor):
    collate = MedGptCollator(pad_token_id=processor.tokenizer.pad_token_id, layout="padded")
    report = SkipReport(max_fraction=1.0, min_samples=0)
    trained = []
    for batch in DataLoader(dataset, batch_size=2, shuffle=False, num_workers=2, collate_fn=collate):
        report.update(batch["meta"])
        trained += batch["meta"].sample_ids
    return report, trained


def test_record_paths_that_crashed_workers_are_counted_skips(processor, tmp_path):
    """A NUL byte (ValueError) and a symlink loop (RuntimeError) in an image path, a lone surrogate in the text
    (TypeError in the tokenizer) and a non-list 'image' crashed the loader worker, on every restart."""
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 64), (90, 20, 30)).save(images / "a.png")
    (images / "loop1.png").symlink_to(images / "loop2.png")
    (images / "loop2.png").symlink_to(images / "loop1.png")
    surrogate = json.loads('"what is \\ud800 shown?"')
    records = [
        image_record(0, "a.png"),
        image_record(1, "scan\x00.png"),
        image_record(2, "loop1.png"),
        {"id": "s3", "conversations": [{"from": "human", "value": surrogate}, {"from": "gpt", "value": "x"}]},
        image_record(4, str(images / "a.png")),  # absolute, inside the root: allowed (docs/preprocessing.md)
    ]
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    dataset = MedGptDataset(_one_source_recipe(tmp_path, tmp_path / "bad.jsonl", images), processor,
                            max_length=MAX_LENGTH, cache_dir=tmp_path / "cache")
    report, trained = _skips_through_workers(dataset, processor)
    assert trained == ["m0", "m4"]
    assert dict(report.counts) == {"invalid_record": 1, "image_load": 1, "template": 1}
    assert report.ids == {"invalid_record": ["src/m1"], "image_load": ["src/m2"], "template": ["src/s3"]}
    assert "NUL byte" in report.examples["invalid_record"]
    assert "loop1.png: symlink loop" in report.examples["image_load"]
    assert "not valid Unicode" in report.examples["template"]


def test_the_processor_itself_turns_record_paths_into_sample_errors(processor, tmp_path):
    """tokenize_conversation is public: its own path handling must not leak ValueError / RuntimeError."""
    from llava_medgpt.processing.processor import SampleError, SampleImageError

    (tmp_path / "l1.png").symlink_to(tmp_path / "l2.png")
    (tmp_path / "l2.png").symlink_to(tmp_path / "l1.png")
    # The schema check (the same one the dataset's samples get) refuses NUL bytes and '..'; the image loader the
    # rest. The reasons are those a dataset sample of the same record is counted under.
    cases = [("a\x00.png", "invalid_record", "NUL byte"),
             ("../x.png", "invalid_record", "stay inside its image folder"),
             ("l1.png", "image_load", "symlink loop"),
             (str(tmp_path.parent / "x.png"), "image_load", "leaves the image root"),
             (17, "invalid_record", "'image' must be a string or a list of strings")]
    for path, reason, match in cases:
        with pytest.raises(SampleError, match=match) as error:
            processor.tokenize_conversation(image_record(0, path), image_root=tmp_path)
        assert error.value.reason == reason
        assert isinstance(error.value, SampleImageError) == (reason == "image_load")


def test_a_repeated_record_id_is_skipped_not_trained_twice(processor, tmp_path):
    records = [text_record(0), text_record(1), text_record(0), text_record(2), text_record(0)]
    records[2]["conversations"][-1]["value"] = "a different answer under the same id"
    manifest = tmp_path / "dup.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    dataset = MedGptDataset(_one_source_recipe(tmp_path, manifest), processor, max_length=MAX_LENGTH,
                            cache_dir=tmp_path / "cache")
    report, trained = _skips_through_workers(dataset, processor)
    assert trained == ["t0", "t1", "t2"]
    assert report.ids == {"duplicate_id": ["src/t0", "src/t0"]}
    assert "record 2 of dup.jsonl repeats the id of record 0" in report.examples["duplicate_id"]
    index = RecordIndex.open(manifest, cache_dir=tmp_path / "cache")
    assert index.earlier_duplicates(4) == [2, 0] and index.earlier_duplicates(1) == []
    # A sampled subset that leaves out the first copy trains the later one.
    dataset = MedGptDataset(_one_source_recipe(tmp_path, manifest, strategy="end:3"), processor,
                            max_length=MAX_LENGTH, cache_dir=tmp_path / "cache")
    report, trained = _skips_through_workers(dataset, processor)
    assert trained == ["t0", "t2"] and report.ids == {"duplicate_id": ["src/t0"]}


def test_an_edit_that_keeps_size_and_mtime_gets_a_fresh_index(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(text_record(1)) + "\n" + json.dumps(text_record(2)) + "\n")
    before = manifest.stat()
    first = RecordIndex.open(manifest, cache_dir=tmp_path / "cache")
    assert first.read(0)["id"] == "t1"
    # Same byte count, and the mtime put back (as `cp -p`, `touch -r` or a second-resolution sync would).
    manifest.write_text(json.dumps(text_record(3)) + "\n" + json.dumps(text_record(1)) + "\n")
    os.utime(manifest, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert manifest.stat().st_size == before.st_size and manifest.stat().st_mtime_ns == before.st_mtime_ns
    again = RecordIndex.open(manifest, cache_dir=tmp_path / "cache")
    assert again.index_dir != first.index_dir
    assert [again.read(0)["id"], again.read(1)["id"]] == ["t3", "t1"]


def test_an_index_location_that_cannot_be_written_is_named(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(text_record(1)) + "\n")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"cannot create the record index of .*m\.jsonl in .*not_a_folder"):
        RecordIndex.open(manifest, cache_dir=blocker / "index")
