"""Converters: fixture files in each source's published schema -> exact training records; bad-row accounting."""

import hashlib
import io
import json
from pathlib import Path

import pytest

from llava_medgpt.data.convert import (
    ConvertError,
    convert_rows,
    convert_source,
    main as convert_main,
    source_rows,
)
from llava_medgpt.data.converters import CONVERTERS
from llava_medgpt.data.converters.common import split_think
from llava_medgpt.benchmarks import ANSWER_WITH_LETTER_AND_TEXT
from llava_medgpt.data.converters.mcq import format_mcq_prompt, mcq_question_stem
from llava_medgpt.data.converters.report import parse_report_sections, read_mimic_cxr_studies
from llava_medgpt.processing.records import Record, RecordError, validate_record

FIX = Path(__file__).parent / "fixtures" / "sources"
MCQ = ANSWER_WITH_LETTER_AND_TEXT


def convert_file(name, path):
    converter = CONVERTERS[name]
    records, skipped = [], []
    for row_number, out, reason, _ in convert_rows(converter, source_rows(converter, path)):
        records += out
        if reason is not None:
            skipped.append((row_number, reason))
    return records, skipped


def conv(*turns):
    return [{"from": r, "value": v} if len(t) == 2 else {"from": r, "value": v, "reasoning": t[2]}
            for t in turns for r, v in [t[:2]]]


