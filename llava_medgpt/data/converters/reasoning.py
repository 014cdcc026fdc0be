"""Reasoning data: the trace goes into the assistant turn's "reasoning" field (rendered later into GPT-oss's
analysis channel), the final answer into "value". Traces come from their own column or from a
`<think>...</think>` block in the output (see common.split_think).

Huatuo-o1 (FreedomIntelligence/medical-o1-reasoning-SFT, medical_o1_sft.json):
    raw:    {"Question": "A 45-year-old man presents with ... What is the most likely diagnosis?",
             "Complex_CoT": "Okay, let's think about this. The patient ...",
             "Response": "The most likely diagnosis is ..."}
    record: {"id": "huatuo_o1-0",
             "conversations": [{"from": "human", "value": "A 45-year-old man presents with ... diagnosis?"},
                               {"from": "gpt", "value": "The most likely diagnosis is ...",
                                "reasoning": "Okay, let's think about this. The patient ..."}]}
"""

from dataclasses import dataclass
from typing import Any, Mapping

from .common import SkipRow, gpt, human, is_missing, make_record, split_think, text, with_images
from .mcq import LETTERS, format_mcq_answer, format_mcq_prompt, read_lettered_options


@dataclass(frozen=True)
class TraceFields:
    prefix: str
    question: str
    answer: str
    reasoning: str | None = None  # None -> the trace is a <think> block inside the answer field
    context: str | None = None  # optional extra prompt text appended to the question (Alpaca "input")
    options: str | None = None  # optional options text appended to the question (MedReason)
    image: str | None = None  # optional image path field (multimodal reasoning sets)
    id: str | None = None


HUATUO_O1 = TraceFields(prefix="huatuo_o1", question="Question", reasoning="Complex_CoT", answer="Response")
MEDICAL_R1_DISTILL = TraceFields(prefix="medical_r1_distill", question="question",
                                 reasoning="reasoning (reasoning_content)", answer="response (content)")
MEDREASON = TraceFields(prefix="medreason", question="question", reasoning="reasoning", answer="answer",
                        options="options")
REASONMED = TraceFields(prefix="reasonmed", question="instruction", context="input", answer="output")
GMAI_REASONING10K = TraceFields(prefix="gmai_reasoning10k", question="question", reasoning="reasoning",
                                answer="answer", options="options", image="image", id="id")
GEMEX_THINKVG = TraceFields(prefix="gemex_thinkvg", question="question", answer="answer", image="image_path")


def _appendix(row: Mapping[str, Any], field: str | None) -> str:
    if field is None or is_missing(row.get(field)):
        return ""
    value = row[field]
    if isinstance(value, list):
        value = "\n".join(f"{LETTERS[i]}. {str(v).strip()}" for i, v in enumerate(value))
    elif isinstance(value, dict):
        value = "\n".join(f"{k}. {str(v).strip()}" for k, v in value.items() if not is_missing(v))
    return "\n" + str(value).strip()


def convert_trace(fields: TraceFields, row: Mapping[str, Any], index: int) -> list[dict]:
    question = text(row, fields.question) + _appendix(row, fields.context) + _appendix(row, fields.options)
    output = text(row, fields.answer)
    if fields.reasoning is not None:
        reasoning, answer = text(row, fields.reasoning), output
        _, answer = split_think(answer)  # some answers still carry an empty/duplicate think block
    else:
        reasoning, answer = split_think(output)
        if reasoning is None:
            raise SkipRow("no <think> trace in the output")
    if not answer:
        raise SkipRow("empty final answer")
    images = [text(row, fields.image)] if fields.image else []
    key = text(row, fields.id) if fields.id and not is_missing(row.get(fields.id)) else str(index)
    turns = [human(with_images(question, len(images))), gpt(answer, reasoning)]
    return [make_record(f"{fields.prefix}-{key}", turns, images)]


def convert_medthoughts(row: Mapping[str, Any], index: int) -> list[dict]:
    """MedThoughts-8K (hw-hwei/MedThoughts-8K.jsonl): MedQA US/train (5 options) with DeepSeek-R1 traces.
    {"question_id": ..., "question": ..., "options": {"A": ..., "E": ...}, "answer_idx": "B",
     "ds_answer": "<R1's final answer>", "ds_think": "<R1's trace>", "source": "MedQA/US/train"}
    The answer is written in the shared MCQ letter format; R1's trace is the reasoning.
    """
    question = text(row, "question")
    options, letter = read_lettered_options(row)
    reasoning = text(row, "ds_think")
    key = text(row, "question_id") if not is_missing(row.get("question_id")) else str(index)
    turns = [human(format_mcq_prompt(question, options)), gpt(format_mcq_answer(letter, options), reasoning)]
    return [make_record(f"medthoughts_8k-{key}", turns)]
