"""The conversation templates as jinja chat templates, for engines that read `chat_template.jinja`.

Our Python templates (templates.py) are the source of truth for training and inference; these jinja texts are
generated from them with the processor's template options baked in as defaults, so that transformers'
`apply_chat_template`, vLLM and other engines that render the checkpoint's `chat_template.jinja` produce exactly
the same prompt text (tests/test_processing_jinja.py checks the equality over a table of conversations).

- medical_harmony: the whole harmony renderer. Every HarmonyOptions field can be overridden as a template
  variable of the same name (`apply_chat_template(..., reasoning_effort="high")`, vLLM's
  `chat_template_kwargs`). Assistant targets are wrapped in `{% generation %}` so transformers'
  `return_assistant_tokens_mask` marks exactly the tokens our labels train.
- generic: a preamble that normalises the messages as GenericChatTemplate does (developer -> system, content
  lists -> "<image>" markers, reasoning dropped or in <think> tags, the default system prompt), followed by the
  tokenizer's own template unchanged after a marker line, so that the tokenizer's template can be recovered from
  a saved file (`tokenizer_template_of`).

Image content items ({"type": "image"}) become the "<image>" marker the processor expands, as in `message_text`.
"""

import json

from ..constants import HARMONY_SPECIAL_TOKENS, IMAGE_MARKER

GENERIC_TEMPLATE_MARKER = "{#- llava_medgpt: the tokenizer's own chat template follows #}"


def _literal(value) -> str:
    """A Python str/None as a jinja literal (jinja decodes string literals with Python's unicode-escape)."""
    if value is None:
        return "none"
    return json.dumps(str(value), ensure_ascii=False)


def _option_defaults(namespace: str, options: dict) -> str:
    """`{% set ns = namespace(...) %}` with the baked defaults, then overrides from same-named variables."""
    fields = ", ".join(f"{name}={_literal(value)}" for name, value in options.items())
    lines = [f"{{%- set {namespace} = namespace({fields}) -%}}"]
    for name in options:
        lines.append(f"{{%- if {name} is defined -%}}{{%- set {namespace}.{name} = {name} -%}}{{%- endif -%}}")
    return "\n".join(lines)


def _content_macro(image_placeholder: str) -> str:
    """content_text(content): text with one `image_placeholder` per image ("<image>" markers in strings too)."""
    marker, placeholder = _literal(IMAGE_MARKER), _literal(image_placeholder)
    string = "content" if image_placeholder == IMAGE_MARKER else f"content | replace({marker}, {placeholder})"
    text = "item.text" if image_placeholder == IMAGE_MARKER else f"item.text | replace({marker}, {placeholder})"
    return (
        "{%- macro content_text(content) -%}\n"
        f"{{%- if content is string -%}}{{{{- {string} -}}}}\n"
        "{%- elif content is iterable and content is not mapping -%}\n"
        "{%- for item in content -%}\n"
        f"{{%- if item.type == 'image' -%}}{{{{- {placeholder} -}}}}\n"
        f"{{%- elif item.type == 'text' -%}}{{{{- {text} -}}}}\n"
        "{%- else -%}{{- raise_exception('Unsupported content item type ' ~ item.type) -}}\n"
        "{%- endif -%}\n"
        "{%- endfor -%}\n"
        "{%- else -%}{{- raise_exception('Message content must be a string or a list of content items') -}}\n"
        "{%- endif -%}\n"
        "{%- endmacro -%}\n"
    )

_REASONING_MACRO = (
    "{%- macro reasoning_of(message) -%}\n"
    "{%- if message.reasoning is defined and message.reasoning is not none -%}{{- message.reasoning -}}\n"
    "{%- elif message.thinking is defined and message.thinking is not none -%}{{- message.thinking -}}\n"
    "{%- elif message.reasoning_content is defined and message.reasoning_content is not none -%}"
    "{{- message.reasoning_content -}}\n"
    "{%- endif -%}\n"
    "{%- endmacro -%}\n"
    "{%- macro has_reasoning(message) -%}\n"
    "{%- if (message.reasoning is defined and message.reasoning is not none)"
    " or (message.thinking is defined and message.thinking is not none)"
    " or (message.reasoning_content is defined and message.reasoning_content is not none) -%}yes{%- endif -%}\n"
    "{%- endmacro -%}\n"
)

