"""Reply cleaning, heuristic filters and the strict QC parse."""

from __future__ import annotations

import pytest

from tripleforge.quality import (
    check_output,
    clean_reply,
    code_not_text,
    copies_input,
    invented_url,
    language_ok,
    parse_verdict,
    pasted_share,
    quotes_input,
    text_preamble,
    too_many_words,
    word_count,
    wrong_code_language,
)


@pytest.mark.parametrize("reply,verdict", [
    ("1", "1"), (" 2\n", "2"), ("0.", "0"), ("<think>maybe 0</think>1", "1"),
    ("10", None), ("2 (not 1)", None), ("Option 1", None), ("1 or 2", None), ("", None), ("yes", None),
])
def test_verdict_parse_is_strict(reply: str, verdict: str | None) -> None:
    assert parse_verdict(reply) == verdict


def test_clean_reply() -> None:
    assert clean_reply('<think>hmm</think>  "Sums two numbers."  ', False) == "Sums two numbers."
    assert clean_reply("Here it is:\n```python\nx = 1\n```\nDone.", True) == "x = 1"
    # text outputs keep surrounding prose; only a reply that is exactly one block is unwrapped
    assert clean_reply("Use:\n```\nx\n```", False) == "Use:\n```\nx\n```"
    assert clean_reply("```\nplain words\n```", False) == "plain words"


def test_language_check() -> None:
    assert language_ok("计算两个数字的和", "zh")
    assert not language_ok("Adds two numbers", "zh")
    assert language_ok("Adds two numbers with `sum()`", "en")
    assert not language_ok("计算两个数字的和", "en")
    assert language_ok("Складывает два числа", "ru") and not language_ok("Adds numbers", "ru")
    assert not language_ok("123 + 456", "en")


def test_check_output_reasons() -> None:
    src = "def add(a, b):\n    return a + b\n"
    assert check_output("", "stop", src, "en", 100) == "empty"
    assert check_output("Adds.", "length", src, "en", 100) == "truncated"
    assert check_output("x" * 101, "stop", src, None, 100) == "too_long"
    assert check_output("def add(a, b):  return a + b", "stop", src, None, 100) == "copies_input"
    assert check_output("Adds two numbers", "stop", src, "zh", 100) == "wrong_language"
    assert check_output("Adds two numbers", "stop", src, "en", 100) is None
    # code outputs (language None): prose in place of code is rejected, code of any shape is not
    for prose in ("This function returns the sum of two numbers.", "Here is a version that subtracts:\ndef sub(a, b): ...",
                  "Sure! def mul(a, b): return a * b"):
        assert check_output(prose, "stop", src, None, 100) == "not_code", prose
    for code in ("def mul(a, b):\n    return a * b", "SELECT name FROM users WHERE age > 30;", "ls -la /tmp",
                 "return total", "x = 1  # Here is a value.", "Here = 1", "#include <x.h>\nint y;",
                 "# sum\ntotal = a + b"):
        assert check_output(code, "stop", src, None, 100) is None, code
    # the tryout: a "refactored code" positive that was one comment line, the plan and no code
    for comments in ("# refactor the given code to improve its performance using `mul`",
                     "// step 1: read\n\n// step 2: write", "/* TODO */\n-- later"):
        assert check_output(comments, "stop", src, None, 100) == "not_code", comments
    assert copies_input(src, src) and not copies_input("return a + b", src)


def test_word_limit_has_half_again_of_slack() -> None:
    src = "def add(a, b):\n    return a + b\n"
    words = lambda n: " ".join(["sum"] * n)  # noqa: E731
    assert word_count(words(18), "en") == 18 and not too_many_words(words(18), "en", 12)
    assert too_many_words(words(19), "en", 12)
    assert check_output(words(19), "stop", src, "en", 1000, max_words=12) == "too_many_words"
    assert check_output(words(18), "stop", src, "en", 1000, max_words=12) is None
    assert check_output(words(40), "stop", src, "en", 1000) is None  # no limit unless the task sets one
    # unspaced scripts: two characters a word, spaces not counted
    assert word_count("计算 两个数字的和", "zh") == 4 and word_count("ค้นหาไฟล์", "th") == 5
    assert check_output("和" * 36, "stop", src, "zh", 1000, max_words=12) is None
    assert check_output("和" * 37, "stop", src, "zh", 1000, max_words=12) == "too_many_words"
    # code outputs are not counted in words
    assert check_output("x = 1\n" * 30, "stop", src, None, 1000, max_words=12) is None



