"""Benchmark fixtures in their official schemas -> EvalItems -> chat messages, and the scoring of each."""

from pathlib import Path

import pytest

from llava_medgpt.benchmarks import ANSWER_WITH_LETTER
from llava_medgpt.eval.prompts import (
    OPEN_INSTRUCTION,
    build_images,
    build_messages,
)
from llava_medgpt.eval.results import score_task
from llava_medgpt.eval.tasks import iter_eval_items, load_config, load_task, task_names
from llava_medgpt.eval.tasks.mimic import report_section
from llava_medgpt.eval.tasks.trials import (
    ELIGIBILITY_OPTIONS,
    clean_criteria,
    number_sentences,
)

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
MIMIC = FIXTURES / "mimic-cxr-jpg"

# task -> (items, {skip reason: count}, images per item)
EXPECTED = {
    "medxpertqa_mm": (3, {"gold answer 'Z' is not one of the options ['A', 'B']": 1}, [1, 2, 1]),
    "medxpertqa_text": (3, {}, [0, 0, 0]),
    "slake": (5, {}, [1] * 5),  # paper setting: closed questions of both languages
    "medframeqa": (3, {}, [2, 3, 4]),
    "mmmu_med": (5, {}, [1] * 5),
    "mmmu_pro_med_4": (2, {}, [1, 1]),
    "mmmu_pro_med_10": (2, {}, [1, 1]),
    "medqa": (3, {}, [0] * 3),
    "medmcqa": (3, {"cop 7 is not 1-4": 1}, [0] * 3),
    "pubmedqa": (3, {}, [0] * 3),
    "mmlu_med": (7, {}, [0] * 7),
    "medbullets": (3, {}, [0] * 3),
    "mimic_cxr_findings": (2, {"report has no FINDINGS section": 1}, [4, 1]),
    "impression_0shot": (3, {}, [4, 1, 2]),
    "impression_1shot": (3, {}, [4, 1, 2]),
    "patient_trial_0shot": (6, {"sigir2016-20141-NCT00009999: trial document NCT00009999.xml not found": 1}, [0] * 6),
    "patient_trial_1shot": (6, {"sigir2016-20141-NCT00009999: trial document NCT00009999.xml not found": 1}, [0] * 6),
    "omnimedvqa": (4, {"gt_answer 'Cataract' matches 0 options, expected exactly one": 1}, [1] * 4),
}


def load(name):
    path = MIMIC if load_config(name).loader == "mimic_cxr" else None
    return load_task(name, FIXTURES, path)


def test_every_task_definition_has_a_fixture():
    assert sorted(EXPECTED) == task_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_loads_renders_and_scores(name):
    task = load(name)
    count, skipped, images = EXPECTED[name]
    assert len(task.items) == count
    assert dict(task.skipped) == skipped
    assert [len(item.images) for item in task.items] == images
    for item in task.items:
        messages = build_messages(item, task.config)
        chat_images = build_images(item)
        markers = sum(m["content"].count("<image>") for m in messages)
        assert markers == len(chat_images)
        assert all(image.mode == "RGB" for image in chat_images)
        if item.kind == "mcq":
            assert ANSWER_WITH_LETTER in messages[-1]["content"]
            for letter, text in item.options.items():
                assert f"{letter}. {text}" in messages[-1]["content"]
    # Oracle outputs score 100 %, outputs that name no option score 0 %.
    gold = {item.id: item.answer for item in task.items}
    if task.config.scoring == "accuracy":
        assert score_task(task.config, task.items, gold)["accuracy"] == 100.0
        silent = score_task(task.config, task.items, {i: "I cannot tell." for i in gold})
        assert silent["accuracy"] == 0.0
        assert silent["no_valid_option"] == sum(item.kind == "mcq" for item in task.items)
    else:
        scores = score_task(task.config, task.items, gold, clinical=False)
        assert scores["bleu4"] == pytest.approx(1.0) or min(len(a.split()) for a in gold.values()) < 4
        assert scores["rouge_l"] == pytest.approx(1.0)


