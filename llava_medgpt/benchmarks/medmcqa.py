"""MedMCQA (Pal et al. 2022). Two layouts number the correct option differently:

    official release  train.json / dev.json / test.json  JSON lines, "cop": 1-4 (1 = opa)
    hub copy          openlifescienceai/medmcqa parquet   "cop": ClassLabel a-d = 0-3; test split -1 (no key)

    {"id": "e9ad821a-...", "question": "Chronic urethral obstruction ...", "opa": "Hyperplasia",
     "opb": "Hyperophy", "opc": "Atrophy", "opd": "Dyplasia", "cop": 3, "choice_type": "single", "exp": "...",
     "subject_name": "Anatomy", "topic_name": "Urinary tract"}
    -> McqQuestion(id="e9ad821a-...", options A-D, answer="C")      (official file: cop 3 = opc)

The numbering is a property of the file, never guessed per row: `cop_base` takes it from the layout (.json =
official, 1-4; .parquet or hub rows = 0-3) and refuses a file whose cop values show the other numbering (a 0
in a 1-4 file, a 4 in a 0-3 file). A .jsonl file has no fixed layout (an export of either), so its values must
show the numbering (a 0 or a 4); a file that shows neither is refused rather than read one way by default.
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Mapping

from .base import BadRow, McqQuestion, field_text

HUB_COP_BASE = 0
OFFICIAL_COP_BASE = 1
LAYOUT_COP_BASE = {".json": OFFICIAL_COP_BASE, ".parquet": HUB_COP_BASE}
OPTION_FIELDS = ("opa", "opb", "opc", "opd")


def _cop_values(rows: Iterable[Any]) -> set[int]:
    values = set()
    for row in rows:
        cop = row.get("cop") if isinstance(row, Mapping) else None
        if isinstance(cop, int) and not isinstance(cop, bool) and cop >= 0:  # -1: hub test rows without a key
            values.add(cop)
    return values


def cop_base(path: str | Path, rows: Iterable[Any]) -> int | None:
    """The first option's cop number in this file (0 or 1), from its layout and checked against its values.

    Raises ValueError naming the file when its values contradict its layout, span 0-4, or (a .jsonl file)
    do not show the numbering. None when no row has a cop number at all (not MedMCQA rows: each row is then
    refused on its own, with the columns it lacks).
    """
    path = Path(path)
    declared = LAYOUT_COP_BASE.get(path.suffix.lower())
    values = _cop_values(rows)
    if not values:
        return None
    if 0 in values and 4 in values:
        raise ValueError(f"{path}: MedMCQA cop values span 0-4 ({sorted(values)}); a file numbers its options "
                         "either 0-3 (hub) or 1-4 (official release), not both")
    shown = HUB_COP_BASE if 0 in values else OFFICIAL_COP_BASE if 4 in values else None
    if declared is not None and shown is not None and shown != declared:
        layouts = {HUB_COP_BASE: "0-3 (hub parquet layout)", OFFICIAL_COP_BASE: "1-4 (official JSON release)"}
        raise ValueError(f"{path}: a {path.suffix} MedMCQA file is the {layouts[declared]}, but its cop values "
                         f"{sorted(values)} are numbered {layouts[shown]}; every answer would shift by one. "
                         "Use the file in its own layout (official dev.json / hub parquet)")
    base = declared if declared is not None else shown
    if base is None:
        raise ValueError(f"{path}: cannot tell whether this MedMCQA file numbers cop 0-3 (hub) or 1-4 (official): "
                         f"its values {sorted(values)} show neither a 0 nor a 4. Give the release as the official "
                         "train/dev.json or the hub parquet")
    return base


def parse(row: Mapping[str, Any], base: int | None) -> McqQuestion:
    """One row, with the file's numbering from `cop_base` (HUB_COP_BASE for hub rows)."""
    question = field_text(row, "question")
    options = {letter: field_text(row, name) for letter, name in zip("ABCD", OPTION_FIELDS)}
    cop = row.get("cop")
    if isinstance(cop, str) and cop.strip().lstrip("-").isdigit():
        cop = int(cop)
    if base is None:
        raise BadRow(f"cop {cop!r} is not an option number")
    if not isinstance(cop, int) or isinstance(cop, bool) or not base <= cop <= base + 3:
        raise BadRow(f"cop {cop!r} is not {base}-{base + 3}")
    return McqQuestion(id=field_text(row, "id"), question=question, options=options, answer="ABCD"[cop - base],
                       metadata={"subject": row.get("subject_name"), "topic": row.get("topic_name")})
