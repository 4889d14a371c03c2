"""Cleaning of LLM replies, heuristic filters and the strict QC-verdict parse.

Every filter returns a rejection reason (a short snake_case string counted in the stage metrics)
or None when the text passes.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from tripleforge.hashing import normalize_text
from tripleforge.languages import language_of_fence_tag

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


# A target language whose code may legitimately come in another's fence: JavaScript is valid
# TypeScript, and C is (nearly always) valid C++.
_ALSO_VALID = {("typescript", "javascript"), ("cplusplus", "c")}


def fenced_code_language(reply: str) -> str | None:
    """The code language the tag of `reply`'s first fenced block names (the block `clean_reply`
    unwraps for a code output), or None: no fence, no tag, or a tag naming no language of ours."""
    m = _FENCE.search(reply)
    if not m:
        return None
    opening = reply[m.start():].split("\n", 1)[0]
    return language_of_fence_tag(opening.lstrip("`~").strip())


def wrong_code_language(reply: str, expected: str) -> bool:
    """A code reply whose fence says it is in another language than `expected` (a translation
    into JavaScript that came back as ```python)."""
    got = fenced_code_language(reply)
    return got is not None and got != expected and (expected, got) not in _ALSO_VALID


def note_after_code(reply: str) -> str:
    """The text after `reply`'s first fenced block (the block `clean_reply` keeps of a code reply)
    up to the next fence, whitespace-trimmed; "" when there is no fence or no text after it. A
    second block (a model adding the fixed code) stays out: it would hand over the answer."""
    if _THINK_END in reply:
        reply = reply.rsplit(_THINK_END, 1)[1]
    m = _FENCE.search(reply)
    return reply[m.end():].split("```", 1)[0].strip() if m else ""


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
    r"|i(?:'m|\u2019m|\s+am)\s+(?:ready|glad|happy|here)\b"         # "I'm ready to help. What's ...?"
    # asking the user for input: "Please provide your request", "Please share more details" (not a
    # user's request: "Please explain how decorators work", "Please give more examples of ...")
    r"|please\s+(?:provide|share|paste|send|give|tell)\s+(?:me\s+(?:with\s+)?)?(?:your\s+(?:\w+\s+)?"
    r"(?:request|question|query|code|snippet|input|text|task|project|requirements?)"
    r"|(?:more|additional|further|some\s+more)\s+(?:details|information|context|input))\b"
    r"|(?:thank\s+you|thanks)\s+for\b"                                # "Thanks for sharing ..."
    # refusals: "I'm sorry, but ...", "I apologize ...", "As an AI (language model) ...", "I cannot
    # provide ...", "I'm unable to help ..." (a user's query may say "I can't connect to ...")
    r"|i(?:'m|\u2019m|\s+am)\s+(?:sorry|afraid)\b|(?:sorry|apologies)\s*[,!.]|i\s+apologi[sz]e\b"
    r"|i(?:(?:'m|\u2019m|\s+am)\s+(?:unable|not\s+able)|\s+(?:cannot|can't|can\u2019t|can\s+not|won't))\s+"
    r"(?:to\s+)?(?:provide|help|assist|answer|write|generate|create|complete|fulfill|comply|do\s+that)\b"
    r"|as\s+an?\s+(?:ai|language\s+model|assistant)\b"
)
# A code reply may not open with a sentence about code either.
_CODE_PREAMBLE = re.compile(rf"{_OPENING}(?:{_CHAT_OPENER}|the\s+following\b|this\s+(?:code|function|snippet)\b)",
                            re.IGNORECASE)


def prose_not_code(text: str) -> bool:
    """A reply that should be code but is prose: it opens like a chat answer ("Here is ...",
    "Sure, ..."), or it is a sentence (ends in . ! or ?, four words or more) without a single
    bracket, brace, `=`, `;` or angle bracket, or every line of it is a comment (`# refactor the
    code to ...`: a plan, not code). Deliberately narrow: code of any language with an operator or
    a call passes, and so does a short command."""
    if _CODE_PREAMBLE.match(text):
        return True
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and all(_COMMENT_LINE.match(ln) for ln in lines):
        return True
    return (not any(c in text for c in "()[]{}=;<>") and text.rstrip()[-1:] in (".", "!", "?")
            and len(text.split()) >= 4)


