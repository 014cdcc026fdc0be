"""A tiny checkpoint trained to give known replies, so chat/demo tests can check what a user reads.

The random tiny model's replies are noise; here it is overfitted (a few hundred Adam steps on CPU) to answer three
prompts, built by hand in the documented chat format (a turn's images before its text, one "<image>" marker each),
with a harmony analysis message and then a final answer. Greedy decoding must then reproduce those replies
exactly; `train_chat_checkpoint` checks that with `generate` before returning.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from llava_medgpt.constants import IGNORE_INDEX
from llava_medgpt.processing.image_io import load_image


@dataclass(frozen=True)
class Exchange:
    messages: list  # the conversation up to the user turn being answered
    image_files: list  # in marker order (every image of the conversation)
    reasoning: str
    answer: str


QUESTION_1 = "What does the image show?"
QUESTION_2 = "And this scan?"
QUESTION_DEMO = "Which modality is this?"
REASONING_1 = "Red fills the frame."
ANSWER_1 = "A red square."
REASONING_2 = "Grey levels of a CT slice."
ANSWER_2 = "A CT slice."
REASONING_DEMO = "The file is a CT study."
ANSWER_DEMO = "Computed tomography."


def dicom_path() -> str:
    return get_testdata_file("CT_small.dcm")  # bundled with pydicom: 128x128 CT, MONOCHROME2


def write_red_png(path: Path) -> Path:
    array = np.zeros((336, 336, 3), dtype=np.uint8)
    array[..., 0] = 220
    Image.fromarray(array).save(path)
    return path


def exchanges(png: Path) -> list[Exchange]:
    dcm = dicom_path()
    turn_1 = {"role": "user", "content": "<image>\n" + QUESTION_1}
    return [
        Exchange([turn_1], [png], REASONING_1, ANSWER_1),
        Exchange([turn_1, {"role": "assistant", "content": ANSWER_1, "reasoning": REASONING_1},
                  {"role": "user", "content": "<image>\n" + QUESTION_2}], [png, dcm], REASONING_2, ANSWER_2),
        Exchange([{"role": "user", "content": "<image>\n" + QUESTION_DEMO}], [dcm], REASONING_DEMO, ANSWER_DEMO),
    ]


def reply_text(exchange: Exchange) -> str:
    return (f"<|channel|>analysis<|message|>{exchange.reasoning}<|end|>"
            f"<|start|>assistant<|channel|>final<|message|>{exchange.answer}<|return|>")


def _example(processor, exchange: Exchange):
    prompt = processor.apply_chat_template(exchange.messages, add_generation_prompt=True)
    images = [load_image(str(path)) for path in exchange.image_files]
    inputs = processor(text=[prompt], images=[images])
    target = torch.tensor(processor.tokenizer(reply_text(exchange), add_special_tokens=False)["input_ids"])
    input_ids = torch.cat([inputs["input_ids"][0], target])
    labels = torch.cat([torch.full_like(inputs["input_ids"][0], IGNORE_INDEX), target])
    return inputs, input_ids, labels, target


def train_chat_checkpoint(source: Path, output: Path, png: Path, max_steps: int = 400) -> Path:
    """Overfit the language model's layers (embeddings, vision tower and projector frozen, so each prompt's
    input embeddings are computed once) until every reply token wins by a wide margin."""
    import llava_medgpt  # noqa: F401
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(source)
    processor = AutoProcessor.from_pretrained(source)
    examples = []
    with torch.no_grad():
        for exchange in exchanges(png):
            inputs, input_ids, labels, target = _example(processor, exchange)
            embeds = model.get_input_embeddings()(input_ids[None])
            embeds = model.merge_image_features(input_ids[None], embeds, model.get_image_features(inputs["pixel_values"]))
            examples.append((inputs, embeds, labels, target))
    model.requires_grad_(False)
    trained = [p for name, p in model.language_model.named_parameters() if "embed_tokens" not in name]
    for parameter in trained:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(trained, lr=1e-2)
    model.train()
    for step in range(max_steps):
        optimizer.zero_grad()
        margins = []
        for _, embeds, labels, _ in examples:
            out = model.language_model(inputs_embeds=embeds, labels=labels[None], use_cache=False)
            out.loss.backward()
            with torch.no_grad():
                mask = labels[1:] != IGNORE_INDEX
                logits, targets = out.logits[0, :-1][mask], labels[1:][mask]  # [n, V], [n]
                right = logits.gather(1, targets[:, None])[:, 0]
                other = logits.scatter(1, targets[:, None], float("-inf")).max(dim=1).values
                margins.append(float((right - other).min()))
        if min(margins) > 3.0:  # every reply token wins by a wide margin: greedy decoding reproduces it
            break
        optimizer.step()
    model.eval()
    for inputs, _, _, target in examples:
        with torch.inference_mode():
            generated = model.generate(**inputs, max_new_tokens=len(target) + 4, do_sample=False)
        new = generated[0, inputs["input_ids"].shape[1]:]
        assert new.tolist() == target.tolist(), f"the tiny model did not learn its replies ({step + 1} steps)"
    print(f"trained chat checkpoint in {step + 1} steps")
    model.save_pretrained(output)
    processor.save_pretrained(output)
    return output