def test_a_web_address_the_code_does_not_hold_is_invented() -> None:
    src = 'def fetch():\n    return urlopen("https://api.example.org/v2/items").read()\n'
    made_up = "download the zip from https://files.example.com/data.zip in python"
    assert invented_url(made_up, src) and check_output(made_up, "stop", src, "en", 1000) == "invented_url"
    assert invented_url("see www.python-guide.org for requests", src)
    # an address the code holds may be cited, whatever its scheme, case or closing period
    for quoted in ("fetch items from api.example.org/v2/items", "GET HTTP://API.EXAMPLE.ORG/v2/items.",
                   "call https://api.example.org/v2/items and read the body"):
        assert not invented_url(quoted, src), quoted
    assert check_output("read a file over http in python", "stop", src, "en", 1000) is None  # no address
    assert check_output('x = "https://made.up/"', "stop", src, None, 1000) is None  # code outputs are not checked



def test_the_fence_tag_names_the_code_language() -> None:
    from tripleforge.languages import language_of_fence_tag

    assert [language_of_fence_tag(t) for t in ("py", "Python3", "js", "c++", "C#", "golang", "ts", "rs",
                                               "bash", "pwsh", "sql", "text", "console", "")] == [
        "python", "python", "javascript", "cplusplus", "csharp", "go", "typescript", "rust",
        "shell", "powershell", "sql", None, None, None]
    assert wrong_code_language("```python\ndef f(): pass\n```", "javascript")
    assert not wrong_code_language("```javascript\nconst f = 1;\n```", "javascript")
    assert not wrong_code_language("```\nconst f = 1;\n```", "javascript")  # no tag: not judged
    assert not wrong_code_language("const f = 1;", "javascript")
    assert not wrong_code_language("```js\nconst f = 1;\n```", "typescript")  # JavaScript is TypeScript
    assert wrong_code_language("```ts\nconst f: number = 1;\n```", "javascript")
    assert not wrong_code_language("```c\nint x;\n```", "cplusplus") and wrong_code_language("```cpp\nint x;\n```", "c")


@pytest.mark.parametrize("text", [
    "from datetime import datetime\ndef main():\n    ft = CurvesTurtle()\n    ft.draw(3)\n    print(datetime.now())\nmain()",
    "const xs = [1, 2];\nfunction f(x) {\n  return x + 1;\n}",
    "x = load()\ny = x.strip()\nprint(y)",
])
def test_code_in_place_of_prose_is_code_not_text(text: str) -> None:
    assert code_not_text(text)


@pytest.mark.parametrize("text", [
    "Which of the two functions handles an empty list, and why does the second one call sorted()?",
    "Summary: reads a file.\nIt strips newlines.\nIt returns a list of lines.",
    "The first version loops over the list.\nThe second one uses sum(x for x in xs).\nBoth return an int.",
    "What is the difference between the two?\n1. The first uses a for loop.\n2. The second uses recursion.",
    "Compare these functions:\n- add(a, b) returns a + b\n- sub(a, b) returns a - b\nWhich is faster?",
    "def f(x): return x\nis the function; it returns its argument unchanged.",
])
def test_prose_that_mentions_code_is_text(text: str) -> None:
    assert not code_not_text(text)


def test_the_note_after_code_stops_at_the_next_block() -> None:
    from tripleforge.quality import note_after_code

    assert note_after_code("```py\nx = 1\n```\nBug: x is 1.") == "Bug: x is 1."
    assert note_after_code("```py\nx = 1\n```\nBug: x is 1.\n```py\nx = 2\n```") == "Bug: x is 1."
    assert note_after_code("```py\nx = 1\n```") == "" and note_after_code("x = 1\nBug.") == ""

UNQUOTE = ('def unquote_to_bytes(string):\n'
           '    """unquote_to_bytes(\'abc%20def\') -> b\'abc def\'."""\n'
           '    if not string:\n'
           '        return b""\n'
           '    bits = string.split(b"%")\n'
           '    res = [bits[0]]\n'
           '    for item in bits[1:]:\n'
           '        res.append(bytes.fromhex(item[:2].decode()) + item[2:])\n'
           '    return b"".join(res)\n')


