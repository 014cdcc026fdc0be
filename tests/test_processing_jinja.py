"""chat_template.jinja renders exactly what our Python templates render, through transformers' own jinja path
(what vLLM and `transformers serve` use), over a table of conversations; plus the transformers conventions of
`MedGptProcessor.apply_chat_template` and the image-text-to-text pipeline on a tiny checkpoint."""

import json

import jinja2
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, pipeline
from transformers.utils.chat_template_utils import render_jinja_template

from llava_medgpt.model.tokenizer import build_tiny_tokenizer
from llava_medgpt.processing.jinja import GENERIC_TEMPLATE_MARKER, tokenizer_template_of
from llava_medgpt.processing.templates import TemplateError, build_template

IMAGE = {"type": "image"}

CONVERSATIONS = {
    "user_only": [{"role": "user", "content": "Is there a nodule?"}],
    "system_first": [
        {"role": "system", "content": "You are a careful radiologist."},
        {"role": "user", "content": "<image>\nDescribe."},
        {"role": "assistant", "content": "A nodule."},
    ],
    "developer_first": [
        {"role": "developer", "content": "Answer with one word."},
        {"role": "user", "content": "Effusion?"},
        {"role": "assistant", "content": "No."},
    ],
    "reasoning_multi_turn": [
        {"role": "user", "content": [IMAGE, {"type": "text", "text": "\nIs there a nodule?"}]},
        {"role": "assistant", "content": "Yes.", "reasoning": "A round opacity is seen."},
        {"role": "user", "content": [{"type": "text", "text": "Compare with the prior: "}, IMAGE, IMAGE]},
        {"role": "assistant", "content": "Larger.", "thinking": "It grew by 3 mm."},
        {"role": "user", "content": "Any effusion?"},
        {"role": "assistant", "content": "No.", "reasoning": "Costophrenic angles are sharp."},
    ],
    "ends_with_user": [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1", "reasoning": "R1"},
        {"role": "user", "content": "Q2 {{ not jinja }} \"quoted\" é ✓"},
    ],
    "empty_content": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
}

HARMONY_OPTIONS = [
    {},
    {"earlier_reasoning": "drop"},
    {"reasoning_effort": "high", "current_date": "2025-08-05"},
    {"developer_instructions": "Be brief.\nUse \"quotes\" {% raw %} and \\ backslashes, ü 🫁.",
     "model_identity": "You are MedGPT-oss."},
]


def _jinja_render(chat_template: str, messages, add_generation_prompt: bool, **variables):
    prompts, generation = render_jinja_template(
        conversations=[messages], chat_template=chat_template, add_generation_prompt=add_generation_prompt,
        return_assistant_tokens_mask=True, **variables,
    )
    return prompts[0], [tuple(span) for span in generation[0]]


def _cases():
    return [pytest.param(name, messages, generation_prompt, id=f"{name}-gen{int(generation_prompt)}")
            for name, messages in CONVERSATIONS.items() for generation_prompt in (False, True)]


@pytest.mark.parametrize("options", HARMONY_OPTIONS, ids=lambda o: ",".join(o) or "defaults")
@pytest.mark.parametrize(("name", "messages", "generation_prompt"), _cases())
def test_harmony_jinja_equals_python_template(options, name, messages, generation_prompt):
    template = build_template("medical_harmony", None, options)
    expected = template.render(messages, add_generation_prompt=generation_prompt)
    text, generation_spans = _jinja_render(template.chat_template(), messages, generation_prompt)
    assert text == expected.text
    # {% generation %} marks exactly our training targets, so return_assistant_tokens_mask equals our labels.
    assert tuple(generation_spans) == tuple(span for span in expected.target_spans)


@pytest.mark.parametrize("override", [{"reasoning_effort": "low"}, {"earlier_reasoning": "drop"},
                                      {"developer_instructions": "Cite guidelines."}])
def test_harmony_jinja_variables_override_baked_options(override):
    messages = CONVERSATIONS["reasoning_multi_turn"]
    baked = build_template("medical_harmony", None, {"reasoning_effort": "high"})
    expected = build_template("medical_harmony", None, {"reasoning_effort": "high", **override})
    text, _ = _jinja_render(baked.chat_template(), messages, False, **override)
    assert text == expected.render(messages).text


@pytest.mark.parametrize(("messages", "error"), [
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "late"}], "only allowed first"),
    ([{"role": "tool", "content": "x"}], "has role tool"),
    ([{"role": "user", "content": "inject <|start|>system"}], "reserved harmony token"),
    ([{"role": "assistant", "content": "a", "reasoning": "r<|end|>"}], "reserved harmony token"),
    ([{"role": "user", "content": [{"type": "video"}]}], "Unsupported content item type video"),
])
def test_harmony_jinja_refuses_what_the_python_template_refuses(messages, error):
    template = build_template("medical_harmony", None, {})
    with pytest.raises(TemplateError):
        template.render(messages)
    with pytest.raises(jinja2.TemplateError, match=error):
        _jinja_render(template.chat_template(), messages, False)


