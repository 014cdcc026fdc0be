"""MedGptProcessor: records -> samples (image expansion, errors naming the record), inference batches, save/load."""

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

import llava_medgpt  # noqa: F401  (registers MedGptProcessor with AutoProcessor)
from llava_medgpt.constants import IGNORE_INDEX, IMAGE_END_TOKEN, IMAGE_START_TOKEN, IMAGE_TOKEN
from llava_medgpt.model.tokenizer import build_tiny_tokenizer
from llava_medgpt.processing.image_processor import MedGptImageProcessor
from llava_medgpt.processing.processor import (
    ImageCountMismatchError,
    InvalidRecordError,
    MedGptProcessor,
    SampleError,
    SampleImageError,
    SampleTemplateError,
    SampleTooLongError,
    SampleTooManyImagesError,
    expand_image_markers,
)
from llava_medgpt.processing.records import messages_from_record

TOKENS_PER_TILE = 4


def make_processor(backbone="gpt_oss", template="medical_harmony", **options) -> MedGptProcessor:
    return MedGptProcessor(
        MedGptImageProcessor(patch_size=84),  # 336 / 84 = 4x4 patches -> 2x2 = TOKENS_PER_TILE
        build_tiny_tokenizer(backbone),
        conversation_template=template,
        template_options=options,
    )


@pytest.fixture(scope="module")
def processor():
    return make_processor()


@pytest.fixture()
def image_root(tmp_path):
    Image.new("RGB", (336, 336), (200, 10, 10)).save(tmp_path / "square.png")  # 1 tile
    Image.new("RGB", (672, 336), (10, 200, 10)).save(tmp_path / "wide.png")  # 2x1 grid + thumbnail = 3 tiles
    return tmp_path


TWO_IMAGE_RECORD = {
    "id": "medframeqa-3",
    "image": ["square.png", "wide.png"],
    "conversations": [
        {"from": "human", "value": "<image>\n<image>\nCompare the two frames."},
        {"from": "gpt", "value": "The second shows a nodule."},
    ],
}


def image_runs(processor, input_ids) -> list[int]:
    """Lengths of the IMAGE_TOKEN runs between IMAGE_START and IMAGE_END, in order."""
    start, pad, end = processor.tokenizer.convert_tokens_to_ids([IMAGE_START_TOKEN, IMAGE_TOKEN, IMAGE_END_TOKEN])
    runs, count = [], None
    for token in input_ids.tolist():
        if token == start:
            count = 0
        elif token == pad:
            count += 1
        elif token == end:
            runs.append(count)
            count = None
    return runs


def test_two_images_expand_into_the_image_processors_token_counts(processor, image_root):
    sample = processor.tokenize_conversation(TWO_IMAGE_RECORD, image_root=image_root)
    assert sample["id"] == "medframeqa-3"
    assert sample["num_tiles"] == [1, 3]
    assert image_runs(processor, sample["input_ids"]) == [1 * TOKENS_PER_TILE, 3 * TOKENS_PER_TILE]
    assert sample["pixel_values"].shape == (4, 3, 336, 336)
    assert sample["pixel_values"].dtype == torch.float32
    # Tiles are in reading order: the red square first, then the green wide image's tiles.
    uint8 = processor.tokenize_conversation(TWO_IMAGE_RECORD, image_root=image_root, return_uint8=True)
    assert uint8["pixel_values"].dtype == torch.uint8
    assert uint8["pixel_values"][0, :, 100, 100].tolist() == [200, 10, 10]
    assert uint8["pixel_values"][1, :, 100, 100].tolist() == [10, 200, 10]
    assert torch.allclose(processor.image_processor.normalize_on_device(uint8["pixel_values"]), sample["pixel_values"])
    assert sample["input_ids"].shape == sample["labels"].shape


def test_images_passed_in_match_images_loaded_from_root(processor, image_root):
    images = [Image.open(image_root / "square.png"), Image.open(image_root / "wide.png")]
    passed = processor.tokenize_conversation(TWO_IMAGE_RECORD, images=images)
    loaded = processor.tokenize_conversation(TWO_IMAGE_RECORD, image_root=image_root)
    assert torch.equal(passed["input_ids"], loaded["input_ids"])
    assert torch.equal(passed["pixel_values"], loaded["pixel_values"])


def test_marker_image_mismatch_names_the_record(processor, image_root):
    record = {**TWO_IMAGE_RECORD, "image": "square.png"}
    with pytest.raises(ImageCountMismatchError, match=r"record 'medframeqa-3': 2 '<image>' markers but 1 images"):
        processor.tokenize_conversation(record, image_root=image_root)
    record = {"id": "t-1", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}
    with pytest.raises(ImageCountMismatchError, match="record 't-1': 0 '<image>' markers but 1 images") as error:
        processor.tokenize_conversation(record, images=[Image.new("RGB", (8, 8))])
    assert error.value.reason == "image_count_mismatch"


