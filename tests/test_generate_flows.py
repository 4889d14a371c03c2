"""Generation flows over a scripted in-process backend (deterministic replies, counted calls).

The scripted backend implements the same `Backend` interface as the real ones; the real models
are exercised in tests/llm and tests/test_generate_stage.py. Here we check flow logic exactly:
which side is query/positive, what each step sees, caching, dedup, QC and rejection counting.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from gen_fixtures import PY_DOCS, docs_frame

from tripleforge.errors import UserError
from tripleforge.generate import (
    GenerateParams,
    LLMFailures,
    check_docs,
    check_params,
    expand_jobs,
    generate_pairs,
    jsonl_groups,
)
from tripleforge.hashing import text_id
from tripleforge.llm.base import ChatRequest, ChatResult, OnResult, Sampling
from tripleforge.llm.cache import ResponseCache
from tripleforge.params import validate_params
from tripleforge.quality import quotes_input

Reply = Callable[[ChatRequest], str | ChatResult]


class Scripted:
    name = "scripted"

    def __init__(self, reply: Reply):
        self.reply = reply
        self.calls: list[ChatRequest] = []

    def fingerprint(self) -> str:
        return "scripted:v1"

    def generate(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        for r in requests:
            self.calls.append(r)
            out = self.reply(r)
            if on_result(r, out if isinstance(out, ChatResult) else ChatResult([out], ["stop"], 10, 5)):
                return  # asked to stop: send no more, like the real backends

    def close(self) -> None:
        pass


def user(r: ChatRequest) -> str:
    return r.messages[-1][1]


def block(r: ChatRequest, label: str) -> str:
    m = re.search(label + r":\n(`{3,4})[^\n]*\n(.*?)\n\1", user(r), re.DOTALL)
    assert m, user(r)
    return m.group(2)


def params(**kw: object) -> GenerateParams:
    return GenerateParams(**{"tasks": ["code_summary_retrieval"], **kw})  # type: ignore[arg-type]


@pytest.fixture
def cache(tmp_path: Path) -> ResponseCache:
    return ResponseCache(tmp_path / "c.sqlite")


def summary_of(r: ChatRequest) -> str:
    return "Summary of " + block(r, "Code").split("(")[0].split()[-1]


def test_code2text_and_text2code_sides(cache: ResponseCache) -> None:
    docs = docs_frame(PY_DOCS[:3])
    be = Scripted(summary_of)
    pairs, m = generate_pairs(docs, params(tasks=["code_summary_retrieval", "web_code_retrieval"]), be, cache)
    assert pairs.height == 6 and m["kept"] == 6 and m["cache_misses"] == 6
    assert pairs["pair_id"].to_list() == sorted(pairs["pair_id"].to_list())
    for r in pairs.iter_rows(named=True):
        doc = docs.filter(pl.col("doc_id") == r["doc_id"])["text"][0]
        if r["task"] == "code_summary_retrieval":
            assert r["query"] == doc and r["pos"][0].startswith("Summary of")
        else:
            assert r["pos"] == [doc] and r["query"].startswith("Summary of")
        assert r["model"] == "scripted:v1" and r["qc"] == "off" and r["neg"] == []
        assert (r["tokens_in"], r["tokens_out"], r["candidate_idx"]) == (10, 5, 0)
    assert set(pairs["prompt"]) == {"Given a piece of code, retrieve a short summary of what it does.",
                                    "Given a web search query, retrieve the code that answers it."}


def test_rerun_is_free_and_growing_pays_only_new_docs(cache: ResponseCache) -> None:
    be = Scripted(summary_of)
    first, _ = generate_pairs(docs_frame(PY_DOCS[:4]), params(), be, cache)
    again, m = generate_pairs(docs_frame(PY_DOCS[:4]), params(), be, cache)
    assert m["cache_misses"] == 0 and m["cache_hits"] == 4 and len(be.calls) == 4
    assert again.equals(first)
    grown, m2 = generate_pairs(docs_frame(PY_DOCS[:5]), params(), be, cache)
    assert m2["cache_misses"] == 1 and len(be.calls) == 5 and grown.height == 5
    assert PY_DOCS[4] in block(be.calls[-1], "Code") + "\n"


def test_context_cut_needs_no_llm(cache: ResponseCache) -> None:
    pairs, m = generate_pairs(docs_frame(), params(tasks=["code_context_retrieval"]), None, cache)
    assert pairs.height == len(PY_DOCS) and m["cache_misses"] == 0
    line_cuts = 0
    for r in pairs.iter_rows(named=True):
        doc = docs_frame().filter(pl.col("doc_id") == r["doc_id"])["text"][0]
        assert r["query"] + r["pos"][0] == doc
        n, k = len(doc.split()), len(r["query"].split())
        assert 0.4 * n - 1 <= k <= 0.7 * n + 1
        # at a line start, the indentation kept with the continuation (it was dedented: cut before the token)
        if r["query"].endswith("\n"):
            line_cuts += 1
            assert doc.splitlines()[len(r["query"].splitlines())] == r["pos"][0].splitlines()[0]
        assert r["model"] == "rule:context-cut" and r["qc"] == "n/a" and r["language"] == "en"
    assert line_cuts >= len(PY_DOCS) - 1  # `add` has no line starting within 40-70% of its tokens
    # a different seed moves at least one cut
    other, _ = generate_pairs(docs_frame(), params(tasks=["code_context_retrieval"], seed=7), None, cache)
    assert other.sort("doc_id")["query"].to_list() != pairs.sort("doc_id")["query"].to_list()


def test_bug_desc_two_steps(cache: ResponseCache) -> None:
    def reply(r: ChatRequest) -> str:
        if "Introduce" in user(r):
            return "```python\n" + block(r, "Code").replace("return", "return None  #") + "\n```"
        assert "return None  #" in block(r, "Code")  # step 1 sees step 0's buggy code
        return "It returns nothing instead of the result of " + block(r, "Code").split("(")[0].split()[-1]

    pairs, m = generate_pairs(docs_frame(PY_DOCS[:2]), params(tasks=["bug_desc_retrieval"]), Scripted(reply), cache)
    assert m["cache_misses"] == 4 and pairs.height == 2
    assert set(pairs["query"]) == {"It returns nothing instead of the result of add",
                                   "It returns nothing instead of the result of read_lines"}
    assert {p[0] for p in pairs["pos"]} == set(PY_DOCS[:2])
    assert pairs["tokens_out"].to_list() == [10, 10]



def test_bug_fix_example_query_holds_the_buggy_code_and_its_description(cache: ResponseCache) -> None:
    """Step 1 was asked for code and a description but told to reply with code only, and the
    description after the fence was cut: the query lost it and step 2 fixed a bug never described."""
    def reply(r: ChatRequest) -> str:
        if "Introduce" in user(r):
            assert "then one sentence in English after it" in user(r)  # the rules ask for both
            code = block(r, "Code")
            buggy = code.replace("return", "return None  #")
            return f"```python\n{buggy}\n```\nBug: it returns None." if "def add" in code else f"```python\n{buggy}\n```"
        assert "return None  #" in user(r) and "Bug: it returns None." in user(r)  # step 2 sees both
        return "```python\ndef add(a, b):\n    return b + a\n```"

    p = params(tasks=["code_bug_fix_example_retrieval"])
    pairs, m = generate_pairs(docs_frame(PY_DOCS[:2]), p, Scripted(reply), cache)
    assert m["per_task"]["code_bug_fix_example_retrieval"]["rejected"] == {"no_description": 1}
    assert pairs.height == 1 and pairs["query"][0].endswith("\n\nBug: it returns None.")
    assert "return None  #" in pairs["query"][0] and "```" not in pairs["query"][0]
    assert pairs["pos"][0].to_list() == ["def add(a, b):\n    return b + a"]

def test_two_step_reuse_query_holds_request_and_code(cache: ResponseCache) -> None:
    def reply(r: ChatRequest) -> str:
        if "Write a request" in user(r):
            return "Please extract a helper function."
        assert "Please extract a helper function." in user(r) and "Hybrid:" in user(r)
        return "```python\ndef helper():\n    pass\n```"

    pairs, _ = generate_pairs(docs_frame(PY_DOCS[:1]), params(tasks=["code_refactoring_pattern_retrieval"]),
                              Scripted(reply), cache)
    row = pairs.row(0, named=True)
    assert row["query"].startswith("Please extract a helper function.") and PY_DOCS[0].strip() in row["query"]
    assert row["pos"] == ["def helper():\n    pass"]


def test_similar_tasks_use_the_similar_document(cache: ResponseCache) -> None:
    docs = docs_frame(PY_DOCS[:3])

    def reply(r: ChatRequest) -> str:
        if "Input code:" in user(r):
            assert block(r, "Input code") != block(r, "Output code")
            return "The second one is shorter than " + block(r, "Input code").split("(")[0].split()[-1]
        return "Make it shorter: " + user(r).split("shorter than ")[1].split()[0]

    be = Scripted(reply)
    tasks = ["code_modification_retrieval", "code_comparison_retrieval"]
    pairs, m = generate_pairs(docs, params(tasks=tasks), be, cache)
    assert pairs.height == 6 and m["cache_misses"] == 12
    sim = dict(zip(docs["doc_id"], docs["similar_text"], strict=True))
    for r in pairs.filter(pl.col("task") == "code_modification_retrieval").iter_rows(named=True):
        assert r["pos"] == [sim[r["doc_id"]]] and r["query"].startswith("Make it shorter: ")
    for r in pairs.filter(pl.col("task") == "code_comparison_retrieval").iter_rows(named=True):
        assert "Input Code:" in r["query"] and sim[r["doc_id"]].strip() in r["query"]
        assert r["pos"][0].startswith("Make it shorter: ")



def test_a_change_instruction_quoting_the_positive_is_rejected(cache: ResponseCache) -> None:
    """code_modification_retrieval: the instruction goes into the query and the similar document is
    the positive; a tryout kept an instruction that held the positive's signature and docstring."""
    docs = docs_frame(PY_DOCS[:3])
    pasted: list[str] = []

    def reply(r: ChatRequest) -> str:
        if "Input code:" in user(r):  # step 1: the differences name the output's longest line
            longest = max(block(r, "Output code").splitlines(), key=lambda ln: len(ln.strip())).strip()
            return f"The output differs in: {longest}"
        if not pasted:  # step 2: the first instruction pastes that line of the positive
            pasted.append(user(r).split("The output differs in: ")[1].splitlines()[0])
            return f"Change it so that it does this:\n{pasted[0]}"
        return "Make it shorter."

    pairs, m = generate_pairs(docs, params(tasks=["code_modification_retrieval"]), Scripted(reply), cache)
    assert len(pasted[0].replace(" ", "")) >= 25  # long enough to count as a quoted line
    assert m["per_task"]["code_modification_retrieval"]["rejected"] == {"quotes_input": 1}
    assert pairs.height == 2 and all(q.startswith("Make it shorter.") for q in pairs["query"])