def test_medxpertqa_conversion():
    item = load("medxpertqa_mm").items[1]
    assert item.id == "MM-1" and item.answer == "B"
    assert item.question == "A 41-year-old presents with chest pain. What is shown?"  # "Answer Choices" stripped
    assert list(item.options) == list("ABCDE")
    assert item.image_paths == ["MM-1-a.jpeg", "MM-1-b.jpeg"]
    text = load("medxpertqa_text").items[1]
    assert list(text.options) == list("ABCDEFGHIJ") and text.answer == "D"


def test_slake_closed_yes_no_is_mcq_and_the_rest_open():
    items = {item.id: item for item in load("slake").items}
    assert sorted(items) == ["1", "3", "4", "6", "7"]  # paper: closed questions, English and Chinese
    assert items["1"].kind == "mcq" and items["1"].options == {"A": "Yes", "B": "No"} and items["1"].answer == "B"
    assert items["3"].kind == "open" and items["3"].answer == "Liver"  # closed but not yes/no
    assert items["4"].options == {"A": "是", "B": "否"} and items["4"].answer == "B"
    assert items["6"].answer == "A" and items["7"].answer == "A"
    english = {item.id: item for item in load_task("slake", FIXTURES, setting="english").items}
    assert sorted(english) == ["1", "2", "3", "7"]
    assert english["2"].kind == "open" and english["2"].answer == "Lung"
    content = build_messages(english["2"], load_config("slake"))[-1]["content"]
    assert content == "<image>\nWhich organ is abnormal?\n\n" + OPEN_INSTRUCTION
    assert len(load_task("slake", FIXTURES, setting="release").items) == 7


def test_text_benchmarks_map_answers_to_letters():
    medmcqa = load("medmcqa").items
    assert [i.answer for i in medmcqa] == ["A", "B", "C"]  # cop 1..3 of the official (1-based) release
    pubmedqa = load("pubmedqa").items
    assert [i.id for i in pubmedqa] == ["1000", "1001", "1002"]  # only the test_ground_truth ids
    assert [i.options[i.answer] for i in pubmedqa] == ["yes", "no", "maybe"]
    assert pubmedqa[0].context == "BACKGROUND: Background 0.\nRESULTS: Results 0."
    mmlu = load("mmlu_med").items
    assert [i.answer for i in mmlu] == list("ABCDABC")
    assert [i.answer for i in load("medbullets").items] == ["B", "C", "D"]  # the repeated question once
    assert [i.answer for i in load("medqa").items] == ["A", "B", "C"]


def test_mmmu_open_questions_and_pro_subject_filter():
    mmmu = {item.id: item for item in load("mmmu_med").items}
    assert mmmu["validation_Pharmacy_2"].kind == "open" and mmmu["validation_Pharmacy_2"].answer == "12"
    assert mmmu["dev_Clinical_Medicine_1"].options["B"] == "Pseudogout"
    pro = load("mmmu_pro_med_10").items
    assert [i.metadata["subject"] for i in pro] == ["Clinical Medicine", "Pharmacy"]  # History dropped
    assert [i.answer for i in pro] == ["G", "H"]


def test_mimic_multiview_longitudinal_items():
    items = {item.id: item for item in load("mimic_cxr_findings").items}
    study = items["50000002"]
    assert study.answer == "Stable cardiomegaly. No effusion."
    assert study.metadata["views"] == ["PA", "LATERAL"] and study.metadata["prior_views"] == ["PA", "LATERAL"]
    assert study.image_paths == [
        "files/p10/p10000001/s50000002/d50000002-0.jpg", "files/p10/p10000001/s50000002/d50000002-1.jpg",
        "files/p10/p10000001/s50000001/d50000001-0.jpg", "files/p10/p10000001/s50000001/d50000001-1.jpg"]
    assert items["50000003"].metadata["prior_views"] == []
    report = "EXAMINATION: CHEST\n FINDINGS:\n Lungs clear.\n  No effusion.\n IMPRESSION:\n Normal.\n"
    assert report_section(report, "FINDINGS") == "Lungs clear. No effusion."
    assert report_section(report, "IMPRESSION") == "Normal."
    assert report_section(report, "COMPARISON") is None