def test_image_problems_name_the_record(processor, image_root):
    dotted = {**TWO_IMAGE_RECORD, "image": ["../square.png", "wide.png"]}
    with pytest.raises(InvalidRecordError, match=r"record 'medframeqa-3': image path '../square.png' must be "
                                                 "relative and stay inside its image folder"):
        processor.tokenize_conversation(dotted, image_root=image_root / "sub")
    escaping = {**TWO_IMAGE_RECORD, "image": [str(image_root / "square.png"), "wide.png"]}  # absolute, outside
    with pytest.raises(SampleImageError, match=r"record 'medframeqa-3': .*leaves the image root") as error:
        processor.tokenize_conversation(escaping, image_root=image_root / "sub")
    assert error.value.reason == "image_load"
    missing = {**TWO_IMAGE_RECORD, "image": ["square.png", "absent.png"]}
    with pytest.raises(SampleImageError, match=r"record 'medframeqa-3': cannot load image .*absent.png: no such file"):
        processor.tokenize_conversation(missing, image_root=image_root)


def test_too_long_raises_with_exact_lengths(processor, image_root):
    length = len(processor.tokenize_conversation(TWO_IMAGE_RECORD, image_root=image_root)["input_ids"])
    assert (
        len(processor.tokenize_conversation(TWO_IMAGE_RECORD, image_root=image_root, max_length=length)["input_ids"])
        == length
    )
    with pytest.raises(SampleTooLongError) as error:
        processor.tokenize_conversation(TWO_IMAGE_RECORD, image_root=image_root, max_length=length - 1)
    assert (error.value.record_id, error.value.length, error.value.max_length) == ("medframeqa-3", length, length - 1)
    assert isinstance(error.value, SampleError) and error.value.reason == "too_long"
    assert str(error.value) == f"record 'medframeqa-3': {length} tokens exceed max_length {length - 1}"


def test_default_max_length_is_the_tokenizers(image_root):
    processor = make_processor()
    processor.tokenizer.model_max_length = 20
    with pytest.raises(SampleTooLongError, match="exceed max_length 20"):
        processor.tokenize_conversation(TWO_IMAGE_RECORD, image_root=image_root)


def test_record_errors(processor):
    # The schema (processing.records.validate_record) is checked by the processor itself, so a record fails the
    # same way from the dataset and from a direct call.
    with pytest.raises(InvalidRecordError, match="record 'q-only': a record needs at least one prompt turn and "
                                                 "one 'gpt' turn") as error:
        processor.tokenize_conversation({"id": "q-only", "conversations": [{"from": "human", "value": "Q"}]})
    assert error.value.reason == "invalid_record"
    with pytest.raises(InvalidRecordError, match="record 'bad-role': turn 0 has role 'bot'"):
        processor.tokenize_conversation({"id": "bad-role", "conversations": [{"from": "bot", "value": "Q"},
                                                                            {"from": "gpt", "value": "A"}]})
    with pytest.raises(InvalidRecordError, match=r"record None: a record must be a JSON object, got list"):
        processor.tokenize_conversation(["not", "a", "record"])
    late_system = {"id": "late", "conversations": [{"from": "human", "value": "Q"}, {"from": "system", "value": "S"},
                                                   {"from": "gpt", "value": "A"}]}
    with pytest.raises(SampleTemplateError, match="record 'late': A system message is only allowed first"):
        processor.tokenize_conversation(late_system)


def test_messages_from_record():
    record = {
        "id": "x",
        "conversations": [
            {"from": "system", "value": "S"},
            {"from": "human", "value": "Q"},
            {"from": "gpt", "value": "A", "reasoning": "R"},
        ],
    }
    assert messages_from_record(record) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A", "reasoning": "R"},
    ]


def test_expand_image_markers():
    assert expand_image_markers("a<image>b<image>", [2, 1]) == (
        "a<|image_start|><|image_pad|><|image_pad|><|image_end|>b<|image_start|><|image_pad|><|image_end|>"
    )
    with pytest.raises(ValueError, match="1 <image> markers but 2 images"):
        expand_image_markers("<image>", [1, 1])


# --------------------------------------------------------------------------------------------------- inference


def test_apply_chat_template_generation_prompt(processor):
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": "<image>\nWhat is shown?"}], reasoning_effort="low"
    )
    assert prompt == (
        "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
        "Knowledge cutoff: 2024-06\n\nReasoning: low\n\n"
        "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
        "<|start|>user<|message|><image>\nWhat is shown?<|end|><|start|>assistant"
    )