# A line that reads as code, not prose: opens with a declaration or statement keyword of a common
# language, or ends in a block/statement delimiter, or is an assignment or a bare call.
_CODE_LIKE_LINE = re.compile(
    r"\s*(?:(?:def|class|import|return|elif|else|try|except|finally|with|async|await|raise|yield|"
    r"const|let|var|function|public|private|protected|static|package|func|fn|impl|use|using|"
    r"#include|@\w+)\b|from\s+[\w.]+\s+import\b|[}\])]|(?:if|for|while)\b.*[:{]\s*$)"
    r"|.*[;{}]\s*$|.*\)\s*:\s*$|\s*[\w.\[\]]+\s*(?:[-+*/]?=)\s*\S.*$|\s*[\w.]+\(.*\)\s*$"
)


def code_not_text(text: str) -> bool:
    """A reply that should be prose (a question, a summary) but is code: three lines or more, at
    least two thirds of them code-like (a tryout kept a whole Python program as the question of a
    code-comparison pair). Prose that mentions a call or quotes one line passes."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return len(lines) >= 3 and sum(bool(_CODE_LIKE_LINE.match(ln)) for ln in lines) * 3 >= 2 * len(lines)


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
    # an echo of the instructions: the reply talks about itself or the prompt instead of the code
    # (not "This response has no Content-Length header", "Your response could not be parsed")
    r"|(?:the\s+above|my)\s+(?:response|reply)\b"                      # "The above response is in English"
    r"|this\s+(?:response|reply)\s+(?:is\s+(?:intended|meant|designed|written)|aims|tries|follows|meets|adheres)\b"
    r"|the\s+developer(?:'s|\u2019s)\s+(?:response|reply|query|answer)\b"  # "The developer's response should ..."
    r"|(?:a|the)\s+developer\s+(?:would|might|could|will|can|should)\s+(?:type|enter|search|look\s+up)\b"
    r"|to\s+(?:respond|reply|answer)\s+(?:to\s+)?(?:this|your)\s+(?:query|question|request|prompt|instructions?)\b"
    # a label in place of the text, the whole reply: "This is a bug report." (a tryout kept it)
    r"|this\s+is\s+(?:a|an|the|my)\s+(?:\w+\s+){0,2}(?:report|summary|query|question|description|answer|"
    r"response|request)\s*[.!]?\s*$"
    r")",
    re.IGNORECASE,
)
# An instruction echo anywhere in a text reply: the web-search wording of the prompt, which a query
# or summary about code has no use for ("build a web search engine" passes).
_ECHO = re.compile(r"\btyp(?:e|ed|es|ing)\s+(?:(?:this|it|that)\s+)?in(?:to)?\s+(?:a|the)\s+"
                   r"(?:web\s+)?search\s+engine\b", re.IGNORECASE)


def text_preamble(text: str) -> bool:
    """A text reply that opens like a chat answer or a label instead of being the text: "Sure, ...",
    "Certainly! ...", "Here is/Here's ...", "Below is ...", "I'm ready to help ...", "Please provide
    your request ...", a refusal ("I'm sorry, but ...", "As an AI ..."), "The query ... should be:
    ...", "The summary is \"...\"", "Query: ...", "Search query: ...", "Answer: ...", or that echoes
    the instructions ("This response is intended to ...", "The above response is ...", "A developer
    would type this in a web search engine ...", "To respond to this query ..."). A sentence about
    the code ("This function returns ...", "The query builder is created ...", "How to ...",
    "Please explain how ...") passes."""
    return _TEXT_PREAMBLE.match(text) is not None or _ECHO.search(text) is not None


QUOTE_MIN_CHARS = 25  # non-space characters a source line needs before quoting it counts
PASTE_RUN = 6  # tokens in a row a reply must share with the source before they count as pasted
# Share of the source's code tokens pasted into a text reply that rejects it. On 3000 stdlib functions,
# replies that mention the signature and up to four calls in full reach at most 0.18; a paste of the
# function with one line left out has a median of 0.88, and the audited SmolLM2 paste (7 of 8 lines,
# docstring included) 0.56: the docstring is not code, and the line after the gap stands alone.
PASTE_MIN_SHARE = 0.4

# Code tokens: a word (identifier, keyword, number) or one punctuation character. Comparing token
# sequences ignores whitespace entirely, so `join (a, b)` matches `join(a, b)`.
_TOKEN = re.compile(r"\w+|[^\w\s]")
# Prose inside code, not counted as code: triple-quoted strings (docstrings) and comment lines
# (#, //, /*, *, --, <!--, <#; not C preprocessor lines). A heuristic: it only decides which
# tokens a paste must cover, and a reply that copies a docstring is not a paste of the code.
_TRIPLE_QUOTED = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'')
_COMMENT_LINE = re.compile(
    r"[ \t]*(?:#(?!(?:include|define|undef|ifn?def|if|elif|else|endif|pragma|import|(?:end)?region)\b)"
    r"|//|/\*|\*(?=[\s/]|$)|--(?=\s|$)|<!--|<#)")


def _joined(tokens: list[str]) -> str:
    return f" {' '.join(tokens)} "  # tokens hold no space: a substring test on this is a token-sequence test


def _source_tokens(source: str) -> tuple[list[str], list[int], list[bool]]:
    """The source's tokens, the line number of each, and whether each is code (not prose, above)."""
    strings = [m.span() for m in _TRIPLE_QUOTED.finditer(source)]
    starts = [a for a, _ in strings]
    tokens: list[str] = []
    lines: list[int] = []
    code: list[bool] = []
    offset = 0
    for lineno, line in enumerate(source.splitlines(keepends=True)):
        comment = _COMMENT_LINE.match(line) is not None
        for m in _TOKEN.finditer(line):
            pos = offset + m.start()
            k = bisect_right(starts, pos) - 1
            tokens.append(m.group())
            lines.append(lineno)
            code.append(not comment and not (k >= 0 and pos < strings[k][1]))
        offset += len(line)
    return tokens, lines, code


def pasted_share(output: str, source: str, run: int = PASTE_RUN) -> float:
    """Share of the source's code tokens that `output` reproduces as pasted code: inside a stretch of
    the source that the reply holds as runs of at least `run` tokens in a row (whitespace ignored),
    the stretch reaching across at least one line break of the source. A signature, a call or a
    docstring sentence the reply mentions lies within one line and does not count; two lines in a
    row do. Comment lines and triple-quoted strings are left out of the share (`_source_tokens`)."""
    tokens, lines, code = _source_tokens(source)
    n_code = sum(code)
    out = _TOKEN.findall(output)
    if not n_code or len(tokens) < run or len(out) < run:
        return 0.0
    grams = {tuple(out[i:i + run]) for i in range(len(out) - run + 1)}
    pasted = start = end = 0
    crosses = False
    for i in range(len(tokens) - run + 1):
        if tuple(tokens[i:i + run]) not in grams:
            continue
        if i >= end:  # a new stretch: count the last one if it crossed a line break
            pasted += sum(code[start:end]) if crosses else 0
            start, crosses = i, False
        end = i + run
        crosses = crosses or lines[i] != lines[i + run - 1]
    pasted += sum(code[start:end]) if crosses else 0
    return pasted / n_code


def quotes_input(output: str, source: str, min_chars: int = QUOTE_MIN_CHARS,
                 min_share: float = PASTE_MIN_SHARE) -> bool:
    """The text reply quotes `source`, whitespace ignored (compared as token sequences): either it
    holds a whole source line with at least `min_chars` non-space characters, e.g. the signature
    `def unquote_to_bytes(string):` copied into a search query (shorter lines, `return x` or `}`,
    are too common to count on their own); or it pastes at least `min_share` of the source's code
    (`pasted_share`), e.g. a one-line preface and then the function with every line under 25
    characters, or with a space added before each parenthesis."""
    out = _TOKEN.findall(output)
    if not out:
        return False
    joined = _joined(out)
    for line in source.splitlines():
        toks = _TOKEN.findall(line)
        if sum(map(len, toks)) >= min_chars and _joined(toks) in joined:
            return True
    return pasted_share(output, source) >= min_share


# Languages written without spaces between words: their words are counted as characters / 2.
_UNSPACED = frozenset({"zh", "zh_tw", "ja", "th"})
# An output may exceed the words its instruction asks for by half (a 12-word query may have 18):
# models count words loosely, and a 14-word query is still a query; the replies this rejects are
# paragraphs about the code (SmolLM2's "web queries" had 26 to 75 words).
WORDS_SLACK = 1.5


def word_count(text: str, language: str) -> int:
    """Whitespace-separated words; for zh, zh_tw, ja and th, non-space characters / 2 (rounded up),
    about a word's length there."""
    if language in _UNSPACED:
        return -(-sum(not c.isspace() for c in text) // 2)
    return len(text.split())


def too_many_words(text: str, language: str, max_words: int) -> bool:
    """`text` has more than `WORDS_SLACK` times the `max_words` its instruction allowed."""
    return word_count(text, language) > int(WORDS_SLACK * max_words)


# A web address in a text output: scheme or "www." up to the next space, quote or bracket.
_URL = re.compile(r"(?i)\b(?:https?://|ftp://|www\.)[^\s\"'<>()\[\]{}`]+")


def invented_url(text: str, source: str) -> bool:
    """`text` holds a web address that `source` does not. A query or summary citing a link the
    code never mentions names a page no one can open (a tryout kept "download the file from
    https://example.com/data.zip" as a web query for code that downloads nothing); a link the
    code holds may be quoted. Compared without scheme, case or trailing punctuation."""
    def bare(url: str) -> str:
        return re.sub(r"(?i)^(?:https?|ftp)://", "", url).rstrip(".,;:!?").lower()

    held = source.lower()
    return any(bare(m.group(0)) not in held for m in _URL.finditer(text))


def check_output(text: str, finish_reason: str, source: str, language: str | None, max_chars: int,
                 quote_source: str = "", max_words: int | None = None) -> str | None:
    """Reason to reject one cleaned LLM output, or None. `language` None = the output is code: no
    language check, but prose in its place is rejected (`not_code`). A text output (`language`
    set) must not open with a chat preamble nor echo the instructions (`preamble`), nor quote
    `quote_source`, the code it was written from: a long line of it or a paste of much of it
    (`quotes_input`; "" = no such check), nor have far more words than `max_words`, the limit its
    instruction set (`too_many_words`, see `too_many_words`; None = no limit), nor cite a web
    address `source` does not hold (`invented_url`). The first failing check names the reason: a
    paste or a chat reply is that before it is too long."""
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
    if language is not None and max_words is not None and too_many_words(text, language, max_words):
        return "too_many_words"
    if language is not None and invented_url(text, source):
        return "invented_url"
    return None


_VERDICT = re.compile(r"\s*([012])\s*\.?\s*")


def parse_verdict(reply: str) -> str | None:
    """Strict QC parse: the whole reply must be one digit 0/1/2 (optionally followed by a period).
    Replies like "10", "2 (not 1)" or "Option 1" are unparseable, unlike the original's substring test."""
    if _THINK_END in reply:
        reply = reply.rsplit(_THINK_END, 1)[1]
    m = _VERDICT.fullmatch(reply)
    return m.group(1) if m else None