def test_one_shot_demonstrations_are_seeded_and_from_another_patient():
    first, second = load("impression_1shot").items, load("impression_1shot").items
    assert [i.demos[0].id for i in first] == [i.demos[0].id for i in second]
    for item in first:
        (demo,) = item.demos
        assert demo.id != item.id and demo.metadata["group"] != item.metadata["group"]
        messages = build_messages(item, load_config("impression_1shot"))
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert messages[1]["content"] == demo.answer
        assert len(build_images(item)) == len(demo.images) + len(item.images)
    for item in load("patient_trial_1shot").items:
        assert item.demos[0].metadata["group"] != item.metadata["group"]
        assert item.demos[0].options[item.demos[0].answer] in ELIGIBILITY_OPTIONS


def test_patient_trial_labels_options_and_rendering():
    items = {item.id: item for item in load("patient_trial_0shot").items}
    grades = {"sigir2016-20141-NCT00000101": "eligible", "sigir2016-20141-NCT00000102": "not eligible",
              "trec2021-1-NCT00000102": "partially eligible", "trec2021-1-NCT00000103": "eligible"}
    for item_id, label in grades.items():
        item = items[item_id]
        assert item.options[item.answer] == label
        assert sorted(item.options.values()) == sorted(ELIGIBILITY_OPTIONS)
    orders = {tuple(item.options.values()) for item in items.values()}
    assert len(orders) > 1  # shuffled per instance
    again = {item.id: item.options for item in load("patient_trial_0shot").items}
    assert again == {k: v.options for k, v in items.items()}  # with a fixed seed
    trial = items["trec2021-1-NCT00000103"].context
    assert trial.splitlines()[:4] == ["Title: Drug X for COPD", "Target diseases: COPD", "Interventions: Drug X",
                                      "Summary: This study tests a drug for COPD in adults."]
    assert "Inclusion criteria:\n0. Adults aged 18 to 75 years\n1. Diagnosis of COPD\nExclusion criteria:" in trial
    assert "OK" not in trial  # trivial fragment dropped
    assert number_sentences("A man, 45. He coughs! Why? Fine") == "0. A man, 45.\n1. He coughs!\n2. Why?\n3. Fine"
    assert clean_criteria("Inclusion Criteria:\n  1. Age > 18 years\n  - x\nExclusion Criteria:\n  * Pregnant women") \
        == (["Age > 18 years"], ["Pregnant women"])


def test_iter_eval_items_for_decontamination():
    items = list(iter_eval_items(["slake", "medqa", "mimic_cxr_findings"], FIXTURES))
    # Each task's widest setting: every SLAKE test question, open and closed, both languages.
    assert [(i.task, i.id) for i in items] == [*[("slake", str(q)) for q in range(1, 8)],
                                               ("medqa", "0"), ("medqa", "1"), ("medqa", "2"),
                                               ("mimic_cxr_findings", "50000002"), ("mimic_cxr_findings", "50000003")]
    assert items[0].question == "Is the lung healthy?" and items[0].image_paths == ["xmlab1/source.jpg"]


def test_image_paths_may_not_escape_their_root(tmp_path):
    from llava_medgpt.eval.tasks.base import ImageRef

    (tmp_path / "root").mkdir()
    (tmp_path / "secret.jpg").write_bytes((FIXTURES / "Slake1.0/imgs/xmlab1/source.jpg").read_bytes())
    with pytest.raises(Exception, match="secret.jpg"):
        ImageRef(path="../secret.jpg", root=str(tmp_path / "root")).load()


def test_missing_local_data_without_hub_is_a_clear_error(tmp_path):
    from llava_medgpt.eval.tasks import MissingData

    with pytest.raises(MissingData, match="user-supplied"):
        load_task("patient_trial_0shot", tmp_path)


def test_release_schemas_convert_exactly():
    """Fields as the public releases name them (see the "checked" column of docs/evaluation.md)."""
    bullets = load("medbullets").items  # link first, answer text filled, five empty trailing fields per row
    assert bullets[0].options == {"A": "CT", "B": "MRI", "C": "Biopsy", "D": "Observe", "E": "Surgery"}
    assert (bullets[0].id, bullets[0].answer, bullets[0].question) == ("0", "B", "A 30-year-old woman ... next step?")
    frames = load("medframeqa").items  # options is a list; a question may have six of them
    assert list(frames[2].options) == list("ABCDEF") and frames[2].answer == "F"
    assert frames[0].metadata == {"system": "Nervous", "organ": "Brain", "modality": "MRI"}
    pro = load("mmmu_pro_med_4").items  # no question_type / subfield columns in MMMU-Pro standard
    assert [(i.kind, list(i.options)) for i in pro] == [("mcq", list("ABCD"))] * 2


