"""`dvc repro` of the generate stage with the `openai` backend against a real llama.cpp server:
outputs tracked, re-run is a no-op, and the API key appears in no file and no log."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
from gen_fixtures import PY_DOCS, SECRET, LlamaServer, docs_frame
from helpers import dvc, make_project_repo

pytestmark = [pytest.mark.e2e, pytest.mark.llm]


def test_dvc_repro_openai_backend_never_leaks_the_key(tmp_path: Path, llama_server: LlamaServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "tfcache"
    monkeypatch.setenv("TRIPLEFORGE_CACHE_DIR", str(cache))
    monkeypatch.setenv("TF_LLM_KEY", SECRET)
    gen = {"backend": "openai", "base_urls": [llama_server.url], "api_key_env": "TF_LLM_KEY", "concurrency": 2,
           "max_tokens": 24, "tasks": ["code_summary_retrieval", "web_code_retrieval"]}
    repo = make_project_repo(tmp_path, params={"generate": gen}, stages=["generate"])
    (repo / "data" / "paired").mkdir(parents=True)
    docs_frame(PY_DOCS[:2]).write_parquet(repo / "data" / "paired" / "docs.parquet")
    first = dvc(repo, "repro", "generate")
    pairs = pl.read_parquet(repo / "data" / "generated" / "pairs.parquet")
    m = json.loads((repo / "metrics" / "generate.json").read_text())
    assert m["cache_misses"] == 4 and pairs.height == m["kept"]
    assert all(x.startswith("openai:") for x in pairs["model"])
    second = dvc(repo, "repro", "generate")
    assert "didn't change" in second.stdout or "up to date" in second.stdout.lower()
    assert "up to date" in dvc(repo, "status", "generate").stdout
    lock = (repo / "dvc.lock").read_text()
    assert "TF_LLM_KEY" in lock  # the NAME is tracked as a param ...
    secret = SECRET.encode()
    leaks = [str(p) for root in (tmp_path,) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert leaks == [], leaks  # ... the key itself is nowhere: outputs, lock, metrics, DVC cache, LLM cache
    for out in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert SECRET not in out
    assert os.environ["TF_LLM_KEY"] == SECRET
