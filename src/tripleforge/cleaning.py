"""Per-language cleaning and validation of code texts, and length buckets.

Comments are removed with the tree-sitter grammar of the language where one is bundled (exact:
a `//` inside a string literal stays), and with line-based rules for batchfile and visual_basic.
Docstrings are kept: they are code-adjacent natural language that queries are written against.
"""

from __future__ import annotations

import bisect
import re
import textwrap

from tripleforge.languages import grammar_for, parser_and_queries

# Bucket edges in characters of the cleaned text; the last bucket is open-ended upwards and
# `max_chars` (<= 32000) caps it.
BUCKET_EDGES: tuple[int, ...] = (0, 500, 1000, 2000, 4000, 8000, 16000, 32000)
LENGTH_BUCKETS: tuple[str, ...] = tuple(
    f"len_{lo}_{hi}" for lo, hi in zip(BUCKET_EDGES[:-1], BUCKET_EDGES[1:], strict=True)
)


def length_bucket(n_chars: int) -> str:
    """`len_<lo>_<hi>` with lo <= n_chars < hi (texts of 16000 chars or more: `len_16000_32000`)."""
    i = bisect.bisect_right(BUCKET_EDGES, n_chars) - 1
    return LENGTH_BUCKETS[min(max(i, 0), len(LENGTH_BUCKETS) - 1)]


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping union of half-open byte ranges (nested comment nodes overlap)."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def cut_ranges(data: bytes, start: int, end: int, ranges: list[tuple[int, int]]) -> bytes:
    """`data[start:end]` without the given (merged, sorted) ranges. A range that is alone on its
    line takes the whole line with it, so removed comment lines leave no blank line behind."""
    pieces: list[bytes] = []
    pos = start
    i = bisect.bisect_left(ranges, (start, -1))
    while i < len(ranges) and ranges[i][0] < end:
        s, e = ranges[i]
        s, e = max(s, start), min(e, end)
        if e > s and data[e - 1:e] == b"\n":
            # Some grammars end a comment node after its line break (tree-sitter-rust's `///` and
            # `//!` doc comments): the break is the line's, kept unless the whole line goes.
            e -= 1
        line_start = data.rfind(b"\n", start, s) + 1 if s > start else start
        line_end = data.find(b"\n", e, end)
        line_end = end if line_end < 0 else line_end
        if not data[line_start:s].strip(b" \t") and not data[e:line_end].strip(b" \t\r"):
            s, e = max(line_start, pos), min(line_end + 1, end)
        if s > pos:
            pieces.append(data[pos:s])
        pos = max(pos, e)
        i += 1
    pieces.append(data[pos:end])
    return b"".join(pieces)


_BLANK_RUNS = re.compile(r"\n{3,}")


