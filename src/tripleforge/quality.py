"""Cleaning of LLM replies, heuristic filters and the strict QC-verdict parse.

Every filter returns a rejection reason (a short snake_case string counted in the stage metrics)
or None when the text passes.
"""

from __future__ import annotations

import re

from tripleforge.hashing import normalize_text

_THINK_END = "</think>"
_FENCE = re.compile(r"(`{3,})[^\n`]*\n(.*?)\n?\1", re.DOTALL)
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "`": "`"}

# Script ranges for languages that are not written in Latin letters.
_SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "zh": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF)),
    "zh_tw": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF)),
    "ja": ((0x3040, 0x30FF), (0x4E00, 0x9FFF)),
    "ko": ((0xAC00, 0xD7AF), (0x1100, 0x11FF)),
    "ar": ((0x0600, 0x06FF),),
    "fa": ((0x0600, 0x06FF), (0xFB50, 0xFDFF)),
    "hi": ((0x0900, 0x097F),),
    "bn": ((0x0980, 0x09FF),),
    "te": ((0x0C00, 0x0C7F),),
    "th": ((0x0E00, 0x0E7F),),
    "ru": ((0x0400, 0x04FF),),
}


def clean_reply(text: str, is_code: bool) -> str:
    """Drop reasoning before the last `</think>`, unwrap a fenced block (code outputs: the first
    block anywhere; text outputs: only when the whole reply is one block) and surrounding quotes."""
    if _THINK_END in text:
        text = text.rsplit(_THINK_END, 1)[1]
    text = text.strip()
    m = _FENCE.search(text)
    if m and (is_code or (m.start() == 0 and m.end() == len(text))):
        text = m.group(2).strip("\n")
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]] and text.count(text[0]) <= 2:
        text = text[1:-1].strip()
    return text


def _in_ranges(ch: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in ranges)


