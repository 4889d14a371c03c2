"""Cleaning, validation and length buckets (tripleforge.cleaning)."""

from __future__ import annotations

import pytest

from tripleforge.cleaning import LENGTH_BUCKETS, clean_text, has_real_code, length_bucket
from tripleforge.languages import CODE_LANGUAGES, EXTENSIONS, GRAMMARS, language_of_path

# One small real snippet per catalog language; each must pass its own validator.
SNIPPETS = {
    "java": "public class Foo {\n  public int bar(int a) { return a + 1; }\n}",
    "python": "def add(a, b):\n    return a + b",
    "javascript": "function add(a, b) {\n  return a + b;\n}",
    "php": "<?php\nfunction add($a, $b) { return $a + $b; }",
    "ruby": "def add(a, b)\n  a + b\nend",
    "go": "func Add(a int, b int) int {\n\treturn a + b\n}",
    "csharp": "public class Calc {\n    public int Add(int a, int b) => a + b;\n}",
    "cplusplus": "#include <vector>\nint add(int a, int b) { return a + b; }",
    "c": "#include <stdio.h>\nint add(int a, int b) { return a + b; }",
    "rust": "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}",
    "typescript": "function add(a: number, b: number): number {\n  return a + b;\n}",
    "perl": "sub add {\n  my ($a, $b) = @_;\n  return $a + $b;\n}",
    "shell": "greet() {\n  echo \"hello $1\"\n}",
    "sql": "SELECT * FROM users WHERE id = 1;",
    "batchfile": "@echo off\nset NAME=world\necho hello %NAME%",
    "fortran": "program hello\n  print *, 'hello'\nend program hello",
    "haskell": "add :: Int -> Int -> Int\nadd a b = a + b",
    "lua": "local function add(a, b)\n  return a + b\nend",
    "powershell": "function Get-Sum($a, $b) {\n  return $a + $b\n}",
    "visual_basic": "Sub Main()\n    Dim x As Integer\nEnd Sub",
}
PROSE = "This paragraph only describes what the module is for in plain English words"


def test_catalog_is_complete() -> None:
    assert set(SNIPPETS) == set(CODE_LANGUAGES) and len(CODE_LANGUAGES) == 20
    assert set(EXTENSIONS.values()) == set(CODE_LANGUAGES)
    assert [k for k, g in GRAMMARS.items() if g is None] == ["batchfile", "visual_basic"]
    assert language_of_path("a/B.JAVA") == "java" and language_of_path("x.cs") == "csharp"
    assert language_of_path("README") is None and language_of_path("x.txt") is None


def test_a_h_header_is_cplusplus_only_for_what_a_c_compiler_sees() -> None:
    """C headers keep C++ for C++ callers in `#ifdef __cplusplus` branches (glibc's math.h: a
    template under nested #if), and `std::pair` in a comment is no code: all read as C++."""
    from tripleforge.languages import language_of_source

    c_header = ("/* like std::pair<int, int> */\n#ifdef __cplusplus\nextern \"C\" {\n#endif\nint f(int);\n"
                "#ifdef __cplusplus\n}\n# if __GNUC_PREREQ (4, 0)\ntemplate <class T> inline bool iszero (T v) { return !v; }\n"
                "# else\nnamespace std { class x { public: int y; }; }\n# endif\n#endif\n"
                "#if X != 0 && defined(__cplusplus)\n  template <class T> T g(T);\n#endif\n"
                "#ifndef __cplusplus\ntypedef int boolean;\n#else\n#include <cstddef>\n#endif\n")
    assert language_of_source("m.h", c_header) == "c"
    # C++ in an `#elif` taken only by a C++ compiler, or after an `#ifndef __cplusplus`
    elif_header = ("#if defined(_MSC_VER)\nint msvc(void);\n#elif defined(__cplusplus)\nnamespace n { int f(); }\n"
                   "#else\nint plain(void);\n#endif\n#ifndef __cplusplus\nint c_only(void);\n#elif HAVE_STD\n"
                   "template <class T> T g(T);\n#else\nclass K { public: int k; };\n#endif\nint h(int);\n")
    assert language_of_source("e.h", elif_header) == "c"
    assert language_of_source("e.h", elif_header.replace("#elif defined(__cplusplus)", "#elif defined(__GNUC__)")) == "cplusplus"
    # compound conditions: `!C++ && X` leaves the #else to C too; `C++ || X` is seen by C
    compound = ("#ifdef __cplusplus\nnamespace compat {}\n#endif\n#if defined(_WIN32)\n#  define API 1\n"
                "#elif !defined(__cplusplus) && defined(__GNUC__)\n#  define API 2\n#else\nint portable(void);\n#endif\n")
    assert language_of_source("p.h", compound) == "c"
    assert language_of_source("p.h", compound.replace("int portable(void);", "template <class T> T f(T);")) == "cplusplus"
    assert language_of_source("q.h", "#if defined(__cplusplus) || defined(FORCE)\nnamespace q {}\n#endif\nint g(void);\n") == "cplusplus"
    assert language_of_source("m.h", c_header + "namespace geom {\nint g();\n}\n") == "cplusplus"
    assert language_of_source("m.c", "namespace geom { }") == "c"  # only headers are looked into
    # libstdc++ wraps a whole header in a C++ branch: a C compiler would see no code at all
    assert language_of_source("chrono.h", "#pragma once\n#if __cplusplus >= 201103L\nnamespace std _GLIBCXX_VISIBILITY(default)\n"
                                          "{\ntemplate <class T> T f(T);\n}\n#endif\n") == "cplusplus"
    # a `/*` inside a string is no comment (it hid the namespace after it)
    assert language_of_source("g.h", '#pragma once\nstatic const char *glob = "plugins/*.so";\nnamespace geom {\n'
                                     "class Point {\n public:\n  int x;\n};\n}\n/** helpers */\nint helper(void);\n") == "cplusplus"


