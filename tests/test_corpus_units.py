"""Function/class-level splitting with tree-sitter (tripleforge.code_units)."""

from __future__ import annotations

import pytest

from tripleforge.code_units import split_units

PY = '''import os

@cache
def first(x):
    return x + 1

class Box:
    """A box."""

    def put(self, item):
        # store it
        self.items.append(item)

    def take(self):
        return self.items.pop()
'''


def test_python_top_level_units_with_decorators_and_names() -> None:
    units = split_units(PY, "python", "m.py", max_chars=10_000)
    assert [(u.kind, u.name, u.start_line, u.end_line) for u in units] == [
        ("decorated_definition", "first", 3, 5), ("class_definition", "Box", 7, 15)]
    assert units[0].text.startswith("@cache\ndef first(x):")
    assert "# store it" not in units[1].text


def test_cr_and_crlf_line_ends_give_the_units_of_lf() -> None:
    """A classic-Mac (CR-only) file once cut each function after its first line: the grammar
    does not end a line at a lone CR."""
    lf = [(u.kind, u.name, u.start_line, u.end_line, u.text) for u in split_units(PY, "python", "m.py", 10_000)]
    for ending in ("\r", "\r\n"):
        got = split_units(PY.replace("\n", ending), "python", "m.py", 10_000)
        assert [(u.kind, u.name, u.start_line, u.end_line, u.text) for u in got] == lf


def test_oversized_class_is_split_into_dedented_methods() -> None:
    units = split_units(PY, "python", "m.py", max_chars=120)
    names = [u.name for u in units]
    assert names == ["first", "put", "take"]
    take = units[-1]
    assert take.text == "def take(self):\n    return self.items.pop()"


def test_a_class_that_fits_once_cleaned_is_kept_whole() -> None:
    """`max_chars` was compared with the raw bytes, comments and all: a class whose comments
    (or CJK docstring, 3 bytes a character) passed the limit was split into its methods, though
    the cleaned text checked against `max_chars` fit."""
    comment = "".join(f"    # note {i}: why the box keeps its items in a list\n" for i in range(8))
    cls = 'class Box:\n    """箱子。"""\n' + comment + "    def put(self, item):\n        self.items.append(item)\n\n" \
          "    def take(self):\n        return self.items.pop()\n"
    assert len(cls.encode()) > 400
    units = split_units(cls, "python", "m.py", max_chars=150)
    assert [u.name for u in units] == ["Box"] and len(units[0].text) <= 150 and "# note" not in units[0].text
    assert [u.name for u in split_units(cls, "python", "m.py", max_chars=100)] == ["put", "take"]  # too big even so


def test_java_go_rust_units() -> None:
    java = "package a;\nclass A {\n  void f() { g(); }\n}\ninterface I { void h(); }\n"
    assert [u.kind for u in split_units(java, "java", "A.java", 10_000)] == [
        "class_declaration", "interface_declaration"]
    go = "package main\n\nfunc A() int { return 1 }\n\nfunc (s *S) B() {}\n"
    assert [(u.kind, u.name) for u in split_units(go, "go", "a.go", 10_000)] == [
        ("function_declaration", "A"), ("method_declaration", "B")]
    rust = "use std::io;\n/// doc\nfn main() {\n    // c\n    let x = 1;\n}\nimpl S { fn m(&self) {} }\n"
    units = split_units(rust, "rust", "a.rs", 10_000)
    assert [u.kind for u in units] == ["function_item", "impl_item"]
    assert units[0].text == "fn main() {\n    let x = 1;\n}"


def test_c_function_name_through_declarators() -> None:
    units = split_units("static int *make(int n) { return 0; }\n", "c", "a.c", 10_000)
    assert [(u.kind, u.name) for u in units] == [("function_definition", "make")]


def test_whole_file_when_no_units_or_no_grammar() -> None:
    script = "#!/bin/sh\n# comment\necho hello\nexport A=1\n"
    units = split_units(script, "shell", "a.sh", 10_000)
    assert [(u.kind, u.text) for u in units] == [("file", "echo hello\nexport A=1")]
    bat = "@echo off\nREM c\ngoto end\n:end\n"
    assert [(u.kind, u.start_line, u.end_line) for u in split_units(bat, "batchfile", "a.bat", 10_000)] == [
        ("file", 1, 5)]


@pytest.mark.parametrize("file_name", ["a.js", "a.ts", "a.tsx"])
def test_functions_bound_to_a_name_are_units_and_other_declarations_are_not(file_name: str) -> None:
    # the tryout: `const chunk = (array, size) => {...}` was no unit and in no count
    src = ("export const chunk = (array, size) => {\n  return [array, size];\n};\nconst f = function(a) { return a; };\n"
           "var g = async (x) => x;\nconst A = 5;\nconst gen = function* () { yield 1; };\n"
           "function h() { const inner = () => 1; return inner(); }\n")
    lang = "javascript" if file_name.endswith(".js") else "typescript"
    units = split_units(src, lang, file_name, 10_000)
    assert [(u.kind, u.name, u.start_line) for u in units] == [
        ("lexical_declaration", "chunk", 1), ("lexical_declaration", "f", 4), ("variable_declaration", "g", 5),
        ("lexical_declaration", "gen", 7), ("function_declaration", "h", 8)]  # `const A = 5` is none
    assert units[0].text == "const chunk = (array, size) => {\n  return [array, size];\n};"