@pytest.mark.parametrize("reply", [
    "python def unquote_to_bytes(string): example",           # the signature (28 non-space chars)
    "Use `def   unquote_to_bytes(string):`\nto decode",        # whitespace differs, quoted in backticks
    "how does res.append(bytes.fromhex(item[:2].decode()) + item[2:]) work",
    '```python\ndef unquote_to_bytes(string):\n    """unquote_to_bytes(\'abc%20def\') -> b\'abc def\'."""\n```\n'
    "Please provide the rest of the answer.",                 # seen from SmolLM2 as a web query
])
def test_text_quoting_a_line_of_its_code_is_rejected(reply: str) -> None:
    assert quotes_input(reply, UNQUOTE)
    assert check_output(reply, "stop", UNQUOTE, "en", 4000, quote_source=UNQUOTE) == "quotes_input"
    # without a quote source (hybrid and code-citing tasks, prose negatives) the reply passes
    assert check_output(reply, "stop", UNQUOTE, "en", 4000) is None


@pytest.mark.parametrize("reply", [
    "python unquote percent-encoded string to bytes",
    "Decodes %xx escapes in a string into bytes with bytes.fromhex.",
    "if not string return empty bytes",                       # short lines (< 25 non-space chars) are common
    'what does bits = string.split(b"%") do',                 # `bits = string.split(b"%")`: 22 non-space chars
    "unquote_to_bytes(string) in urllib.parse",               # part of a line is not the line
])
def test_text_sharing_words_or_short_lines_with_its_code_passes(reply: str) -> None:
    assert not quotes_input(reply, UNQUOTE)
    assert check_output(reply, "stop", UNQUOTE, "en", 4000, quote_source=UNQUOTE) is None


def test_quote_threshold_counts_non_space_characters() -> None:
    src = "x = 1\n" + "a" * 24 + "\n    " + "bc " * 12 + "d\n"  # 24 chars; 25 non-space chars among spaces
    assert not quotes_input("a" * 24, src)
    assert quotes_input("see " + "bc  " * 12 + "d", src)
    assert not quotes_input("", src) and not quotes_input("anything", "")


@pytest.mark.parametrize("reply", [
    "Sure, here is a search query: python decode percent escapes",
    "Sure! python decode percent escapes",
    "Certainly. The function decodes percent escapes.",
    "Of course! It decodes percent escapes.",
    "Okay, the query is python percent decode",
    "Here is a query: python percent decode",
    "Here's the summary: it decodes percent escapes.",
    "Here are three queries:\n1. python percent decode",
    "Below is a one-sentence summary of the code.",
    "I'd be happy to help! python percent decode",
    "The query to a web search engine should be:\n\n```python\n**[example]**\n```",
    "The search query would be \"python percent decode\"",
    "A good query for this code would be: python percent decode",
    "The summary is: it decodes percent escapes.",
    "Query: python percent decode",
    "Search query: python percent decode",
    "**Search query:** python percent decode",
    "Answer: use bytes.fromhex on each escape",
    '"Here is the query" python percent decode',
    # chat replies and instruction echoes SmolLM2 gave as web queries
    "I'm ready to help. What's the project about?",
    "I'm ready to help. What's your request?",
    "I'm glad you found the code snippet helpful. I'll just rephrase it to make it a bit more concise:",
    "I am here to help with your Python code.",
    "Please provide your request, and I'll provide a response.",
    "Please share your code and I will write the query.",
    "Please provide more details about the function.",
    "Thanks for sharing the code! It decodes percent escapes.",
    "A developer would type this in a web search engine at least 10 times.",
    "This response is intended to clarify the rules. Please refer to the response's rules for more details.",
    "The above response is in English. You can add the following in any language to make it more engaging:",
    "The developer's response should include a brief explanation of the code, and a list of rules.",
    "To respond to this query, I'll break it down into a single response that meets the specified rules:",
    "python percent decode (what you would type into a web search engine)",
    # refusals (a tryout kept the first as a bug description)
    "I'm sorry for any confusion, but as a powerShell developer, I'm unable to provide a detailed solution.",
    "I apologize, but as an AI I cannot write that.",
    "As an AI language model, I cannot browse the web.",
    "I cannot provide the code for that request.",
    "I'm unable to help with this task.",
    "Sorry, I can't help with that.",
    "This is a bug report.",  # a label for the text, kept by a tryout as a bug description
    "This is a short summary",
])
def test_text_opening_with_a_chat_preamble_is_rejected(reply: str) -> None:
    assert text_preamble(reply)
    assert check_output(reply, "stop", UNQUOTE, "en", 4000) == "preamble"


