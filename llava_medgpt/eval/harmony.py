"""Harmony channel parsing lives in `llava_medgpt.inference.harmony` (curation and chat read model outputs too)."""

from ..inference.harmony import answer_text, is_harmony, parse_harmony

__all__ = ["answer_text", "is_harmony", "parse_harmony"]