def test_code_in_place_of_a_text_output_is_rejected_unless_the_task_cites_code(cache: ResponseCache) -> None:
    program = "import os\ndef main():\n    print(os.getcwd())\nmain()"

    def reply(r: ChatRequest) -> str:
        if "Input code:" in user(r):  # code_comparison's question: a program for the first document
            return program if block(r, "Input code").startswith("def add(") else "Which of the two is shorter?"
        if "API reference" in user(r):
            return program  # a code-citing task: not judged
        return "The second one, " + block(r, "Hybrid").split("(")[0].split()[-1]

    tasks = ["code_comparison_retrieval", "api_reference_retrieval"]
    pairs, m = generate_pairs(docs_frame(PY_DOCS[:3]), params(tasks=tasks), Scripted(reply), cache)
    assert m["per_task"]["code_comparison_retrieval"]["rejected"] == {"code_not_text": 1}
    assert "code_not_text" not in m["per_task"]["api_reference_retrieval"]["rejected"]

def test_similar_task_without_column_stops_before_any_call() -> None:
    docs = docs_frame(similar=False)
    with pytest.raises(UserError, match="column 'similar_text' missing; task code_comparison_retrieval"):
        check_docs(docs, params(tasks=["code_comparison_retrieval"]), "data/paired/docs.parquet")
    check_docs(docs, params(), "x")  # other tasks do not need it


