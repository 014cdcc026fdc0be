"""Strict, rule-based scoring (paper, section 4.3): no LLM judge, no partial credit.

`extract_choice` rules, applied to the scored text (the final channel of a harmony output; the analysis
channel is never read), in this order:

1. Clean-up: strip whitespace and markdown emphasis (`*`, `_`, backticks).
2. Empty text -> None.
3. Bare letter: the whole text is one option letter, optionally in () or [] and followed by `.`, `)` or
   `:` ("C", "(C)", "c.", "[B]") -> that letter. Lowercase counts only here and inside brackets, where it
   cannot be the article "a".
4. Letter mentions: every letter named in an explicit form is collected --
   "answer is C", "answer: (C)", "option C", "choice C", "(C)", "[C]", and "C." / "C)" / "C:" at the
   start of a line. Exactly one distinct letter -> that letter, unless the answer contradicts itself:
   a line-leading "C. text" whose text is a different option's text, or another valid capital letter
   standing alone outside the option texts ("The answer is A, or possibly C") -> None.
   Two or more distinct letters -> None.
5. Option text: with no letter named, the text (or what follows "the answer is") equal, after
   normalisation, to exactly one option's text -> that option's letter.
6. Anything else, including a letter that is not one of the options -> None (counted wrong).
"""

import re
import string

from .harmony import answer_text

_EMPHASIS_RE = re.compile(r"[*_`]+")
_BARE_LETTER_RE = re.compile(r"^[(\[]?([A-Za-z])[)\]]?[.:)]?$")
# Explicit answer statements: "the answer is (C)", "Answer: C", "final answer - C".
# A bracketed letter may be lowercase; a bare one must be upper-case (else "answer is a ..." would count).
_LETTER = r"(?:[(\[]([A-Za-z])[)\]]|([A-Z])(?![A-Za-z0-9]))"
_ANSWER_STATEMENT_RE = re.compile(
    r"\b(?i:answer)\b(?:\s+(?i:is|would be|should be))?\s*[:\-]?\s*(?:(?i:option|choice)\s+)?" + _LETTER
)
_OPTION_WORD_RE = re.compile(r"\b(?i:option|choice)\s+" + _LETTER)
_BRACKETED_RE = re.compile(r"[(\[]([A-Za-z])[)\]]")
_LINE_LEAD_RE = re.compile(r"^\s*([A-Z])\s*[.):]\s*(.*)$", re.MULTILINE)
# Single capital letters standing alone ("..., or possibly C"); "A" and "I" are left out as they are words.
_STANDALONE_RE = re.compile(r"(?<![A-Za-z0-9'])([B-HJ-Z])(?![A-Za-z0-9'])")
_ANSWER_PREFIX_RE = re.compile(r"^(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is|:)\s*", re.IGNORECASE)
_ARTICLES_RE = re.compile(r"\b(?:a|an|the)\b")
_PUNCT_TABLE = str.maketrans({c: " " for c in string.punctuation})


def normalize_text(text: str) -> str:
    """Lowercase, punctuation to spaces, drop articles, collapse whitespace."""
    text = text.lower().translate(_PUNCT_TABLE)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def _clean(text: str) -> str:
    return _EMPHASIS_RE.sub("", text).strip()


def _option_letter_for_text(text: str, options: dict[str, str]) -> str | None:
    """The single option whose normalised text equals the normalised text, else None."""
    target = normalize_text(text)
    if not target:
        return None
    hits = [letter for letter, option in options.items() if normalize_text(option) == target]
    return hits[0] if len(hits) == 1 else None


def _other_standalone_letters(text: str, options: dict[str, str], letter: str) -> set[str]:
    """Capital letters standing alone outside the option texts, other than `letter` (a hedge or a 2nd answer)."""
    for option in sorted(options.values(), key=len, reverse=True):
        if option.strip():
            text = re.sub(re.escape(option.strip()), " ", text, flags=re.IGNORECASE)
    return {m.group(1) for m in _STANDALONE_RE.finditer(text)} - {letter}


def extract_choice(output: str, options: dict[str, str]) -> str | None:
    """The option letter a model's output chooses, or None when it names no single valid option.

    `options` maps upper-case letters to option texts; only its keys are valid answers.
    """
    scored = answer_text(output)
    if scored is None:
        return None
    text = _clean(scored)
    if not text:
        return None
    valid = {letter.upper() for letter in options}

    bare = _BARE_LETTER_RE.match(text.rstrip(".!?").strip())
    if bare:
        letter = bare.group(1).upper()
        return letter if letter in valid else None

    named: set[str] = set()
    for pattern in (_ANSWER_STATEMENT_RE, _OPTION_WORD_RE):
        named.update((m.group(1) or m.group(2)).upper() for m in pattern.finditer(text))
    named.update(m.group(1).upper() for m in _BRACKETED_RE.finditer(text))
    line_leads = [(m.group(1), m.group(2)) for m in _LINE_LEAD_RE.finditer(text)]
    named.update(letter for letter, _ in line_leads)
    if named:
        if len(named) != 1:
            return None
        letter = named.pop()
        if letter not in valid:
            return None
        if _other_standalone_letters(text, options, letter) & valid:
            return None
        for lead_letter, rest in line_leads:
            rest_letter = _option_letter_for_text(rest, options) if rest.strip() else None
            if lead_letter == letter and rest_letter not in (None, letter):
                return None
        return letter

    stripped = _ANSWER_PREFIX_RE.sub("", text)
    return _option_letter_for_text(stripped, options)


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
