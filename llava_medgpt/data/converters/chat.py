"""Instruction and chat data: LLaVA/ShareGPT conversations (PubMedVision, Quilt-VQA = QUILT-LLaVA-Instruct,
Infinity-Instruct), OpenAI-style messages (II-Medical-Reasoning), Alpaca instruction/input/output
(AlpaCare, HealthCareMagic) and plain question/answer pairs (MedQuAD, iCliniq).

HealthCareMagic-100k (lavita/ChatDoctor-HealthCareMagic-100k, data/train-*.parquet, 112,165 rows):
    raw:    {"instruction": "If you are a doctor, please answer the medical questions based on the patient's
             description.", "input": "Hi doctor, I have had a cough for two weeks ...",
             "output": "Hi, thanks for your query. ..."}
    record: {"id": "healthcaremagic-0",
             "conversations": [{"from": "system", "value": "If you are a doctor, please answer ..."},
                               {"from": "human", "value": "Hi doctor, I have had a cough for two weeks ..."},
                               {"from": "gpt", "value": "Hi, thanks for your query. ..."}]}

Where each field map was checked is listed in docs/data.md ("Source schemas and where they were checked").
"""

from dataclasses import dataclass
from typing import Any, Mapping

from ...constants import IMAGE_MARKER
from .common import SkipRow, gpt, human, is_missing, make_record, split_think, text

_ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt", "system": "system"}


def _images(row: Mapping[str, Any], field: str | None) -> list[str]:
    if field is None or is_missing(row.get(field)):
        return []
    value = row[field]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise SkipRow(f"field '{field}' is not an image path or a list of them")
    return [v.strip() for v in values]


def _finish(prefix: str, key: str, turns: list[dict], images: list[str]) -> list[dict]:
    if not turns or turns[-1]["from"] != "gpt":
        raise SkipRow("conversation does not end with an assistant turn")
    if images and not any(IMAGE_MARKER in t["value"] for t in turns):
        # Sources that keep images beside the text: put all markers at the head of the first user turn.
        first = next((t for t in turns if t["from"] == "human"), None)
        if first is None:
            raise SkipRow("images but no user turn to attach them to")
        first["value"] = f"{IMAGE_MARKER}\n" * len(images) + first["value"]
    return [make_record(f"{prefix}-{key}", turns, images)]


@dataclass(frozen=True)
class ConversationFields:
    prefix: str
    conversations: str = "conversations"
    image: str | None = None
    id: str | None = "id"
    split_think: bool = False  # assistant values carry <think>...</think> traces

    def columns(self) -> tuple[str, ...]:
        return (self.conversations,)


# FreedomIntelligence/PubMedVision PubMedVision_Alignment_VQA.json: {"id", "image": [paths in images_*.zip],
# "conversations": [{"from", "value"}], "modality", "body_part"}; image is always a list (often several).
PUBMEDVISION_ALIGNMENT = ConversationFields(prefix="pubmedvision", image="image")
# Table 1's "Quilt-VQA" (107,131) is wisdomik/QUILT-LLaVA-Instruct-107K quilt_instruct_107k.json, LLaVA rows
# {"id", "image": "<Quilt-1M image file>", "conversations": [...]}; wisdomik/Quilt_VQA is the 985-row eval set.
QUILT_VQA = ConversationFields(prefix="quilt_vqa", image="image")
# BAAI/Infinity-Instruct config "Gen" (Gen/*.parquet): {"id": "<hex string>", "conversations": [{"from": "human"|"gpt",
# "value"}], "label": {"ability_en": [...], ...}, "langdetect": "en", "source": "..."}; label/langdetect/source unused.
INFINITY_INSTRUCT = ConversationFields(prefix="infinity_instruct")


def convert_conversations(fields: ConversationFields, row: Mapping[str, Any], index: int) -> list[dict]:
    """LLaVA/ShareGPT: {"id": ..., "image": "x.jpg" | [...], "conversations": [{"from": "human", "value": ...}, ...]}"""
    raw_turns = row.get(fields.conversations)
    if not isinstance(raw_turns, list) or not raw_turns:
        raise SkipRow(f"missing field '{fields.conversations}'")
    turns = []
    for turn in raw_turns:
        if not isinstance(turn, Mapping) or turn.get("from") not in _ROLES or not isinstance(turn.get("value"), str):
            raise SkipRow("malformed conversation turn")
        role, value = _ROLES[turn["from"]], turn["value"].strip()
        if role == "gpt" and fields.split_think:
            reasoning, value = split_think(value)
            turns.append(gpt(value, reasoning))
        else:
            turns.append({"from": role, "value": value})
    key = text(row, fields.id) if fields.id and not is_missing(row.get(fields.id)) else str(index)
    return _finish(fields.prefix, key, turns, _images(row, fields.image))