def test_translation_targets_are_separate_pairs_and_cache_keys(cache: ResponseCache) -> None:
    def reply(r: ChatRequest) -> str:
        lang = re.search(r"into idiomatic (\S+)", user(r)).group(1)  # type: ignore[union-attr]
        return f"```\n// {lang} version\nx = 1;\n```"  # a comment alone would be not_code

    be = Scripted(reply)
    p = params(tasks=["code_translation_retrieval"], tgt_code_languages=["java", "cplusplus", "python"])
    pairs, m = generate_pairs(docs_frame(PY_DOCS[:2]), p, be, cache)
    assert m["cache_misses"] == 4 and len({c.key for c in be.calls}) == 4  # python -> python skipped
    assert sorted(set(pairs["tgt_code_language"])) == ["cplusplus", "java"]
    by_tgt = {r["tgt_code_language"]: r for r in pairs.iter_rows(named=True)}
    assert by_tgt["java"]["pos"] == ["// Java version\nx = 1;"] and by_tgt["cplusplus"]["pos"] == ["// C++ version\nx = 1;"]
    assert "Java" in by_tgt["java"]["prompt"] and "C++" in by_tgt["cplusplus"]["prompt"]
    paths = sorted(str(p.relative_to("/o")) for p in jsonl_groups(pairs, Path("/o")))
    assert paths == ["en/code_translation_retrieval/en-python-to-cplusplus-triplets.jsonl",
                     "en/code_translation_retrieval/en-python-to-java-triplets.jsonl"]



def test_code_in_a_fence_of_another_language_is_rejected(cache: ResponseCache) -> None:
    """A tryout kept python -> javascript 'translations' that were the Python code in a ```python fence."""
    def reply(r: ChatRequest) -> str:
        lang = re.search(r"into idiomatic (\S+)", user(r)).group(1)  # type: ignore[union-attr]
        name = re.search(r"def (\w+)\(", block(r, "Code")).group(1)  # type: ignore[union-attr]
        if lang == "JavaScript":  # Python again (not the input itself, which is copies_input)
            return (f"```python\ndef {name}_js(a, b):\n    return a + b\n```" if name == "add"
                    else f"```js\nconst {name} = (x) => x + 1;\n```")
        return f"```c\nint {name}(int x) {{ return x + 1; }}\n```"  # C in a C++ translation passes

    p = params(tasks=["code_translation_retrieval"], tgt_code_languages=["javascript", "cplusplus"])
    pairs, m = generate_pairs(docs_frame(PY_DOCS[:2]), p, Scripted(reply), cache)
    assert m["per_task"]["code_translation_retrieval"]["rejected"] == {"wrong_code_language": 1}
    assert sorted(pairs["tgt_code_language"]) == ["cplusplus", "cplusplus", "javascript"]

def _targets(docs: pl.DataFrame, **kw: object) -> set[tuple[str, str | None]]:
    return {(j.code_language, j.tgt) for j in expand_jobs(docs, params(tasks=["code_translation_retrieval"], **kw))}


def test_translation_targets_default_to_the_catalog_pairs(capsys: pytest.CaptureFixture[str]) -> None:
    # tgt_code_languages [] = the catalog: python is paired with cplusplus, perl and ruby, go with
    # rust and cplusplus; shell with nothing, which is said, not silently left at 0 pairs
    docs = pl.concat([docs_frame(PY_DOCS[:1]), docs_frame(PY_DOCS[1:2], code_language="go"),
                      docs_frame(PY_DOCS[2:3], code_language="shell")])
    assert _targets(docs) == {("python", "cplusplus"), ("python", "perl"), ("python", "ruby"),
                              ("go", "cplusplus"), ("go", "rust")}
    assert capsys.readouterr().err.splitlines() == [(
        "warning: generate.tgt_code_languages: code_translation_retrieval makes no pairs for documents in shell "
        "(the catalog pairs no target with it; set generate.tgt_code_languages)")]


def test_translation_targets_given_are_used_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    # the user asked for go and ruby: both, for every document (python-to-go is in no catalog pair)
    docs = pl.concat([docs_frame(PY_DOCS[:1]), docs_frame(PY_DOCS[1:2], code_language="go")])
    assert _targets(docs, tgt_code_languages=["go", "ruby"]) == {("python", "go"), ("python", "ruby"), ("go", "ruby")}
    assert capsys.readouterr().err == ""
    assert _targets(docs, tgt_code_languages=["go"]) == {("python", "go")}
    assert capsys.readouterr().err.splitlines() == [(
        "warning: generate.tgt_code_languages: code_translation_retrieval makes no pairs for documents in go "
        "(its only target is the source language)")]


