"""One reader per benchmark release, shared by the training converters and the evaluation tasks.

A benchmark's release (MedQA's jsonl, MedMCQA's JSON lines or hub parquet, PubMedQA's ori_pqal.json, SLAKE's
json, Medbullets' csv) is parsed here, once, into a release-independent question:

    from llava_medgpt.benchmarks import medmcqa
    base = medmcqa.cop_base(path, rows)           # the file's answer numbering, from its layout; refused if
    question = medmcqa.parse(row, base)           # its cop values show the other one
    question.options, question.answer             # {"A": ..., "D": ...}, "C"

`llava_medgpt.data.converters` turns questions into training records and `llava_medgpt.eval.tasks` into
EvalItems, so the same release file gives the same options and answer letter in both (tests/test_benchmarks.py).

Layering: imports only the standard library; the callers read the files (llava_medgpt.rows, so both sides get
the same row types) and pass the rows in. Both `data/` and `eval/` import it, it imports neither. A row that
cannot be parsed raises `BadRow(reason)`.
"""

from .base import ANSWER_WITH_LETTER, ANSWER_WITH_LETTER_AND_TEXT, BadRow, McqQuestion, lettered

__all__ = ["ANSWER_WITH_LETTER", "ANSWER_WITH_LETTER_AND_TEXT", "BadRow", "McqQuestion", "lettered"]
