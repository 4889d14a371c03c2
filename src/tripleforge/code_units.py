"""Split a source file into function/class-level units with tree-sitter (one parse per file).

The outermost unit whose cleaned text fits `max_chars` is kept whole; a larger one is replaced by the units it
contains (a big class becomes its methods). A file with no grammar or no units is one unit
(`kind = "file"`). Each unit's text is cleaned (comments cut using the same parse, blank lines
collapsed, dedented).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tripleforge.cleaning import clean_text, cut_ranges, merge_ranges, tidy, unix_newlines
from tripleforge.languages import grammar_for, parser_and_queries


@dataclass(frozen=True)
class Unit:
    text: str          # cleaned text
    name: str          # identifier of the function/class where the grammar names it, else ""
    kind: str          # tree-sitter node type, or "file"
    start_line: int    # 1-based, inclusive
    end_line: int
    parse_error: bool = False  # the grammar could not parse it: its bounds come from error recovery
    longest_line: int = 0  # characters of the longest source line it spans, comments and all


def _node_name(node: object) -> str:
    """Best-effort identifier: the `name` field, looking through decorators and C declarators; the
    variable a JavaScript function is bound to (`const f = () => ...`); the type a Rust `impl`
    is for."""
    if node.type == "impl_item":  # type: ignore[attr-defined]
        target = node.child_by_field_name("type")  # type: ignore[attr-defined]
        return target.text.decode("utf-8", errors="replace")[:200] if target is not None else ""
    if node.type in ("lexical_declaration", "variable_declaration"):  # type: ignore[attr-defined]
        node = next((c for c in node.named_children if c.type == "variable_declarator"), node)  # type: ignore[attr-defined]
    current = node
    for _ in range(6):
        name = current.child_by_field_name("name")  # type: ignore[attr-defined]
        if name is not None:
            return name.text.decode("utf-8", errors="replace")[:200]
        nxt = (current.child_by_field_name("definition")  # type: ignore[attr-defined]
               or current.child_by_field_name("declarator"))  # type: ignore[attr-defined]
        if nxt is None:
            break
        if nxt.type.endswith("identifier"):
            return nxt.text.decode("utf-8", errors="replace")[:200]
        current = nxt
    return ""


@dataclass(frozen=True)
class _Span:
    """Where a unit's text runs: its node (name, kind) plus what belongs to it outside the node."""

    node: Any
    start_byte: int
    end_byte: int
    start_line: int  # 0-based rows
    end_line: int


# C++ `template <...>` wraps the function or class it declares (and holds the class's `;`); a
# JavaScript/TypeScript `export` holds the decorators of the class it exports (`@Component(...)
# export class ...`); Rust attributes (`#[derive(...)]`, `#[cfg(test)]`) are sibling items before
# the one they annotate. Cut at the node, a template unit used a `T` it never declared, an
# exported Angular component lost its decorator and a struct lost its derives. An export without
# decorators is no wrapper: its unit starts at the declaration, as it always has.
_WRAPPERS = ("template_declaration",)
_LEADING = ("attribute_item",)
_COMMENTS_BETWEEN = ("line_comment", "block_comment", "comment")


def _wraps(parent: Any) -> bool:
    return parent.type in _WRAPPERS or (
        parent.type == "export_statement" and any(c.type == "decorator" for c in parent.named_children))


def _span(node: Any) -> _Span:
    outer = node
    while outer.parent is not None and _wraps(outer.parent):
        outer = outer.parent
    start, prev = outer, outer.prev_named_sibling
    while prev is not None and prev.type in _LEADING + _COMMENTS_BETWEEN:
        if prev.type in _LEADING:
            start = prev
        prev = prev.prev_named_sibling
    return _Span(node, start.start_byte, outer.end_byte, start.start_point[0], outer.end_point[0])


def _select_units(nodes: list[_Span], max_chars: int, cleaned: Callable[[_Span], str],
                  errors_give_way: bool = False) -> list[_Span]:
    """Outermost units that fit; an oversized unit gives way to the units inside it (if any).
    A unit fits when its `cleaned` text (what `max_chars` is checked against later) does; that
    text is only made for a unit whose raw bytes are more than `max_chars`, since cleaning only
    takes characters away. Measured raw, a class whose comments or non-ASCII text (3 bytes a CJK
    character) passed the limit was split into its methods although it fit. With
    `errors_give_way`, a unit the grammar could not parse gives way to the units inside it too: a
    class with one broken method keeps the others."""
    ordered = sorted(nodes, key=lambda n: (n.start_byte, -n.end_byte))
    chosen: list[_Span] = []
    taken_until = -1
    for i, node in enumerate(ordered):
        s, e = node.start_byte, node.end_byte
        if s < taken_until:
            continue
        has_inner = i + 1 < len(ordered) and ordered[i + 1].end_byte <= e
        broken = errors_give_way and node.node.has_error
        if has_inner and (broken or (e - s > max_chars and len(cleaned(node)) > max_chars)):
            continue  # an oversized unit, or one the grammar could not parse, gives way to the units inside
        chosen.append(node)
        taken_until = e
    return chosen


def split_units(text: str, code_language: str, file_name: str, max_chars: int,
                errors_give_way: bool = False) -> list[Unit]:
    """Units of one decoded source file (BOM already removed). `errors_give_way`: a unit the
    grammar could not parse is replaced by the units inside it, if any (see `_select_units`);
    every unit says whether it holds a parse error (`Unit.parse_error`)."""
    # before parsing: grammars do not end a line at a lone CR, so a function of a CR-only file
    # ended after its first line (its docstring), and line numbers count LFs
    text = unix_newlines(text)
    grammar = grammar_for(code_language, file_name)
    n_lines = text.count("\n") + 1
    if grammar is None:
        return [Unit(clean_text(text, code_language, file_name), "", "file", 1, n_lines)]
    import tree_sitter as ts

    parser, both_q, _ = parser_and_queries(grammar)
    data = text.encode("utf-8")
    tree = parser.parse(data)
    caps = ts.QueryCursor(both_q).captures(tree.root_node) if both_q is not None else {}
    comments = merge_ranges([(n.start_byte, n.end_byte) for n in caps.get("c", [])])
    spans = [_span(node) for node in caps.get("u", [])]
    texts: dict[tuple[int, int], str] = {}

    def cleaned(span: _Span) -> str:
        key = (span.start_byte, span.end_byte)
        if key not in texts:
            s, e = key
            line_start = data.rfind(b"\n", 0, s) + 1
            indent = data[line_start:s]
            # Keep the unit's own indentation on its first line so dedent sees a consistent block.
            prefix = indent if not indent.strip(b" \t") else b""
            texts[key] = tidy((prefix + cut_ranges(data, s, e, comments)).decode("utf-8", errors="replace"))
        return texts[key]

    # a function cut out of a minified file is one line of its own, short enough to pass; the
    # source line it sits on is the file's
    line_chars = [len(line) for line in text.split("\n")]
    units = []
    for span in _select_units(spans, max_chars, cleaned, errors_give_way):
        units.append(Unit(
            text=cleaned(span),
            name=_node_name(span.node),
            kind=span.node.type,
            start_line=span.start_line + 1,
            end_line=span.end_line + 1,
            parse_error=span.node.has_error,
            longest_line=max(line_chars[span.start_line : span.end_line + 1]),
        ))
    if not units:
        whole = tidy(cut_ranges(data, 0, len(data), comments).decode("utf-8", errors="replace"))
        units.append(Unit(whole, "", "file", 1, n_lines))
    return units