def test_generic_apply_chat_template_is_the_tokenizers():
    processor = make_processor("qwen2", "generic")
    messages = [{"role": "user", "content": "<image>\nWhat is shown?"}]
    assert processor.apply_chat_template(messages) == processor.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )


def test_call_batches_left_padded_prompts_with_images(processor, image_root):
    prompts = [
        processor.apply_chat_template([{"role": "user", "content": "<image>\n<image>\nCompare."}]),
        processor.apply_chat_template([{"role": "user", "content": "Define edema."}]),
    ]
    square, wide = Image.open(image_root / "square.png"), Image.open(image_root / "wide.png")
    batch = processor(text=prompts, images=[[square, wide], []])
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values"}
    assert batch["pixel_values"].shape == (4, 3, 336, 336)
    first = processor(text=prompts[0], images=[square, wide])["input_ids"][0]
    second = processor(text=prompts[1])["input_ids"][0]
    assert image_runs(processor, first) == [4, 12]
    width = max(len(first), len(second))
    assert batch["input_ids"].shape == (2, width)
    # Left padding: the shorter prompt is right-aligned, pads masked out.
    pad = width - len(second)
    assert batch["attention_mask"][1].tolist() == [0] * pad + [1] * len(second)
    assert torch.equal(batch["input_ids"][1, pad:], second)
    assert (batch["input_ids"][1, :pad] == processor.tokenizer.pad_token_id).all()
    assert torch.equal(batch["input_ids"][0, width - len(first) :], first)


def test_call_rejects_mismatched_images(processor):
    with pytest.raises(ValueError, match="text 0 has 1 <image> markers but 0 images"):
        processor(text=["<image>\nQ"], images=[[]])
    with pytest.raises(ValueError, match=r"1 images for 0 <image> markers in 2 texts \(markers per text: \[0, 0\]\)"):
        processor(text=["Q", "R"], images=[Image.new("RGB", (8, 8))])
    with pytest.raises(ValueError, match="a list of 1 lists for 2 texts"):
        processor(text=["<image>Q", "R"], images=[[Image.new("RGB", (8, 8))]])
    with pytest.raises(ValueError, match="mixes lists and single images"):
        processor(text=["<image>Q", "<image>R"], images=[[Image.new("RGB", (8, 8))], Image.new("RGB", (8, 8))])


def test_call_accepts_a_flat_image_list_in_marker_order(processor, image_root):
    square, wide = Image.open(image_root / "square.png"), Image.open(image_root / "wide.png")
    one = processor.apply_chat_template([{"role": "user", "content": "<image>\nWhat is shown?"}])
    two = processor.apply_chat_template([{"role": "user", "content": "<image>\n<image>\nCompare."}])
    none = processor.apply_chat_template([{"role": "user", "content": "Define edema."}])
    # transformers' one-image-per-text form: text=[prompt], images=[image] (also a bare image).
    nested = processor(text=[one], images=[[wide]])
    for flat in (processor(text=[one], images=[wide]), processor(text=[one], images=wide),
                 processor(text=one, images=[[wide]])):
        assert torch.equal(flat["input_ids"], nested["input_ids"])
        assert torch.equal(flat["pixel_values"], nested["pixel_values"])
    # Across texts: each text takes as many images as it has markers, in order (2, 0, 1 here).
    flat = processor(text=[two, none, one], images=[square, wide, square])
    nested = processor(text=[two, none, one], images=[[square, wide], [], [square]])
    assert torch.equal(flat["input_ids"], nested["input_ids"])
    assert torch.equal(flat["pixel_values"], nested["pixel_values"])
    assert flat["pixel_values"].shape[0] == 1 + 3 + 1
    assert [image_runs(processor, row) for row in flat["input_ids"]] == [[4, 12], [], [4]]


def test_more_images_than_the_tile_budget_is_a_counted_sample_error(processor, image_root):
    for n in (27, 300):
        record = {"id": f"many-{n}", "image": ["square.png"] * n,
                  "conversations": [{"from": "human", "value": "<image>" * n + "\nCompare."},
                                    {"from": "gpt", "value": "Same."}]}
        with pytest.raises(SampleTooManyImagesError) as caught:
            processor.tokenize_conversation(record, image_root=image_root)
        assert caught.value.reason == "too_many_images" and isinstance(caught.value, SampleError)
        assert str(caught.value) == (f"record 'many-{n}': {n} images cannot fit max_tiles_per_sample=26 "
                                     "(every image needs at least one tile)")
    # 26 single-tile images fit exactly.
    record = {"id": "many-26", "image": ["square.png"] * 26,
              "conversations": [{"from": "human", "value": "<image>" * 26}, {"from": "gpt", "value": "Same."}]}
    assert processor.tokenize_conversation(record, image_root=image_root)["num_tiles"] == [1] * 26