@pytest.mark.parametrize("reply", [
    "This function returns the bytes of a percent-encoded string.",
    "How to decode percent escapes into bytes in Python",
    "python urllib unquote to bytes",
    "The code is used to decode percent escapes.",
    "This is a Python function to unquote a string and convert it to bytes.",
    "The query builder is created from the session.",
    "The query should be parameterized to avoid SQL injection.",  # a review, not a preamble
    "The question is whether escapes may be lower-case.",
    "The answer depends on the size of the input.",
    "Query a SQLite database with Python",                         # "query" as a verb
    "Here document in bash",
    "OK button click handler in tkinter",
    "Sure-fire way to parse percent escapes",
    "Summary of add",
    "Answering HTTP requests with asyncio",
    # queries and texts that start like the new openers, or mention responses, rules and search engines
    "I'm getting a KeyError when reading a nested dict in Python",
    "I'm trying to decode percent escapes into bytes, how?",
    "Please explain how urllib unquotes percent escapes",
    "Please give more examples of bytes.fromhex",
    "Please provide the code to decode percent escapes",
    "Thank-you page handler in Django",
    "This response has no Content-Length header, so the client reads until EOF.",
    "Your response could not be parsed: expected bytes, got str",
    "The response object is decoded as UTF-8 and returned.",
    "The rules are loaded from a YAML file and applied in order.",
    "Validates that the password meets the specified rules.",
    "build a web search engine crawler in python",
    "A developer can use this function to decode form data.",
    "To respond to HTTP requests, the server spawns one thread per client.",
    # a user's own trouble, not a refusal
    "I can't connect to postgres from a docker container",
    "I cannot import numpy after upgrading pip",
    "I'm unable to install psycopg2 on macOS",
    "Sorry page template in Django",
    "This is a bug report form built with Flask",
    "This is a summary of the request headers, written to the log.",
])
def test_text_without_a_preamble_passes(reply: str) -> None:
    assert not text_preamble(reply)
    assert check_output(reply, "stop", UNQUOTE, "en", 4000, quote_source=UNQUOTE) is None


def test_preamble_and_quote_checks_are_for_text_outputs_only() -> None:
    # code outputs (language None) keep their own check (`not_code`); a code line of the source is fine there
    assert check_output("def unquote_to_bytes(string):\n    return b''", "stop", UNQUOTE, None, 4000,
                        quote_source=UNQUOTE) is None
    assert check_output("Here is the code: x = 1", "stop", UNQUOTE, None, 4000) == "not_code"
    # the earlier reasons come first: a whole copy is copies_input, not quotes_input
    assert check_output(UNQUOTE, "stop", UNQUOTE, "en", 4000, quote_source=UNQUOTE) == "copies_input"


# pdb's do_unalias and the web query SmolLM2 wrote for it: a one-line preface, then 7 of its 8
# lines. Every line is under 25 non-space characters, so no single quoted line gives it away.
UNALIAS = ('def do_unalias(self, arg):\n'
           '    """unalias name\n'
           '    Delete the specified alias.\n'
           '    """\n'
           '    args = arg.split()\n'
           '    if len(args) == 0: return\n'
           '    if args[0] in self.aliases:\n'
           '        del self.aliases[args[0]]')
UNALIAS_QUERY = ("You can use Python's built-in `set()` function to remove duplicate values:\n\n```python\n"
                 'def do_unalias(self, arg):\n    """unalias name\n    Delete the specified alias.\n    """\n'
                 "    args = arg.split()\n    if len(args) == 0: return\n    del self.aliases[args[0]]\n```")
FIB = "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"