@dataclass(frozen=True)
class MessageFields:
    prefix: str
    messages: str = "messages"
    id: str | None = "id"

    def columns(self) -> tuple[str, ...]:
        return (self.messages,)


# Intelligent-Internet/II-Medical-Reasoning-SFT (data/train-*.parquet): {"model", "question", "problem", "messages":
# [{"role", "content"}]}; no id column, the assistant content carries the trace as "<think>...</think>answer".
II_MEDICAL_REASONING = MessageFields(prefix="ii_medical_reasoning", id=None)


def convert_messages(fields: MessageFields, row: Mapping[str, Any], index: int) -> list[dict]:
    """OpenAI messages: {"id": ..., "messages": [{"role": "user", "content": ...},
    {"role": "assistant", "content": "<think>trace</think>answer"}]}; a separate "reasoning_content" on an
    assistant message is used as the trace when the content has no <think> block.
    """
    messages = row.get(fields.messages)
    if not isinstance(messages, list) or not messages:
        raise SkipRow(f"missing field '{fields.messages}'")
    turns = []
    for message in messages:
        if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
            raise SkipRow("malformed message")
        content = message.get("content")
        if not isinstance(content, str):
            raise SkipRow("message content is not text")
        role = _ROLES[message["role"]]
        if role == "gpt":
            reasoning, answer = split_think(content)
            extra = message.get("reasoning_content")
            if reasoning is None and isinstance(extra, str) and extra.strip():
                reasoning = extra.strip()
            turns.append(gpt(answer, reasoning))
        else:
            turns.append({"from": role, "value": content.strip()})
    key = text(row, fields.id) if fields.id and not is_missing(row.get(fields.id)) else str(index)
    return _finish(fields.prefix, key, turns, [])


@dataclass(frozen=True)
class InstructionFields:
    prefix: str
    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"
    instruction_as_system: bool = False  # ChatDoctor's instruction is one fixed role prompt, not the question

    def columns(self) -> tuple[str, ...]:
        return (self.instruction, self.input, self.output) if self.instruction_as_system else (
            self.instruction, self.output)


# AlpaCare MedInstruct-52k (lavita/AlpaCare-MedInstruct-52k parquet, or xz97/MedInstruct data/MedInstruct-52k.json).
ALPACARE = InstructionFields(prefix="alpacare")
HEALTHCAREMAGIC = InstructionFields(prefix="healthcaremagic", instruction_as_system=True)


def convert_instruction(fields: InstructionFields, row: Mapping[str, Any], index: int) -> list[dict]:
    """Alpaca: {"instruction": ..., "input": ... (may be empty), "output": ...}"""
    instruction = text(row, fields.instruction)
    extra = row.get(fields.input)
    extra = extra.strip() if isinstance(extra, str) else ""
    output = text(row, fields.output)
    if fields.instruction_as_system:
        if not extra:
            raise SkipRow(f"missing field '{fields.input}'")
        turns = [{"from": "system", "value": instruction}, human(extra), gpt(output)]
    else:
        turns = [human(f"{instruction}\n\n{extra}" if extra else instruction), gpt(output)]
    return _finish(fields.prefix, str(index), turns, [])


@dataclass(frozen=True)
class QAFields:
    prefix: str
    question: str
    answer: str
    id: str | None = None

    def columns(self) -> tuple[str, ...]:
        return (self.question, self.answer)


# lavita/MedQuAD (data/train-*.parquet, 47,441 rows = all of MedQuAD's questions): document_id, document_source,
# document_url, category, umls_*, synonyms, question_id, question_focus, question_type, question, answer. The
# answers of 31,034 rows (GARD, MPlusHerbsSupplements, ADAM, MPlusDrugs) are removed upstream (MedlinePlus
# copyright); those rows are skipped as "missing field 'answer'".
MEDQUAD = QAFields(prefix="medquad", question="question", answer="answer")
# ChatDoctor-iCliniq keeps the real doctor's reply (answer_icliniq) beside ChatGPT's and ChatDoctor's.
ICLINIQ = QAFields(prefix="icliniq", question="input", answer="answer_icliniq")


def convert_qa(fields: QAFields, row: Mapping[str, Any], index: int) -> list[dict]:
    question, answer = text(row, fields.question), text(row, fields.answer)
    key = text(row, fields.id) if fields.id and not is_missing(row.get(fields.id)) else str(index)
    return _finish(fields.prefix, key, [human(question), gpt(answer)], [])
