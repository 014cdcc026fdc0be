"""Strict, rule-based scoring (paper, section 4.3): no LLM judge, no partial credit, no guessing.

`extract_choice(output, options)` reads the option letter a model's output commits to, or None (counted
wrong). The scored text is the final channel of a harmony output (the analysis channel is never read; an
output without a final channel has no answer) or the whole output otherwise. After clean-up (markdown
emphasis, `$`, full-width colons), the first rule that applies decides:

 1. empty          nothing left -> None.
 2. bare_letter    the whole answer is one letter, optionally in () or [] and followed by . ) : ! ?
                   ("C", "(C).", "c", "[B]") -> that letter; a letter that is not an option -> None.
 3. boxed          \\boxed{C}, \\boxed{(C)}, \\boxed{\\text{C}}, \\boxed{C. text}: the letter; boxes naming
                   different letters -> None.
 4. statement      explicit answer statements, wherever they stand: "The answer is C", "Answer: (C)",
                   "final answer - C", "the correct option is C", "C is the answer", "(C) is correct",
                   "I choose option C", "答案：C", "答案是C", "选C". All statements must name the same letter
                   (else None, "conflict"); the letter must be an option (else None, "invalid_letter"); the
                   statement must not hedge ("either A or C", "A, or possibly C", "A/C" -> None, "hedge") nor
                   be followed by another option's text ("The answer is C. Tuberculosis" when Tuberculosis
                   is option A -> None, "contradiction"). Letters elsewhere (an explanation discussing
                   options A and B) do not matter once a statement is found.
 5. line_lead      the answer starts with "C. text" / "C) text" / "C: text" (the training targets' form), or
                   ends with a line "C. <option C's own text>": C, unless its text is another option's text
                   ("contradiction"), or other lines start with other option letters and either repeat their
                   options' texts (an echoed option list) or its own text is not option C's ("ambiguous").
 6. mention        no statement: letters named as "option C", "choice C", "(C)", "[C]". Exactly one valid
                   letter and no other valid capital letter standing alone outside the option texts -> it
                   ("ambiguous" otherwise: "A or C", "(A) and (C)").
 7. option_text    no letter named: the answer (or what follows "The answer is") equals exactly one option's
                   text after normalisation -> its letter ("Community-acquired pneumonia" -> C).
 8. none           anything else ("I am not sure.", "Pneumonia" for "Community-acquired pneumonia").

There is no nearest-option, first-letter or random fallback: an answer the rules cannot read scores zero.
Lower-case letters count when they cannot be the article "a": alone, in brackets, or followed by
punctuation or the end ("The answer is c." -> C; "The answer is a bacterial infection" -> None).
`parse_choice` returns the letter and the rule that decided (tests/test_eval_scoring.py lists 60+ outputs).
"""

import re
import string
from dataclasses import dataclass

from .harmony import answer_text, is_harmony

