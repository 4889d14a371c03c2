"""Failed LLM requests never end in a "successful" run: the stage stops with one line and writes
nothing, the answers that did arrive stay cached, and the next run (`dvc repro` included) asks
only for the failed ones. A real llama.cpp server answers behind a proxy that injects the faults."""

from __future__ import annotations

import json
import sqlite3
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
    assert proxy.posts == 4  # the client's retries came first
    assert not (tmp_path / "data" / "generated").exists() and not (tmp_path / "metrics").exists()


def test_empty_reply_is_a_failure_not_a_cached_answer(tmp_path: Path, proxy: FaultProxy) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}
    no_choices = _when("read_lines", 200, _json({"choices": [], "usage": usage}))
    null_content = _when("is_prime", 200, _json({"choices": [{"index": 0, "finish_reason": "stop",
                                                              "message": {"role": "assistant", "content": None}}],
                                                 "usage": usage}))
    proxy.fault = lambda req: no_choices(req) or null_content(req)
    setup(tmp_path, docs=PY_DOCS[:4], **_openai(proxy.url))
    proc = stage(tmp_path, check=False, env=KEY_ENV)
    assert proc.returncode == 1 and "2 of 4 LLM requests failed" in proc.stderr
    assert "first failure: malformed response: " in proc.stderr
    db = sqlite3.connect(tmp_path / "cache" / "llm" / "responses.sqlite")
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 2  # only the real answers
    assert db.execute("SELECT COUNT(*) FROM failures").fetchone()[0] == 2
    # tolerated by max_failed_fraction: outputs and metrics written, failures counted and warned about
    proc = stage(tmp_path, "--set", "max_failed_fraction=0.5", env=KEY_ENV)
    m = json.loads((tmp_path / "metrics" / "generate.json").read_text())
    assert (m["cache_hits"], m["cache_misses"], m["llm_failures"], m["llm_requests"]) == (2, 2, 2, 4)
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
    assert not (repo / "data" / "generated" / "pairs.parquet").exists()
    assert "generate" not in ((repo / "dvc.lock").read_text() if (repo / "dvc.lock").exists() else "")
    proxy.fault, proxy.posts = None, 0
    dvc(repo, "repro", "generate")  # DVC saw no success, so it runs the stage again
    m = json.loads((repo / "metrics" / "generate.json").read_text())
    assert (m["cache_hits"], m["cache_misses"], m["llm_failures"]) == (2, 1, 0) and proxy.posts == 1
    assert "generate" in (repo / "dvc.lock").read_text()