# ------------------------------------------------------------------------------------------------ save / load


def test_save_and_auto_load_round_trip(tmp_path, image_root):
    processor = make_processor(reasoning_effort="high", developer_instructions="Answer as a radiologist.")
    processor.save_pretrained(tmp_path / "ckpt")
    loaded = AutoProcessor.from_pretrained(tmp_path / "ckpt")
    assert type(loaded) is MedGptProcessor
    assert loaded.conversation_template == "medical_harmony"
    assert loaded.template_options == {"reasoning_effort": "high", "developer_instructions": "Answer as a radiologist."}
    assert loaded.image_processor.tokens_per_tile == TOKENS_PER_TILE
    original = processor.tokenize_conversation(TWO_IMAGE_RECORD, image_root=image_root)
    reloaded = loaded.tokenize_conversation(TWO_IMAGE_RECORD, image_root=image_root)
    assert torch.equal(original["input_ids"], reloaded["input_ids"])
    assert torch.equal(original["labels"], reloaded["labels"])
    assert "Reasoning: high" in loaded.tokenizer.decode(reloaded["input_ids"])
    assert "# Instructions\n\nAnswer as a radiologist." in loaded.tokenizer.decode(reloaded["input_ids"])


def test_generic_round_trip_keeps_the_template(tmp_path):
    processor = make_processor("llama", "generic", reasoning="think_tags")
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert (loaded.conversation_template, loaded.template_options) == ("generic", {"reasoning": "think_tags"})
    record = {
        "id": "r",
        "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A", "reasoning": "R"}],
    }
    sample = loaded.tokenize_conversation(record)
    labelled = sample["labels"][sample["labels"] != IGNORE_INDEX]
    assert loaded.tokenizer.decode(labelled) == "<think>\nR\n</think>\n\nA<|eot_id|>"


def test_unknown_template_or_option_fails_at_construction():
    with pytest.raises(ValueError, match="Unknown conversation template 'chatml'"):
        make_processor(template="chatml")
    with pytest.raises(ValueError, match="Unknown HarmonyOptions option"):
        make_processor(effort="high")


# ------------------------------------------------------------------------------------------------- truncation

THREE_EXCHANGES = {
    "id": "dialog-9",
    "image": "square.png",
    "conversations": [
        {"from": "human", "value": "<image>\nIs there a nodule?"},
        {"from": "gpt", "value": "Yes."},
        {"from": "human", "value": "Where?"},
        {"from": "gpt", "value": "In the left lower lobe."},
        {"from": "human", "value": "Is there edema?"},
        {"from": "gpt", "value": "No evidence of edema."},
    ],
}


def _first_turns(record, n):
    return {**record, "conversations": record["conversations"][:n]}


def test_drop_trailing_turns_keeps_whole_exchanges(processor, image_root):
    lengths = {
        n: len(processor.tokenize_conversation(_first_turns(THREE_EXCHANGES, n), image_root=image_root)["input_ids"])
        for n in (2, 4, 6)
    }
    assert lengths[2] < lengths[4] < lengths[6]
    for max_length, turns in [
        (lengths[6], 6),
        (lengths[6] - 1, 4),
        (lengths[4], 4),
        (lengths[4] - 1, 2),
        (lengths[2], 2),
    ]:
        sample = processor.tokenize_conversation(
            THREE_EXCHANGES, image_root=image_root, max_length=max_length, truncation="drop_trailing_turns"
        )
        expected = processor.tokenize_conversation(_first_turns(THREE_EXCHANGES, turns), image_root=image_root)
        assert torch.equal(sample["input_ids"], expected["input_ids"])
        assert torch.equal(sample["labels"], expected["labels"])  # the new last answer ends with <|return|>
    with pytest.raises(SampleTooLongError) as error:
        processor.tokenize_conversation(
            THREE_EXCHANGES, image_root=image_root, max_length=lengths[2] - 1, truncation="drop_trailing_turns"
        )
    assert (error.value.length, error.value.max_length) == (lengths[6], lengths[2] - 1)


def test_drop_trailing_turns_never_drops_an_image(processor, image_root):
    record = {
        "id": "img-late",
        "image": "square.png",
        "conversations": [
            {"from": "human", "value": "Define edema."},
            {"from": "gpt", "value": "Fluid in the tissue."},
            {"from": "human", "value": "<image>\nIs it present here?"},
            {"from": "gpt", "value": "No."},
        ],
    }
    full = len(processor.tokenize_conversation(record, image_root=image_root)["input_ids"])
    with pytest.raises(SampleTooLongError, match="record 'img-late'"):
        processor.tokenize_conversation(
            record, image_root=image_root, max_length=full - 1, truncation="drop_trailing_turns"
        )