_EMPHASIS_RE = re.compile(r"[*_`$]+")
_BARE_LETTER_RE = re.compile(r"^[(\[]?([A-Za-z])[)\]]?[.:)!?]*$")
# One answer letter: bracketed (any case), upper case not inside a word, or lower case followed by
# punctuation / the end (a lower-case letter followed by a word is the article "a").
_LETTER = r"(?:[(\[]([A-Za-z])[)\]]|([A-Z])(?![A-Za-z0-9'])|([a-z])(?=\s*(?:[.,;:!?)]|$)))"
_STATEMENTS = [
    # "the (final/correct) answer is C", "Answer: C", "answer - (C)", "the correct option is C"
    r"\b(?i:answer|option|choice)\s*(?:(?i:is|would\s+be|should\s+be|will\s+be)\s*:?|[:\-=])\s*"
    r"(?:(?i:option|choice|letter)\s+)?(?:(?i:either)\s+)?" + _LETTER,
    # "C is the answer", "(C) is correct", "Option C is the best answer"
    r"(?:^|(?<=[\s(]))(?:(?i:option|choice)\s+)?(?:[(\[]([A-Za-z])[)\]]|([A-Z])(?![A-Za-z0-9']))\s+(?i:is)\s+"
    r"(?:(?i:the)\s+)?(?:(?i:correct|right|best|final)\s*)?(?i:correct|right|answer|option|choice)\b",
    # "I choose / select / pick (option) C"
    r"\b(?i:I\s+(?:would\s+)?(?:choose|select|pick))\s+(?:(?i:option|choice)\s+)?" + _LETTER,
    # 答案：C, 答案是C, 正确答案为（C）, 选C, 选择 C
    r"(?:答案|选择|选)\s*(?:是|为|為)?\s*[:：]?\s*[（(]?([A-Za-z])(?![A-Za-z])",
]
_STATEMENT_RES = [re.compile(p, re.MULTILINE) for p in _STATEMENTS]
_NEGATED_BEFORE_RE = re.compile(r"\bnot\s*$", re.IGNORECASE)
_BOXED_RE = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_BOXED_LETTER_RE = re.compile(r"^\s*(?:\\text\{\s*)?[(\[]?([A-Za-z])[)\]]?\s*\}?\s*(?:[.:)]\s*(.*))?$", re.DOTALL)
_LINE_LEAD_RE = re.compile(r"^\s*([A-Z])\s*[.):]\s*(.*)$", re.MULTILINE)  # "(C) text" is a mention
_MENTION_RES = [re.compile(r"\b(?i:option|choice)\s+" + _LETTER), re.compile(r"[(\[]([A-Za-z])[)\]]")]
# A second valid capital letter joined by "or" / "and" / "/" (a hedge), a few words at most after the statement.
_HEDGE_RE = re.compile(r"^\W{0,3}(?:(?i:or|and)\b|/)\s*(?:\w+\s+){0,2}?[(\[]?([A-Z])[)\]]?(?![A-Za-z0-9'])")
_EITHER_RE = re.compile(r"\beither\s*$", re.IGNORECASE)
# Capital letters standing alone ("..., or possibly C"); "A" and "I" are left out as they are words.
_STANDALONE_RE = re.compile(r"(?<![A-Za-z0-9'])([B-HJ-Z])(?![A-Za-z0-9'])")
_ANSWER_PREFIX_RE = re.compile(r"^(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is|:)\s*", re.IGNORECASE)
_ARTICLES_RE = re.compile(r"\b(?:a|an|the)\b")
_PUNCT_TABLE = str.maketrans({c: " " for c in string.punctuation})


@dataclass(frozen=True)
class ChoiceVerdict:
    letter: str | None  # the chosen option, None when the output commits to none
    rule: str  # the rule that decided (module docstring), or why nothing was read


def normalize_text(text: str) -> str:
    """Lowercase, punctuation to spaces, drop articles, collapse whitespace."""
    text = text.lower().translate(_PUNCT_TABLE)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def _clean(text: str) -> str:
    return _EMPHASIS_RE.sub("", text).replace("：", ":").replace("（", "(").replace("）", ")").strip()


def _letter(match: re.Match) -> str:
    return next(group for group in match.groups() if group).upper()


def _option_letter_for_text(text: str, options: dict[str, str]) -> str | None:
    """The single option whose normalised text equals the normalised text, else None."""
    target = normalize_text(text)
    if not target:
        return None
    hits = [letter for letter, option in options.items() if normalize_text(option) == target]
    return hits[0] if len(hits) == 1 else None


def _names_other_option(rest: str, letter: str, options: dict[str, str]) -> bool:
    """The text after a letter starts with another option's text and not with this option's own."""
    following = normalize_text(rest.split("\n", 1)[0])
    if not following:
        return False

    def starts(option: str) -> bool:
        option = normalize_text(option)
        return bool(option) and (following == option or following.startswith(option + " "))

    return not starts(options.get(letter, "")) and any(starts(text) for key, text in options.items() if key != letter)


def _without_option_texts(text: str, options: dict[str, str]) -> str:
    for option in sorted(options.values(), key=len, reverse=True):
        if option.strip():
            text = re.sub(re.escape(option.strip()), " ", text, flags=re.IGNORECASE)
    return text


def _statements(text: str) -> list[re.Match]:
    found = []
    for pattern in _STATEMENT_RES:
        for match in pattern.finditer(text):
            if not _NEGATED_BEFORE_RE.search(text[:match.start()]):  # "is not A" is not a statement of A
                found.append(match)
    return sorted(found, key=lambda m: m.start())


def _hedged(text: str, match: re.Match, letter: str, valid: set[str]) -> bool:
    """The statement offers a second option: "either A or C", "A, or possibly C", "A/C"."""
    if _EITHER_RE.search(text[:match.start(match.lastindex)].rstrip("([ ")):
        return True
    after = _HEDGE_RE.match(text[match.end():])
    return bool(after) and after.group(1).upper() in valid - {letter}