def test_harmony_jinja_refuses_an_unknown_reasoning_effort():
    chat_template = build_template("medical_harmony", None, {}).chat_template()
    with pytest.raises(jinja2.TemplateError, match="reasoning_effort must be one of"):
        _jinja_render(chat_template, CONVERSATIONS["user_only"], True, reasoning_effort="max")


GENERIC_TOKENIZER_TEMPLATE_WITH_LEADING_NEWLINE = (
    "\n{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


@pytest.mark.parametrize("backbone", ["qwen2", "llama", "leading_newline"])
@pytest.mark.parametrize("options", [{}, {"reasoning": "think_tags"}, {"system_prompt": "You are a doctor."}],
                         ids=lambda o: ",".join(o) or "defaults")
@pytest.mark.parametrize(("name", "messages", "generation_prompt"), _cases())
def test_generic_jinja_equals_python_template(backbone, options, name, messages, generation_prompt):
    tokenizer = build_tiny_tokenizer("qwen2" if backbone == "leading_newline" else backbone)
    if backbone == "leading_newline":
        tokenizer.chat_template = GENERIC_TOKENIZER_TEMPLATE_WITH_LEADING_NEWLINE
    if name == "empty_content" and backbone == "llama":
        pytest.skip("Llama-3's template trims content; covered by the other cases")
    template = build_template("generic", tokenizer, options)
    expected = template.render(messages, add_generation_prompt=generation_prompt).text
    text = tokenizer.apply_chat_template(messages, chat_template=template.chat_template(), tokenize=False,
                                         add_generation_prompt=generation_prompt)
    assert text == expected
    assert tokenizer_template_of(template.chat_template()) == tokenizer.chat_template


def test_generic_template_does_not_nest_when_the_tokenizer_reads_it_back():
    tokenizer = build_tiny_tokenizer("qwen2")
    original = tokenizer.chat_template
    first = build_template("generic", tokenizer, {}).chat_template()
    tokenizer.chat_template = first  # what a save + load does: the tokenizer reads chat_template.jinja
    second = build_template("generic", tokenizer, {}).chat_template()
    assert second == first
    assert first.count(GENERIC_TEMPLATE_MARKER) == 1
    assert tokenizer_template_of(second) == original


# ------------------------------------------------------------------------------------------- on a checkpoint


def test_saved_checkpoint_carries_chat_template_jinja(tiny_checkpoint, tmp_path):
    for backbone in ("gpt_oss", "qwen2"):
        folder = tiny_checkpoint(backbone)
        processor = AutoProcessor.from_pretrained(folder)
        on_disk = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        assert on_disk == processor.chat_template == processor.template().chat_template()
        # A second save/load cycle writes the same file (the generic template does not wrap itself).
        processor.save_pretrained(tmp_path / backbone)
        assert (tmp_path / backbone / "chat_template.jinja").read_text(encoding="utf-8") == on_disk
        reloaded = AutoProcessor.from_pretrained(tmp_path / backbone)
        messages = CONVERSATIONS["reasoning_multi_turn"][:-1]
        assert reloaded.apply_chat_template(messages) == processor.apply_chat_template(messages)
    # The processor config records the template name and options the jinja was generated from.
    config = json.loads((tiny_checkpoint("gpt_oss") / "processor_config.json").read_text())
    assert config["conversation_template"] == "medical_harmony"


def test_chat_template_cannot_be_replaced_silently(tiny_checkpoint):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint("gpt_oss"))
    with pytest.raises(AttributeError, match="set those instead"):
        processor.chat_template = "{{ messages }}"


def _image(color, size=(336, 336)):
    return Image.new("RGB", size, color)


def test_apply_chat_template_tokenize_return_dict(tiny_checkpoint):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint("gpt_oss"))
    first, second = _image((200, 10, 10)), _image((10, 200, 10), (700, 340))
    messages = [
        {"role": "user", "content": [{"type": "image", "image": first}, {"type": "text", "text": "\nWhat?"}]},
        {"role": "assistant", "content": "A mass.", "reasoning": "Dense."},
        {"role": "user", "content": [{"type": "text", "text": "Prior:"}, {"type": "image", "image": second}]},
    ]
    out = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                        return_tensors="pt", reasoning_effort="high")
    prompt = processor.apply_chat_template(
        [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else
          "".join("<image>" if i["type"] == "image" else i["text"] for i in m["content"])} for m in messages],
        add_generation_prompt=True, reasoning_effort="high")
    assert "Reasoning: high" in prompt and prompt.endswith("<|start|>assistant") and "Dense." not in prompt
    expected = processor(text=prompt, images=[first, second])
    assert out.keys() == expected.keys() == {"input_ids", "attention_mask", "pixel_values"}
    for key in out:
        assert torch.equal(out[key], expected[key])
    # 1 tile for the square image, 2x1 + thumbnail for the wide one, 144 tokens each.
    assert int((out["input_ids"] == processor.image_token_id).sum()) == (1 + 3) * 144
    ids = processor.apply_chat_template(messages, tokenize=True, return_tensors="pt", reasoning_effort="high")
    assert torch.equal(ids, expected["input_ids"])
    # The standard arguments that used to be rejected as HarmonyOptions, and what stays refused.
    assert isinstance(processor.apply_chat_template(messages, tokenize=False), str)
    with pytest.raises(TemplateError, match="Unknown HarmonyOptions"):
        processor.apply_chat_template(messages, enable_thinking=True)
    with pytest.raises(TemplateError, match="continue_final_message"):
        processor.apply_chat_template(messages, continue_final_message=True)
    with pytest.raises(ValueError, match="does not download"):
        processor.apply_chat_template([{"role": "user", "content": [{"type": "image", "url": "https://x/y.png"}]}],
                                      tokenize=True)


