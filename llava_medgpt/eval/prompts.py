"""EvalItem -> chat messages (HF form: role + content string with "<image>" markers where images go).

The model's own chat template turns these messages into its prompt (llava_medgpt.inference.models); nothing
here is model-specific. In-context demonstrations become earlier user/assistant turns.
"""

from collections.abc import Callable

from PIL import Image

from ..benchmarks import ANSWER_WITH_LETTER
from ..constants import IMAGE_MARKER
from .tasks.base import MCQ, OPEN, EvalItem, TaskConfig

OPEN_INSTRUCTION = "Answer the question using a single word or phrase."


def _image_markers(item: EvalItem) -> str:
    return "".join(f"{IMAGE_MARKER}\n" for _ in item.images)


def _options_block(item: EvalItem) -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in item.options.items())


def render_qa(item: EvalItem, config: TaskConfig) -> str:
    """Question (after optional context), lettered options and the answer format."""
    parts = []
    if item.context:
        parts.append(f"{config.options.get('context_title', 'Context')}:\n{item.context}")
    parts.append(item.question)
    if item.kind == MCQ:
        parts.append(f"Options:\n{_options_block(item)}")
        parts.append(ANSWER_WITH_LETTER)
    elif item.kind == OPEN:
        parts.append(OPEN_INSTRUCTION)
    return _image_markers(item) + "\n\n".join(parts)


def render_cxr_report(item: EvalItem, config: TaskConfig) -> str:
    """Chest X-ray findings / impression: say which images belong to the current and to the prior study."""
    views = item.metadata.get("views", [])
    prior = item.metadata.get("prior_views", [])
    section = config.options["section"]
    lines = [f"The first {len(views)} image(s) are the current chest X-ray study (views: {', '.join(views)})."]
    if prior:
        lines.append(f"The last {len(prior)} image(s) are the patient's prior study (views: {', '.join(prior)}).")
    lines.append(f"Write the {section} section of the radiology report for the current study.")
    return _image_markers(item) + " ".join(lines)


def render_patient_trial(item: EvalItem, config: TaskConfig) -> str:
    """Numbered patient note, structured trial, the four eligibility options."""
    return (
        "Decide whether the patient is eligible for the clinical trial.\n\n"
        f"Patient note (one sentence per line, numbered):\n{item.question}\n\n"
        f"Clinical trial:\n{item.context}\n\n"
        f"Options:\n{_options_block(item)}\n\n{ANSWER_WITH_LETTER}"
    )


PROMPTS: dict[str, Callable[[EvalItem, TaskConfig], str]] = {
    "qa": render_qa,
    "cxr_report": render_cxr_report,
    "patient_trial": render_patient_trial,
}


def demo_reply(item: EvalItem) -> str:
    """What a demonstration's assistant turn says: the gold letter, or the reference text."""
    return item.answer


def build_messages(item: EvalItem, config: TaskConfig) -> list[dict[str, str]]:
    """Chat for one item: each demonstration as a user/assistant exchange, then the query."""
    render = PROMPTS[config.prompt]
    messages = []
    for demo in item.demos:
        messages.append({"role": "user", "content": render(demo, config)})
        messages.append({"role": "assistant", "content": demo_reply(demo)})
    messages.append({"role": "user", "content": render(item, config)})
    system = config.options.get("system_prompt")
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages


def build_images(item: EvalItem) -> list[Image.Image]:
    """All images of the chat in marker order: demonstrations' first, then the query's."""
    return [ref.load() for demo in item.demos for ref in demo.images] + [ref.load() for ref in item.images]
