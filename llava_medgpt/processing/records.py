"""The project's training record (LLaVA JSON schema): its one definition, validation and chat messages.

A record is one JSON object per line of a manifest:

    {"id": "pmc_vqa-17",
     "image": "PMC1064097_F1.jpg",              # or a list of paths, or absent for text-only
     "conversations": [
        {"from": "system", "value": "..."},        # optional
        {"from": "human", "value": "<image>\\nWhat is the uptake pattern?"},
        {"from": "gpt", "value": "B. Focal uptake pattern", "reasoning": "..."}]}

Image paths are relative to the source's image folder (manifests that converters write are relocatable); for
training, an absolute path is also accepted when it lies inside the image folder (`validate_record(...,
allow_absolute_paths=True)`; processing.image_io.resolve_image_path checks that). The number of `<image>` markers
in the text equals the number of images; markers sit in system/human turns only. `reasoning` (optional,
assistant turns only) is the reasoning trace that the chat template renders into GPT-oss's analysis channel.

Everything that reads records goes through here: the converters and curation validate what they write, the
processor validates what it tokenizes (so a dataset sample and a direct call fail the same way, with the same
reason), and the record index estimates lengths from `record_turns` / `record_images` without validating.
"""

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Mapping

from ..constants import IMAGE_MARKER

# LLaVA JSON "from" -> chat role.
RECORD_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}
ROLES = tuple(RECORD_ROLES)
PROMPT_ROLES = ("system", "human")  # the turns that may hold <image> markers
ASSISTANT_ROLE = "gpt"
TURN_TEXT_FIELDS = ("value", "reasoning")


class RecordError(ValueError):
    """A record that breaks the schema; the message names the record id and the problem."""

    def __init__(self, record_id: Any, problem: str):
        self.record_id = record_id
        self.problem = problem
        super().__init__(f"record {record_id!r}: {problem}")


class ImageCountError(RecordError):
    """The number of `<image>` markers differs from the number of images."""


@dataclass(frozen=True)
class Turn:
    role: str  # one of ROLES
    value: str
    reasoning: str | None = None


@dataclass(frozen=True)
class Record:
    """Read-only view of a validated record."""

    id: str
    images: tuple[str, ...]
    turns: tuple[Turn, ...]

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "Record":
        validate_record(record)
        turns = tuple(Turn(t["from"], t["value"], t.get("reasoning")) for t in record["conversations"])
        return cls(id=record["id"], images=record_images(record), turns=turns)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if len(self.images) == 1:
            out["image"] = self.images[0]
        elif self.images:
            out["image"] = list(self.images)
        conversations = []
        for turn in self.turns:
            entry = {"from": turn.role, "value": turn.value}
            if turn.reasoning is not None:
                entry["reasoning"] = turn.reasoning
            conversations.append(entry)
        out["conversations"] = conversations
        return out


def record_images(record: Any) -> tuple:
    """The record's image paths as a tuple (empty for text-only records, and for anything that is not a record
    or whose "image" is neither a path nor a list); no validation."""
    image = record.get("image") if isinstance(record, Mapping) else None
    if isinstance(image, str):
        return (image,)
    if isinstance(image, list):
        return tuple(image)
    return ()


def record_turns(record: Any) -> list[Mapping[str, Any]]:
    """The turns of a record that are objects (empty for anything else); no validation."""
    conversations = record.get("conversations") if isinstance(record, Mapping) else None
    if not isinstance(conversations, list):
        return []
    return [turn for turn in conversations if isinstance(turn, Mapping)]