CASES = {
    # image-caption and image-VQA sources (PMC-OA, ROCOv2, Quilt, ...): tests/test_data_converters_images.py
    "slake": ("slake_train.json", {
        "id": "slake-11934", "image": "xmlab102/source.jpg",
        "conversations": conv(("human", "<image>\nWhich organ is abnormal?"), ("gpt", "Lung"))},
        [(2, "q_lang is not 'en'")]),
    "vqa_rad": ("vqa_rad_public.json", {
        "id": "vqa_rad-1", "image": "synpic54610.jpg",
        "conversations": conv(("human", "<image>\nAre regions of the brain infarcted?"), ("gpt", "Yes"))},
        [(2, "test row (phrase_type starts with 'test')")]),
    "pmc_vqa": ("pmc_vqa_train.csv", {
        "id": "pmc_vqa-PMC1064097_F1-0", "image": "PMC1064097_F1.jpg",
        "conversations": conv(
            ("human", "<image>\nWhat is the uptake pattern in the breast?\nA. Diffuse uptake pattern\n"
                      "B. Focal uptake pattern\nC. No uptake pattern\nD. Cannot determine from the information given\n"
                      + MCQ),
            ("gpt", "B. Focal uptake pattern"))},
        [(2, "Answer_label 'E' is not one of A-D")]),
    "medqa": ("medqa_train.jsonl", {
        "id": "medqa-0",
        "conversations": conv(
            ("human", "A 23-year-old pregnant woman at 22 weeks gestation presents with burning upon urination. "
                      "Which of the following is the best treatment for this patient?\nA. Ampicillin\nB. Ceftriaxone\n"
                      "C. Doxycycline\nD. Nitrofurantoin\n" + MCQ),
            ("gpt", "D. Nitrofurantoin"))}, []),
    "medmcqa": ("medmcqa_train.jsonl", {
        "id": "medmcqa-e9ad821a-c438-4965-9f77-760819dfa155",
        "conversations": conv(
            ("human", "Chronic urethral obstruction due to benign prismatic hyperplasia can lead to the following "
                      "change in kidney parenchyma\nA. Hyperplasia\nB. Hyperophy\nC. Atrophy\nD. Dyplasia\n" + MCQ),
            ("gpt", "C. Atrophy"))}, None),  # bad rows checked in test_bad_rows_are_counted_with_row_and_reason
    "pubmedqa": ("pubmedqa_ori_pqal.json", {
        "id": "pubmedqa-21645374",
        "conversations": conv(
            ("human", "Context: BACKGROUND: Programmed cell death (PCD) is the regulated death of cells within an "
                      "organism.\nRESULTS: The following paper elucidates the role of mitochondrial dynamics during "
                      "developmentally regulated PCD.\nQuestion: Do mitochondria play a role in remodelling lace plant leaves during "
                      "programmed cell death?\nA. yes\nB. no\nC. maybe\n" + MCQ),
            ("gpt", "A. yes"))}, []),
    "medexpqa": ("medexpqa_train.en.casimedicos.rag.jsonl", {
        "id": "medexpqa-17",
        "conversations": conv(
            ("human", "A 62-year-old man consults for dyspnea. What is the most likely diagnosis?\nA. Asthma.\n"
                      "B. COPD.\nC. Heart failure.\nD. Pneumonia.\n" + MCQ),
            ("gpt", "C. Heart failure."))}, [(2, "correct_option 5 is not an option")]),
    "healthcaremagic": ("healthcaremagic.jsonl", {
        "id": "healthcaremagic-0",
        "conversations": conv(
            ("system", "If you are a doctor, please answer the medical questions based on the patient's description."),
            ("human", "Hi doctor, I have had a dry cough for two weeks and mild fever."),
            ("gpt", "Hi, thanks for your query. A chest X-ray would help rule out pneumonia."))},
        [(2, "missing field 'input'")]),
    "alpacare": ("alpacare.jsonl", {
        "id": "alpacare-0",
        "conversations": conv(("human", "Explain the mechanism of action of metformin."),
                              ("gpt", "Metformin lowers hepatic glucose production."))},
        [(3, "missing field 'output'")]),
    "icliniq": ("icliniq.jsonl", {
        "id": "icliniq-0",
        "conversations": conv(("human", "Hello doctor, my child has a rash after amoxicillin."),
                              ("gpt", "Stop the drug and consult in person."))},
        [(2, "missing field 'answer_icliniq'")]),
    "medquad": ("medquad_train.jsonl", {
        "id": "medquad-0",
        "conversations": conv(
            ("human", "What is (are) Adult Acute Lymphoblastic Leukemia ?"),
            ("gpt", ("Adult acute lymphoblastic leukemia (ALL) is a type of cancer in which the bone marrow makes "
                     "too many lymphocytes.")))},
        [(2, "missing field 'answer'")]),  # lavita/MedQuAD rows whose answer was removed upstream
    "infinity_instruct": ("infinity_instruct_gen.jsonl", {
        "id": "infinity_instruct-a3f52e9ef0e6c24c5fa802943a66b6d3",
        "conversations": conv(("human", "Write a haiku about the sea."), ("gpt", "Waves fold into foam"),
                              ("human", "Now one about rain."), ("gpt", "Rain taps the window"))},
        [(2, "conversation does not end with an assistant turn"), (3, "malformed conversation turn")]),
    "huatuo_o1": ("medical_o1_sft.json", {
        "id": "huatuo_o1-0",
        "conversations": conv(
            ("human", "A 45-year-old man has crushing chest pain radiating to the jaw. What is the most likely diagnosis?"),
            ("gpt", "The most likely diagnosis is acute myocardial infarction.",
             "Okay, crushing pain radiating to the jaw suggests cardiac ischemia."))},
        [(2, "missing field 'Complex_CoT'")]),
    "ii_medical_reasoning": ("ii_medical_reasoning.jsonl", {
        "id": "ii_medical_reasoning-0",
        "conversations": conv(("human", "What causes scurvy?"),
                              ("gpt", "Vitamin C deficiency.", "Scurvy is a vitamin deficiency."))},
        [(2, "conversation does not end with an assistant turn"), (3, "message content is not text")]),
    "medical_r1_distill": ("medical_r1_distill_sft.json", {
        "id": "medical_r1_distill-0",
        "conversations": conv(
            ("human", ("A 30-year-old woman has heat intolerance, weight loss and a diffuse goitre. What is the "
                       "most likely diagnosis?")),
            ("gpt", "The most likely diagnosis is Graves disease.",
             ("Okay, heat intolerance and weight loss point to hyperthyroidism; a diffuse goitre suggests Graves "
              "disease.")))},
        [(2, "missing field 'response (content)'")]),
    "reasonmed": ("ReasonMed.json", {
        "id": "reasonmed-0",
        "conversations": conv(
            ("human", ("Please answer the following multiple-choice question:\nChronic urethral obstruction due "
                       "to benign prostatic hyperplasia can lead to the following change in kidney parenchyma\n"
                       "A. Hyperplasia\nB. Hypertrophy\nC. Atrophy\nD. Dysplasia")),
            ("gpt", ("Obstruction raises back-pressure in the tubules, which causes the parenchyma to waste away "
                     "over time. The answer is C. Atrophy.")))},  # no <think> block: kept whole, no reasoning field
        [(2, "missing field 'output'")]),
    "medreason": ("medreason.jsonl", {
        "id": "medreason-0",
        "conversations": conv(
            ("human", ("Chronic urethral obstruction due to benign prostatic hyperplasia can lead to the following "
                       "change in kidney parenchyma\nA. Hyperplasia\nB. Hypertrophy\nC. Atrophy\nD. Dysplasia")),
            ("gpt", "Atrophy. Explanation: Back-pressure from the obstruction causes atrophy of the kidney parenchyma.",
             ("Finding reasoning paths:\n1. Urethral obstruction -> back-pressure -> hydronephrosis -> atrophy.\n"
              "The parenchyma atrophies.")))},
        [(2, "missing field 'reasoning'")]),
    "medthoughts_8k": ("MedThoughts-8K.jsonl", {
        "id": "medthoughts_8k-medqa-us-train-4",
        "conversations": conv(
            ("human", "Which vitamin deficiency causes scurvy?\nA. Vitamin A\nB. Vitamin C\nC. Vitamin D\n"
                      "D. Vitamin K\nE. Vitamin B12\n" + MCQ),
            ("gpt", "B. Vitamin C", "Scurvy results from lack of ascorbic acid."))}, []),
    "mimic_cxr_single": ("mimic_cxr", {
        "id": "mimic_cxr_single-50000002", "image": "files/p10/p10000032/s50000002/d-b1.jpg",
        "conversations": conv(
            ("human", "<image>\nChest X-ray (AP).\nWrite the FINDINGS section of the radiology report."),
            ("gpt", "Lung volumes are low. Mild bibasilar atelectasis is new."))},
        [(1, "multi-image study (single-panel set takes one-image studies)"),
         (3, "report has no FINDINGS section"), (4, "study in split 'test'")]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_converter_on_published_schema(name):
    filename, expected_first, expected_skips = CASES[name]
    records, skipped = convert_file(name, FIX / filename)
    assert records[0] == expected_first
    if expected_skips is not None:
        assert skipped == expected_skips


def test_alpaca_input_is_appended_to_the_instruction():
    records, _ = convert_file("alpacare", FIX / "alpacare.jsonl")
    assert records[1] == {"id": "alpacare-1", "conversations": conv(
        ("human", ("Rewrite this instruction to be more patient-friendly.\n\nExhale deeply, engage mouthpiece "
                   "of inhaler, depress canister while inhaling.")),
        ("gpt", "Breathe out fully, seal your lips around the mouthpiece, then press and breathe in slowly."))}


def test_think_block_is_optional_only_where_the_field_map_says_so():
    from llava_medgpt.data.converters.common import SkipRow
    from llava_medgpt.data.converters.reasoning import (
        REASONMED,
        TraceFields,
        convert_trace,
    )

    row = {"instruction": "Q?", "input": "A. x\nB. y", "output": "<think>because</think>The answer is B. y"}
    assert convert_trace(REASONMED, row, 4) == [{"id": "reasonmed-4", "conversations": conv(
        ("human", "Q?\nA. x\nB. y"), ("gpt", "The answer is B. y", "because"))}]
    plain = dict(row, output="The answer is B. y")
    assert convert_trace(REASONMED, plain, 4)[0]["conversations"][1] == {"from": "gpt", "value": "The answer is B. y"}
    strict = TraceFields(prefix="x", question="instruction", answer="output")
    with pytest.raises(SkipRow, match="no <think> trace"):
        convert_trace(strict, plain, 4)


@pytest.mark.parametrize("change, reason", [
    ({"options": {"A": "x", "B": "y"}}, "option keys are not numbers"),
    ({"correct_option": True}, "correct_option True is not an option"),
    ({"correct_option": 0}, "correct_option 0 is not an option"),
])
def test_medexpqa_bad_rows(change, reason):
    from llava_medgpt.data.converters.common import SkipRow
    from llava_medgpt.data.converters.mcq_text import convert_medexpqa

    row = {"id": 1, "full_question": "Q?", "options": {"1": "x", "2": "y", "3": None}, "correct_option": 2}
    assert convert_medexpqa(dict(row, correct_option="2"), 0)[0]["conversations"][1]["value"] == "B. y"
    with pytest.raises(SkipRow) as info:
        convert_medexpqa(dict(row, **change), 0)
    assert info.value.reason == reason


def test_mimic_longitudinal_puts_prior_study_first():
    records, skipped = convert_file("mimic_cxr_longitudinal", FIX / "mimic_cxr")
    assert [r["id"] for r in records] == ["mimic_cxr_longitudinal-50000001", "mimic_cxr_longitudinal-50000002"]
    assert records[0]["image"] == ["files/p10/p10000032/s50000001/d-a1.jpg", "files/p10/p10000032/s50000001/d-a2.jpg"]
    assert records[0]["conversations"][0]["value"] == (
        "Current study (21800506; PA, LATERAL):\n<image>\n<image>\n"
        "Write the FINDINGS section of the radiology report.")
    assert records[1] == {
        "id": "mimic_cxr_longitudinal-50000002",
        "image": ["files/p10/p10000032/s50000001/d-a1.jpg", "files/p10/p10000032/s50000001/d-a2.jpg",
                  "files/p10/p10000032/s50000002/d-b1.jpg"],
        "conversations": conv(
            ("human", "Prior study (21800506; PA, LATERAL):\n<image>\n<image>\nCurrent study (21800626; AP):\n"
                      "<image>\nWrite the FINDINGS section of the radiology report for the current study, "
                      "comparing with the prior study where relevant."),
            ("gpt", "Lung volumes are low. Mild bibasilar atelectasis is new."))}
    assert skipped == [(3, "one image and no prior study (single-panel set)"), (4, "study in split 'test'")]


def test_mimic_reader_orders_studies_and_links_priors():
    rows = list(read_mimic_cxr_studies(FIX / "mimic_cxr"))
    assert [(r["subject_id"], r["study_id"], r["split"]) for r in rows] == [
        ("10000032", "50000001", "train"), ("10000032", "50000002", "train"),
        ("10000764", "50000003", "train"), ("10000898", "50000005", "test")]
    assert rows[0]["prior"] is None and rows[1]["prior"]["study_id"] == "50000001"
    assert rows[2]["prior"] is None  # a different subject's study is never a prior
    assert [i["view"] for i in rows[0]["images"]] == ["PA", "LATERAL"]


def test_report_sections():
    report = (FIX / "mimic_cxr/files/p10/p10000032/s50000001.txt").read_text()
    sections = parse_report_sections(report)
    assert sections["FINDINGS"] == ("There is no focal consolidation, pleural effusion or pneumothorax. "
                                    "Bilateral nodular opacities that most likely represent nipple shadows.")
    assert sections["IMPRESSION"] == "No acute cardiopulmonary process."
    assert sections["COMPARISON"] == "None."


def test_bad_rows_are_counted_with_row_and_reason(tmp_path, capsys):
    out = tmp_path / "medmcqa.jsonl"
    report = convert_source("medmcqa", FIX / "medmcqa_train.jsonl", out)
    assert (report.rows_read, report.records_written) == (4, 2)
    assert report.skipped[0] == (2, "cop -1 is not 0-3")
    assert report.skipped[1][0] == 3 and report.skipped[1][1].startswith("invalid JSON")
    assert len(out.read_text().splitlines()) == 2
    log = (tmp_path / "medmcqa.jsonl.skipped.tsv").read_text().splitlines()
    assert log[0] == "row\treason\tdetail" and log[1] == "2\tcop -1 is not 0-3\t" and log[2].startswith("3\tinvalid JSON")
    assert convert_main(["medmcqa", "--input", str(FIX / "medmcqa_train.jsonl"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 rows read, 2 records written, 2 rows skipped" in printed
    assert "cop -1 is not 0-3  (rows 2)" in printed


def test_embedded_hub_images_are_written_below_image_root(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "blue").save(buffer, format="PNG")
    table = pa.table({"image": [{"bytes": buffer.getvalue(), "path": None}],
                      "question": ["is there a fracture?"], "answer": ["no"]})
    pq.write_table(table, tmp_path / "vqa_rad_train.parquet")  # flaviagiammarino/vqa-rad layout
    report = convert_source("vqa_rad", tmp_path / "vqa_rad_train.parquet", tmp_path / "out.jsonl",
                            image_root=tmp_path / "images")
    assert report.records_written == 1 and report.skipped == []
    record = json.loads((tmp_path / "out.jsonl").read_text())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    stored = f"vqa_rad/{digest[:2]}/{digest[:40]}.png"  # named by content: shards of separate runs never collide
    assert record == {"id": "vqa_rad-0", "image": stored,
                      "conversations": conv(("human", "<image>\nis there a fracture?"), ("gpt", "no"))}
    assert (tmp_path / "images" / stored).read_bytes() == buffer.getvalue()


@pytest.mark.parametrize("text, expected", [
    ("<think>\nstep 1\n</think>\n\nanswer", ("step 1", "answer")),
    ("step 1</think>answer", ("step 1", "answer")),
    ("plain answer", (None, "plain answer")),
    ("<think></think>answer", (None, "answer")),
    ("<think>t</think><answer>B. x</answer>", ("t", "B. x")),
])
def test_split_think(text, expected):
    assert split_think(text) == expected


def test_mcq_stem_inverts_the_prompt_format():
    question = "Which nerve?\nConsider the anatomy."
    prompt = format_mcq_prompt(question, {"A": "Axillary", "B": "Radial"})
    assert prompt == f"Which nerve?\nConsider the anatomy.\nA. Axillary\nB. Radial\n{MCQ}"
    assert mcq_question_stem(prompt) == question
    assert mcq_question_stem("Not an MCQ\nA. thing") == "Not an MCQ\nA. thing"


def test_registry_covers_every_family():
    assert len(CONVERTERS) == 31
    assert {c.family for c in CONVERTERS.values()} == {"caption", "report", "vqa", "mcq", "chat", "reasoning"}


@pytest.mark.parametrize("record, problem", [
    ({"id": "a", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "x"}]},
     "1 '<image>' markers but 0 images"),
    ({"id": "a", "image": "x.jpg", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "x"}]},
     "0 '<image>' markers but 1 images"),
    ({"id": "a", "conversations": [{"from": "human", "value": "q", "reasoning": "r"}, {"from": "gpt", "value": "x"}]},
     "'reasoning' is allowed on assistant"),
    ({"id": "a", "image": "/etc/x.jpg", "conversations": [{"from": "human", "value": "<image>q"},
                                                           {"from": "gpt", "value": "x"}]}, "must be relative"),
    ({"id": "a", "image": ["../x.jpg"], "conversations": [{"from": "human", "value": "<image>q"},
                                                           {"from": "gpt", "value": "x"}]}, "must be relative"),
    ({"id": "a", "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "q"}]},
     "last turn must be an assistant"),
    ({"id": "a", "conversations": [{"from": "user", "value": "q"}, {"from": "gpt", "value": "x"}]}, "has role 'user'"),
    ({"id": "", "conversations": []}, "'id' must be a non-empty string"),
    ({"id": "a", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "x", "score": 1}]},
     "unknown keys ['score']"),
])
def test_validate_record_rejects(record, problem):
    with pytest.raises(RecordError) as info:
        validate_record(record)
    assert problem in str(info.value) and repr(record["id"]) in str(info.value)


