"""What a benchmark becomes before prompting: `TaskConfig` (one tasks/configs/*.yaml file) and `EvalItem` (one example).

Record -> EvalItem conversion lives in the per-benchmark modules; EvalItem -> chat messages lives in
`llava_medgpt.eval.prompts`. Records that cannot be converted raise `BadRecord`, are skipped and counted.
"""

from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from ...benchmarks import BadRow

# Answer kinds, each with its own scorer (llava_medgpt.eval.results).
MCQ = "mcq"  # answer is an option letter, scored by strict option extraction
OPEN = "open"  # answer is a short reference string, scored by normalised exact match
GENERATION = "generation"  # answer is a reference report section, scored by text metrics
ANSWER_KINDS = (MCQ, OPEN, GENERATION)

# The item selection that reproduces the paper's counts (Table 3); a task may define others (TaskConfig.settings).
PAPER_SETTING = "paper"
RELEASE_SETTING = "release"

# Task-level scoring: exact-match accuracy over MCQ/OPEN items, or text metrics over GENERATION items.
ACCURACY = "accuracy"
REPORT = "report"
SCORINGS = (ACCURACY, REPORT)


class BadRecord(BadRow):
    """A benchmark record that cannot become an EvalItem; the loader skips it and counts the reason.

    Rows the shared release readers (`llava_medgpt.benchmarks`) refuse raise their base class, BadRow.
    """


@dataclass(frozen=True)
class ImageRef:
    """One image of an item: a file under `root`, or bytes embedded in the release (parquet / hub)."""

    path: str | None = None
    root: str | None = None
    data: bytes | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path if self.path is not None else f"<embedded {len(self.data or b'')} bytes>"

    def load(self) -> Image.Image:
        """Decoded RGB image; a path may not escape its root folder (processing.image_io)."""
        from ...processing.image_io import load_image

        if self.data is not None:
            return load_image(self.data)
        return load_image(self.path, self.root)


@dataclass
class EvalItem:
    """One benchmark example, model-independent.

    options: upper-case letter -> option text (MCQ only), in display order.
    answer: the gold letter (MCQ), reference string (OPEN) or reference text (GENERATION).
    context: extra text shown before the question (PubMedQA abstract, trial document, ...).
    """

    task: str
    id: str
    question: str
    kind: str
    answer: str
    options: dict[str, str] = field(default_factory=dict)
    context: str = ""
    images: list[ImageRef] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    demos: list["EvalItem"] = field(default_factory=list)  # in-context demonstrations (1-shot tasks)

    def __post_init__(self):
        if self.kind not in ANSWER_KINDS:
            raise ValueError(f"{self.task}/{self.id}: unknown answer kind {self.kind!r}")
        if self.kind == MCQ and self.answer not in self.options:
            raise BadRecord(f"gold answer {self.answer!r} is not one of the options {sorted(self.options)}")

    @property
    def image_paths(self) -> list[str]:
        return [image.name for image in self.images]


@dataclass(frozen=True)
class TaskConfig:
    """One benchmark definition (a YAML file in eval/ at the repository root).

    loader: key in tasks.BENCHMARKS; prompt: key in prompts.PROMPTS; scoring: "accuracy" or "report".
    data_subdir: folder under --data-dir holding the benchmark in its official release layout.
    hub_id / hub_config / split: the public dataset used when the local folder is absent and a network is up.
    shots / demo_seed: in-context demonstrations prepended to each query (0 or 1 in the paper).
    options: loader-specific settings (file names, subject lists, ...).
    settings: named selections of the release's items, each an overlay on `options`: "paper" (the default)
        reproduces the paper's count, "release" (where it differs) scores the release's full item set,
        e.g. SLAKE {"paper": {}, "release": {"answer_types": ["OPEN", "CLOSED"]}}.
    setting: the selection in use (`with_setting`); recorded in results.json.
    paper: where the paper reports this task: {"table": "4", "row": "SLAKE"}.
    """

    name: str
    title: str
    loader: str
    prompt: str
    scoring: str
    data_subdir: str
    split: str = "test"
    hub_id: str | None = None
    hub_config: str | None = None
    max_new_tokens: int = 64
    shots: int = 0
    demo_seed: int = 0
    primary_metric: str = "accuracy"
    options: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    setting: str = PAPER_SETTING
    paper: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.scoring not in SCORINGS:
            raise ValueError(f"task {self.name}: scoring must be one of {SCORINGS}, got {self.scoring!r}")
        if self.shots not in (0, 1):
            raise ValueError(f"task {self.name}: shots must be 0 or 1, got {self.shots}")
        if self.settings and PAPER_SETTING not in self.settings:
            raise ValueError(f"task {self.name}: settings must define {PAPER_SETTING!r}, got {sorted(self.settings)}")
        if self.setting not in (self.settings or {PAPER_SETTING: {}}):
            raise ValueError(f"task {self.name}: unknown setting {self.setting!r}; defined: "
                             f"{', '.join(sorted(self.settings or [PAPER_SETTING]))}")

    def with_setting(self, name: str) -> "TaskConfig":
        """This task with the named selection applied to its options (the paper's by default)."""
        if name not in (self.settings or {PAPER_SETTING: {}}):
            raise ValueError(f"task {self.name}: unknown setting {name!r}; defined: "
                             f"{', '.join(sorted(self.settings or [PAPER_SETTING]))}")
        overlay = self.settings.get(name, {})
        return replace(self, setting=name, options={**self.options, **overlay})


def option_letters(n: int) -> list[str]:
    if not 1 <= n <= 26:
        raise BadRecord(f"{n} options cannot be lettered A-Z")
    return [chr(ord("A") + i) for i in range(n)]


def letter_options(texts: list[str]) -> dict[str, str]:
    """Option texts in order -> {"A": text0, "B": text1, ...}."""
    return dict(zip(option_letters(len(texts)), (str(t).strip() for t in texts)))


def mcq_item(question, config: TaskConfig, **extra) -> EvalItem:
    """A parsed release question (`llava_medgpt.benchmarks.McqQuestion`) as this task's EvalItem."""
    return EvalItem(task=config.name, id=question.id, question=question.question, kind=MCQ, answer=question.answer,
                    options=dict(question.options), context=question.context,
                    metadata={**question.metadata, **extra.pop("metadata", {})}, **extra)
