"""Label masking: exactly the tokens the assistant generates carry labels, for harmony and generic templates."""

import pytest
import torch
from PIL import Image

from llava_medgpt.constants import IGNORE_INDEX, IMAGE_END_TOKEN, IMAGE_START_TOKEN, IMAGE_TOKEN
from llava_medgpt.model.tokenizer import build_tiny_tokenizer
from llava_medgpt.processing.image_processor import MedGptImageProcessor
from llava_medgpt.processing.processor import MedGptProcessor, labels_from_spans
from llava_medgpt.processing.records import messages_from_record

TOKENS_PER_TILE = 4  # small, so placeholder runs stay short; tiling itself is unchanged

RECORD = {
    "id": "slake-7",
    "image": "xray.png",
    "conversations": [
        {"from": "system", "value": "You are a medical assistant."},
        {"from": "human", "value": "<image>\nIs there a nodule?"},
        {"from": "gpt", "value": "Yes, there is a small nodule.", "reasoning": "Let me think step by step."},
        {"from": "human", "value": "Where is it?"},
        {"from": "gpt", "value": "In the left lower lobe.", "reasoning": "The lesion is in the left lower lobe."},
        {"from": "human", "value": "Is there edema?"},
        {"from": "gpt", "value": "No evidence of edema.", "reasoning": "The lungs appear normal."},
    ],
}
IMAGE = Image.new("RGB", (336, 336), (90, 90, 90))  # one tile, no thumbnail


def processor_for(backbone: str, template: str, **template_options) -> MedGptProcessor:
    return MedGptProcessor(
        MedGptImageProcessor(patch_size=84),  # 336 / 84 = 4x4 patches -> 2x2 = TOKENS_PER_TILE
        build_tiny_tokenizer(backbone),
        conversation_template=template,
        template_options=template_options,
    )


def labelled_runs(tokenizer, sample) -> list[str]:
    """Decoded maximal runs of consecutive labelled tokens."""
    runs, current = [], []
    for label in sample["labels"].tolist() + [IGNORE_INDEX]:
        if label != IGNORE_INDEX:
            current.append(label)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    return runs


@pytest.fixture(scope="module")
def harmony_processor():
    return processor_for("gpt_oss", "medical_harmony")


def test_harmony_three_turns_labels_exactly_the_assistant_output(harmony_processor):
    sample = harmony_processor.tokenize_conversation(RECORD, images=[IMAGE])
    assert labelled_runs(harmony_processor.tokenizer, sample) == [
        "<|channel|>analysis<|message|>Let me think step by step.<|end|><|start|>assistant"
        "<|channel|>final<|message|>Yes, there is a small nodule.",
        "<|channel|>analysis<|message|>The lesion is in the left lower lobe.<|end|><|start|>assistant"
        "<|channel|>final<|message|>In the left lower lobe.",
        "<|channel|>analysis<|message|>The lungs appear normal.<|end|><|start|>assistant"
        "<|channel|>final<|message|>No evidence of edema.<|return|>",
    ]
    input_ids, labels = sample["input_ids"], sample["labels"]
    labelled = labels != IGNORE_INDEX
    assert torch.equal(labels[labelled], input_ids[labelled])  # labels are the tokens themselves (model shifts)
    # Every run starts right after the turn header "<|start|>assistant", which the prompt supplies at generation.
    tokenizer = harmony_processor.tokenizer
    header = tokenizer.encode("<|start|>assistant", add_special_tokens=False)
    starts = [i for i in range(1, len(labels)) if labelled[i] and not labelled[i - 1]]
    assert len(starts) == 3
    for start in starts:
        assert input_ids[start - len(header) : start].tolist() == header
    # The closing <|end|> of the two earlier answers is history (generation ends an answer with <|return|>).
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    ends = [i for i in range(1, len(labels)) if labelled[i - 1] and not labelled[i]]
    assert [input_ids[i].item() for i in ends] == [end_id, end_id]
    assert labelled[-1] and input_ids[-1].item() == tokenizer.convert_tokens_to_ids("<|return|>")


def test_harmony_drop_mode_labels(harmony_processor):
    processor = processor_for("gpt_oss", "medical_harmony", earlier_reasoning="drop")
    sample = processor.tokenize_conversation(RECORD, images=[IMAGE])
    assert labelled_runs(processor.tokenizer, sample) == [
        "<|channel|>final<|message|>Yes, there is a small nodule.",
        "<|channel|>final<|message|>In the left lower lobe.",
        "<|channel|>analysis<|message|>The lungs appear normal.<|end|><|start|>assistant"
        "<|channel|>final<|message|>No evidence of edema.<|return|>",
    ]


def test_image_tokens_are_never_labels(harmony_processor):
    sample = harmony_processor.tokenize_conversation(RECORD, images=[IMAGE])
    tokenizer = harmony_processor.tokenizer
    image_ids = tokenizer.convert_tokens_to_ids([IMAGE_START_TOKEN, IMAGE_TOKEN, IMAGE_END_TOKEN])
    is_image = torch.isin(sample["input_ids"], torch.tensor(image_ids))
    assert is_image.sum().item() == TOKENS_PER_TILE + 2
    assert (sample["labels"][is_image] == IGNORE_INDEX).all()


def test_decoded_input_is_the_rendered_text(harmony_processor):
    sample = harmony_processor.tokenize_conversation(RECORD, images=[IMAGE])
    text = harmony_processor.tokenizer.decode(sample["input_ids"])
    assert text.startswith("<|start|>system<|message|>You are ChatGPT")
    assert "<|start|>developer<|message|># Instructions\n\nYou are a medical assistant.<|end|>" in text
    assert (
        "<|start|>user<|message|><|image_start|>" + "<|image_pad|>" * 4 + "<|image_end|>\nIs there a nodule?<|end|>"
        in text
    )