def test_audited_paste_of_short_lines_is_rejected() -> None:
    assert max(len(ln) - ln.count(" ") for ln in UNALIAS.splitlines()) < 25  # what let it through before
    assert pasted_share(UNALIAS_QUERY, UNALIAS) == pytest.approx(25 / 45)  # docstring left out, del line alone
    assert quotes_input(UNALIAS_QUERY, UNALIAS)
    assert check_output(UNALIAS_QUERY, "stop", UNALIAS, "en", 4000, quote_source=UNALIAS) == "quotes_input"
    # tasks that cite code, hybrid tasks and prose negatives have no quote source: the reply passes there
    assert check_output(UNALIAS_QUERY, "stop", UNALIAS, "en", 4000) is None


@pytest.mark.parametrize("reply", [
    "Use this:\n```python\n" + FIB + "```",
    "Use this:\n```python\n" + FIB.replace("(", " (") + "```",              # a space before each parenthesis
    "python " + " ".join(FIB.split()),                                        # the whole function on one line
    "fib in python:\n" + FIB.replace(" ", "\t").replace(",", " ,"),           # whitespace changed everywhere
    "Iterative Fibonacci:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b",  # 3 of 5 lines
    "python def unquote_to_bytes (string): example",                         # a long line, space before "("
])
def test_text_pasting_much_of_its_code_is_rejected(reply: str) -> None:
    src = UNQUOTE if "unquote" in reply else FIB
    assert quotes_input(reply, src), pasted_share(reply, src)
    assert check_output(reply, "stop", src, "en", 4000, quote_source=src) == "quotes_input"


@pytest.mark.parametrize("src,reply", [
    ("def join(a, *p):\n    return os.path.join(a, *p)\n", "how to call os.path.join with a list"),
    ("def join(a, *p):\n    return os.path.join(a, *p)\n", "python os.path.join(a, *p) with a list of paths"),
    ("def join(a, *p):\n    return os.path.join(a, *p)\n", "`join(a, *p)` returns `os.path.join(a, *p)`."),
    (FIB, "python fib(n) iterative a, b = b, a + b"),                          # one line of it, in full
    (FIB, "Computes the n-th Fibonacci number with `for _ in range(n)` and `a, b = b, a + b`."),
    (UNALIAS, "The `do_unalias(self, arg)` method splits `arg.split()` and deletes `self.aliases[args[0]]`."),
    (UNALIAS, "Delete the specified alias."),                                 # a docstring line
    (UNQUOTE, "python unquote_to_bytes(string) example"),
])
def test_text_mentioning_a_call_or_a_line_of_its_code_passes(src: str, reply: str) -> None:
    assert pasted_share(reply, src) < 0.2
    assert not quotes_input(reply, src)
    assert check_output(reply, "stop", src, "en", 4000, quote_source=src) is None


def test_pasted_share_counts_code_tokens_across_line_breaks() -> None:
    assert pasted_share(FIB, FIB) == 1.0 and pasted_share("", FIB) == 0.0 and pasted_share(FIB, "") == 0.0
    assert pasted_share("x = 1", "x = 1") == 0.0  # shorter than one run: copies_input's business
    # two lines in a row: the stretch counts; the same lines apart do not
    src = "def f(x):\n    y = compute(x)\n    z = transform(y)\n    return z\n"
    together = "y = compute(x)\nz = transform(y)"
    apart = "y = compute(x) and later z = transform(y)"
    assert pasted_share(together, src) == pytest.approx(12 / 20) and pasted_share(apart, src) == 0.0
    # a copied docstring is no paste of the code (a docstring line of 25 characters or more still
    # counts as a quoted line, as before)
    alpn = ('def selected_alpn_protocol(self):\n'
            '    """Return the currently selected ALPN protocol as a string, or ``None``\n'
            '    if a next protocol was not negotiated or if ALPN is not supported by one\n'
            '    of the peers."""\n'
            '    return self._sslobj.selected_alpn_protocol()\n')
    assert pasted_share(alpn.split('"""')[1], alpn) == 0.0
    assert pasted_share(alpn, alpn) == 1.0
    # comment lines are left out of the share, like docstrings
    commented = "// adds one\nint inc(int x) {\n    return x + 1;\n}\n"
    assert pasted_share("int inc(int x) {\n    return x + 1;\n}", commented) == 1.0
