"""Strict option extraction and open-answer matching on realistic raw outputs."""

import pytest

from llava_medgpt.eval.harmony import parse_harmony
from llava_medgpt.eval.scoring import extract_choice, match_open_answer, normalize_text

OPTIONS = {"A": "Tuberculosis", "B": "Sarcoidosis", "C": "Community-acquired pneumonia", "D": "Lung cancer"}
HARMONY_C = (
    "<|channel|>analysis<|message|>The answer is B? No: lobar consolidation, fever. So C.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>C<|return|>"
)

CASES = [
    # (raw output, expected letter or None)
    ("C", "C"),
    (" C\n", "C"),
    ("C.", "C"),
    ("(C)", "C"),
    ("(C).", "C"),
    ("[C]", "C"),
    ("c", "C"),
    ("c.", "C"),
    ("**C**", "C"),
    ("C!", "C"),
    ("The answer is (C)", "C"),
    ("The answer is C.", "C"),
    ("the answer is (c).", "C"),
    ("Answer: C", "C"),
    ("Final answer: option C", "C"),
    ("I choose option C because of the lobar consolidation.", "C"),
    ("C. Community-acquired pneumonia", "C"),
    ("C) community acquired pneumonia.", "C"),
    ("Community-acquired pneumonia", "C"),  # option text instead of the letter
    ("community acquired pneumonia.", "C"),
    ("The answer is Sarcoidosis.", "B"),
    ("A or C", None),  # two letters
    ("(A) and (C)", None),
    ("The answer is A, or possibly C", None),
    ("Answer: C\nAnswer: D", None),
    ("C. Tuberculosis", None),  # letter and option text disagree
    ("", None),
    ("   ", None),
    ("The answer is F", None),  # not a valid option
    ("F", None),
    ("I am not sure.", None),
    ("Pneumonia", None),  # partial option text is not an option
    ("The answer is a bacterial infection", None),  # article, not option A
    (HARMONY_C, "C"),
    # The analysis channel is never scored: a cut-off harmony output with no final channel is wrong.
    ("<|channel|>analysis<|message|>The answer is C.<|end|>", None),
    ("<|channel|>analysis<|message|>The answer is C", None),
    (
        "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>"
        "The answer is (D).<|return|>",
        "D",
    ),
]


@pytest.mark.parametrize("output,expected", CASES)
def test_extract_choice_table(output, expected):
    assert extract_choice(output, OPTIONS) == expected


def test_letters_inside_option_text_are_not_second_answers():
    options = {"A": "Vitamin A excess", "B": "Vitamin D deficiency", "C": "Hepatitis C", "D": "Iron deficiency"}
    assert extract_choice("The answer is B. Vitamin D deficiency", options) == "B"
    assert extract_choice("C. Hepatitis C", options) == "C"
    assert extract_choice("The answer is B, not D.", options) is None


def test_only_keys_of_options_are_valid():
    two = {"A": "Yes", "B": "No"}
    assert extract_choice("B", two) == "B"
    assert extract_choice("C", two) is None
    assert extract_choice("no", two) == "B"
    ten = {chr(ord("A") + i): f"choice {i}" for i in range(10)}
    assert extract_choice("(J)", ten) == "J"


def test_parse_harmony_channels():
    parsed = parse_harmony(HARMONY_C)
    assert parsed["analysis"] == "The answer is B? No: lobar consolidation, fever. So C."
    assert parsed["final"] == "C"
    cut_off = parse_harmony("<|channel|>analysis<|message|>half a thought")
    assert cut_off == {"analysis": "half a thought", "final": None}
    assert parse_harmony("plain text") == {"analysis": None, "final": None}


@pytest.mark.parametrize(
    "output,reference,expected",
    [
        ("Yes", "yes", True),
        ("yes.", "Yes", True),
        ("The answer is the liver.", "Liver", True),
        ("Left Lung", "left lung", True),
        ("left lung and heart", "left lung", False),
        ("", "liver", False),
        ("<|channel|>final<|message|>Brain<|return|>", "brain", True),
        ("<|channel|>analysis<|message|>brain<|end|>", "brain", False),
    ],
)
def test_match_open_answer(output, reference, expected):
    assert match_open_answer(output, reference) is expected


def test_normalize_text():
    assert normalize_text("  The Community-acquired  Pneumonia! ") == "community acquired pneumonia"
