"""Benchmark data: Python functions parsed from the interpreter's own library, in a fixed order.

Shared by the benchmarks so they all draw the same kind of real code without downloading anything.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path


def library_files(site_packages: bool = False) -> Iterator[Path]:
    """The stdlib's top-level modules (sorted), then every module under site-packages (sorted)."""
    yield from sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    if site_packages:
        yield from sorted(Path(sysconfig.get_paths()["purelib"]).rglob("*.py"))


def _source_lines(src: str) -> list[str]:
    """`src` split after each \\r\\n, \\n or \\r, ends kept: the lines `ast` positions count."""
    return re.findall(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$", src)


def _segment(lines: list[str], node: ast.stmt) -> str:
    """The source text of `node`, as `ast.get_source_segment` gives it; that function splits the
    whole file on every call, which made reading site-packages take minutes."""
    first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
    col, end_col = node.col_offset, node.end_col_offset
    if first == last:
        return lines[first].encode()[col:end_col].decode()
    head = lines[first].encode()[col:].decode()
    tail = lines[last].encode()[:end_col].decode()
    return "".join([head, *lines[first + 1 : last], tail])


def python_functions(limit: int, min_chars: int, max_chars: int, with_docstring: bool,
                     include_async: bool = True, site_packages: bool = False) -> list[tuple[str, str]]:
    """Up to `limit` unique (first docstring line, source) of functions `min_chars..max_chars` long.

    With `with_docstring`, only functions whose first docstring line has more than 15 characters
    (it serves as the query); otherwise the first element is "".
    """
    kinds: tuple[type, ...] = (ast.FunctionDef, ast.AsyncFunctionDef) if include_async else (ast.FunctionDef,)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for path in library_files(site_packages):
        try:
            src = path.read_text(encoding="utf-8")
            tree = ast.parse(src)
            lines = _source_lines(src)
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, kinds):
                continue
            code = _segment(lines, node)
            if not (min_chars <= len(code) <= max_chars) or code in seen:
                continue
            first = ""
            if with_docstring:
                doc = ast.get_docstring(node)
                first = doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""
                if len(first) <= 15:
                    continue
            seen.add(code)
            out.append((first, code))
            if len(out) >= limit:
                return out
    return out
