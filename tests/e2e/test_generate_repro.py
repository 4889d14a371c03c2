"""`dvc repro generate` on the embedded default backend (bundled SmolLM2 through llama.cpp)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gen_fixtures import PY_DOCS, docs_frame
from helpers import dvc, make_project_repo

pytestmark = [pytest.mark.e2e, pytest.mark.llm]


def test_repro_embedded_default_tracks_outputs_and_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIPLEFORGE_CACHE_DIR", str(tmp_path / "tfcache"))
    gen = {"tasks": ["code_summary_retrieval", "code_context_retrieval"], "max_tokens": 16, "n_threads": 1}
    repo = make_project_repo(tmp_path, params={"generate": gen}, stages=["generate"])
    (repo / "data" / "paired").mkdir(parents=True)
    docs_frame(PY_DOCS[:2]).write_parquet(repo / "data" / "paired" / "docs.parquet")
    dvc(repo, "repro", "generate")
    assert (repo / "data" / "generated" / "pairs.parquet").is_file()
    assert (repo / "data" / "generated" / "jsonl" / "en" / "code_context_retrieval" / "en-python-triplets.jsonl").is_file()
    lock = (repo / "dvc.lock").read_text()
    assert "data/generated/jsonl" in lock and "model_path: smollm2" in lock
    assert "up to date" in dvc(repo, "status", "generate").stdout
    # a params change re-runs the stage; answers already paid for come from the response cache
    dvc(repo, "exp", "run", "-S", "generate.tasks=[code_summary_retrieval]")
    m = json.loads((repo / "metrics" / "generate.json").read_text())
    assert m["requested"] == 2 and m["cache_misses"] == 0 and m["cache_hits"] == 2
