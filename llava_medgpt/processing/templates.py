"""Conversation templates: chat messages -> prompt text, plus the character spans the model is trained to produce.

Messages are in Hugging Face form: {"role": "system"|"developer"|"user"|"assistant", "content": str} with an optional
reasoning trace under "reasoning" (or "thinking", GPT-oss's own key) on assistant turns. Image markers ("<image>") or
their expansion are ordinary text here; the processor handles them.

Two templates, chosen by name from CONVERSATION_TEMPLATES (the language backbone's registry entry names one):

- "medical_harmony": GPT-oss's harmony format, written out in Python so the assistant targets are known exactly.
  It renders the same bytes as openai_harmony (the oss-harmony package) and as the GPT-oss chat_template.jinja
  revision that transformers' GPT-oss conversion script writes (without tools), except that by default earlier
  assistant turns keep their analysis channel (HarmonyOptions.earlier_reasoning, see there). The hub revision that
  ends the developer message with a blank line ("{instructions}\n\n<|end|>") differs by that blank line
  (docs/conversation_templates.md, tests/test_processing_harmony_revisions.py).
- "generic": the tokenizer's own jinja `chat_template` (Qwen2 ChatML, Llama-3, ...); targets are found by
  rendering growing prefixes of the conversation, so any prefix-stable template works without code changes.

The exact token-level masking rule is documented in docs/conversation_templates.md.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..constants import (
    HARMONY_CHANNEL,
    HARMONY_END,
    HARMONY_MESSAGE,
    HARMONY_RETURN,
    HARMONY_SPECIAL_TOKENS,
    HARMONY_START,
    IMAGE_MARKER,
)
from . import jinja

ROLES = ("system", "developer", "user", "assistant")
REASONING_KEYS = ("reasoning", "thinking")  # ours, GPT-oss chat template's


class TemplateError(ValueError):
    """Messages the template cannot render (unknown role, misplaced system turn, reserved token in the text...)."""


@dataclass(frozen=True)
class RenderedConversation:
    """Rendered prompt text and the half-open character ranges [start, end) that are training targets."""

    text: str
    target_spans: tuple[tuple[int, int], ...]

    def target_text(self) -> str:
        return "".join(self.text[start:end] for start, end in self.target_spans)


class _SpanBuilder:
    """Concatenates pieces of text and remembers which pieces are targets (adjacent targets merge)."""

    def __init__(self):
        self._pieces: list[str] = []
        self._spans: list[tuple[int, int]] = []
        self._length = 0

    def add(self, piece: str, target: bool = False) -> None:
        if target and piece:
            if self._spans and self._spans[-1][1] == self._length:
                self._spans[-1] = (self._spans[-1][0], self._length + len(piece))
            else:
                self._spans.append((self._length, self._length + len(piece)))
        self._pieces.append(piece)
        self._length += len(piece)

    def build(self) -> RenderedConversation:
        return RenderedConversation("".join(self._pieces), tuple(self._spans))


def message_text(content: Any) -> str:
    """Message content as a string; HF multimodal content lists become text with "<image>" markers."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for item in content:
            if item.get("type") == "image":
                parts.append(IMAGE_MARKER)
            elif item.get("type") == "text":
                parts.append(item["text"])
            else:
                raise TemplateError(f"Unsupported content item type {item.get('type')!r}")
        return "".join(parts)
    raise TemplateError(f"Message content must be a string or a list of content items, got {type(content).__name__}")


def message_reasoning(message: Mapping[str, Any]) -> str | None:
    """The reasoning trace of an assistant message ("reasoning" or "thinking" key), or None."""
    values = {key: message[key] for key in REASONING_KEYS if message.get(key) is not None}
    if len(set(values.values())) > 1:
        raise TemplateError("Assistant message has different 'reasoning' and 'thinking' values; pass one")
    return next(iter(values.values()), None)


