"""Harmony channel parsing lives in `llava_medgpt.processing.harmony` (the processor's post-processing and the chat
streamer read model outputs too; curation and evaluation import it from here or from eval.harmony)."""

from ..processing.harmony import answer_text, is_harmony, parse_harmony

__all__ = ["answer_text", "is_harmony", "parse_harmony"]
