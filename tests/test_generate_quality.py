"""Reply cleaning, heuristic filters and the strict QC parse."""

from __future__ import annotations

import pytest

from tripleforge.quality import check_output, clean_reply, copies_input, language_ok, parse_verdict


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
                 "return total", "x = 1  # Here is a value.", "Here = 1"):
        assert check_output(code, "stop", src, None, 100) is None, code
    assert copies_input(src, src) and not copies_input("return a + b", src)