def test_mmmu_pro_subject_filter_accepts_either_spelling():
    from llava_medgpt.eval.tasks.vqa import mmmu_subject_filter

    config = load_config("mmmu_pro_med_10")
    assert mmmu_subject_filter({"subject": "Clinical_Medicine"}, config)
    assert mmmu_subject_filter({"subject": "Diagnostics and Laboratory Medicine"}, config)
    assert not mmmu_subject_filter({"subject": "History"}, config)


def test_mimic_prior_study_orders_numeric_study_times(tmp_path):
    """StudyTime has no leading zero: 08:48 ("84801.265") is earlier than 21:30 on the same day."""
    import pandas as pd

    from llava_medgpt.eval.tasks.mimic import mimic_records

    studies = [("s-morning", "21000101", 84801.265, "train"), ("s-night", "21000101", 213014.531, "test"),
               ("s-before", "20991231", 235959.0, "train")]
    pd.DataFrame([{"dicom_id": f"d-{s}", "study_id": s, "subject_id": "10000001", "split": split}
                  for s, _, _, split in studies]).to_csv(tmp_path / "mimic-cxr-2.0.0-split.csv", index=False)
    pd.DataFrame([{"dicom_id": f"d-{s}", "subject_id": "10000001", "study_id": s, "ViewPosition": "PA",
                   "StudyDate": date, "StudyTime": time} for s, date, time, _ in studies]).to_csv(
        tmp_path / "mimic-cxr-2.0.0-metadata.csv", index=False)
    (record,) = mimic_records(load_config("mimic_cxr_findings"), tmp_path, "test")
    assert (record["study_id"], record["prior_study_id"]) == ("s-night", "s-morning")


def test_trial_topic_and_qrels_formats(tmp_path):
    from llava_medgpt.eval.tasks.trials import parse_qrels, parse_topics, trial_records

    sigir = ("<Data>\n<TOP>\n<NUM>201410</NUM>\n<TITLE>A 31-year-old woman.\n</TITLE>\n<AGE>31</AGE>\n"
             "<GENDER>F</GENDER>\n</TOP>\n</Data>\n")
    assert parse_topics(sigir) == {"201410": "A 31-year-old woman."}
    trec = '<topics task="2022 TREC Clinical Trials">\n<topic number="7">\nHb &lt; 8 & tired.\n</topic>\n</topics>'
    assert parse_topics(trec) == {"7": "Hb < 8 & tired."}
    assert parse_qrels("201410\t0\tNCT00000101\t2\n7 0 NCT00000102 1\n") == [
        ("201410", "NCT00000101", 2), ("7", "NCT00000102", 1)]
    records = trial_records(load_config("patient_trial_0shot"), FIXTURES / "patient_trial")
    notes = {(r["collection"], r["topic"]): r["note"] for r in records}
    assert notes["trec2021", "1"] == "Patient is a 45-year-old woman with gout & hypertension. She takes allopurinol."
    assert notes["sigir2016", "20141"] == "A 58-year-old man with asthma. He wheezes at night. No other history."
    # Two topics files giving the same topic different notes (SIGIR description + summary) is an error, not a pick.
    folder = tmp_path / "sigir2016"
    folder.mkdir()
    (folder / "topics-2014_2015-description.topics").write_text(sigir, encoding="utf-8")
    (folder / "topics-2014_2015-summary.topics").write_text(sigir.replace("A 31-year-old woman.", "Woman, 31."),
                                                            encoding="utf-8")
    (folder / "qrels-clinical_trials.txt").write_text("201410\t0\tNCT00000101\t2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="topic 201410 differs between .*description.topics and .*summary.topics"):
        trial_records(load_config("patient_trial_0shot"), tmp_path)