_ROLE_CHECK = (
    "{%- for message in messages -%}\n"
    "{%- if message.role not in ['system', 'developer', 'user', 'assistant'] -%}"
    "{{- raise_exception('Message ' ~ loop.index0 ~ ' has role ' ~ message.role ~ "
    "'; expected system, developer, user or assistant') -}}{%- endif -%}\n"
    "{%- if not loop.first and message.role in ['system', 'developer'] -%}"
    "{{- raise_exception('A ' ~ message.role ~ ' message is only allowed first (message ' ~ loop.index0 ~ ')') -}}"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
)


def harmony_chat_template(options: dict, image_placeholder: str = IMAGE_MARKER) -> str:
    """Jinja text of MedicalHarmonyTemplate with `options` (every HarmonyOptions field) as defaults.

    image_placeholder: what an image becomes in the text ("<image>" for our processor; an exported checkpoint's
    processor expects its own image token).
    """
    from .templates import EARLIER_REASONING_MODES, HARMONY_VALID_CHANNELS_LINE, REASONING_EFFORTS

    reserved = "[" + ", ".join(_literal(token) for token in HARMONY_SPECIAL_TOKENS) + "]"
    return (
        "{#- MedGPT-oss medical_harmony chat template, generated by llava_medgpt from its Python template "
        "(llava_medgpt.processing.templates.MedicalHarmonyTemplate) and the processor's template_options. "
        "Edits here are not read by llava_medgpt. -#}\n"
        + _option_defaults("h", options)
        + "\n"
        + f"{{%- if h.reasoning_effort not in {list(REASONING_EFFORTS)} -%}}"
        "{{- raise_exception('reasoning_effort must be one of low, medium, high, got ' ~ h.reasoning_effort) -}}"
        "{%- endif -%}\n"
        + f"{{%- if h.earlier_reasoning not in {list(EARLIER_REASONING_MODES)} -%}}"
        "{{- raise_exception('earlier_reasoning must be keep or drop, got ' ~ h.earlier_reasoning) -}}"
        "{%- endif -%}\n"
        "{%- set generation_prompt = add_generation_prompt is defined and add_generation_prompt -%}\n"
        + _content_macro(image_placeholder)
        + _REASONING_MACRO
        + _ROLE_CHECK
        + "{%- for message in messages -%}\n"
        "{%- set index = loop.index0 -%}\n"
        f"{{%- for token in {reserved} -%}}\n"
        "{%- if token in content_text(message.content) or token in reasoning_of(message) -%}"
        "{{- raise_exception('Message ' ~ index ~ ' contains the reserved harmony token ' ~ token) -}}"
        "{%- endif -%}\n"
        "{%- endfor -%}\n"
        "{%- endfor -%}\n"
        "{{- '<|start|>system<|message|>' ~ h.model_identity ~ '\\nKnowledge cutoff: ' ~ h.knowledge_cutoff ~ '\\n' -}}\n"
        "{%- if h.current_date -%}{{- 'Current date: ' ~ h.current_date ~ '\\n' -}}{%- endif -%}\n"
        "{{- '\\nReasoning: ' ~ h.reasoning_effort ~ '\\n\\n' ~ " + _literal(HARMONY_VALID_CHANNELS_LINE) + " ~ '<|end|>' -}}\n"
        "{%- set state = namespace(developer=h.developer_instructions, first=0) -%}\n"
        "{%- if messages | length > 0 and messages[0].role in ['system', 'developer'] -%}\n"
        "{%- set state.developer = content_text(messages[0].content) -%}{%- set state.first = 1 -%}\n"
        "{%- endif -%}\n"
        "{%- if state.developer -%}"
        "{{- '<|start|>developer<|message|># Instructions\\n\\n' ~ state.developer ~ '<|end|>' -}}{%- endif -%}\n"
        "{%- for message in messages[state.first:] -%}\n"
        "{%- if message.role == 'user' -%}\n"
        "{{- '<|start|>user<|message|>' ~ content_text(message.content) ~ '<|end|>' -}}\n"
        "{%- else -%}\n"
        "{%- set is_last = loop.last and not generation_prompt -%}\n"
        "{%- set keep_reasoning = is_last or (h.earlier_reasoning == 'keep' and not generation_prompt) -%}\n"
        "{{- '<|start|>assistant' -}}\n"
        "{%- generation -%}\n"
        "{%- if keep_reasoning and has_reasoning(message) -%}"
        "{{- '<|channel|>analysis<|message|>' ~ reasoning_of(message) ~ '<|end|><|start|>assistant' -}}"
        "{%- endif -%}\n"
        "{{- '<|channel|>final<|message|>' ~ content_text(message.content) -}}\n"
        "{%- if is_last -%}{{- '<|return|>' -}}{%- endif -%}\n"
        "{%- endgeneration -%}\n"
        "{%- if not is_last -%}{{- '<|end|>' -}}{%- endif -%}\n"
        "{%- endif -%}\n"
        "{%- endfor -%}\n"
        "{%- if generation_prompt -%}{{- '<|start|>assistant' -}}{%- endif -%}\n"
    )


