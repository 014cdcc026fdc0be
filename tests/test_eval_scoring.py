"""Strict option extraction and open-answer matching on realistic raw outputs."""

import pytest

from llava_medgpt.eval.harmony import parse_harmony
from llava_medgpt.eval.scoring import extract_choice, match_open_answer, normalize_text, parse_choice

OPTIONS = {"A": "Tuberculosis", "B": "Sarcoidosis", "C": "Community-acquired pneumonia", "D": "Lung cancer"}
HARMONY_C = (
    "<|channel|>analysis<|message|>The answer is B? No: lobar consolidation, fever. So C.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>C<|return|>"
)

def harmony(final: str | None, analysis: str = "Lobar consolidation and fever suggest pneumonia, not A or B.") -> str:
    text = f"<|channel|>analysis<|message|>{analysis}<|end|>"
    if final is not None:
        text += f"<|start|>assistant<|channel|>final<|message|>{final}<|return|>"
    return text


# (raw output, expected letter or None, the rule that decides, why) -- options are OPTIONS (A-D) above.
CASES = [
    # bare letters
    ("C", "C", "bare_letter", "the whole answer is one letter"),
    (" C\n", "C", "bare_letter", "surrounding whitespace is not part of the answer"),
    ("C.", "C", "bare_letter", "trailing full stop"),
    ("(C)", "C", "bare_letter", "bracketed letter"),
    ("(C).", "C", "bare_letter", "bracketed letter and full stop"),
    ("[C]", "C", "bare_letter", "square brackets"),
    ("c", "C", "bare_letter", "a lone lower-case letter cannot be the article"),
    ("c.", "C", "bare_letter", "lower-case letter with full stop"),
    ("**C**", "C", "bare_letter", "markdown emphasis is stripped"),
    ("C!", "C", "bare_letter", "trailing exclamation mark"),
    ("F", None, "invalid_letter", "F is not one of A-D"),
    ("", None, "empty", "empty output"),
    ("   ", None, "empty", "whitespace only"),
    # boxed answers (reasoning models)
    (r"\boxed{C}", "C", "boxed", "LaTeX box around the letter"),
    (r"The final answer is $\boxed{C}$.", "C", "boxed", "box inside a sentence, $ stripped"),
    (r"So \boxed{(C)}", "C", "boxed", "bracketed letter in the box"),
    (r"\boxed{\text{C}}", "C", "boxed", r"\text{} inside the box"),
    (r"\boxed{C. Community-acquired pneumonia}", "C", "boxed", "letter and its own option text"),
    (r"\boxed{A} ... on reflection \boxed{C}", None, "conflict", "two boxes naming different letters"),
    (r"\boxed{F}", None, "invalid_letter", "boxed letter that is not an option"),
    # explicit statements
    ("The answer is (C)", "C", "statement", "answer statement with a bracketed letter"),
    ("The answer is C.", "C", "statement", "answer statement"),
    ("The answer is c.", "C", "statement", "lower-case letter followed by punctuation"),
    ("the answer is (c).", "C", "statement", "lower-case bracketed letter"),
    ("Answer: C", "C", "statement", "'Answer:' form"),
    ("**Answer:** C", "C", "statement", "markdown-emphasised label"),
    ("Final answer: option C", "C", "statement", "'final answer: option C'"),
    ("The correct option is C.", "C", "statement", "'the correct option is C'"),
    ("C is the answer.", "C", "statement", "letter first: 'C is the answer'"),
    ("C is the correct answer because the fever is acute.", "C", "statement", "letter-first statement, then why"),
    ("(C) is correct.", "C", "statement", "'(C) is correct'"),
    ("Option C is the best choice.", "C", "statement", "'Option C is the best choice'"),
    ("I choose option C because of the lobar consolidation.", "C", "statement", "'I choose option C'"),
    ("答案：C", "C", "statement", "Chinese 'answer:' with a full-width colon"),
    ("答案是C。", "C", "statement", "Chinese 'the answer is C'"),
    ("正确答案为（C）", "C", "statement", "Chinese 'the correct answer is (C)', full-width brackets"),
    ("Answer: C\n\nExplanation: (A) tuberculosis is chronic and B would show nodes.", "C", "statement",
     "an explicit answer wins over letters its explanation mentions"),
    ("The answer is C. Option A is wrong because TB is chronic; option B does not fit either.", "C", "statement",
     "explanation naming options A and B after the statement"),
    ("Answer: C) Community-acquired pneumonia", "C", "statement", "statement with the option's own text"),
    ("The answer is C: Community-acquired pneumonia", "C", "statement", "statement, colon, own text"),
    ("The answer is Sarcoidosis.", "B", "option_text", "no letter: the option's text after 'the answer is'"),
    ("The answer is B, not D.", "B", "statement", "an explicit answer that rules another option out"),
    ("Answer: C\nAnswer: C", "C", "statement", "the same letter stated twice"),
    ("Answer: C\nAnswer: D", None, "conflict", "two statements naming different letters"),
    ("The answer is C. Later: so the answer is A.", None, "conflict", "a changed mind is not an answer"),
    ("The answer is either A or C.", None, "hedge", "'either A or C'"),
    ("The answer is A, or possibly C", None, "hedge", "a second option offered after the statement"),
    ("The answer is A/C.", None, "hedge", "two options joined by a slash"),
    ("The answer is F", None, "invalid_letter", "stated letter is not an option"),
    ("The answer is C. Tuberculosis", None, "contradiction", "letter C with option A's text"),
    ("The answer is a bacterial infection", None, "none", "'a' is the article, not option A"),
    ("The answer is not A.", None, "none", "a negation states no answer"),
    # line-leading letters (the training targets' 'C. text' form)
    ("C. Community-acquired pneumonia", "C", "line_lead", "the training targets' form"),
    ("C) community acquired pneumonia.", "C", "line_lead", "'C)' with the option text in lower case"),
    ("C. Because the consolidation is lobar.", "C", "line_lead", "letter first, explanation after"),
    ("C. Tuberculosis", None, "contradiction", "line-leading letter with another option's text"),
    ("A. Tuberculosis\nB. Sarcoidosis\nC. Community-acquired pneumonia\nD. Lung cancer", None, "ambiguous",
     "an echoed option list is not an answer"),
    ("C. Community-acquired pneumonia\n\nA. Tuberculosis is unlikely with an acute onset.", "C", "line_lead",
     "the answer line first, then an explanation line that starts with another letter"),
    ("A. TB\nB. Sarcoid", None, "ambiguous", "lines leading with different letters, none with its own text"),
    ("Lobar consolidation with fever.\n\nC. Community-acquired pneumonia", "C", "line_lead",
     "last line is a letter with its own option text"),
    # mentions without a statement
    ("Option C.", "C", "mention", "'option C'"),
    ("(C) Community-acquired pneumonia", "C", "mention", "bracketed letter with its text"),
    ("I think (C) fits best.", "C", "mention", "one bracketed letter in a sentence"),
    ("A or C", None, "none", "bare letters joined by 'or': no statement, no mention form"),
    ("(A) and (C)", None, "ambiguous", "two bracketed letters"),
    ("Option C, though B is possible.", None, "ambiguous", "a named letter and another valid capital letter"),
    # option text
    ("Community-acquired pneumonia", "C", "option_text", "the option's text instead of its letter"),
    ("community acquired pneumonia.", "C", "option_text", "option text after normalisation"),
    ("Pneumonia", None, "none", "part of an option's text is not the option"),
    ("I am not sure.", None, "none", "no answer"),
    ("It could be pneumonia or sarcoidosis.", None, "none", "free-text hedge between options"),
    # harmony: only the final channel is scored
    (harmony("C"), "C", "bare_letter", "final channel 'C'; the analysis mentions A and B"),
    (harmony("The answer is (D)."), "D", "statement", "final channel statement"),
    (harmony(None, "The answer is C."), None, "no_final_channel", "analysis only: cut off before the final"),
    ("<|channel|>analysis<|message|>The answer is C", None, "no_final_channel", "truncated inside the analysis"),
    (harmony("Let me reconsider.", "The answer is C."), None, "none", "the analysis is never read"),
]


@pytest.mark.parametrize("output,expected,rule,reason", CASES, ids=[c[3] for c in CASES])
def test_extract_choice_table(output, expected, rule, reason):
    assert len(CASES) >= 60
    verdict = parse_choice(output, OPTIONS)
    assert (verdict.letter, verdict.rule) == (expected, rule), reason
    assert extract_choice(output, OPTIONS) == expected


def test_letters_inside_option_text_are_not_second_answers():
    options = {"A": "Vitamin A excess", "B": "Vitamin D deficiency", "C": "Hepatitis C", "D": "Iron deficiency"}
    assert extract_choice("The answer is B. Vitamin D deficiency", options) == "B"
    assert extract_choice("C. Hepatitis C", options) == "C"
    assert extract_choice("The answer is B. Vitamin A excess", options) is None  # B with option A's text
    assert extract_choice("Vitamin D deficiency (B), not C.", options) is None  # no statement, another letter


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