def test_a_rust_impl_is_named_by_its_type() -> None:
    rust = "impl Matrix {\n    fn a() {}\n}\nimpl<T> Display for Wrapper<T> { fn fmt() {} }\n"
    assert [u.name for u in split_units(rust, "rust", "a.rs", 10_000)] == ["Matrix", "Wrapper<T>"]


def test_typescript_and_tsx_grammars() -> None:
    ts = "interface P { x: number }\nexport function f(p: P): number { return p.x; }\n"
    assert [u.kind for u in split_units(ts, "typescript", "a.ts", 10_000)] == [
        "interface_declaration", "function_declaration"]
    tsx = "function App() { return <div>hi</div>; }\n"
    assert [u.name for u in split_units(tsx, "typescript", "a.tsx", 10_000)] == ["App"]


def test_decorators_of_an_exported_typescript_class_stay_with_it() -> None:
    """The decorators of `@Component(...) export class` are children of the export statement,
    not of the class: the unit began at `class` and lost them. An undecorated export's unit
    still starts at its declaration."""
    src = ('@Component({\n  selector: "app-root",\n})\nexport class AppComponent {\n  title = "demo";\n}\n\n'
           "@Injectable()\nclass Plain {\n  run(): void {}\n}\n\nexport default class D { x = 1; }\n")
    units = split_units(src, "typescript", "a.ts", 4000)
    assert [(u.name, u.kind, u.start_line, u.end_line) for u in units] == [
        ("AppComponent", "class_declaration", 1, 6), ("Plain", "class_declaration", 8, 11),
        ("D", "class_declaration", 13, 13)]
    assert units[0].text.startswith('@Component({\n  selector: "app-root",\n})\nexport class AppComponent {')
    assert units[1].text.startswith("@Injectable()\nclass Plain")
    assert units[2].text == "class D { x = 1; }"


def test_cplusplus_templates_and_rust_attributes_stay_with_their_unit() -> None:
    """The unit began at the node: `template <typename T>` was cut off (the unit used a `T` it
    never declared, and a template class lost its `;`), and a Rust struct lost its derives."""
    cpp = ("template <typename T, typename C>\nT clamp_value(T v, C c) {\n  return v < 0 ? 0 : v;\n}\n\n"
           "template <typename T> class RingBuffer {\n  T items[8];\n  int head;\n};\n")
    units = split_units(cpp, "cplusplus", "a.cpp", 4000)
    assert [(u.name, u.kind, u.start_line, u.end_line) for u in units] == [
        ("clamp_value", "function_definition", 1, 4), ("RingBuffer", "class_specifier", 6, 9)]
    assert units[0].text.startswith("template <typename T, typename C>\nT clamp_value")
    assert units[1].text.startswith("template <typename T> class") and units[1].text.endswith("};")
    rs = ('#[derive(Debug, Clone)]\n#[serde(rename_all = "camelCase")]\npub struct Config { a: i32 }\n\n'
          "#[inline]\n// a comment between\n#[must_use]\npub fn f() -> i32 { 1 }\n")
    units = split_units(rs, "rust", "a.rs", 4000)
    assert [(u.name, u.start_line) for u in units] == [("Config", 1), ("f", 5)]
    assert units[0].text.startswith("#[derive(Debug, Clone)]\n#[serde(")
    assert units[1].text == "#[inline]\n#[must_use]\npub fn f() -> i32 { 1 }"  # the comment is cut, as any


SPLICED_SQL = """CREATE OPERATOR CLASS gbt_date_ops DEFAULT FOR TYPE date USING gist AS
    OPERATOR 1 < , FUNCTION 1 gbt_date_consistent (internal, date, int2, oid, internal),
    STORAGE gbtreekey16;
ALTER OPERATOR FAMILY gbt_date_ops USING gist ADD OPERATOR 6 <> (date, date);
CREATE FUNCTION gbt_date_consistent(internal,date,int2,oid,internal) RETURNS bool AS 'MODULE_PATHNAME' LANGUAGE C;
CREATE TABLE orders (id serial PRIMARY KEY, placed date NOT NULL, total numeric(10,2));
"""


def test_units_the_grammar_could_not_parse_are_marked_and_give_way_to_inner_units() -> None:
    """Error recovery drew unit bounds: three PostgreSQL statements came back as one "statement";
    a class with one broken method was kept whole, broken method and all (`errors_give_way`)."""
    units = split_units(SPLICED_SQL, "sql", "ext.sql", 4000)
    assert [(u.start_line, u.end_line, u.parse_error) for u in units] == [(1, 5, True), (6, 6, False)]
    py = ("class Box:\n    def put(self, item):\n        self.items.append(item)\n\n    def broken(self:\n"
          "        return 1\n\n    def take(self):\n        return self.items.pop()\n")
    units = split_units(py, "python", "m.py", 4000, errors_give_way=True)
    assert [(u.name, u.parse_error) for u in units] == [("put", False), ("take", False)]
    assert [(u.name, u.parse_error) for u in split_units(py, "python", "m.py", 4000)] == [("Box", True)]
    # a macro before a sound C function is a parse error too: why dropping them is opt-in
    c = "local void zpull(unsigned char *buf, int len)\n{\n    while (len--) *buf++ = 0;\n}\n"
    assert [(u.name, u.parse_error, u.text.endswith("}")) for u in split_units(c, "c", "z.c", 4000)] == [
        ("zpull", True, True)]