def generic_chat_template(tokenizer_template: str, options: dict, image_placeholder: str = IMAGE_MARKER) -> str:
    """Jinja text of GenericChatTemplate: message normalisation, then the tokenizer's template unchanged.

    trim_blocks (set by transformers and vLLM) removes the one newline after the marker comment, so the
    tokenizer's template renders from its first character.
    """
    from .templates import GENERIC_REASONING_MODES

    baked = {"reasoning": options["reasoning"], "system_prompt": options["system_prompt"]}
    return (
        "{#- MedGPT-oss generic chat template, generated by llava_medgpt (GenericChatTemplate): messages are "
        "normalised as llava_medgpt does, then rendered by the tokenizer's own template below the marker. -#}\n"
        + _option_defaults("g", baked)
        + "\n"
        + f"{{%- if g.reasoning not in {list(GENERIC_REASONING_MODES)} -%}}"
        "{{- raise_exception('reasoning must be drop or think_tags, got ' ~ g.reasoning) -}}{%- endif -%}\n"
        + _content_macro(image_placeholder)
        + _REASONING_MACRO
        + _ROLE_CHECK
        + "{%- set normalised = namespace(messages=[]) -%}\n"
        "{%- for message in messages -%}\n"
        "{%- set role = 'system' if message.role == 'developer' else message.role -%}\n"
        "{%- set content = content_text(message.content) -%}\n"
        "{%- if role == 'assistant' and g.reasoning == 'think_tags' and has_reasoning(message) -%}\n"
        "{%- set content = '<think>\\n' ~ reasoning_of(message) ~ '\\n</think>\\n\\n' ~ content -%}\n"
        "{%- endif -%}\n"
        "{%- set normalised.messages = normalised.messages + [{'role': role, 'content': content}] -%}\n"
        "{%- endfor -%}\n"
        "{%- if g.system_prompt and (normalised.messages | length == 0 or normalised.messages[0].role != 'system') -%}\n"
        "{%- set normalised.messages = [{'role': 'system', 'content': g.system_prompt}] + normalised.messages -%}\n"
        "{%- endif -%}\n"
        "{%- set messages = normalised.messages -%}\n"
        + GENERIC_TEMPLATE_MARKER
        + "\n"
        + tokenizer_template
    )


def tokenizer_template_of(chat_template: str | None) -> str | None:
    """The tokenizer's own template: unchanged, or recovered from a generic_chat_template text.

    After a save, the tokenizer reads the processor's chat_template.jinja as its own template; the generic
    template must keep rendering through the original one, not through itself.
    """
    if chat_template is None or GENERIC_TEMPLATE_MARKER not in chat_template:
        return chat_template
    tail = chat_template.split(GENERIC_TEMPLATE_MARKER, 1)[1]
    return tail[1:] if tail.startswith("\n") else tail


__all__ = ["GENERIC_TEMPLATE_MARKER", "generic_chat_template", "harmony_chat_template", "tokenizer_template_of"]
