"""The paper's example counts (Table 3) from files laid out like the releases, in the paper's setting and in
the release's full setting: SLAKE 836 of 2,094, PubMedQA 500 of 1,000, Medbullets 298 of 308, MedMCQA dev
4,183 from either layout."""

import csv
import json

import pandas as pd
import pytest

from llava_medgpt.eval.tasks import MissingData, load_config, load_task

# SLAKE test split by language and answer type (the outside check's count: 416 + 420 closed = 836;
# 1,061 English questions in all).
SLAKE_TEST = {("en", "CLOSED"): 416, ("en", "OPEN"): 645, ("zh", "CLOSED"): 420, ("zh", "OPEN"): 613}


def _slake_release(root):
    (root / "imgs" / "xmlab0").mkdir(parents=True)
    rows, qid = [], 0
    for (language, answer_type), count in SLAKE_TEST.items():
        for n in range(count):
            closed_answers = {"en": ["Yes", "No", "Liver"], "zh": ["是", "否", "肝脏"]}[language]
            answer = closed_answers[n % 3] if answer_type == "CLOSED" else f"organ {n}"
            rows.append({"img_id": 0, "img_name": "xmlab0/source.jpg", "question": f"q{qid}?", "answer": answer,
                         "q_lang": language, "answer_type": answer_type, "content_type": "Organ",
                         "modality": "CT", "location": "Abdomen", "base_type": "vqa", "triple": [], "qid": qid})
            qid += 1
    (root / "test.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")


def test_slake_paper_setting_is_closed_questions_of_both_languages(tmp_path):
    _slake_release(tmp_path)
    paper = load_task("slake", path=tmp_path)
    assert paper.config.setting == "paper" and len(paper.items) == 836
    assert {item.metadata["language"] for item in paper.items} == {"en", "zh"}
    assert {item.metadata["answer_type"] for item in paper.items} == {"CLOSED"}
    # Closed yes/no become two-option MCQs in their language; "Liver"-style closed answers stay open.
    assert sum(item.kind == "mcq" for item in paper.items) == 2 * (139 + 140)
    assert len(load_task("slake", path=tmp_path, setting="release").items) == 2094
    assert len(load_task("slake", path=tmp_path, setting="english").items) == 1061


def _pubmedqa_release(root, with_test_ids=True):
    root.mkdir(parents=True, exist_ok=True)
    pqal = {str(10_000_000 + n): {"QUESTION": f"Question {n}?", "CONTEXTS": [f"Background {n}.", f"Results {n}."],
                                  "LABELS": ["BACKGROUND", "RESULTS"], "MESHES": [], "YEAR": "2012",
                                  "final_decision": ("yes", "no", "maybe")[n % 3], "LONG_ANSWER": "."}
            for n in range(1000)}
    (root / "ori_pqal.json").write_text(json.dumps(pqal), encoding="utf-8")
    if with_test_ids:
        test = {pmid: row["final_decision"] for pmid, row in list(pqal.items())[::2]}
        (root / "test_ground_truth.json").write_text(json.dumps(test), encoding="utf-8")


def test_pubmedqa_paper_setting_is_the_500_test_questions(tmp_path):
    _pubmedqa_release(tmp_path / "full")
    paper = load_task("pubmedqa", path=tmp_path / "full")
    assert len(paper.items) == 500 and all(int(item.id) % 2 == 0 for item in paper.items)
    assert paper.items[0].context == "BACKGROUND: Background 0.\nRESULTS: Results 0."
    assert len(load_task("pubmedqa", path=tmp_path / "full", setting="release").items) == 1000


def test_pubmedqa_without_test_ids_is_refused_unless_the_release_setting_is_asked(tmp_path):
    _pubmedqa_release(tmp_path / "no_ids", with_test_ids=False)
    with pytest.raises(MissingData, match="test_ground_truth.json not found.*--setting pubmedqa=release"):
        load_task("pubmedqa", path=tmp_path / "no_ids")
    assert len(load_task("pubmedqa", path=tmp_path / "no_ids", setting="release").items) == 1000
    # The hub copy has no test split either: refused before any download is attempted.
    with pytest.raises(MissingData, match="has no test split"):
        load_task("pubmedqa", data_dir=tmp_path / "absent")


def test_medbullets_paper_setting_counts_each_question_once(tmp_path):
    header = ["link", "question", "opa", "opb", "opc", "opd", "ope", "answer_idx", "answer", "explanation"]
    rows = [[f"https://step2.medbullets.com/testview?qid={n}", f"Case {n}: next step?", "a", "b", "c", "d", "e",
             "ABCDE"[n % 5], "abcde"[n % 5], "Because."] for n in range(298)]
    for n in range(0, 100, 10):  # ten questions repeated verbatim under a short link
        rows.append([f"https://bit.ly/{n}", *rows[n][1:]])
    (tmp_path / "medbullets_op5.csv").write_text("", encoding="utf-8")
    with (tmp_path / "medbullets_op5.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    paper = load_task("medbullets", path=tmp_path)
    assert len(paper.items) == 298 and [item.id for item in paper.items] == [str(n) for n in range(298)]
    assert len(load_task("medbullets", path=tmp_path, setting="release").items) == 308


@pytest.mark.parametrize("layout", ["official", "hub"])
def test_medmcqa_dev_count_and_letters_from_either_layout(tmp_path, layout):
    rows = [{"id": f"q{n}", "question": f"Question {n}?", "opa": "w", "opb": "x", "opc": "y", "opd": "z",
             "cop": n % 4 + (1 if layout == "official" else 0), "choice_type": "single", "exp": "",
             "subject_name": "Anatomy", "topic_name": "t"} for n in range(4183)]
    if layout == "official":  # JSON lines under a .json name, cop 1-4
        (tmp_path / "dev.json").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:  # the hub snapshot: data/validation-*.parquet, cop 0-3
        (tmp_path / "data").mkdir()
        pd.DataFrame(rows).to_parquet(tmp_path / "data" / "validation-00000-of-00001.parquet", index=False)
    items = load_task("medmcqa", path=tmp_path).items
    assert len(items) == 4183
    assert [item.answer for item in items[:5]] == ["A", "B", "C", "D", "A"]


def test_every_task_defines_the_paper_setting():
    from llava_medgpt.eval.tasks import task_names

    for name in task_names():
        config = load_config(name)
        assert config.setting == "paper"
        assert not config.settings or "paper" in config.settings
    with pytest.raises(ValueError, match="unknown setting 'all'; defined: english, paper, release"):
        load_config("slake").with_setting("all")


def test_setting_flags_choose_per_task_selections():
    from llava_medgpt.eval.runner import parse_settings
    from llava_medgpt.eval.tasks import TASK_DIR

    names = ["slake", "medqa", "pubmedqa"]
    assert parse_settings([], names, TASK_DIR) == dict.fromkeys(names, "paper")
    assert parse_settings(["release"], names, TASK_DIR) == {"slake": "release", "medqa": "paper",
                                                            "pubmedqa": "release"}
    assert parse_settings(["release", "slake=english"], names, TASK_DIR)["slake"] == "english"
    with pytest.raises(SystemExit, match="no selected task defines a setting 'everything'"):
        parse_settings(["everything"], names, TASK_DIR)
    with pytest.raises(SystemExit, match="task medqa defines paper"):
        parse_settings(["medqa=release"], names, TASK_DIR)