@pytest.mark.parametrize("lang", CODE_LANGUAGES)
def test_validator_accepts_code_rejects_prose(lang: str) -> None:
    assert has_real_code(SNIPPETS[lang], lang)
    assert not has_real_code(PROSE, lang)


@pytest.mark.parametrize(("code", "lang"), [
    # JavaScript without semicolons: a method of a class, awaiting and looping
    ("async execWorkspaces (args) {\n  await this.setWorkspaces()\n  for (const p of this.workspacePaths) {\n"
     "    this.top = p\n    await this.exec(args)\n  }\n}", "javascript"),
    ("constructor (npm) {\n  super(npm)\n  this.name = npm.config.get('name')\n}", "typescript"),
    # a C++ constructor with an initializer list
    ("PandasWriter::PandasWriter(const PandasOptions& options, int64_t num_rows)\n    : options_(options), "
     "num_rows_(num_rows) {\n  PyAcquireGIL lock;\n  internal::InitPandasStaticData();\n}", "cplusplus"),
])
def test_validator_accepts_code_without_the_usual_keywords(code: str, lang: str) -> None:
    """Real methods were dropped as `no_code`: 5 npm methods and 7 pyarrow constructors of a corpus."""
    assert has_real_code(code, lang)


def test_csharp_is_validated_under_its_catalog_key() -> None:
    # The original keyed its validator "c#", so C# text was never checked.
    assert has_real_code("namespace App { class Program { static void Main() { } } }", "csharp")
    assert not has_real_code("Program notes: remember to ship on Friday", "csharp")


@pytest.mark.parametrize("sql", [
    "SELECT * FROM orders",
    "select name, total from orders where total > 10",
    "SELECT COUNT(*) FROM t",
    "WITH recent AS (SELECT id FROM t) SELECT * FROM recent",
    "INSERT INTO t (a) VALUES (1)",
    "CREATE TABLE t (id INT PRIMARY KEY)",
    "DELETE FROM t WHERE id = 3",
])
def test_sql_accepts_select_star_and_dml(sql: str) -> None:
    assert has_real_code(sql, "sql")


def test_comments_removed_but_not_inside_strings() -> None:
    src = 'def f():\n    # drop me\n    url = "http://x # keep"  # drop\n    return url\n'
    assert clean_text(src, "python") == 'def f():\n    url = "http://x # keep"\n    return url'
    java = 'int f() { /* a */ String s = "//keep"; // b\n  return 1; }'
    out = clean_text(java, "java")
    assert "/* a */" not in out and "// b" not in out and '"//keep"' in out


