"""Prompt builders and few-shot example pools."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripleforge.errors import UserError
from tripleforge.llm.base import Sampling
from tripleforge.llm.cache import request_key
from tripleforge.prompts import (
    PROMPT_VERSION,
    choose_examples,
    generation_messages,
    load_examples,
    qc_messages,
)
from tripleforge.tasks import get_task

CODE = "int main() { return 0; }"


def test_generation_prompt_names_languages_and_fences_input() -> None:
    msgs = generation_messages(get_task("code_summary_retrieval"), 0, [("Code", CODE)], "zh", "cplusplus")
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert "Simplified Chinese" in user and "C++" in user
    assert "```cpp\nint main() { return 0; }\n```" in user
    assert "Examples" not in user


def test_translation_prompt_names_the_target() -> None:
    user = generation_messages(get_task("code_translation_retrieval"), 0, [("Code", CODE)], "en", "cplusplus",
                               "rust")[1]["content"]
    assert "into idiomatic Rust" in user and "Reply with Rust code" in user


def test_examples_are_rendered_and_nested_fences_stay_closed() -> None:
    ex = [{"input": "x = 1\n```\n", "output": "Sets x."}]
    user = generation_messages(get_task("code_summary_retrieval"), 0, [("Code", "y = 2")], "en", "python",
                               examples=ex)[1]["content"]
    assert "Example 1 input:\n````python\nx = 1\n```\n````" in user and "Example 1 reply:\nSets x." in user


def test_qc_prompt_asks_for_one_digit() -> None:
    user = qc_messages(get_task("web_code_retrieval"), "Given q, retrieve c.", "sum two numbers", CODE)[1]["content"]
    assert "exactly one digit" in user and "sum two numbers" in user and CODE in user


def test_load_examples_reads_pool_and_reports_bad_line(tmp_path: Path) -> None:
    d = tmp_path / "code_summary_retrieval"
    d.mkdir()
    (d / "python.jsonl").write_text('{"input": "a", "output": "b"}\n\n{"input": "c", "output": "d"}\n')
    assert load_examples(tmp_path, "code_summary_retrieval", "python") == [
        {"input": "a", "output": "b"}, {"input": "c", "output": "d"}]
    assert load_examples(tmp_path, "code_summary_retrieval", "java") == []
    assert load_examples("", "code_summary_retrieval", "python") == []
    (d / "go.jsonl").write_text('{"input": "a", "output": "b"}\n{"input": 3}\n')
    with pytest.raises(UserError, match=r"go\.jsonl:2: expected an object"):
        load_examples(tmp_path, "code_summary_retrieval", "go")
    (d / "c.jsonl").write_text('{"input": "a", "output": "b"}\nnot json\n')
    with pytest.raises(UserError, match=r"c\.jsonl:2: invalid JSON"):
        load_examples(tmp_path, "code_summary_retrieval", "c")


def test_choose_examples_is_seeded_and_bounded() -> None:
    pool = [{"input": str(i), "output": str(i)} for i in range(10)]
    a = choose_examples(pool, 3, seed=7)
    assert a == choose_examples(pool, 3, seed=7) and len(a) == 3
    assert any(choose_examples(pool, 3, seed=s) != a for s in range(8, 20))
    assert len(choose_examples(pool, 30, seed=1)) == 10
    assert choose_examples(pool, 0, seed=1) == [] and choose_examples([], 3, seed=1) == []


def test_cache_key_covers_prompt_version_seed_and_model() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    s = Sampling(0.7, 0.9, 32, seed=1)
    base = request_key("m", msgs, s, PROMPT_VERSION)
    assert base == request_key("m", msgs, Sampling(0.7, 0.9, 32, seed=1), PROMPT_VERSION)
    assert base != request_key("m", msgs, s, PROMPT_VERSION + "x")
    assert base != request_key("m", msgs, Sampling(0.7, 0.9, 32, seed=2), PROMPT_VERSION)
    assert base != request_key("m", msgs, Sampling(0.7, 0.9, 32, seed=1, n=2), PROMPT_VERSION)
    assert base != request_key("m2", msgs, s, PROMPT_VERSION)
    assert base != request_key("m", [{"role": "user", "content": "hi!"}], s, PROMPT_VERSION)
