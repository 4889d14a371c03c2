"""The catalog of code languages: identifiers, file extensions, tree-sitter grammars, unit node types.

Identifiers are the CodeR catalog names used in `code_language` columns everywhere in the pipeline.
Grammars come from `tree-sitter-language-pack==0.13.0`, which bundles them in the wheel (offline);
it has none for batchfile and visual_basic, so those are handled as whole files with regex cleaning.
"""

from __future__ import annotations

import functools
import re
from typing import Any

# identifier -> (display name used in prompts, markdown fence tag). Tiers as in CodeR: high
# (java … cplusplus), medium (c … sql), low (batchfile … visual_basic).
CODE_LANGUAGE_NAMES: dict[str, tuple[str, str]] = {
    "java": ("Java", "java"), "python": ("Python", "python"), "javascript": ("JavaScript", "javascript"),
    "php": ("PHP", "php"), "ruby": ("Ruby", "ruby"), "go": ("Go", "go"), "csharp": ("C#", "csharp"),
    "cplusplus": ("C++", "cpp"), "c": ("C", "c"), "rust": ("Rust", "rust"),
    "typescript": ("TypeScript", "typescript"), "perl": ("Perl", "perl"), "shell": ("Shell", "bash"),
    "sql": ("SQL", "sql"), "batchfile": ("Batchfile", "bat"), "fortran": ("Fortran", "fortran"),
    "haskell": ("Haskell", "haskell"), "lua": ("Lua", "lua"), "powershell": ("PowerShell", "powershell"),
    "visual_basic": ("Visual Basic", "vbnet"),
}
CODE_LANGUAGES: tuple[str, ...] = tuple(CODE_LANGUAGE_NAMES)

# How people write a language's name in their data ("Python", "C++", "cpp", "golang") -> identifier.
_SPELLINGS: dict[str, str] = {
    **{ident: ident for ident in CODE_LANGUAGE_NAMES},
    **{name.lower(): ident for ident, (name, _) in CODE_LANGUAGE_NAMES.items()},
    **{fence: ident for ident, (_, fence) in CODE_LANGUAGE_NAMES.items()},
    "py": "python", "js": "javascript", "ts": "typescript", "c++": "cplusplus", "golang": "go",
    "c#": "csharp", "cs": "csharp", "rb": "ruby", "rs": "rust", "sh": "shell", "vb": "visual_basic",
}


def catalog_language(name: object) -> str | None:
    """The catalog identifier a `code_language` value or folder name means, case and common
    spellings aside ("Python" and "py" are python, "C++" and "cpp" cplusplus); None when none."""
    return _SPELLINGS.get(name.strip().lower()) if isinstance(name, str) else None

# Lower-case file extension -> code language. `.h` is read as C (the common case; C++ headers
# usually use .hpp/.hh). `.pyi` stubs are left out on purpose: they have no bodies.
EXTENSIONS: dict[str, str] = {
    ".java": "java",
    ".py": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".php": "php",
    ".rb": "ruby",
    ".go": "go",
    ".cs": "csharp",
    ".cpp": "cplusplus", ".cc": "cplusplus", ".cxx": "cplusplus", ".c++": "cplusplus",
    ".hpp": "cplusplus", ".hh": "cplusplus", ".hxx": "cplusplus",
    ".c": "c", ".h": "c",
    ".rs": "rust",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".pl": "perl", ".pm": "perl",
    ".sh": "shell", ".bash": "shell",
    ".sql": "sql",
    ".bat": "batchfile", ".cmd": "batchfile",
    ".f": "fortran", ".for": "fortran", ".f77": "fortran", ".f90": "fortran", ".f95": "fortran",
    ".f03": "fortran", ".f08": "fortran",
    ".hs": "haskell",
    ".lua": "lua",
    ".ps1": "powershell", ".psm1": "powershell",
    ".vb": "visual_basic", ".vbs": "visual_basic", ".bas": "visual_basic",
}

# Code language -> grammar name in tree-sitter-language-pack (None: no bundled grammar).
GRAMMARS: dict[str, str | None] = {
    "java": "java", "python": "python", "javascript": "javascript", "php": "php", "ruby": "ruby",
    "go": "go", "csharp": "csharp", "cplusplus": "cpp", "c": "c", "rust": "rust",
    "typescript": "typescript", "perl": "perl", "shell": "bash", "sql": "sql", "batchfile": None,
    "fortran": "fortran", "haskell": "haskell", "lua": "lua", "powershell": "powershell",
    "visual_basic": None,
}

