"""Failed LLM requests never end in a "successful" run: the stage stops with one line and writes
nothing, the answers that did arrive stay cached, and the next run (`dvc repro` included) asks
only for the failed ones. A real llama.cpp server answers behind a proxy that injects the faults."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gen_fixtures import PY_DOCS, SECRET, Fault, FaultProxy, LlamaServer, docs_frame
from helpers import dvc, make_project_repo
from test_generate_stage import setup, stage

pytestmark = pytest.mark.llm

KEY_ENV = {"TF_LLM_KEY": SECRET}


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.fixture
def proxy(llama_server: LlamaServer) -> Iterator[FaultProxy]:
    with FaultProxy(llama_server.url) as p:
        yield p


def _openai(url: str, **gen: object) -> dict[str, object]:
    return {"backend": "openai", "base_urls": [url], "api_key_env": "TF_LLM_KEY", "concurrency": 2,
            "max_retries": 1, "max_tokens": 24, **gen}


def _when(marker: str, status: int, body: bytes) -> Fault:
    return lambda req: (status, body) if marker.encode() in req else None


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_server_failing_everything_stops_the_stage(tmp_path: Path, proxy: FaultProxy) -> None:
    proxy.fault = lambda req: (500, _json({"error": {"message": "model crashed\nbadly"}}))
    setup(tmp_path, docs=PY_DOCS[:2], **_openai(proxy.url))
    proc = stage(tmp_path, check=False, env=KEY_ENV)
    assert proc.returncode == 1, proc.stderr
    assert _error_lines(proc.stderr) == [
        "error: generate: 2 of 2 LLM requests failed (generate.max_failed_fraction=0); first failure: gave up after "
        f"2 attempts: HTTP 500 from {proxy.url}: model crashed badly. Nothing written; the 0 answers are cached, so "
        "re-running asks only for the failed ones"], proc.stderr
    assert proc.stderr.rstrip().endswith("asks only for the failed ones") and "Traceback" not in proc.stderr
    # the first request to fail had its 2 attempts; the other, waiting to retry by then, was not retried
    assert proxy.posts in (3, 4)
    assert not (tmp_path / "data" / "generated").exists() and not (tmp_path / "metrics").exists()


def _metrics(tmp: Path) -> dict:
    return json.loads((tmp / "metrics" / "generate.json").read_text())


def test_a_server_failing_everything_stops_the_stage_early(tmp_path: Path, proxy: FaultProxy) -> None:
    # 8 requests, 2 in flight, 2 attempts each: without the stop every request would be tried (16 POSTs).
    # The first failure makes the verdict certain (max_failed_fraction 0 allows none), so no request
    # starts after it: at most (allowed 0 + concurrency 2) requests, each with its attempts.
    proxy.fault = lambda req: (500, _json({"error": {"message": "model crashed"}}))
    setup(tmp_path, docs=PY_DOCS, **_openai(proxy.url))
    proc = stage(tmp_path, check=False, env=KEY_ENV)
    assert proc.returncode == 1, proc.stderr
    assert _error_lines(proc.stderr) == [
        "error: generate: 2 of 8 LLM requests failed (generate.max_failed_fraction=0); first failure: gave up after "
        f"2 attempts: HTTP 500 from {proxy.url}: model crashed. Stopped early: the remaining 6 requests were not "
        "sent. Nothing written; the 0 answers are cached, so re-running asks only for the failed and unsent ones"]
    assert proxy.posts <= (0 + 2) * 2 < len(PY_DOCS) * 2
    assert not (tmp_path / "data" / "generated").exists() and not (tmp_path / "metrics").exists()


def test_answers_before_the_stop_stay_cached_and_the_rerun_sends_failed_and_unsent(
        tmp_path: Path, proxy: FaultProxy) -> None:
    # the server answers 3 requests, then fails every one
    lock, served = threading.Lock(), [0]

    def fault(req: bytes) -> tuple[int, bytes] | None:
        with lock:
            served[0] += 1
            return None if served[0] <= 3 else (503, _json({"error": "overloaded"}))

    proxy.fault = fault
    setup(tmp_path, docs=PY_DOCS, **_openai(proxy.url))
    proc = stage(tmp_path, check=False, env=KEY_ENV)
    assert proc.returncode == 1, proc.stderr
    [line] = _error_lines(proc.stderr)
    m = re.fullmatch(r"error: generate: (\d) of 8 LLM requests failed .*: overloaded\. Stopped early: the remaining "
                     r"(\d) requests? (?:were|was) not sent\. Nothing written; the 3 answers are cached, so re-running "
                     r"asks only for the failed and unsent ones", line)
    assert m, line
    failed, unsent = int(m[1]), int(m[2])
    assert 1 <= failed <= 0 + 2 and failed + unsent == 5  # after the first failure, only the one in flight
    assert proxy.posts <= 3 + (0 + 2) * 2
    db = sqlite3.connect(tmp_path / "cache" / "llm" / "responses.sqlite")
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 3
    # the server recovers: the re-run asks exactly for the failed and the unsent requests
    proxy.fault, proxy.posts = None, 0
    stage(tmp_path, env=KEY_ENV)
    met = _metrics(tmp_path)
    assert (met["cache_hits"], met["cache_misses"], met["llm_failures"]) == (3, 5, 0) and proxy.posts == failed + unsent


def test_a_replica_that_is_down_fails_no_request(tmp_path: Path, llama_server: LlamaServer) -> None:
    # two base URLs, one answering 503 to everything: the first request that starts there is retried
    # on the other, which the next requests start at while the dead one rests, so the stage, which
    # tolerates no failure, succeeds and pays one retry
    with FaultProxy(llama_server.url) as down, FaultProxy(llama_server.url) as up:
        down.fault = lambda req: (503, _json({"error": "replica down"}))
        setup(tmp_path, docs=PY_DOCS[:4], **_openai(down.url, base_urls=[down.url, up.url]))
        proc = stage(tmp_path, env=KEY_ENV)
        met = _metrics(tmp_path)
        assert (met["cache_misses"], met["llm_failures"], met["llm_retries"]) == (4, 0, 1), proc.stderr
        assert (down.posts, up.posts) == (1, 4) and "LLM requests failed" not in proc.stderr


def test_a_tolerant_fraction_never_stops_early(tmp_path: Path, proxy: FaultProxy) -> None:
    # 4 of 8 fail, exactly what 0.5 allows: every request is sent, each failure with all its attempts
    failing = ("def add(", "def read_lines(", "def is_prime(", "class Stack:")
    proxy.fault = lambda req: (500, b"") if any(json.dumps(f)[1:-1].encode() in req for f in failing) else None
    setup(tmp_path, docs=PY_DOCS, **_openai(proxy.url, max_failed_fraction=0.5))
    proc = stage(tmp_path, env=KEY_ENV)
    assert "warning: generate: 4 of 8 LLM requests failed (allowed by generate.max_failed_fraction=0.5)" in proc.stderr
    assert proxy.posts == 4 * 2 + 4
    met = _metrics(tmp_path)
    assert (met["cache_misses"], met["llm_failures"], met["rejected_by_reason"].get("llm_error")) == (8, 4, 4)


def test_empty_reply_is_a_failure_not_a_cached_answer(tmp_path: Path, proxy: FaultProxy) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}
    no_choices = _when("read_lines", 200, _json({"choices": [], "usage": usage}))
    null_content = _when("is_prime", 200, _json({"choices": [{"index": 0, "finish_reason": "stop",
                                                              "message": {"role": "assistant", "content": None}}],
                                                 "usage": usage}))
    proxy.fault = lambda req: no_choices(req) or null_content(req)
    setup(tmp_path, docs=PY_DOCS[:4], **_openai(proxy.url))
    proc = stage(tmp_path, check=False, env=KEY_ENV)  # stops at the first failure (which one: timing)
    assert proc.returncode == 1 and "first failure: malformed response: " in proc.stderr
    db = sqlite3.connect(tmp_path / "cache" / "llm" / "responses.sqlite")
    answers = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert answers <= 2 and db.execute("SELECT COUNT(*) FROM failures").fetchone()[0] >= 1  # only real answers
    # tolerated by max_failed_fraction: outputs and metrics written, failures counted and warned about
    proc = stage(tmp_path, "--set", "max_failed_fraction=0.5", env=KEY_ENV)
    m = json.loads((tmp_path / "metrics" / "generate.json").read_text())
    assert (m["cache_hits"], m["cache_misses"], m["llm_failures"], m["llm_requests"]) == (answers, 4 - answers, 2, 4)
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 2
    assert db.execute("SELECT COUNT(*) FROM failures").fetchone()[0] == 2
    assert m["rejected_by_reason"].get("llm_error") == 2 and m["kept"] <= 2
    assert "warning: generate: 2 of 4 LLM requests failed (allowed by generate.max_failed_fraction=0.5)" in proc.stderr
    # the server recovers: the failed requests are asked again, and only they
    proxy.fault, proxy.posts = None, 0
    stage(tmp_path, env=KEY_ENV)
    m = json.loads((tmp_path / "metrics" / "generate.json").read_text())
    assert (m["cache_hits"], m["cache_misses"], m["llm_failures"]) == (2, 2, 0) and proxy.posts == 2


@pytest.mark.e2e
def test_dvc_repro_fails_on_failed_requests_and_the_next_repro_retries_only_them(
        tmp_path: Path, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIPLEFORGE_CACHE_DIR", str(tmp_path / "tfcache"))
    monkeypatch.setenv("TF_LLM_KEY", SECRET)
    proxy.fault = _when("read_lines", 503, b"")
    repo = make_project_repo(tmp_path, params={"generate": _openai(proxy.url, tasks=["code_summary_retrieval"])},
                             stages=["generate"])
    (repo / "data" / "paired").mkdir(parents=True)
    docs_frame(PY_DOCS[:3]).write_parquet(repo / "data" / "paired" / "docs.parquet")
    failed = dvc(repo, "repro", "generate", check=False)
    assert failed.returncode != 0
    assert "error: generate: 1 of 3 LLM requests failed" in failed.stdout + failed.stderr
    # the failure may stop the run before the last request is sent (timing); the next run asks for it too
    unsent = re.search(r"the remaining (\d) requests? (?:were|was) not sent", failed.stdout + failed.stderr)
    asked = 1 + (int(unsent[1]) if unsent else 0)
    assert not (repo / "data" / "generated" / "pairs.parquet").exists()
    assert "generate" not in ((repo / "dvc.lock").read_text() if (repo / "dvc.lock").exists() else "")
    proxy.fault, proxy.posts = None, 0
    dvc(repo, "repro", "generate")  # DVC saw no success, so it runs the stage again
    m = json.loads((repo / "metrics" / "generate.json").read_text())
    assert (m["cache_hits"], m["cache_misses"], m["llm_failures"]) == (3 - asked, asked, 0) and proxy.posts == asked
    assert "generate" in (repo / "dvc.lock").read_text()
