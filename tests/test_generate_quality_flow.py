"""The paste and chat-reply filters in a generation run: counted under the existing reasons."""

from __future__ import annotations

import re
from pathlib import Path

from gen_fixtures import PY_DOCS, docs_frame

from tripleforge.generate import GenerateParams, generate_pairs
from tripleforge.llm.base import ChatRequest, ChatResult, OnResult
from tripleforge.llm.cache import ResponseCache


class Scripted:
    name = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    def fingerprint(self) -> str:
        return "scripted:paste-v1"

    def generate(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        for r in requests:
            self.calls += 1
            if on_result(r, ChatResult([reply(r)], ["stop"], 10, 5)):
                return

    def close(self) -> None:
        pass


def reply(r: ChatRequest) -> str:
    text = r.messages[-1][1]
    code = re.search(r"Code:\n```[^\n]*\n(.*?)\n```", text, re.DOTALL).group(1)  # type: ignore[union-attr]
    name = re.search(r"def (\w+)\(", code).group(1)  # type: ignore[union-attr]
    if "web search engine" in text:
        return {"fib": "You can use this:\n```python\n" + code.replace("(", " (") + "\n```",  # every line < 25 chars
                "clamp": "I'm ready to help. What's the project about?",
                "add": "A developer would type this in a web search engine at least 10 times."}.get(
                    name, f"python {name} example")
    if name == "fib":
        return "Computes Fibonacci numbers:\n" + "\n".join(code.splitlines()[1:4])  # 3 of its 5 lines
    return f"Computes {name} with `{name}(...)`."


def test_pastes_and_chat_replies_are_counted_under_existing_reasons(tmp_path: Path) -> None:
    docs = docs_frame([PY_DOCS[i] for i in (0, 5, 6, 7)])  # add clamp flatten fib
    params = GenerateParams(tasks=["web_code_retrieval", "code_summary_retrieval"])  # type: ignore[call-arg]
    pairs, m = generate_pairs(docs, params, Scripted(), ResponseCache(tmp_path / "c.sqlite"))
    assert m["per_task"]["web_code_retrieval"]["rejected"] == {"preamble": 2, "quotes_input": 1}
    assert m["per_task"]["code_summary_retrieval"]["rejected"] == {"quotes_input": 1}
    assert m["rejected_by_reason"] == {"preamble": 2, "quotes_input": 2}
    assert sorted(pairs["query"].filter(pairs["task"] == "web_code_retrieval")) == ["python flatten example"]


class Wordy(Scripted):
    """Web queries of 13 and 30 words, summaries of 30 words: only the web task sets a limit."""

    def generate(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        for r in requests:
            text = r.messages[-1][1]
            n = 13 if "def add(" in text else 30
            words = " ".join(["sums"] * (n - 1) + ["numbers"])
            if on_result(r, ChatResult([words], ["stop"], 10, 5)):
                return


def test_a_web_query_far_over_its_word_limit_is_rejected(tmp_path: Path) -> None:
    docs = docs_frame([PY_DOCS[i] for i in (0, 6)])  # add flatten
    params = GenerateParams(tasks=["web_code_retrieval", "code_summary_retrieval"])  # type: ignore[call-arg]
    pairs, m = generate_pairs(docs, params, Wordy(), ResponseCache(tmp_path / "c.sqlite"))
    assert m["per_task"]["web_code_retrieval"] == {"kept": 1, "rejected": {"too_many_words": 1}, "requested": 2}
    assert m["per_task"]["code_summary_retrieval"]["kept"] == 2
    kept = pairs.filter(pairs["task"] == "web_code_retrieval")["query"].to_list()
    assert [len(q.split()) for q in kept] == [13]