# Function/class-level node types per grammar. Types a grammar lacks are ignored, so the lists
# can be generous. The outermost unit that fits `max_chars` wins; larger ones are split into the
# units they contain (a big class becomes its methods).
UNIT_TYPES: dict[str, tuple[str, ...]] = {
    "java": ("class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
             "method_declaration", "constructor_declaration"),
    "python": ("decorated_definition", "function_definition", "class_definition"),
    "javascript": ("function_declaration", "generator_function_declaration", "class_declaration",
                   "method_definition"),
    "typescript": ("function_declaration", "generator_function_declaration", "class_declaration",
                   "abstract_class_declaration", "interface_declaration", "method_definition"),
    "php": ("function_definition", "class_declaration", "interface_declaration", "trait_declaration",
            "method_declaration"),
    "ruby": ("class", "module", "method", "singleton_method"),
    "go": ("function_declaration", "method_declaration"),
    "csharp": ("class_declaration", "struct_declaration", "interface_declaration", "record_declaration",
               "method_declaration", "constructor_declaration"),
    "cplusplus": ("function_definition", "class_specifier", "struct_specifier"),
    "c": ("function_definition",),
    "rust": ("function_item", "impl_item", "trait_item", "struct_item", "enum_item", "mod_item"),
    "perl": ("subroutine_declaration_statement", "method_declaration_statement"),
    "shell": ("function_definition",),
    "sql": ("statement",),
    "fortran": ("program", "module", "subroutine", "function"),
    "haskell": ("function", "data_type", "newtype", "class", "instance"),
    "lua": ("function_declaration",),
    "powershell": ("function_statement", "class_statement"),
}

# Units that a node type alone does not tell: a JavaScript/TypeScript function bound to a name,
# `const chunk = (xs, n) => {...}`, a declaration like `const A = 5` otherwise. Much modern code
# has no other functions; without these its files were one `file` unit or lost their functions.
_BOUND_FUNCTIONS = ("arrow_function", "function_expression", "generator_function")
# One pattern per pair: an alternation in the `value:` field matched `const A = 5` too.
UNIT_PATTERNS: dict[str, tuple[str, ...]] = {
    lang: tuple(f"({decl} (variable_declarator value: ({f})))"
                for decl in ("lexical_declaration", "variable_declaration") for f in _BOUND_FUNCTIONS)
    for lang in ("javascript", "typescript")
}

# Node types that are comments (others that merely contain "comment", e.g. SQL's
# `comment_statement` or `keyword_comment`, are code).
COMMENT_TYPES: tuple[str, ...] = ("comment", "line_comment", "block_comment", "html_comment")


def language_of_path(name: str) -> str | None:
    """Code language of a file name by its extension, or None if not in the catalog."""
    dot = name.rfind(".")
    if dot < 0:
        return None
    return EXTENSIONS.get(name[dot:].lower())


# Interpreters a script's `#!` line names (version digits stripped: python3.11 is python) -> language.
_INTERPRETERS: dict[str, str] = {
    "python": "python", "pypy": "python", "node": "javascript", "nodejs": "javascript", "ts-node": "typescript",
    "ruby": "ruby", "perl": "perl", "php": "php", "sh": "shell", "bash": "shell", "zsh": "shell", "dash": "shell",
    "ksh": "shell", "ash": "shell", "pwsh": "powershell", "lua": "lua", "luajit": "lua", "runghc": "haskell",
    "runhaskell": "haskell",
}
_SHEBANG = re.compile(rb"#![ \t]*(\S+)[ \t]*(.*)")


def language_of_shebang(head: bytes) -> str | None:
    """Code language of a script by its `#!` line (`#!/usr/bin/env python3`, `#!/bin/bash`,
    `#!/usr/bin/env -S node --no-warnings`), given the file's first bytes; None when it has no
    such line or names another interpreter. For files without an extension (`bin/tool`), which
    `language_of_path` cannot place."""
    m = _SHEBANG.match(head.split(b"\n", 1)[0].rstrip(b"\r"))
    if m is None:
        return None
    prog = m.group(1).rsplit(b"/", 1)[-1]
    if prog == b"env":
        prog = _env_program(m.group(2).split()).rsplit(b"/", 1)[-1]
    return _INTERPRETERS.get(re.sub(rb"[0-9.]+$", b"", prog).decode("ascii", "replace").lower())


_ENV_OPTIONS_WITH_ARGUMENT = (b"-u", b"--unset", b"-C", b"--chdir", b"-a", b"--argv0")