@pytest.mark.parametrize("key,value,repeated", [
    ("tasks", ["code_context_retrieval", "web_code_retrieval", "code_context_retrieval"], "'code_context_retrieval'"),
    ("languages", ["en", "zh", "en"], "'en'"),
    ("code_languages", ["python", "python"], "'python'"),
    ("tgt_code_languages", ["go", "go", "go"], "'go' is listed 3 times"),
    ("base_urls", ["http://h:8000/v1", "http://h:8000/v1/"], "'http://h:8000/v1'"),
    ("dedup_against", ["a.jsonl", "a.jsonl"], "'a.jsonl'"),
])
def test_a_repeated_list_entry_is_a_params_error(key: str, value: list[str], repeated: str) -> None:
    with pytest.raises(UserError) as err:
        validate_params(GenerateParams, "generate", {key: value}, source="params.yaml")
    msg = str(err.value)
    assert msg.startswith(f"params.yaml: params key 'generate.{key}': Value error, {repeated}") and "\n" not in msg
    validate_params(GenerateParams, "generate", {key: list(dict.fromkeys(v.rstrip("/") for v in value))})


def test_progress_rate_is_this_rounds_tokens_over_this_rounds_time(cache: ResponseCache,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # generation writes 1000 tokens a reply, the QC judge 1; each reply takes at least 20 ms. The QC
    # bar may show at most 1 token / 20 ms = 50 tok/s, whatever the generation round produced.
    monkeypatch.setenv("TRIPLEFORGE_NO_PROGRESS", "0")

    class Slow(Scripted):
        def generate(self, requests: list[ChatRequest], on_result: OnResult) -> None:
            for r in requests:
                time.sleep(0.02)
                judge = r.messages[0][1].startswith("You are a strict judge")
                on_result(r, ChatResult(["1" if judge else f"Summary {r.key[:8]}."], ["stop"], 10, 1 if judge else 1000))

    generate_pairs(docs_frame(PY_DOCS[:4]), params(qc=True), Slow(summary_of), cache)
    shown = re.split(r"[\r\n]", capsys.readouterr().err)  # the bars' redraws, then their last state

    def rates(desc: str) -> list[float]:
        return [float(x) for line in shown if line.startswith(desc) for x in re.findall(r"tok_s=(\d+\.\d)", line)]

    assert rates("generate step 1") and max(rates("generate step 1")) <= 1000 / 0.02, shown
    assert rates("quality check") and max(rates("quality check")) <= 1 / 0.02, shown


def test_bad_replies_are_rejected_and_counted(cache: ResponseCache) -> None:
    replies = iter(["", "   ", "Ok."])

    def reply(r: ChatRequest) -> str | ChatResult:
        if "word_count" in user(r):
            return ChatResult(error="HTTP 500")
        if "clamp" in user(r):
            return ChatResult(["A long summary that was cut"], ["length"], 3, 3)
        if "fib" in user(r):
            return "计算斐波那契数"
        return next(replies, "Fine summary of " + block(r, "Code").split("(")[0].split()[-1])

    pairs, m = generate_pairs(docs_frame(), params(max_failed_fraction=0.2), Scripted(reply), cache)
    rej = m["per_task"]["code_summary_retrieval"]["rejected"]
    assert rej == {"empty": 2, "llm_error": 1, "truncated": 1, "wrong_language": 1}, rej
    assert m["kept"] == pairs.height == len(PY_DOCS) - 5 and m["llm_failures"] == 1 and m["llm_requests"] == 8
    # the failed request is not cached: the next run asks again (and only for it)
    be = Scripted(lambda r: "Fine summary of word counting.")
    _, m2 = generate_pairs(docs_frame(), params(), be, cache)
    assert m2["cache_misses"] == 1 and "word_count" in user(be.calls[0]) and m2["llm_failures"] == 0


def test_failures_stop_the_run_after_caching_the_answers(cache: ResponseCache) -> None:
    def reply(r: ChatRequest) -> str | ChatResult:
        if "word_count" in user(r) or "clamp" in user(r):
            return ChatResult(error="HTTP 500 from http://x/v1: overloaded")
        return summary_of(r)

    # default max_failed_fraction 0.0: the first failure makes the verdict certain, so the requests
    # after it are not sent; the answers before it are cached
    be = Scripted(reply)
    with pytest.raises(LLMFailures, match=r"^generate: 1 of 8 LLM requests failed \(generate\.max_failed_fraction=0\); "
                                          r"first failure: HTTP 500 from http://x/v1: overloaded\. Stopped early: the "
                                          r"remaining 5 requests were not sent\. Nothing written; the 2 answers are "
                                          r"cached, so re-running asks only for the failed and unsent ones$"):
        generate_pairs(docs_frame(), params(), be, cache)
    assert len(be.calls) == 3 and cache.count() == 2 and cache.failure_count() == 1
    # 2/8 = 0.25 is more than 0.2 allows: the second failure stops the run (6 asked: failed + unsent)
    be = Scripted(reply)
    with pytest.raises(LLMFailures, match=r"^generate: 2 of 8 LLM requests failed .* the remaining (\d+) requests? "
                                          r"(were|was) not sent") as err:
        generate_pairs(docs_frame(), params(max_failed_fraction=0.2), be, cache)
    assert reply(be.calls[-1]).error and len(be.calls) <= 6 and cache.failure_count() == 2  # type: ignore[union-attr]
    assert f"the remaining {6 - len(be.calls)} request" in str(err.value)
    # exactly what 0.25 allows: every request is sent, the outputs written
    pairs, m = generate_pairs(docs_frame(), params(max_failed_fraction=0.25), Scripted(reply), cache)
    assert pairs.height == 6 and m["llm_failures"] == 2 and m["rejected_by_reason"] == {"llm_error": 2}
    # the re-run asks only the failed requests
    be = Scripted(summary_of)
    pairs, m = generate_pairs(docs_frame(), params(), be, cache)
    assert m["cache_hits"] == 6 and len(be.calls) == 2 and pairs.height == 8 and m["llm_failures"] == 0


def _two_step_reply(failing: tuple[str, ...]) -> Reply:
    def reply(r: ChatRequest) -> str | ChatResult:
        if "Write a request" in user(r):
            if any(f"def {name}(" in user(r) for name in failing):
                return ChatResult(error="HTTP 503 from http://x/v1: busy")
            return "Please extract a helper function from " + block(r, "Code").split("(")[0].split()[-1]
        name = re.search(r"helper function from (\w+)", user(r)).group(1)  # type: ignore[union-attr]
        return f"```python\ndef {name}_helper():\n    pass\n```"
    return reply


def test_early_stop_counts_the_rounds_still_to_come(cache: ResponseCache, tmp_path: Path) -> None:
    # two-step task, 6 documents, step 1 fails for 4: 4 of 6 is more than 0.5 allows of step 1 alone,
    # but the 2 step-2 requests still to come make it 4 of 8, which 0.5 allows. The stop compares the
    # failures with the most requests the run can need (6 + 6), so it never fails such a run.
    p = params(tasks=["code_refactoring_pattern_retrieval"], max_failed_fraction=0.5)
    be = Scripted(_two_step_reply(("add", "read_lines", "is_prime", "word_count")))
    pairs, m = generate_pairs(docs_frame(PY_DOCS[:6]), p, be, cache)
    assert len(be.calls) == 8 and (m["llm_failures"], m["llm_requests"]) == (4, 8) and pairs.height == 2
    # every step-1 request fails: 0.25 of 6 + 6 allows 3, so the 4th failure stops the run (not the 2nd,
    # as 0.25 of step 1's 6 alone would); step 2 never runs
    be = Scripted(_two_step_reply(tuple(re.findall(r"(?:def|class) (\w+)", "".join(PY_DOCS[:6])))))
    with pytest.raises(LLMFailures, match=r"^generate: 4 of 6 LLM requests failed .*busy\. Stopped early: the remaining "
                                          r"2 requests were not sent\. Nothing written; the 0 answers are cached"):
        generate_pairs(docs_frame(PY_DOCS[:6]), params(tasks=p.tasks, max_failed_fraction=0.25), be,
                       ResponseCache(tmp_path / "fresh.sqlite"))
    assert len(be.calls) == 4 and not any("Hybrid:" in user(c) for c in be.calls)


def test_a_result_without_text_is_a_failure_not_a_cached_answer(cache: ResponseCache) -> None:
    # e.g. a backend bug; and a row stored empty by an older version is not served either
    be = Scripted(lambda r: ChatResult([], [], 7, 0) if "clamp" in user(r) else summary_of(r))
    with pytest.raises(LLMFailures, match="1 of 8 LLM requests failed .*no text"):
        generate_pairs(docs_frame(), params(), be, cache)
    assert cache.count() == len(be.calls) - 1 and cache.failure_count() == 1
    cache._db.execute("INSERT INTO responses VALUES ('old', '[]', '[]', 0, 0, 0)")
    assert cache.get("old") is None


def test_examples_dir_must_exist_and_missing_pools_are_warned(cache: ResponseCache, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError, match=r"^params\.yaml: generate\.examples_dir: folder not found: /nonexistent$"):
        check_params(params(examples_dir="/nonexistent"))
    with pytest.raises(UserError, match=r"^params\.yaml: generate\.dedup_against: file not found: nope\.jsonl$"):
        check_params(params(dedup_against=["nope.jsonl"]))
    ex = tmp_path / "examples"
    (ex / "code_summary_retrieval").mkdir(parents=True)
    (ex / "code_summary_retrieval" / "python.jsonl").write_text('{"input": "x = 1", "output": "Sets x."}\n')
    be = Scripted(summary_of)
    p = params(tasks=["code_summary_retrieval", "web_code_retrieval", "code_context_retrieval"], examples_dir=str(ex))
    check_params(p)
    generate_pairs(docs_frame(PY_DOCS[:2]), p, be, cache)
    err = capsys.readouterr().err
    # the no-LLM context task needs none; web_code_retrieval has none: one warning line
    assert err.count("warning: generate.examples_dir: no examples for 1 (task, code language) pool(s), "
                     f"e.g. {ex}/web_code_retrieval/python.jsonl") == 1, err
    assert len(be.calls) == 4 and sum("Sets x." in user(c) for c in be.calls) == 2  # the summary prompts


def test_code_languages_absent_from_the_input(capsys: pytest.CaptureFixture[str]) -> None:
    docs = pl.concat([docs_frame(PY_DOCS[:2]), docs_frame(PY_DOCS[2:3], code_language="go")])
    with pytest.raises(UserError, match=r"^params\.yaml: generate\.code_languages: no document in d\.parquet is in "
                                        r"java rust \(present: go python\)$"):
        check_docs(docs, params(code_languages=["java", "rust"]), "d.parquet")
    check_docs(docs, params(code_languages=["java", "go"]), "d.parquet")  # some left: a warning
    assert "warning: generate.code_languages: no document in d.parquet is in java (present: go python)" in \
        capsys.readouterr().err


def test_qc_is_greedy_and_strict(cache: ResponseCache) -> None:
    verdicts = {"add": "1", "read_lines": "10", "is_prime": "2", "Stack": " 1\n"}

    def reply(r: ChatRequest) -> str:
        if r.messages[0][1].startswith("You are a strict judge"):
            assert r.sampling.temperature == 0.0
            return next(v for k, v in verdicts.items() if k in user(r))
        return "Summary " + block(r, "Code").split()[1]

    pairs, m = generate_pairs(docs_frame(PY_DOCS[:4]), params(qc=True), Scripted(reply), cache)
    assert m["per_task"]["code_summary_retrieval"]["rejected"] == {"qc_rejected": 1, "qc_unparseable": 1}
    assert pairs.height == 2 and set(pairs["qc"]) == {"judge:1"}
    assert pairs["tokens_out"].to_list() == [10, 10]


def test_dedup_within_and_across_runs(cache: ResponseCache, tmp_path: Path) -> None:
    be = Scripted(lambda r: "Does something useful.")
    pairs, m = generate_pairs(docs_frame(PY_DOCS[:3]), params(tasks=["web_code_retrieval"]), be, cache)
    assert pairs.height == 1 and m["per_task"]["web_code_retrieval"]["rejected"] == {"duplicate_query": 2}
    # across runs: an earlier file's queries and positives are not produced again
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text('{"query": "q", "pos": ["Summary of add"], "neg": []}\n')
    be2 = Scripted(summary_of)
    p2 = params(dedup_against=[str(earlier)])
    pairs2, m2 = generate_pairs(docs_frame(PY_DOCS[:3]), p2, be2, cache)
    assert m2["per_task"]["code_summary_retrieval"]["rejected"] == {"duplicate_pos": 1}
    assert "Summary of add" not in [p[0] for p in pairs2["pos"]]


def test_candidates_and_hard_negatives(cache: ResponseCache) -> None:
    def reply(r: ChatRequest) -> str:
        if "does not actually answer" in user(r):
            return f"Unrelated text {r.sampling.seed % 3}"
        return f"Summary {r.sampling.seed}"

    be = Scripted(reply)
    pairs, m = generate_pairs(docs_frame(PY_DOCS[:2]), params(n_candidates=2, gen_hard_neg=3), be, cache)
    assert pairs.height == 4 and sorted(pairs["candidate_idx"].to_list()) == [0, 0, 1, 1]
    assert pairs.group_by("doc_id").agg(pl.col("pos").n_unique())["pos"].to_list() == [2, 2]
    for r in pairs.iter_rows(named=True):
        assert 1 <= len(r["neg"]) <= 3 and len(set(r["neg"])) == len(r["neg"]) and r["pos"][0] not in r["neg"]
    assert m["cache_misses"] == 4 + 4 * 3


def test_rejected_llm_negatives_are_counted(cache: ResponseCache) -> None:
    """Every LLM-written negative either reaches `neg` or is counted by reason."""
    def reply(r: ChatRequest) -> str:
        if "does not actually answer" in user(r):
            seed = r.sampling.seed % 4
            return ["A distractor paragraph about files.", "A distractor paragraph about files.",
                    "", "Ein völlig anderer deutscher Satz über Dateien und Ordner."][seed]
        return f"Summary {r.sampling.seed}"

    be = Scripted(reply)
    pairs, m = generate_pairs(docs_frame(PY_DOCS[:2]), params(gen_hard_neg=4), be, cache)
    hn = m["hard_negatives"]
    assert hn["kept"] == int(pairs["neg"].list.len().sum())
    assert hn["kept"] + sum(hn["rejected"].values()) == 4 * pairs.height
    assert {"empty", "duplicate"} <= set(hn["rejected"])


def test_text_outputs_that_quote_their_code_or_open_with_a_preamble_are_rejected(cache: ResponseCache) -> None:
    def reply(r: ChatRequest) -> str:
        name = re.search(r"def (\w+)\(", user(r)).group(1)  # type: ignore[union-attr]
        code = next(d for d in PY_DOCS if d.startswith(f"def {name}("))
        if "web search engine" in user(r):
            return {"add": "Sure! python add two numbers",
                    "read_lines": "python return [line.rstrip('\\n') for line in fh]",  # a line of the positive
                    "is_prime": "The query to a web search engine should be:\n\npython prime test"}.get(
                        name, f"python {name} example")
        if "Summarize" in user(r):
            if name == "word_count":
                return "Counts words with counts[word] = counts.get(word, 0) + 1 per word."
            return f"Here is a summary: {name}." if name == "clamp" else f"Computes {name}."
        long_line = next(ln.strip() for ln in code.splitlines() if len(ln.strip()) >= 30)
        if "API reference" in user(r):  # a code-citing task: quoting the code is the content
            return f"{name}(path): reads a file; `{long_line}` strips the newlines."
        if "Write a question" in user(r):  # hybrid step 1: the document is part of the query anyway
            return f"Which best practices should {name} follow?"
        return f"In {name}, keep `{long_line}` short."  # hybrid step 2: answers discuss the document's lines

    docs = docs_frame([PY_DOCS[i] for i in (0, 1, 2, 4, 5)])  # add read_lines is_prime word_count clamp
    pairs, m = generate_pairs(docs, params(tasks=["web_code_retrieval", "code_summary_retrieval"]), Scripted(reply),
                              cache)
    assert m["per_task"]["web_code_retrieval"]["rejected"] == {"preamble": 2, "quotes_input": 1}
    assert m["per_task"]["code_summary_retrieval"]["rejected"] == {"preamble": 1, "quotes_input": 1}
    assert sorted(pairs["query"].filter(pairs["task"] == "web_code_retrieval")) == ["python clamp example",
                                                                                   "python word_count example"]
    # not checked for quotes: code-citing tasks and hybrid tasks (answers discuss the document's lines)
    p = params(tasks=["api_reference_retrieval", "code_best_practices_retrieval"])
    pairs, m = generate_pairs(docs_frame([PY_DOCS[1], PY_DOCS[2]]), p, Scripted(reply), cache)
    assert m["rejected_by_reason"] == {} and pairs.height == 4
    assert all(quotes_input(r["pos"][0], next(d for d in PY_DOCS if r["doc_id"] == text_id(d)))
               for r in pairs.iter_rows(named=True))


def test_prose_negatives_with_a_preamble_are_counted(cache: ResponseCache) -> None:
    def reply(r: ChatRequest) -> str:
        if "does not actually answer" in user(r):
            return ["Here is a text result: it reads a file.", "Sure, it reads a file."][r.sampling.seed % 2]
        return f"Summary {r.sampling.seed}"

    pairs, m = generate_pairs(docs_frame(PY_DOCS[:2]), params(gen_hard_neg=2), Scripted(reply), cache)
    hn = m["hard_negatives"]
    assert pairs.height == 2 and hn == {"kept": 0, "rejected": {"preamble": 4}}


def test_metrics_hold_no_timings_and_timings_go_to_stderr(cache: ResponseCache,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    be = Scripted(summary_of)
    _, first = generate_pairs(docs_frame(PY_DOCS[:3]), params(), be, cache)
    err = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"generate: \d+\.\d\d s, \d+\.\d\d s in 3 new LLM calls, 15 new tokens out at \d+\.\d "
                        r"tokens/s \(0 cached answers\)", err[-1]), err
    assert not {"seconds", "llm_seconds", "tokens_per_s"} & set(first)
    runs = []
    for _ in range(2):  # fully cached: the same bytes every time, whatever the clock did
        _, m = generate_pairs(docs_frame(PY_DOCS[:3]), params(), be, cache)
        runs.append(json.dumps(m, sort_keys=True))
        err = capsys.readouterr().err.splitlines()
        assert re.fullmatch(r"generate: \d+\.\d\d s, no new LLM calls \(3 cached answers\)", err[-1]), err
    assert runs[0] == runs[1] and len(be.calls) == 3


def test_dedup_against_must_be_a_readable_file(tmp_path: Path) -> None:
    """A folder or a symlink loop was reported as "file not found"."""
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere.jsonl")
    for path, why in [(tmp_path, f"{tmp_path} is a directory, not a file"),
                      (tmp_path / "loop", f"{tmp_path}/loop is a symlink loop"),
                      (tmp_path / "gone", f"{tmp_path}/gone is a broken symlink")]:
        with pytest.raises(UserError, match=rf"^params\.yaml: generate\.dedup_against: {re.escape(why)}"):
            check_params(params(dedup_against=[str(path)]))
    with pytest.raises(UserError, match=rf"^params\.yaml: generate\.examples_dir: {re.escape(str(tmp_path / 'loop'))} "
                                        r"is a symlink loop$"):
        check_params(params(examples_dir=str(tmp_path / "loop")))


@pytest.mark.parametrize(("content", "why"), [
    (b'{"query": "q", "pos": ["p"]}\n{"query": "q2", "pos": ["p', r":2: invalid JSON \(Unterminated string"),
    (b'{"query": "q", "pos": ["\xff"]}\n', r":1: not valid UTF-8 \(byte 0xff"),
    (b'{"query": "q", "pos": "p"}\n', r":1: 'pos' must be a list of strings$"),
    (b'{"query": 3, "pos": ["p"]}\n', r":1: 'query' must be a string, got int$"),
    (b'{"query": "q"}\n', r":1: expected fields 'query' and 'pos'$"),
    (b"PAR1 not parquet", r": not a readable Parquet file \("),
])
def test_bad_dedup_against_files_name_the_key_file_and_line(cache: ResponseCache, tmp_path: Path, content: bytes,
                                                           why: str) -> None:
    """pl.read_ndjson once said only `cannot read pairs: ComputeError`."""
    path = tmp_path / ("old.parquet" if content.startswith(b"PAR1") else "old.jsonl")
    path.write_bytes(content)
    be = Scripted(summary_of)
    with pytest.raises(UserError, match=rf"^params\.yaml: generate\.dedup_against: {re.escape(str(path))}{why}"):
        generate_pairs(docs_frame(PY_DOCS[:2]), params(dedup_against=[str(path)]), be, cache)
    assert be.calls == []


def test_an_empty_dedup_against_file_holds_no_pairs(cache: ResponseCache, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text("")
    pairs, _ = generate_pairs(docs_frame(PY_DOCS[:2]), params(dedup_against=[str(path)]), Scripted(summary_of), cache)
    assert pairs.height == 2 and f"warning: generate.dedup_against: {path} holds no pairs" in capsys.readouterr().err


def test_documents_with_null_or_blank_text_are_skipped_and_counted(cache: ResponseCache) -> None:
    """A null `text` gave `TypeError: object of type 'NoneType' has no len()`; pair-similar skips them too."""
    docs = docs_frame(PY_DOCS[:3]).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(None).when(pl.int_range(pl.len()) == 1).then(pl.lit(" \n"))
        .otherwise(pl.col("text")).alias("text"))
    check_docs(docs, params(), "d.parquet")
    be = Scripted(summary_of)
    pairs, m = generate_pairs(docs, params(tasks=["code_summary_retrieval", "code_context_retrieval"]), be, cache)
    assert m["docs_empty_text"] == 2 and m["requested"] == 2 and pairs.height == 2 and len(be.calls) == 1
    _, m = generate_pairs(docs_frame(PY_DOCS[:1]).with_columns(pl.lit(None).alias("text")), params(), be, cache)
    assert (m["docs_empty_text"], m["requested"]) == (1, 0)  # an all-null column (dtype Null) too
    with pytest.raises(UserError, match=r"^d\.parquet: column 'text' has type Int32, expected String$"):
        check_docs(docs.with_columns(pl.lit(1).alias("text")), params(), "d.parquet")


def test_two_runs_on_one_cache_pay_for_each_question_once(tmp_path: Path) -> None:
    """`dvc queue start -j 2` over experiments with the same generate settings: both runs found
    the same questions missing, went through them in step, and paid for every one twice (asking the
    cache again between slices never helped: neither run was ahead). Each now claims a slice
    before paying for it and leaves the other's slices to it."""
    import threading

    from tripleforge.generate import RunStats, Runner

    reqs = [ChatRequest(key=f"k{i}", messages=(("user", f"q{i}"),), sampling=Sampling(0.7, 0.9, 8, seed=i))
            for i in range(60)]
    start = threading.Barrier(2)

    class Slow(Scripted):
        recheck_every = 4

        def generate(self, requests: list[ChatRequest], on_result: OnResult) -> None:
            for r in requests:
                time.sleep(0.02)  # an LLM takes its time: the other run moves on meanwhile
                self.calls.append(r)
                on_result(r, ChatResult([f"answer {r.key}"], ["stop"], 10, 5))

    runs = [(Slow(lambda r: ""), RunStats(), ResponseCache(tmp_path / "shared.sqlite")) for _ in range(2)]
    outs: list[dict[str, ChatResult]] = [{}, {}]

    def run(i: int) -> None:
        backend, stats, cache = runs[i]
        start.wait()
        outs[i] = Runner(backend, cache, stats).run(reqs, f"run {i}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    paid = [r.key for backend, _, _ in runs for r in backend.calls]
    assert sorted(paid) == sorted(r.key for r in reqs)  # every question once, none twice
    assert all(len(backend.calls) >= 4 for backend, _, _ in runs)  # both did their share
    assert outs[0] == outs[1] and len(outs[0]) == 60  # and both have every answer
    for (backend, stats, cache) in runs:
        assert (stats.cache_misses, stats.cache_hits) == (len(backend.calls), 60 - len(backend.calls))
        cache.close()


def test_questions_claimed_by_a_run_that_died_are_taken_over(tmp_path: Path) -> None:
    """A killed run stops beating: after claims.STALE_S its claims are no one's."""
    from tripleforge import claims as C
    from tripleforge.generate import RunStats, Runner

    reqs = [ChatRequest(key=f"k{i}", messages=(("user", f"q{i}"),), sampling=Sampling(0.7, 0.9, 8, seed=i))
            for i in range(3)]
    dead = C.Claims(tmp_path / "shared.sqlite", "x")
    assert dead.take(["k1"]) == (["k1"], [])
    dead._stop.set()  # killed: no more beats, claims left behind
    dead._db.execute("UPDATE claim_owners SET beat = beat - ?", (C.STALE_S + 1,))
    cache = ResponseCache(tmp_path / "shared.sqlite")
    backend = Scripted(lambda r: "ours")
    out = Runner(backend, cache, RunStats()).run(reqs, "test")
    assert [r.key for r in backend.calls] == ["k0", "k1", "k2"] and out["k1"].texts == ["ours"]
    alive = C.Claims(tmp_path / "shared.sqlite", "x")
    assert alive.take(["k9"]) == (["k9"], []) and cache.claims.take(["k9"]) == ([], ["k9"])  # a live one's stay
    alive.close()
    assert cache.claims.take(["k9"]) == (["k9"], [])  # closing gives them up
    cache.close()


def test_answers_another_run_stores_meanwhile_are_served_not_paid_again(cache: ResponseCache) -> None:
    """`dvc queue start -j 2` over overlapping params: both runs found the same questions missing
    at the start and both paid for them. Requests go to the backend in slices; before each slice
    the cache is asked again."""
    from tripleforge.generate import RunStats, Runner

    reqs = [ChatRequest(key=f"k{i}", messages=(("user", f"q{i}"),), sampling=Sampling(0.7, 0.9, 8, seed=i))
            for i in range(6)]

    class Sliced(Scripted):
        recheck_every = 2

        def generate(self, requests: list[ChatRequest], on_result: OnResult) -> None:
            super().generate(requests, on_result)
            if requests[0].key == "k0":  # meanwhile, the other run answers k3 and k4 (one differently)
                cache.put("k3", ChatResult(["theirs"], ["stop"], 1, 1))
                cache.put("k4", ChatResult(["theirs"], ["stop"], 1, 1))

    stats = RunStats()
    backend = Sliced(lambda r: "ours")
    out = Runner(backend, cache, stats).run(reqs, "test")
    assert [r.key for r in backend.calls] == ["k0", "k1", "k2", "k5"]
    assert out["k3"].texts == ["theirs"] and out["k5"].texts == ["ours"]
    assert (stats.cache_hits, stats.cache_misses) == (2, 4)