def parse_choice(output: str, options: dict[str, str]) -> ChoiceVerdict:
    """The option letter an output commits to and the rule that decided (see the module docstring).

    `options` maps upper-case letters to option texts; only its keys are valid answers.
    """
    scored = answer_text(output)
    if scored is None:
        return ChoiceVerdict(None, "no_final_channel" if is_harmony(output) else "empty")
    text = _clean(scored)
    if not text:
        return ChoiceVerdict(None, "empty")
    valid = {letter.upper() for letter in options}

    bare = _BARE_LETTER_RE.match(text)
    if bare:
        letter = bare.group(1).upper()
        return ChoiceVerdict(letter, "bare_letter") if letter in valid else ChoiceVerdict(None, "invalid_letter")

    boxes = [_BOXED_LETTER_RE.match(content) for content in _BOXED_RE.findall(text)]
    if boxes:
        letters = {box.group(1).upper() for box in boxes if box}
        if len(letters) != 1 or not all(boxes):
            return ChoiceVerdict(None, "conflict" if len(letters) > 1 else "boxed_unreadable")
        (letter,) = letters
        if letter not in valid:
            return ChoiceVerdict(None, "invalid_letter")
        if any(box.group(2) and _names_other_option(box.group(2), letter, options) for box in boxes):
            return ChoiceVerdict(None, "contradiction")
        return ChoiceVerdict(letter, "boxed")

    statements = _statements(text)
    if statements:
        letters = {_letter(m) for m in statements}
        if len(letters) > 1:
            return ChoiceVerdict(None, "conflict")
        (letter,) = letters
        if letter not in valid:
            return ChoiceVerdict(None, "invalid_letter")
        for match in statements:
            if _hedged(text, match, letter, valid):
                return ChoiceVerdict(None, "hedge")
            rest = re.sub(r"^\s*[.:)\-,]?\s*", "", text[match.end():])
            if _names_other_option(rest, letter, options):
                return ChoiceVerdict(None, "contradiction")
        return ChoiceVerdict(letter, "statement")

    leads = [(m.group(1), m.group(2), m.start()) for m in _LINE_LEAD_RE.finditer(text)]
    first = leads[0] if leads and leads[0][2] == 0 else None
    last = leads[-1] if leads and _option_letter_for_text(leads[-1][1], options) == leads[-1][0] else None
    if first is not None or last is not None:
        letter, rest, _ = first or last
        if letter not in valid:
            return ChoiceVerdict(None, "invalid_letter")
        if _names_other_option(rest, letter, options):
            return ChoiceVerdict(None, "contradiction")
        own_text = bool(rest.strip()) and _option_letter_for_text(rest, options) == letter
        others = [(lead, text) for lead, text, _ in leads if lead != letter and lead in valid]
        echoed = any(_option_letter_for_text(text, options) == lead for lead, text in others)
        if others and (echoed or not own_text):  # an echoed option list, or several letters offered
            return ChoiceVerdict(None, "ambiguous")
        return ChoiceVerdict(letter, "line_lead")

    named = {_letter(m) for pattern in _MENTION_RES for m in pattern.finditer(text)}
    if named:
        if len(named) > 1:
            return ChoiceVerdict(None, "ambiguous")
        (letter,) = named
        if letter not in valid:
            return ChoiceVerdict(None, "invalid_letter")
        others = {m.group(1) for m in _STANDALONE_RE.finditer(_without_option_texts(text, options))} - {letter}
        if others & valid:
            return ChoiceVerdict(None, "ambiguous")
        return ChoiceVerdict(letter, "mention")

    letter = _option_letter_for_text(_ANSWER_PREFIX_RE.sub("", text).rstrip(".!"), options)
    return ChoiceVerdict(letter, "option_text") if letter else ChoiceVerdict(None, "none")


def extract_choice(output: str, options: dict[str, str]) -> str | None:
    """The option letter a model's output chooses, or None when it names no single valid option."""
    return parse_choice(output, options).letter


def match_open_answer(output: str, reference: str) -> bool:
    """Exact match after normalisation, for open-ended VQA (SLAKE questions without options).

    The scored text may carry an "The answer is" prefix; nothing else is forgiven.
    """
    scored = answer_text(output)
    if scored is None:
        return False
    text = _ANSWER_PREFIX_RE.sub("", _clean(scored))
    predicted = normalize_text(text)
    return bool(predicted) and predicted == normalize_text(reference)