def _env_program(args: list[bytes]) -> bytes:
    """The program `env ARGS` runs: its first argument that is no option (nor an option's
    argument, as `-u NAME`'s) and no `VAR=value`; `-S`/`--split-string` give the command line
    to split, attached (`-Spython3`, `--split-string=python3`) or as the next arguments."""
    i = 0
    while i < len(args):
        a = args[i]
        if a in _ENV_OPTIONS_WITH_ARGUMENT:
            i += 2
            continue
        for split in (b"--split-string=", b"-S"):
            if a.startswith(split) and len(a) > len(split):
                args = [*args[:i], *a[len(split):].split(), *args[i + 1:]]
                break
        else:
            if a.startswith(b"-") or b"=" in a:
                i += 1
                continue
            return a
    return b""


# A `.h` file is C by its extension, but C++ projects (torch, arrow and most others) name their
# headers `.h` too; parsed as C, a namespace became one broken "function" and the classes in it
# were lost. These constructs exist in C++ only. They are looked for outside comments (`std::pair`
# in one) and outside `#if(def) __cplusplus` blocks, where a C header (glibc's math.h and
# pthread.h, gmp.h) keeps what it offers C++ callers.
_CPLUSPLUS_HEADER = re.compile(
    r"^[ \t]*(?:namespace(?:[ \t]+[\w:]+)?(?:[ \t]+\w+\([^()\n]*\))?\s*\{|template[ \t]*<|(?:public|private|protected)[ \t]*:"
    r"|class[ \t]+\w+[\w \t:,<>]*\{|#[ \t]*include[ \t]*<(?:[a-z_]+)>)|\bstd::\w",
    re.MULTILINE,
)
# comments, and the string and character literals a `/*` or `//` inside is no comment in; an
# unclosed `/*` runs to the end, as for a compiler (and no later `/*` scans the rest again)
_C_COMMENTS = re.compile(r"""("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|/\*.*?(?:\*/|\Z)|//[^\n]*""", re.DOTALL)
_CONDITIONAL = re.compile(r"[ \t]*#[ \t]*(ifdef|ifndef|if|elif|else|endif)\b(.*)")
_NOT_CPLUSPLUS = re.compile(r"!\s*(?:defined\s*\(?\s*)?__cplusplus")
_PARENTHESES = re.compile(r"\([^()]*\)")
_C_CODE_LINE = re.compile(r"^[ \t]*[^\s#]", re.MULTILINE)  # a line that is not a preprocessor line


def _top_level(cond: str) -> str:
    """A preprocessor condition without its parenthesized parts: what joins its terms."""
    while (shorter := _PARENTHESES.sub("", cond)) != cond:
        cond = shorter
    return cond


def _outside_cplusplus_branches(code: str) -> str:
    """`code` without the lines of preprocessor branches taken only when compiled as C++
    (`#ifdef __cplusplus`, `#if … defined(__cplusplus)`, `#elif defined(__cplusplus)`, the
    `#elif`/`#else` after `#ifndef __cplusplus`), nested conditionals followed."""
    out: list[str] = []
    depth = 0
    skipping = 0  # the depth of the C++ branch being left out, 0 when none
    cplusplus_else: set[int] = set()  # depths whose `#else` is the C++ branch
    for line in code.split("\n"):
        d = _CONDITIONAL.match(line)
        if d is None:
            if not skipping:
                out.append(line)
            continue
        kw, cond = d.group(1), d.group(2)
        # A branch is C++ only when its condition needs __cplusplus (`A && defined(__cplusplus)`,
        # not `A || …`); the branches after it are C++ only when it holds whenever C++ does not
        # (`!defined(__cplusplus) || A`, not `… && A`).
        mentions, top = "__cplusplus" in cond, _top_level(cond)
        negated = kw == "ifndef" or _NOT_CPLUSPLUS.search(cond) is not None
        cplusplus_only = mentions and not negated and "||" not in top
        not_cplusplus = mentions and negated and "&&" not in top
        if kw in ("if", "ifdef", "ifndef"):
            depth += 1
            if not skipping:
                if not_cplusplus:
                    cplusplus_else.add(depth)
                elif cplusplus_only:
                    skipping = depth
        elif kw in ("elif", "else"):
            if skipping == depth:
                skipping = 0  # the branch after a C++ one is taken when not compiled as C++
            if not skipping:
                if depth in cplusplus_else:
                    skipping = depth  # every later branch of an `#ifndef __cplusplus` chain is C++ only
                elif kw == "elif" and not_cplusplus:
                    cplusplus_else.add(depth)
                elif kw == "elif" and cplusplus_only:
                    skipping = depth
        elif kw == "endif":
            if skipping == depth:
                skipping = 0
            cplusplus_else.discard(depth)
            depth = max(depth - 1, 0)
    return "\n".join(out)