@pytest.mark.parametrize("backbone,end_token", [("qwen2", "<|im_end|>"), ("llama", "<|eot_id|>")])
def test_generic_labels_exactly_content_and_end_token(backbone, end_token):
    processor = processor_for(backbone, "generic")
    sample = processor.tokenize_conversation(RECORD, images=[IMAGE])
    assert labelled_runs(processor.tokenizer, sample) == [
        f"Yes, there is a small nodule.{end_token}",
        f"In the left lower lobe.{end_token}",
        f"No evidence of edema.{end_token}",
    ]


def test_generic_think_tags_are_trained():
    processor = processor_for("qwen2", "generic", reasoning="think_tags")
    record = {"id": "r", "conversations": RECORD["conversations"][3:5]}
    sample = processor.tokenize_conversation(record)
    assert labelled_runs(processor.tokenizer, sample) == [
        "<think>\nThe lesion is in the left lower lobe.\n</think>\n\nIn the left lower lobe.<|im_end|>"
    ]


def test_labels_from_spans_exact():
    ids = torch.tensor([10, 11, 12, 13, 14, 15])
    offsets = torch.tensor([(0, 3), (3, 5), (5, 5), (5, 9), (9, 12), (12, 14)])
    assert labels_from_spans(ids, offsets, [(3, 9), (12, 14)]).tolist() == [-100, 11, -100, 13, -100, 15]
    assert labels_from_spans(ids, offsets, [(0, 14)]).tolist() == [10, 11, -100, 13, 14, 15]
    assert labels_from_spans(ids, offsets, []).tolist() == [-100] * 6


def test_labels_from_spans_refuses_tokens_crossing_a_span_boundary():
    # Token 1 covers characters 3-5 but the target starts at 4: a BPE merge across the boundary.
    with pytest.raises(ValueError, match="token 1 \\(characters 3-5\\) crosses the target span 4-9"):
        labels_from_spans(torch.tensor([10, 11, 12]), torch.tensor([(0, 3), (3, 5), (5, 9)]), [(4, 9)])
    with pytest.raises(ValueError, match="token 2 \\(characters 5-10\\) crosses the target span 4-9"):
        labels_from_spans(torch.tensor([10, 11, 12]), torch.tensor([(0, 4), (4, 5), (5, 10)]), [(4, 9)])


def test_literal_image_token_in_text_is_refused(harmony_processor):
    record = {
        "id": "inj",
        "conversations": [{"from": "human", "value": "What is <|image_pad|>?"}, {"from": "gpt", "value": "A token."}],
    }
    with pytest.raises(
        ValueError, match="record 'inj': the rendered text holds 1 <\\|image_pad\\|> tokens for 0 images"
    ):
        harmony_processor.tokenize_conversation(record)


# ------------------------------------------------------------------------------ training / inference token parity


@pytest.mark.parametrize("backbone,template", [("gpt_oss", "medical_harmony"), ("llama", "generic"),
                                               ("qwen2", "generic")])
@pytest.mark.parametrize("history", ["single_turn", "multi_turn", "earlier_reasoning"])
def test_training_tokens_are_the_generation_prompt_plus_the_target(backbone, template, history):
    """What the model is trained to continue is exactly what it is given at inference: the training ids of a
    conversation start with the ids of the generation prompt of its history (apply_chat_template + __call__, the
    path chat, eval and serving take), and what follows is the last answer, every token of it labelled."""
    harmony = template == "medical_harmony"
    options = {"earlier_reasoning": "drop"} if history == "earlier_reasoning" and harmony else {}
    processor = processor_for(backbone, template, **options)
    image = Image.new("RGB", (500, 300), (90, 90, 90))  # 2 tiles + thumbnail: a multi-tile placeholder
    turns = [{"from": "system", "value": "Answer briefly."}, {"from": "human", "value": "<image>\nWhat is shown?"}]
    if history != "single_turn":
        earlier = {"from": "gpt", "value": "A chest film."}
        if history == "earlier_reasoning" and harmony:
            earlier["reasoning"] = "It is a frontal view."  # "drop": generation renders history the same way
        turns += [earlier, {"from": "human", "value": "Any nodule?"}]
    answer = {"from": "gpt", "value": "No nodule is seen."}
    if harmony:
        answer["reasoning"] = "The lung fields are clear."
    sample = processor.tokenize_conversation({"id": "p", "conversations": turns + [answer]}, images=[image])

    prompt = processor.apply_chat_template(messages_from_record({"conversations": turns}), add_generation_prompt=True)
    prompt_ids = processor(text=[prompt], images=[[image]])["input_ids"][0]
    n = len(prompt_ids)
    input_ids, labels = sample["input_ids"], sample["labels"]
    assert torch.equal(input_ids[:n], prompt_ids)
    target = labels[n:] != IGNORE_INDEX
    # The answer's tokens are labelled up to its end token; only the template's separator after it is not (Qwen's
    # "<|im_end|>\n").
    length = int(target.sum())
    assert target[:length].all() and not target[length:].any()
    assert processor.tokenizer.decode(input_ids[n + length :]).strip() == ""
    expected_answer = ("<|channel|>analysis<|message|>The lung fields are clear.<|end|><|start|>assistant"
                       "<|channel|>final<|message|>No nodule is seen.<|return|>") if harmony else "No nodule is seen."
    assert processor.tokenizer.decode(input_ids[n : n + length]).startswith(expected_answer)
