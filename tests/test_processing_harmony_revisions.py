"""Which GPT-oss chat template our harmony text is byte-identical to.

Two revisions of GPT-oss's chat_template.jinja render a developer message differently (tests/fixtures/templates,
tools left out): one appends a blank line after the instructions ("{developer}\\n\\n<|end|>"), the other adds it
only before a tools section ("{developer}<|end|>"). Ours, openai_harmony (oss-harmony package) and the second
revision agree; the first differs by exactly that blank line, and only when there is a developer message.
Both are rendered through transformers' own chat-template path (`apply_chat_template`).
"""

import datetime
from pathlib import Path

import pytest

from llava_medgpt.model.tokenizer import build_tiny_tokenizer
from llava_medgpt.processing.templates import build_template

TEMPLATES = Path(__file__).parent / "fixtures" / "templates"
BLANK_LINE = (TEMPLATES / "gpt_oss_developer_blank_line.jinja").read_text(encoding="utf-8")
NO_BLANK_LINE = (TEMPLATES / "gpt_oss_developer_no_blank_line.jinja").read_text(encoding="utf-8")
DEVELOPER = "You are a careful radiologist."
CONVERSATIONS = {
    "developer": [
        {"role": "system", "content": DEVELOPER},
        {"role": "user", "content": "<image>\nIs there a nodule?"},
        {"role": "assistant", "content": "Yes.", "reasoning": "A round opacity is seen."},
        {"role": "user", "content": "Where?"},
        {"role": "assistant", "content": "Left lower lobe.", "reasoning": "It sits above the diaphragm."},
    ],
    "no_developer": [
        {"role": "user", "content": "Is there a nodule?"},
        {"role": "assistant", "content": "No.", "reasoning": "The lungs are clear."},
    ],
}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer("gpt_oss")


def render_jinja(tokenizer, template: str, messages: list[dict], add_generation_prompt: bool) -> str:
    """transformers' rendering (its sandbox, strftime_now, trim_blocks); GPT-oss templates read "thinking"."""
    messages = [{("thinking" if k == "reasoning" else k): v for k, v in m.items()} for m in messages]
    if add_generation_prompt:
        messages = messages[:-1]
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=add_generation_prompt, reasoning_effort="medium")


def ours(messages: list[dict], add_generation_prompt: bool, today: str) -> str:
    # The official templates stamp today's date and show only the last turn's analysis.
    template = build_template("medical_harmony", None, {"current_date": today, "earlier_reasoning": "drop"})
    if add_generation_prompt:
        messages = messages[:-1]
    return template.render(messages, add_generation_prompt=add_generation_prompt).text


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_ours_matches_the_revision_without_the_blank_line(tokenizer, case, add_generation_prompt):
    messages = CONVERSATIONS[case]
    today = datetime.date.today().isoformat()
    expected = ours(messages, add_generation_prompt, today)
    assert render_jinja(tokenizer, NO_BLANK_LINE, messages, add_generation_prompt) == expected
    other = render_jinja(tokenizer, BLANK_LINE, messages, add_generation_prompt)
    if case == "developer":
        # The only difference: a blank line between the developer instructions and <|end|>.
        assert other != expected
        assert other == expected.replace(f"{DEVELOPER}<|end|>", f"{DEVELOPER}\n\n<|end|>", 1)
        assert f"<|start|>developer<|message|># Instructions\n\n{DEVELOPER}\n\n<|end|>" in other
    else:
        assert other == expected


def test_openai_harmony_renders_the_developer_message_without_the_blank_line():
    openai_harmony = pytest.importorskip("openai_harmony")
    h = openai_harmony
    encoding = h.load_harmony_encoding(h.HarmonyEncodingName.HARMONY_GPT_OSS)
    conversation = h.Conversation.from_messages([
        h.Message.from_role_and_content(h.Role.SYSTEM, h.SystemContent.new()),
        h.Message.from_role_and_content(h.Role.DEVELOPER, h.DeveloperContent.new().with_instructions(DEVELOPER)),
        h.Message.from_role_and_content(h.Role.USER, "Where?"),
    ])
    text = encoding.decode(encoding.render_conversation_for_completion(conversation, h.Role.ASSISTANT))
    assert f"<|start|>developer<|message|># Instructions\n\n{DEVELOPER}<|end|><|start|>user" in text
    template = build_template("medical_harmony", None, {})
    mine = template.render([{"role": "system", "content": DEVELOPER}, {"role": "user", "content": "Where?"}],
                           add_generation_prompt=True).text
    assert mine == text