def possible_languages(name: str) -> frozenset[str]:
    """The languages a file of this name can turn out to be (`language_of_source`): a reader must
    read it when any of them is wanted. Empty for a file outside the catalog."""
    lang = language_of_path(name)
    if lang is None:
        return frozenset()
    return frozenset({"c", "cplusplus"}) if lang == "c" and name.lower().endswith(".h") else frozenset({lang})


def language_of_source(name: str, text: str) -> str | None:
    """`language_of_path`, except that a `.h` file holding C++ constructs is C++."""
    lang = language_of_path(name)
    if lang == "c" and name.lower().endswith(".h"):
        code = _C_COMMENTS.sub(lambda m: m.group(1) or "", text)
        if not _CPLUSPLUS_HEADER.search(code):
            return lang
        seen_by_c = _outside_cplusplus_branches(code)
        # C++ where a C compiler looks, or a header that is all C++ branch (libstdc++ wraps its
        # whole body in `#if __cplusplus >= 201103L`): a C compiler sees only preprocessor lines
        if _CPLUSPLUS_HEADER.search(seen_by_c) or not _C_CODE_LINE.search(seen_by_c):
            return "cplusplus"
    return lang


# Markdown fence tags that are not a file extension nor one of our names (lower-case).
_FENCE_TAGS: dict[str, str] = {
    "python3": "python", "py3": "python", "node": "javascript", "nodejs": "javascript",
    "c++": "cplusplus", "cpp": "cplusplus", "c#": "csharp", "golang": "go", "bash": "shell",
    "sh": "shell", "zsh": "shell", "ps1": "powershell", "pwsh": "powershell", "ps": "powershell",
    "vb": "visual_basic", "vbnet": "visual_basic", "vb.net": "visual_basic", "batch": "batchfile",
    "bat": "batchfile", "cmd": "batchfile", "postgresql": "sql", "mysql": "sql", "sqlite": "sql",
    "tsql": "sql", "plsql": "sql",
}


def language_of_fence_tag(tag: str) -> str | None:
    """Code language a Markdown fence's tag names (```py, ```c++, ```golang ...), or None for a tag
    that names none of ours or no language (```text, ```console, ```)."""
    t = tag.strip().lower().split()[0] if tag.strip() else ""
    if not t:
        return None
    if t in GRAMMARS:
        return t
    return _FENCE_TAGS.get(t) or EXTENSIONS.get("." + t)


def grammar_for(code_language: str, file_name: str = "") -> str | None:
    """Grammar name for a language (`.tsx` files need the tsx grammar)."""
    if code_language == "typescript" and file_name.lower().endswith(".tsx"):
        return "tsx"
    return GRAMMARS.get(code_language)


@functools.lru_cache(maxsize=None)
def parser_and_queries(grammar: str) -> tuple[Any, Any, Any]:
    """(parser, query capturing units as `u` and comments as `c`, comment-only query), built once
    per process. One query for both saves a second walk of the tree (~40% of query time)."""
    import tree_sitter as ts
    import tree_sitter_language_pack as tslp

    lang = tslp.get_language(grammar)  # type: ignore[arg-type]
    parser = tslp.get_parser(grammar)  # type: ignore[arg-type]
    kinds = {lang.node_kind_for_id(i) for i in range(lang.node_kind_count) if lang.node_kind_is_named(i)}
    code_language = next((k for k, g in GRAMMARS.items() if g == grammar), "typescript")
    units = [f"({t})" for t in UNIT_TYPES.get(code_language, ()) if t in kinds]
    needed = {"lexical_declaration", "variable_declaration", "variable_declarator", *_BOUND_FUNCTIONS}
    if needed <= kinds:
        units += UNIT_PATTERNS.get(code_language, ())
    comments = [t for t in COMMENT_TYPES if t in kinds]
    unit_pattern = "[" + " ".join(units) + "] @u" if units else ""
    comment_pattern = "[" + " ".join(f"({t})" for t in comments) + "] @c" if comments else ""
    both_q = ts.Query(lang, f"{unit_pattern} {comment_pattern}") if units or comments else None
    comment_q = ts.Query(lang, comment_pattern) if comments else None
    return parser, both_q, comment_q
