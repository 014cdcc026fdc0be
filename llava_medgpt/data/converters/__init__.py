"""Registry of source converters: converter name -> Converter (one entry per Table 1 source).

Each converter is a pure function `(raw_row, index) -> list[record]` raising `SkipRow(reason)` for rows it
cannot convert; families serve several sources through per-source field maps (see the family modules).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping

from . import caption, chat, mcq_text, reasoning, report, vqa
from .common import SkipRow

ConvertFn = Callable[[Mapping[str, Any], int], list[dict]]


@dataclass(frozen=True)
class Converter:
    name: str
    table1_name: str  # the dataset's name in the paper's Table 1
    family: str
    fn: ConvertFn
    reader: str = "table"  # "table": rows of a JSONL/JSON/CSV/Parquet file; "mimic_cxr": study rows of a folder
    columns: tuple[str, ...] = ()  # input columns of a converter without a field map (alternatives "a|b")
    # Facts about the whole input file that its rows' conversion needs, read in a first pass and merged into
    # every row (MedMCQA: whether the file numbers cop 0-3 or 1-4). (path, rows) -> {field: value}.
    file_facts: Callable[[str, Iterable[Any]], dict] | None = None

    def expected_columns(self) -> list[tuple[str, ...]]:
        """Input columns a row needs, one tuple per published layout; read from the field map when there is one."""
        if self.columns:
            return [self.columns]
        fields = self.fn.args[0] if isinstance(self.fn, partial) and self.fn.args else None
        if isinstance(fields, tuple):  # several published layouts (ROCOv2)
            return caption.layout_columns(fields)
        return [fields.columns()] if hasattr(fields, "columns") else []

    def accepts_columns(self, found: set[str]) -> bool:
        """Whether rows with these columns could convert (some layout has all its columns, any alternative)."""
        return any(all(any(alt in found for alt in column.split("|")) for column in layout)
                   for layout in self.expected_columns())


_MIMIC_STUDY_COLUMNS = ("subject_id", "study_id", "images", "report")  # rows built by read_mimic_cxr_studies


def _entries() -> list[Converter]:
    p = partial
    return [
        # image-caption
        Converter("pmc_oa", "PMC-OA (filtered)", "caption", p(caption.convert_caption, caption.PMC_OA)),
        Converter("rocov2", "ROCOv2 (filtered)", "caption", p(caption.convert_caption, caption.ROCOV2)),
        Converter("quilt_1m", "Quilt-1M (filtered)", "caption", p(caption.convert_caption, caption.QUILT_1M)),
        Converter("biomedica", "BIOMEDICA (dermatology and surgery subsets)", "caption",
                  p(caption.convert_caption, caption.BIOMEDICA)),
        Converter("medtrinity", "MedTrinity (accessible)", "caption", p(caption.convert_caption, caption.MEDTRINITY)),
        Converter("pubmedvision_alignment", "PubMedVision (alignment)", "caption",
                  p(chat.convert_conversations, chat.PUBMEDVISION_ALIGNMENT)),
        # report generation
        Converter("mimic_cxr_single", "MIMIC-CXR (single-panel)", "report", report.convert_mimic_single,
                  reader="mimic_cxr", columns=_MIMIC_STUDY_COLUMNS),
        Converter("mimic_cxr_longitudinal", "MIMIC-CXR (multi-view & longitudinal)", "report",
                  report.convert_mimic_longitudinal, reader="mimic_cxr", columns=_MIMIC_STUDY_COLUMNS),
        # VQA
        Converter("slake", "SLAKE (English)", "vqa", vqa.convert_slake, columns=vqa.SLAKE_COLUMNS),
        Converter("vqa_rad", "VQA-Rad", "vqa", p(vqa.convert_open_vqa, vqa.VQA_RAD)),
        Converter("pmc_vqa", "PMC-VQA", "vqa", vqa.convert_pmc_vqa, columns=vqa.PMC_VQA_COLUMNS),
        Converter("mimic_cxr_vqa", "MIMIC-CXR-VQA", "vqa", p(vqa.convert_open_vqa, vqa.MIMIC_CXR_VQA)),
        Converter("quilt_vqa", "Quilt-VQA", "vqa", p(chat.convert_conversations, chat.QUILT_VQA)),
        Converter("openmm_medical", "OpenMM-Medical", "vqa", p(vqa.convert_mcq_vqa, vqa.OPENMM_MEDICAL)),
        # text multiple choice
        Converter("medqa", "MedQA", "mcq", mcq_text.convert_medqa, columns=mcq_text.MEDQA_COLUMNS),
        Converter("medmcqa", "MedMCQA", "mcq", mcq_text.convert_medmcqa, columns=mcq_text.MEDMCQA_COLUMNS,
                  file_facts=mcq_text.medmcqa_file_facts),
        Converter("pubmedqa", "PubMedQA", "mcq", mcq_text.convert_pubmedqa, columns=mcq_text.PUBMEDQA_COLUMNS),
        Converter("medexpqa", "MedExpQA", "mcq", mcq_text.convert_medexpqa, columns=mcq_text.MEDEXPQA_COLUMNS),
        # instruction / chat
        Converter("alpacare", "AlpaCare-MedInstruct-52k", "chat", p(chat.convert_instruction, chat.ALPACARE)),
        Converter("medquad", "MedQuAD", "chat", p(chat.convert_qa, chat.MEDQUAD)),
        Converter("healthcaremagic", "HealthCareMagic-100k", "chat",
                  p(chat.convert_instruction, chat.HEALTHCAREMAGIC)),
        Converter("icliniq", "iCliniq-10K", "chat", p(chat.convert_qa, chat.ICLINIQ)),
        Converter("infinity_instruct", "Infinity-Instruct-Gen", "chat",
                  p(chat.convert_conversations, chat.INFINITY_INSTRUCT)),
        # reasoning
        Converter("ii_medical_reasoning", "II-Medical-Reasoning", "reasoning",
                  p(chat.convert_messages, chat.II_MEDICAL_REASONING)),
        Converter("reasonmed", "ReasonMed", "reasoning", p(reasoning.convert_trace, reasoning.REASONMED)),
        Converter("medreason", "MedReason", "reasoning", p(reasoning.convert_trace, reasoning.MEDREASON)),
        Converter("huatuo_o1", "Huotuo-o1", "reasoning", p(reasoning.convert_trace, reasoning.HUATUO_O1)),
        Converter("medical_r1_distill", "Medical-R1-Distill-Data", "reasoning",
                  p(reasoning.convert_trace, reasoning.MEDICAL_R1_DISTILL)),
        Converter("medthoughts_8k", "MedThoughts-8K", "reasoning", reasoning.convert_medthoughts,
                  columns=reasoning.MEDTHOUGHTS_COLUMNS),
        Converter("gmai_reasoning10k", "GMAI-Reasoning10K", "reasoning",
                  p(chat.convert_conversations, reasoning.GMAI_REASONING10K)),
        Converter("gemex_thinkvg", "GEMeX-ThinkVG", "reasoning", reasoning.convert_gemex_thinkvg,
                  columns=reasoning.GEMEX_THINKVG_COLUMNS),
    ]


CONVERTERS: dict[str, Converter] = {c.name: c for c in _entries()}

__all__ = ["CONVERTERS", "Converter", "ConvertFn", "SkipRow"]