def _check_roles(messages: Sequence[Mapping[str, Any]]) -> None:
    for index, message in enumerate(messages):
        if message.get("role") not in ROLES:
            raise TemplateError(f"Message {index} has role {message.get('role')!r}; expected one of {ROLES}")
        if index > 0 and message["role"] in ("system", "developer"):
            raise TemplateError(f"A {message['role']} message is only allowed first (message {index})")


def _options_from_dict(options_class: type, options: Mapping[str, Any]):
    known = {f.name for f in fields(options_class)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TemplateError(f"Unknown {options_class.__name__} option(s) {unknown}; known: {sorted(known)}")
    return options_class(**options)


# --------------------------------------------------------------------------------------------------------------------
# GPT-oss harmony
# --------------------------------------------------------------------------------------------------------------------

REASONING_EFFORTS = ("low", "medium", "high")
EARLIER_REASONING_MODES = ("keep", "drop")
HARMONY_VALID_CHANNELS_LINE = (
    "# Valid channels: analysis, commentary, final. Channel must be included for every message."
)


@dataclass(frozen=True)
class HarmonyOptions:
    """Options of the medical_harmony template (saved in processor_config.json under template_options).

    Defaults are GPT-oss's own, except current_date: the official template stamps today's date, which would make
    training text depend on the day it was tokenised, so the line is left out unless a date is given.

    earlier_reasoning: what happens to the reasoning of assistant turns before the last one, in training renders.
      "keep" (default): each assistant turn with reasoning renders its analysis message, so every trained turn's
        target is what the model must generate for it (analysis, then final). Not byte-identical to GPT-oss's
        template for such earlier turns (it equals openai_harmony's training render with auto_drop_analysis=False).
      "drop": exactly GPT-oss's chat template; earlier turns show only their final message, so their targets teach
        answering without an analysis message.
    Generation renders (add_generation_prompt=True) always drop the analysis of every earlier turn, as GPT-oss does
    at inference.
    """

    model_identity: str = "You are ChatGPT, a large language model trained by OpenAI."
    knowledge_cutoff: str = "2024-06"
    current_date: str | None = None  # "YYYY-MM-DD"
    reasoning_effort: str = "medium"
    developer_instructions: str | None = None  # used when the conversation has no leading system/developer turn
    earlier_reasoning: str = "keep"

    def __post_init__(self):
        if self.reasoning_effort not in REASONING_EFFORTS:
            raise TemplateError(f"reasoning_effort must be one of {REASONING_EFFORTS}, got {self.reasoning_effort!r}")
        if self.earlier_reasoning not in EARLIER_REASONING_MODES:
            raise TemplateError(
                f"earlier_reasoning must be one of {EARLIER_REASONING_MODES}, got {self.earlier_reasoning!r}"
            )


def _harmony_header(role: str, channel: str | None = None) -> str:
    header = HARMONY_START + role
    if channel is not None:
        header += HARMONY_CHANNEL + channel
    return header + HARMONY_MESSAGE


class MedicalHarmonyTemplate:
    """GPT-oss harmony format with exact assistant targets.

    Rendered for training (add_generation_prompt=False), a conversation looks like

        <|start|>system<|message|>{identity}\\nKnowledge cutoff: 2024-06\\n[Current date: D\\n]\\n
            Reasoning: medium\\n\\n# Valid channels: analysis, commentary, final. Channel must be included for
            every message.<|end|>
        <|start|>developer<|message|># Instructions\\n\\n{leading system turn}<|end|>          (if any)
        <|start|>user<|message|>{question}<|end|>
        <|start|>assistant[<|channel|>analysis<|message|>{reasoning}<|end|><|start|>assistant]
            <|channel|>final<|message|>{answer}<|return|>        (<|end|> instead when not the last message)

    Targets: everything after an assistant turn's first "<|start|>assistant" up to and including its <|return|>;
    for a turn that is not the last message, up to its answer but not its closing <|end|> (at generation time the
    model closes a final message with <|return|>; the <|end|> is the history form of that token).
    """

    name = "medical_harmony"
    options_class = HarmonyOptions

    def __init__(self, tokenizer=None, options: HarmonyOptions | None = None):
        self.options = options or HarmonyOptions()

    def system_message(self) -> str:
        o = self.options
        date_line = f"Current date: {o.current_date}\n" if o.current_date else ""
        return (
            f"{o.model_identity}\nKnowledge cutoff: {o.knowledge_cutoff}\n{date_line}\n"
            f"Reasoning: {o.reasoning_effort}\n\n{HARMONY_VALID_CHANNELS_LINE}"
        )

    def render(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False
    ) -> RenderedConversation:
        _check_roles(messages)
        self._check_no_reserved_tokens(messages)
        out = _SpanBuilder()
        out.add(_harmony_header("system") + self.system_message() + HARMONY_END)

        developer = self.options.developer_instructions
        if messages and messages[0]["role"] in ("system", "developer"):
            developer, messages = message_text(messages[0]["content"]), messages[1:]
        if developer:
            out.add(_harmony_header("developer") + "# Instructions\n\n" + developer + HARMONY_END)

        for index, message in enumerate(messages):
            content = message_text(message["content"])
            if message["role"] == "user":
                out.add(_harmony_header("user") + content + HARMONY_END)
                continue
            is_last = index == len(messages) - 1 and not add_generation_prompt
            keep_reasoning = is_last or (self.options.earlier_reasoning == "keep" and not add_generation_prompt)
            reasoning = message_reasoning(message) if keep_reasoning else None
            out.add(HARMONY_START + "assistant")
            if reasoning is not None:
                out.add(HARMONY_CHANNEL + "analysis" + HARMONY_MESSAGE + reasoning + HARMONY_END, target=True)
                out.add(HARMONY_START + "assistant", target=True)
            out.add(HARMONY_CHANNEL + "final" + HARMONY_MESSAGE + content, target=True)
            # <|return|> ends generation and is learned on the last turn; an earlier turn's <|end|> is history only.
            out.add(HARMONY_RETURN if is_last else HARMONY_END, target=is_last)

        if add_generation_prompt:
            out.add(HARMONY_START + "assistant")
        return out.build()

    def chat_template(self, image_placeholder: str = IMAGE_MARKER) -> str:
        """This template with its options as a jinja chat template (what `chat_template.jinja` holds)."""
        return jinja.harmony_chat_template(asdict(self.options), image_placeholder)

    @staticmethod
    def _check_no_reserved_tokens(messages: Sequence[Mapping[str, Any]]) -> None:
        # Harmony control tokens inside text would be tokenised as control tokens and corrupt turns and targets.
        for index, message in enumerate(messages):
            for text in (message_text(message["content"]), message_reasoning(message) or ""):
                for token in HARMONY_SPECIAL_TOKENS:
                    if token in text:
                        raise TemplateError(f"Message {index} contains the reserved harmony token {token!r}")


# --------------------------------------------------------------------------------------------------------------------
# Generic: the tokenizer's own chat template
# --------------------------------------------------------------------------------------------------------------------

GENERIC_REASONING_MODES = ("drop", "think_tags")


@dataclass(frozen=True)
class GenericOptions:
    """Options of the generic template (saved in processor_config.json under template_options).

    reasoning: what becomes of an assistant turn's reasoning trace on backbones without a reasoning channel.
      "drop" (default): the trace is not rendered; the model learns to answer directly, and the whole completion
        is the answer the evaluation scores.
      "think_tags": the content becomes "<think>\\n{reasoning}\\n</think>\\n\\n{answer}" (Qwen3 / DeepSeek-R1
        convention) and is trained as part of the answer; evaluation must then strip the think block.
    system_prompt: system message used when the conversation has no leading system turn.
    end_of_turn_token: the token closing an assistant turn (default: the tokenizer's eos_token); targets end right
      after it, so template text after it (e.g. ChatML's "\\n") is not trained.
    """

    reasoning: str = "drop"
    system_prompt: str | None = None
    end_of_turn_token: str | None = None

    def __post_init__(self):
        if self.reasoning not in GENERIC_REASONING_MODES:
            raise TemplateError(f"reasoning must be one of {GENERIC_REASONING_MODES}, got {self.reasoning!r}")


class GenericChatTemplate:
    """Any tokenizer's jinja chat_template; assistant targets found from renders of growing prefixes.

    For assistant message i: a = render(messages[:i], add_generation_prompt=True) ends with the assistant header,
    b = render(messages[:i+1]) ends after the turn; the target is b[len(a):] cut right after the end-of-turn token.
    Templates whose earlier turns change when a later turn is added (e.g. ones stripping reasoning from history)
    are refused with TemplateError rather than mislabelled.
    """

    name = "generic"
    options_class = GenericOptions

    def __init__(self, tokenizer, options: GenericOptions | None = None):
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise TemplateError("The generic conversation template needs a tokenizer with a chat_template")
        self.tokenizer = tokenizer
        # After a save, the tokenizer reads the processor's chat_template.jinja (this template's jinja form,
        # which embeds the tokenizer's own): render through the embedded original.
        self.tokenizer_template = jinja.tokenizer_template_of(tokenizer.chat_template)
        self.options = options or GenericOptions()
        self.end_of_turn_token = self.options.end_of_turn_token or tokenizer.eos_token

    def chat_template(self, image_placeholder: str = IMAGE_MARKER) -> str:
        """This template as a jinja chat template: our message normalisation, then the tokenizer's template."""
        return jinja.generic_chat_template(self.tokenizer_template, asdict(self.options), image_placeholder)

    def _plain_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
        plain = []
        for message in messages:
            role = "system" if message["role"] == "developer" else message["role"]
            content = message_text(message["content"])
            reasoning = message_reasoning(message) if role == "assistant" else None
            if reasoning is not None and self.options.reasoning == "think_tags":
                content = f"<think>\n{reasoning}\n</think>\n\n{content}"
            plain.append({"role": role, "content": content})
        if self.options.system_prompt and (not plain or plain[0]["role"] != "system"):
            plain.insert(0, {"role": "system", "content": self.options.system_prompt})
        return plain

    def _render_text(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.tokenizer_template, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def render(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False
    ) -> RenderedConversation:
        _check_roles(messages)
        plain = self._plain_messages(messages)
        text = self._render_text(plain, add_generation_prompt)
        spans = []
        for index, message in enumerate(plain):
            if message["role"] != "assistant":
                continue
            if index == 0:
                raise TemplateError("The generic template needs a user or system turn before the first assistant turn")
            before = self._render_text(plain[:index], add_generation_prompt=True)
            through = self._render_text(plain[: index + 1], add_generation_prompt=False)
            if not (through.startswith(before) and text.startswith(through)):
                raise TemplateError(
                    f"The tokenizer's chat template is not prefix-stable at assistant message {index}: adding turns "
                    "changes the text of earlier ones, so assistant targets cannot be located"
                )
            start, end = len(before), len(through)
            eot = through.rfind(self.end_of_turn_token, start, end) if self.end_of_turn_token else -1
            if eot >= 0:
                end = eot + len(self.end_of_turn_token)
            spans.append((start, end))
        return RenderedConversation(text, tuple(spans))


# --------------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------------

CONVERSATION_TEMPLATES: dict[str, type] = {
    MedicalHarmonyTemplate.name: MedicalHarmonyTemplate,
    GenericChatTemplate.name: GenericChatTemplate,
}


def build_template(name: str, tokenizer=None, options: Mapping[str, Any] | None = None):
    """The registered template `name` for `tokenizer`, with options given as a plain (JSON) dict."""
    if name not in CONVERSATION_TEMPLATES:
        raise TemplateError(f"Unknown conversation template {name!r}; known: {sorted(CONVERSATION_TEMPLATES)}")
    template_class = CONVERSATION_TEMPLATES[name]
    return template_class(tokenizer, _options_from_dict(template_class.options_class, options or {}))
