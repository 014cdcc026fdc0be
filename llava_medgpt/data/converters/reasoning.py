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

import re
from dataclasses import dataclass
from typing import Any, Mapping

from .chat import ConversationFields
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
    # With reasoning=None: skip rows whose answer has no <think> block (True), or keep them as plain answers.
    trace_required: bool = True

    def columns(self) -> tuple[str, ...]:
        optional = tuple(c for c in (self.reasoning, self.image) if c is not None)
        return (self.question, self.answer) + optional


HUATUO_O1 = TraceFields(prefix="huatuo_o1", question="Question", reasoning="Complex_CoT", answer="Response")
# medical_r1_distill_sft.json: the published keys really contain the spaces and parentheses.
MEDICAL_R1_DISTILL = TraceFields(prefix="medical_r1_distill", question="question",
                                 reasoning="reasoning (reasoning_content)", answer="response (content)")
# UCSC-VLAA/MedReason: {"dataset_name", "id_in_dataset", "question", "options": "A. ...\nB. ...", "answer",
# "reasoning"}; options is one text block (empty for the open-ended sub-sources).
MEDREASON = TraceFields(prefix="medreason", question="question", reasoning="reasoning", answer="answer",
                        options="options")
# ReasonMed.json / CoTMed.json / ResponseMed.json: Alpaca {"instruction", "input", "output"}. The output is the
# trace and summary as plain text with no published separator (ResponseMed: summary only), so a row without a
# <think> block is kept whole as the answer rather than split at a guessed boundary.
REASONMED = TraceFields(prefix="reasonmed", question="instruction", context="input", answer="output",
                        trace_required=False)
# General-Medical-AI/GMAI-Reasoning10K (JSONL, config reasoning_mcq_rl): LLaVA rows {"image": "<path in the
# repo>", "conversations": [{"from": "human", "value": "<image>\n<question + options>"}, {"from": "gpt",
# "value": "A"}]}. The public answers are bare letters without a trace; a <think> block, where present, becomes
# the reasoning (read with chat.convert_conversations).
GMAI_REASONING10K = ConversationFields(prefix="gmai_reasoning10k", image="image", split_think=True)


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
        if reasoning is None and fields.trace_required:
            raise SkipRow("no <think> trace in the output")
    if not answer:
        raise SkipRow("empty final answer")
    images = [text(row, fields.image)] if fields.image else []
    key = text(row, fields.id) if fields.id and not is_missing(row.get(fields.id)) else str(index)
    turns = [human(with_images(question, len(images))), gpt(answer, reasoning)]
    return [make_record(f"{fields.prefix}-{key}", turns, images)]


MEDTHOUGHTS_COLUMNS = ("question", "options", "answer_idx", "ds_think")
GEMEX_THINKVG_COLUMNS = ("image_path", "question", "response")


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


_THINK_BLOCK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER_BLOCK_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def convert_gemex_thinkvg(row: Mapping[str, Any], index: int) -> list[dict]:
    """GEMeX-ThinkVG (BoKelvin/GEMeX-ThinkVG, data/train-00000-of-00001.parquet): {"image_path":
    "/p10/p10000032/s50414267/<dicom>.jpg", "question_type": "open_ended_questions" | ..., "question",
    "response": "<think>grounded trace</think>...<answer>...</answer>..."}.
    The image is a MIMIC-CXR-JPG file: its path is made relative to the MIMIC-CXR-JPG root ("files/p10/...").
    """
    image = "files/" + text(row, "image_path").lstrip("/")
    # Choice questions may carry an options list; open and closed ones have none (or an empty one).
    question = text(row, "question") + (_appendix(row, "options") if row.get("options") else "")
    response = text(row, "response")  # the blocks are searched, so a <response> wrapper or <location> tags pass
    think = _THINK_BLOCK_RE.search(response)
    if think is None or not think.group(1).strip():
        raise SkipRow("no <think> trace in the response")
    answer = _ANSWER_BLOCK_RE.search(response)
    if answer is None or not answer.group(1).strip():
        raise SkipRow("no <answer> in the response")
    turns = [human(with_images(question, 1)), gpt(answer.group(1).strip(), think.group(1).strip())]
    return [make_record(f"gemex_thinkvg-{index}", turns, [image])]