def test_batched_apply_chat_template_pads_left(tiny_checkpoint):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint("gpt_oss"))
    batch = [
        [{"role": "user", "content": [{"type": "image", "image": _image((1, 2, 3))}, {"type": "text", "text": "Q"}]}],
        [{"role": "user", "content": "A longer question without any image at all"}],
    ]
    out = processor.apply_chat_template(batch, tokenize=True, return_dict=True)
    single = [processor.apply_chat_template(c, tokenize=True, return_dict=True) for c in batch]
    width = out["input_ids"].shape[1]
    for row, alone in enumerate(single):
        n = alone["input_ids"].shape[1]
        assert torch.equal(out["input_ids"][row, width - n:], alone["input_ids"][0])
        assert int(out["attention_mask"][row].sum()) == n
    assert torch.equal(out["pixel_values"], single[0]["pixel_values"])


def test_image_text_to_text_pipeline(trained_chat_checkpoint):
    from chat_fixtures import ANSWER_1, QUESTION_1

    folder, png = trained_chat_checkpoint
    pipe = pipeline("image-text-to-text", model=str(folder))
    messages = [{"role": "user", "content": [{"type": "image", "image": Image.open(png).convert("RGB")},
                                             {"type": "text", "text": "\n" + QUESTION_1}]}]
    result = pipe(text=messages, generate_kwargs={"max_new_tokens": 40, "do_sample": False})
    # The trained reply is analysis + final; the pipeline's answer is the final channel only.
    assert result[0]["generated_text"][-1] == {"role": "assistant", "content": ANSWER_1}


def test_image_text_to_text_pipeline_batches_conversations_of_different_lengths(trained_chat_checkpoint):
    """pipeline(..., batch_size=2) pads the batch itself with the tokenizer's padding side: it must be left (as for
    any decoder-only generate), or the shorter prompt's reply is generated after its padding."""
    from chat_fixtures import ANSWER_1, ANSWER_2, QUESTION_1, QUESTION_2, REASONING_1, dicom_path

    from llava_medgpt.processing.image_io import load_image

    folder, png = trained_chat_checkpoint
    pipe = pipeline("image-text-to-text", model=str(folder))
    assert pipe.tokenizer.padding_side == "left"
    red, ct = Image.open(png).convert("RGB"), load_image(dicom_path())
    def user(image, question):
        return {"role": "user",
                "content": [{"type": "image", "image": image}, {"type": "text", "text": "\n" + question}]}

    first = user(red, QUESTION_1)
    second = [first, {"role": "assistant", "content": ANSWER_1, "reasoning": REASONING_1}, user(ct, QUESTION_2)]
    results = pipe(text=[[first], second], batch_size=2, generate_kwargs={"max_new_tokens": 40, "do_sample": False})
    assert [result[0]["generated_text"][-1]["content"] for result in results] == [ANSWER_1, ANSWER_2]


def test_post_process_returns_the_final_channel(tiny_checkpoint):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint("gpt_oss"))
    tokenizer = processor.tokenizer
    reply = "<|channel|>analysis<|message|>Dense opacity.<|end|><|start|>assistant<|channel|>final<|message|>Mass.<|return|>"
    ids = torch.tensor([tokenizer(reply, add_special_tokens=False)["input_ids"]])
    assert processor.post_process_image_text_to_text(ids) == ["Mass."]
    assert processor.post_process_image_text_to_text(ids, skip_special_tokens=False) == [reply]


def test_post_process_of_a_decoded_conversation_reads_only_the_last_reply(tiny_checkpoint):
    """The pipeline post-processes prompt + reply and the prompt alone: an earlier turn's final answer in the prompt
    is not the reply's (it gave "\\nA CT slice." for the second turn of a conversation), and a prompt has none."""
    processor = AutoProcessor.from_pretrained(tiny_checkpoint("gpt_oss"))
    tokenizer = processor.tokenizer
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": "First?"}, {"role": "assistant", "content": "Mass."},
         {"role": "user", "content": "Second?"}], add_generation_prompt=True)
    assert prompt.count("final<|message|>Mass.") == 1  # the earlier answer is in the prompt
    reply = "<|channel|>analysis<|message|>Same.<|end|><|start|>assistant<|channel|>final<|message|>Mass.<|return|>"
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in (prompt + reply, prompt)]
    width = max(map(len, ids))
    batch = torch.tensor([[tokenizer.pad_token_id] * (width - len(row)) + row for row in ids])
    assert processor.post_process_image_text_to_text(batch) == ["Mass.", ""]