def test_rust_doc_comments_go_with_their_line_and_keep_the_next_line_as_it_was() -> None:
    # the tryout: tree-sitter-rust ends `///` and `//!` nodes after their line break, and cutting
    # them left their indentation in front of the next line (`pub fn` at 8 spaces, not 4)
    src = ("impl A {\n    /// doc\n    pub fn f(&self) -> u32 {\n        // line\n        let x = 1; /// trailing\n"
           "        x\n    }\n    //! inner\n    fn g() {}\n}\n")
    assert clean_text(src, "rust") == ("impl A {\n    pub fn f(&self) -> u32 {\n        let x = 1;\n        x\n    }\n"
                                       "    fn g() {}\n}")


def test_docstrings_are_kept_and_blank_lines_collapsed() -> None:
    src = '\ufeffdef f():\n    """Say hi."""\n\n\n\n    return 1\n'
    assert clean_text(src, "python") == 'def f():\n    """Say hi."""\n\n    return 1'


def test_rule_based_comments_for_languages_without_grammar() -> None:
    assert clean_text("@echo off\nREM note\n:: note\nset X=1\n", "batchfile") == "@echo off\nset X=1"
    vb = "' header\nDim s As String = \"it's\" ' trailing\nRem old\nSub Main()\nEnd Sub\n"
    assert clean_text(vb, "visual_basic") == 'Dim s As String = "it\'s"\nSub Main()\nEnd Sub'


@pytest.mark.parametrize(("n", "bucket"), [
    (0, "len_0_500"), (499, "len_0_500"), (500, "len_500_1000"), (1999, "len_1000_2000"),
    (4000, "len_4000_8000"), (16000, "len_16000_32000"), (32000, "len_16000_32000"),
])
def test_length_buckets(n: int, bucket: str) -> None:
    assert length_bucket(n) == bucket
    assert LENGTH_BUCKETS[0] == "len_0_500" and LENGTH_BUCKETS[-1] == "len_16000_32000"
    assert len(LENGTH_BUCKETS) == 7


@pytest.mark.parametrize("code,is_credential", [
    ('key = "AKIAQ3EGRT4KZ7WJ2M5N"', True),
    ('"-----BEGIN RSA PRIVATE KEY-----\\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpF"', True),
    ('BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"', False), ('KEY_TYPE = "sk-ecdsa-sha2-nistp256-cert-v01"', False),
    ('STRIPE = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"', True), ('{"api_key": "9f8e7d6c5b4a39281716abcdef"}', True),
    ('apiKey := "9f8e7d6c5b4a39281716abcdef"', True), ("password = 'hunter2hunter2hunter2'", True),
    ('password_field = "password_confirmation"', False), ('api_key_env = "OPENAI_API_KEY_ENV"', False),
    ('PASSWD_FILE = "/etc/passwd-backup"', False), ('SECRET_ID = "123e4567-e89b-12d3-a456-426614174000"', False),
    ('PASSWORD_HASH = "5f4dcc3b5aa765d61d8327deb882cf99"', False), ('auth_token_pattern = r"^Bearer\\s+(\\S+)$"', False),
    ('Client(api_key="dummy-key-for-tests")', False), ('api_key = "<YOUR_API_KEY_GOES_HERE>"', False),
    ('key = "AKIAIOSFODNN7EXAMPLE"', False), ("def hf_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa(): pass", False),
    ("password = getpass()", False), ('API_KEY = os.environ["API_KEY"]', False),
    # a password in a connection URL, and a JSON Web Token
    ('db_paſſword = "a8Kq2mZ7xR4vT9pL"', True),  # re.I matches the long s as s: so must the prefilter
    ('db_prıvate_key = "a8Kq2mZ7xR4vT9pL"', True), ('DB_PRİVATE_KEY = "a8Kq2mZ7xR4vT9pL"', True),  # and ı, İ as i
    ('auth = "Bearer-eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"', True),
    ('DB = "postgresql://app:Xk29fjQ0pLm3@db.internal:5432/prod"', True),
    ('redis.from_url("redis://:p4ssW0rdK9x2@cache:6379/0")', True),
    ('URL = "postgres://user:password@localhost/db"', False), ('url = f"postgres://{user}:{password}@{host}/db"', False),
    ('URI = "mysql://root:%(pw)s@host/db"', False), ('"https://user:example123@host"', False),
    ('token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MjEiLCJleHAiOjE5MDAwMDAwMDB9.Qm9vN2Z1bXlGaWxlR2VuZXJhdGVkU2ln"', True),
    ('JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ'
     '.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"', False),  # jwt.io's documentation token
])
def test_holds_credential(code: str, is_credential: bool) -> None:
    from tripleforge.credentials import holds_credential

    assert holds_credential(code) is is_credential