def messages_from_record(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A valid record (validate_record) -> chat messages.

    {"id": "x", "conversations": [{"from": "human", "value": "<image>\\nQ"}, {"from": "gpt", "value": "A",
    "reasoning": "R"}]} -> [{"role": "user", "content": "<image>\\nQ"}, {"role": "assistant", "content": "A",
    "reasoning": "R"}]
    """
    messages = []
    for turn in record["conversations"]:
        message = {"role": RECORD_ROLES[turn["from"]], "content": turn["value"]}
        if turn.get("reasoning") is not None:
            message["reasoning"] = turn["reasoning"]
        messages.append(message)
    return messages


def _check_image_path(record_id: Any, path: Any, allow_absolute_paths: bool) -> None:
    if not isinstance(path, str) or not path:
        raise RecordError(record_id, f"image path must be a non-empty string, got {path!r}")
    if "\\" in path:
        raise RecordError(record_id, f"image path {path!r} uses backslashes; use '/'")
    if "\0" in path:
        raise RecordError(record_id, f"image path {path!r} contains a NUL byte")
    pure = PurePosixPath(path)
    # Paths are joined to an image folder later; '..' would leave it, and so may an absolute path (allowed only
    # where the reader checks that the resolved path stays inside the folder).
    if ".." in pure.parts or (pure.is_absolute() and not allow_absolute_paths):
        raise RecordError(record_id, f"image path {path!r} must be relative and stay inside its image folder")


def validate_record(record: Any, allow_absolute_paths: bool = False, image_count: int | None = None) -> None:
    """Raise RecordError if `record` is not a valid training record (see module docstring).

    allow_absolute_paths: accept absolute image paths (the training dataset, which resolves every path inside
        its source's image folder and refuses those that leave it).
    image_count: the number of images the markers must match when the images come from elsewhere than the
        record's "image" field (the processor's `images=`); default: that field's paths.
    """
    if not isinstance(record, Mapping):
        raise RecordError(None, f"a record must be a JSON object, got {type(record).__name__}")
    record_id = record.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise RecordError(record_id, "'id' must be a non-empty string")

    image = record.get("image")
    if image is not None and not isinstance(image, (str, list)):
        raise RecordError(record_id, f"'image' must be a string or a list of strings, got {type(image).__name__}")
    images = record_images(record)
    if isinstance(image, list) and not images:
        raise RecordError(record_id, "'image' is an empty list; omit it for text-only records")
    for path in images:
        _check_image_path(record_id, path, allow_absolute_paths)

    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise RecordError(record_id, "'conversations' must be a non-empty list")

    n_markers = 0
    has_gpt = False
    for i, turn in enumerate(conversations):
        if not isinstance(turn, Mapping):
            raise RecordError(record_id, f"turn {i} must be an object")
        role = turn.get("from")
        if role not in ROLES:
            raise RecordError(record_id, f"turn {i} has role {role!r}; expected one of {ROLES}")
        value = turn.get("value")
        if not isinstance(value, str):
            raise RecordError(record_id, f"turn {i} 'value' must be a string")
        extra = set(turn) - {"from", *TURN_TEXT_FIELDS}
        if extra:
            raise RecordError(record_id, f"turn {i} has unknown keys {sorted(extra)}")
        if "reasoning" in turn:
            if role != ASSISTANT_ROLE:
                raise RecordError(record_id, f"turn {i}: 'reasoning' is allowed on assistant ('gpt') turns only")
            if not isinstance(turn["reasoning"], str) or not turn["reasoning"].strip():
                raise RecordError(record_id, f"turn {i}: 'reasoning' must be a non-empty string")
        markers = value.count(IMAGE_MARKER)
        if role == ASSISTANT_ROLE:
            has_gpt = True
            if markers:
                raise RecordError(record_id, f"turn {i}: assistant text may not contain {IMAGE_MARKER!r}")
            if not value.strip():
                raise RecordError(record_id, f"turn {i}: assistant text is empty")
        n_markers += markers
    if i == 0 or not has_gpt:
        raise RecordError(record_id, "a record needs at least one prompt turn and one 'gpt' turn")
    if conversations[-1].get("from") != ASSISTANT_ROLE:
        raise RecordError(record_id, "the last turn must be an assistant ('gpt') turn")
    expected = len(images) if image_count is None else image_count
    if n_markers != expected:
        raise ImageCountError(record_id, f"{n_markers} {IMAGE_MARKER!r} markers but {expected} images")