def test_record_view_round_trips():
    raw = {"id": "r1", "image": ["a.jpg", "b.jpg"],
           "conversations": conv(("human", "<image>\n<image>\nq"), ("gpt", "x", "because"))}
    record = Record.from_dict(raw)
    assert record.images == ("a.jpg", "b.jpg") and record.turns[1].reasoning == "because"
    assert record.to_dict() == raw


# ------------------------------------------------------------------------------------------ CLI failures


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_wrong_source_for_a_file_fails_naming_columns_found_and_expected(tmp_path, capsys):
    out = tmp_path / "out" / "medqa.jsonl"
    (tmp_path / "out").mkdir()
    # PMC-OA captions given to the MedQA converter.
    assert convert_main(["medqa", "--input", str(FIX / "pmc_oa.jsonl"), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    rows = len((FIX / "pmc_oa.jsonl").read_text().splitlines())
    assert f"error: medqa: nothing converted from {FIX / 'pmc_oa.jsonl'}: all {rows} rows skipped " \
           f"({rows} x missing field 'question')" in err
    assert "  columns found (first 100 rows): image, caption\n" in err
    assert "  medqa expects: question, options, answer_idx\n" in err
    assert "  sources whose columns these rows have: pmc_oa, rocov2, medtrinity\n" in err
    assert f"nothing written to {out}" in err
    assert _files(tmp_path / "out") == []  # no empty manifest, no skipped-row log, no temporary file
    # A source with several layouts lists each.
    with pytest.raises(ConvertError, match=r"rocov2 expects: \(ID, Caption\) or \(image, caption\)"):
        convert_source("rocov2", FIX / "medqa_train.jsonl", tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists()


def test_missing_or_empty_input_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert convert_main(["medqa", "--input", str(tmp_path / "nope.jsonl"), "--output", str(out)]) == 2
    assert f"--input {tmp_path / 'nope.jsonl'} does not exist" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("\n")
    assert convert_main(["medqa", "--input", str(tmp_path / "empty.jsonl"), "--output", str(out)]) == 1
    assert "holds no rows" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert convert_main(["medqa", "--input", str(tmp_path / "bad.json"), "--output", str(out)]) == 2
    assert "bad.json: not a JSON file" in capsys.readouterr().err
    assert _files(tmp_path) == ["bad.json", "empty.jsonl"]


def test_output_is_replaced_atomically_and_kept_on_failure(tmp_path):
    out = tmp_path / "medmcqa.jsonl"
    out.write_text("previous run\n")
    convert_source("medmcqa", FIX / "medmcqa_train.jsonl", out)
    first = out.read_text()
    assert first != "previous run\n" and len(first.splitlines()) == 2
    with pytest.raises(ConvertError):
        convert_source("medmcqa", FIX / "pmc_oa.jsonl", out)  # wrong source: nothing converts
    assert out.read_text() == first  # the last good manifest is untouched
    assert _files(tmp_path) == ["medmcqa.jsonl", "medmcqa.jsonl.skipped.tsv"]