def language_ok(text: str, language: str) -> bool:
    """Non-Latin-script languages need a real share of their script (e.g. zh needs CJK); Latin-script
    languages must not be mostly another script. Code identifiers in Latin letters are tolerated."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    if language in _SCRIPTS:
        n = sum(_in_ranges(c, _SCRIPTS[language]) for c in letters)
        return n >= max(1, int(0.1 * len(letters)))
    non_latin = sum(ord(c) > 0x24F for c in letters)
    return non_latin <= 0.3 * len(letters)


def copies_input(output: str, source: str) -> bool:
    """The reply repeats the input (equal after whitespace normalisation, or a large verbatim chunk)."""
    out, src = normalize_text(output), normalize_text(source)
    if not out or not src:
        return False
    return out == src or (len(out) >= 0.8 * len(src) and out in src)


# How chat models open a reply instead of giving the text or code itself ("Sure, ...", "Here is
# ..."), after optional markdown emphasis or an opening quote; shared by the code and text checks.
_OPENING = r"[\s*_#>\"'\u201c\u2018]*"
_CHAT_OPENER = (
    r"(?:sure|certainly|of\s+course|absolutely)\b(?!-)"           # "Sure, ...", "Certainly! ..."
    r"|(?:okay|ok)\s*[,!]"                                         # "Okay, ..." (not "OK button ...")
    r"|here(?:'s|\u2019s|\s+is|\s+are|\s+you\s+go)\b"            # "Here is/Here's/Here are ..."
    r"|below\s+(?:is|are)\b"                                       # "Below is ..."
    r"|i(?:'d|\u2019d|\s+would)\s+be\s+(?:happy|glad)\b"           # "I'd be happy to ..."
)
# A code reply may not open with a sentence about code either.
_CODE_PREAMBLE = re.compile(rf"{_OPENING}(?:{_CHAT_OPENER}|the\s+following\b|this\s+(?:code|function|snippet)\b)",
                            re.IGNORECASE)


def prose_not_code(text: str) -> bool:
    """A reply that should be code but is prose: it opens like a chat answer ("Here is ...",
    "Sure, ..."), or it is a sentence (ends in . ! or ?, four words or more) without a single
    bracket, brace, `=`, `;` or angle bracket. Deliberately narrow: code of any language with an
    operator or a call passes, and so does a short command."""
    if _CODE_PREAMBLE.match(text):
        return True
    return (not any(c in text for c in "()[]{}=;<>") and text.rstrip()[-1:] in (".", "!", "?")
            and len(text.split()) >= 4)


# How chat models open a reply that should be the text itself (a query, a summary) but talks
# about it instead. Anchored at the start (after markdown emphasis or an opening quote), and
# narrow: "This function returns ...", "How to ...", "The query builder is ..." all pass.
_NOUN = r"(?:(?:web|search|final|short|google)\s+)*(?:query|question|summary|answer|reply|response)"
_TEXT_PREAMBLE = re.compile(
    rf"{_OPENING}(?:{_CHAT_OPENER}"
    # "The query to a web search engine should be: ...", "The summary is \"...\"" (not "The query
    # should be parameterized", nor "The question is whether ...": a colon or quote must follow)
    rf"|(?:the|my|your|a)\s+(?:\w+\s+){{0,2}}?{_NOUN}\b[^\n.:]{{0,60}}?"
    r"\b(?:is|are|(?:should|would|could|might|will|can)\s+be)\s*(?:[:\"'\u201c\u2018]|\n|$)"
    rf"|{_NOUN}\s*\**\s*:"                                         # "Query: ...", "**Search query:** ..."
    r")",
    re.IGNORECASE,
)


def text_preamble(text: str) -> bool:
    """A text reply that opens like a chat answer or a label instead of being the text: "Sure, ...",
    "Certainly! ...", "Here is/Here's ...", "Below is ...", "The query ... should be: ...",
    "The summary is \"...\"", "Query: ...", "Search query: ...", "Answer: ...". A sentence about the
    code ("This function returns ...", "The query builder is created ...", "How to ...") passes."""
    return _TEXT_PREAMBLE.match(text) is not None


QUOTE_MIN_CHARS = 25  # non-space characters a source line needs before quoting it counts


def quotes_input(output: str, source: str, min_chars: int = QUOTE_MIN_CHARS) -> bool:
    """The text reply holds a line of `source` verbatim (after whitespace normalisation on both
    sides): any source line with at least `min_chars` non-space characters, e.g. the signature
    `def unquote_to_bytes(string):` copied into a search query. Shorter lines (`return x`, `}`)
    are too common to count."""
    out = normalize_text(output)
    if not out:
        return False
    for line in source.splitlines():
        norm = normalize_text(line)
        if len(norm) - norm.count(" ") >= min_chars and norm in out:
            return True
    return False


def check_output(text: str, finish_reason: str, source: str, language: str | None, max_chars: int,
                 quote_source: str = "") -> str | None:
    """Reason to reject one cleaned LLM output, or None. `language` None = the output is code: no
    language check, but prose in its place is rejected (`not_code`). A text output (`language`
    set) must not open with a chat preamble (`preamble`), nor hold a line of `quote_source`
    verbatim (`quotes_input`; "" = no such check), the code it was written from."""
    if not text.strip():
        return "empty"
    if finish_reason == "length":
        return "truncated"
    if len(text) > max_chars:
        return "too_long"
    if copies_input(text, source):
        return "copies_input"
    if language is not None and not language_ok(text, language):
        return "wrong_language"
    if language is None and prose_not_code(text):
        return "not_code"
    if language is not None and text_preamble(text):
        return "preamble"
    if language is not None and quote_source and quotes_input(text, quote_source):
        return "quotes_input"
    return None


_VERDICT = re.compile(r"\s*([012])\s*\.?\s*")


def parse_verdict(reply: str) -> str | None:
    """Strict QC parse: the whole reply must be one digit 0/1/2 (optionally followed by a period).
    Replies like "10", "2 (not 1)" or "Option 1" are unparseable, unlike the original's substring test."""
    if _THINK_END in reply:
        reply = reply.rsplit(_THINK_END, 1)[1]
    m = _VERDICT.fullmatch(reply)
    return m.group(1) if m else None
