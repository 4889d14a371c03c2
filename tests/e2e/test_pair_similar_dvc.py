"""sample -> pair-similar under real DVC in a temp repo: outputs, metrics, no-op re-run, exp -S."""

from __future__ import annotations

import json

import polars as pl
import pytest
from helpers import dvc, make_project_repo

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_sample_then_pair_similar(tmp_path):
    repo = make_project_repo(
        tmp_path,
        params={"sample": {"num_samples": 3, "max_pool": 30}, "pair_similar": {"skip_top": 2, "search_depth": 20}},
        stages=["sample", "pair-similar"],
    )
    dvc(repo, "repro")
    docs = pl.read_parquet(repo / "data/sample/docs.parquet")
    paired = pl.read_parquet(repo / "data/paired/docs.parquet")
    assert paired.height == docs.height
    assert {"similar_doc_id", "similar_text", "similar_score"} <= set(paired.columns)
    assert paired.select(["code_language", "doc_id"]).equals(paired.select(["code_language", "doc_id"]).sort(["code_language", "doc_id"]))
    found = paired.filter(pl.col("similar_doc_id").is_not_null())
    assert found.height > 0
    assert (found.get_column("similar_doc_id") != found.get_column("doc_id")).all()
    metrics = json.loads((repo / "metrics/pair_similar.json").read_text())
    assert metrics["paired"] + metrics["no_candidate"] == docs.height
    first = (repo / "data/paired/docs.parquet").read_bytes()
    # nothing changed: DVC skips; a forced re-run gives the same bytes
    assert "didn't change" in dvc(repo, "repro").stdout or "up to date" in dvc(repo, "status").stdout
    forced = dvc(repo, "repro", "-f", "pair-similar")
    assert (repo / "data/paired/docs.parquet").read_bytes() == first
    said = f"pair-similar: {metrics['paired']} of {docs.height} documents paired, {metrics['no_candidate']} without"
    assert said in forced.stdout + forced.stderr  # the stage's one stderr line, as every stage has
    dvc(repo, "exp", "run", "-S", "pair_similar.enabled=false")
    disabled = pl.read_parquet(repo / "data/paired/docs.parquet")
    assert disabled.get_column("similar_doc_id").null_count() == disabled.height