def unix_newlines(text: str) -> str:
    """CRLF and lone CR (classic Mac) line ends as LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def tidy(text: str) -> str:
    """Unix newlines, no trailing spaces, at most one blank line in a row, common indent removed."""
    text = unix_newlines(text)
    lines = [line.rstrip() for line in text.split("\n")]
    text = _BLANK_RUNS.sub("\n\n", "\n".join(lines))
    return textwrap.dedent(text).strip("\n")


# Whole-line comments for languages without a bundled grammar.
_BATCH_COMMENT = re.compile(r"(?im)^[ \t]*(@?rem(?=[ \t]|$)|::).*(\n|$)")
_VB_COMMENT_LINE = re.compile(r"(?im)^[ \t]*('|rem(?=[ \t]|$)).*(\n|$)")


def _strip_vb_trailing(line: str) -> str:
    # A `'` starts a comment only outside a string literal (an even number of `"` before it).
    quotes = 0
    for i, ch in enumerate(line):
        if ch == '"':
            quotes += 1
        elif ch == "'" and quotes % 2 == 0:
            return line[:i]
    return line


def strip_comments_by_rules(text: str, code_language: str) -> str:
    if code_language == "batchfile":
        return _BATCH_COMMENT.sub("", text)
    if code_language == "visual_basic":
        text = _VB_COMMENT_LINE.sub("", text)
        return "\n".join(_strip_vb_trailing(line) for line in text.split("\n"))
    return text


def comment_ranges(tree: object, comment_query: object) -> list[tuple[int, int]]:
    import tree_sitter as ts

    if comment_query is None:
        return []
    caps = ts.QueryCursor(comment_query).captures(tree.root_node)  # type: ignore[attr-defined]
    return merge_ranges([(n.start_byte, n.end_byte) for nodes in caps.values() for n in nodes])


def clean_text(text: str, code_language: str, file_name: str = "") -> str:
    """A whole text (a CodeR record, an external record, a file without units) cleaned:
    comments removed, blank lines collapsed, common indentation removed."""
    text = text.lstrip("\ufeff")
    grammar = grammar_for(code_language, file_name)
    if grammar is None:
        return tidy(strip_comments_by_rules(text, code_language))
    parser, _, comment_q = parser_and_queries(grammar)
    data = text.encode("utf-8")
    ranges = comment_ranges(parser.parse(data), comment_q)
    return tidy(cut_ranges(data, 0, len(data), ranges).decode("utf-8", errors="replace"))


# "Has real code" checks on the cleaned text: at least one construct typical of the language.
# Unlike the original (flagembedding.md §1.5): C# is validated under its catalog key `csharp`, and
# SQL accepts SELECT statements, including `SELECT * FROM`.
_F = re.IGNORECASE | re.MULTILINE
_VALIDATORS: dict[str, re.Pattern[str]] = {
    "python": re.compile(
        r"^[ \t]*(async[ \t]+def|def|class)[ \t]+\w+[ \t]*[(:]|^[ \t]*(import[ \t]+\w|from[ \t]+[\w.]+[ \t]+import\b)"
        r"|^[ \t]*[A-Za-z_][\w.]*(\[[^\]\n]*\])?[ \t]*(=[^=]|\(.*\)[ \t]*$)", re.MULTILINE),
    "java": re.compile(r"\b(class|interface|enum|record)[ \t]+\w+|\b(public|private|protected|static|void|final)\b[^;{\n]*[({;=]|\breturn\b[^;]*;"),
    "csharp": re.compile(r"\b(class|struct|interface|record|namespace)[ \t]+\w+|\b(public|private|protected|internal|static|void|var|async)\b[^;{\n]*[({;=]|\breturn\b[^;]*;|=>"),
    # (also a method, `if`/`for`/`while` opening a block, `await`, `this.x`: code without semicolons)
    "javascript": re.compile(r"\b(function|class)\b[^\n]*[({]|\b(const|let|var)[ \t]+\w+[ \t]*=|=>|\breturn\b|\b(import|export)\b[^\n]*(from|\{)|\w\([^\n]*\)[ \t]*;"
                             r"|^[ \t]*(async[ \t]+|static[ \t]+)*[\w$]+[ \t]*\([^()\n]*\)[ \t]*\{|\bawait[ \t]+[\w$.]+|\bthis\.[\w$]+", re.MULTILINE),
    "typescript": re.compile(r"\b(function|class|interface|type|enum)\b[ \t]+\w+|\b(const|let|var)[ \t]+\w+[ \t]*[:=]|=>|\breturn\b|\b(import|export)\b[^\n]*(from|\{)"
                             r"|^[ \t]*((async|static|public|private|protected|readonly)[ \t]+)*[\w$]+[ \t]*\([^()\n]*\)[ \t]*(:[^\n{]*)?\{|\bawait[ \t]+[\w$.]+|\bthis\.[\w$]+", re.MULTILINE),
    "php": re.compile(r"<\?php|\bfunction[ \t]+&?\w+[ \t]*\(|\$\w+[ \t]*(=|->)|\b(class|trait|interface)[ \t]+\w+|\becho\b"),
    "ruby": re.compile(r"^[ \t]*(def|class|module)[ \t]+\S+|\bdo[ \t]*\|[^|]*\||\b(puts|require|attr_accessor|attr_reader)\b|@\w+[ \t]*=", re.MULTILINE),
    "go": re.compile(r"\bfunc\b[^\n]*[({]|\bpackage[ \t]+\w+|\btype[ \t]+\w+[ \t]+(struct|interface)\b|:="),
    # (also a qualified name called or defined, `Type::Type(`, and a call statement `f(x);`: a
    # constructor with an initializer list has no keyword before a `;`, `{` or `(`)
    "cplusplus": re.compile(r"^[ \t]*#[ \t]*(include|define)\b|\b(class|struct|namespace|template)\b[^;\n]*[{<]|\b(int|void|char|bool|auto|double|float|long|unsigned|const|return|std::\w+)\b[^\n]*[;{(]"
                            r"|\w::~?\w+[ \t]*\(|\w\([^\n]*\)[ \t]*;", re.MULTILINE),
    "c": re.compile(r"^[ \t]*#[ \t]*(include|define)\b|\b(int|void|char|double|float|long|unsigned|struct|static|const|return|size_t)\b[^\n]*[;{(]"
                    r"|\w\([^\n]*\)[ \t]*;", re.MULTILINE),
    "rust": re.compile(r"\b(fn|impl|trait|struct|enum|mod|use)\b[ \t]+[\w:<{]|\blet[ \t]+(mut[ \t]+)?\w+|\bpub\b"),
    "perl": re.compile(r"\bsub[ \t]+\w+|\bmy[ \t]+[$@%(]|\buse[ \t]+[\w:]+|[$@%]\w+[ \t]*=[^=~]|\bprint\b[^\n]*;"),
    "shell": re.compile(r"\b(fi|done|esac|echo|export|local|printf|readonly|source)\b|\$\{?\w+|^[ \t]*(function[ \t]+)?[\w-]+[ \t]*\(\)[ \t]*\{|\b(if|while|for)\b[^\n]*;[ \t]*(then|do)\b", re.MULTILINE),
    "sql": re.compile(r"\bselect[ \t\n]+(\*|distinct\b|top\b|[\w\"`\[(]|count\b)[\s\S]*?\bfrom\b|\bselect[ \t]+\S|\binsert[ \t\n]+into\b|\bupdate[ \t\n]+[\w.\"`\[\]]+[ \t\n]+set\b|\bdelete[ \t\n]+from\b|\b(create|alter|drop)[ \t\n]+(or[ \t\n]+replace[ \t\n]+)?(temporary[ \t\n]+|temp[ \t\n]+|unique[ \t\n]+)?(table|view|index|function|procedure|trigger|schema|database|sequence|type)\b|\bwith[ \t\n]+\w+[ \t\n]+as[ \t\n]*\(|\bmerge[ \t\n]+into\b", _F),
    "batchfile": re.compile(r"^[ \t]*@?(echo|set|if|for|goto|call|exit|setlocal|endlocal|pushd|popd|cd|start|shift)\b|^[ \t]*:\w+|%~?\w+%?", _F),
    "fortran": re.compile(r"^[ \t]*(program|subroutine|function|module|integer|real|double[ \t]+precision|logical|character|implicit|call|do|end|use)\b|\bprint[ \t]*\*|\bwrite[ \t]*\(", _F),
    "haskell": re.compile(r"::|^[ \t]*(module|import|data|newtype|class|instance|type)[ \t]+\w|<-|\bwhere\b|^[a-z_][\w']*([ \t]+[\w'(\[_][^=\n]*)?[ \t]*=[^=]", re.MULTILINE),
    "lua": re.compile(r"\bfunction\b[ \t]*[\w.:]*[ \t]*\(|\blocal[ \t]+\w+|\brequire[ \t]*[(\"']|\bthen\b|\bend\b"),
    "powershell": re.compile(r"\bfunction[ \t]+[\w-]+|\$\w+[ \t]*=|\bparam[ \t]*\(|\b[A-Z][a-z]+-[A-Z]\w+\b|\b(foreach|if|switch|try)[ \t]*[({]", re.MULTILINE),
    "visual_basic": re.compile(r"^[ \t]*((public|private|friend|protected|shared)[ \t]+)*(sub|function|class|module|property)[ \t]+\w+|^[ \t]*(dim|set|const)[ \t]+\w+|^[ \t]*end[ \t]+(sub|function|if|class|module|select)\b|\bwscript\.\w+|^[ \t]*if\b[^\n]*\bthen\b", _F),
}


def has_real_code(text: str, code_language: str) -> bool:
    """True when the cleaned text contains a construct of `code_language` (not just prose/data)."""
    pattern = _VALIDATORS.get(code_language)
    return pattern is not None and pattern.search(text) is not None
