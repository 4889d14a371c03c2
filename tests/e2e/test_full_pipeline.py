"""The main job end to end: all seven stages under real DVC, on the embedded default corpus and
models (SmolLM2 through llama.cpp, MiniLM), scaled down; then a no-op repro and an experiment
that varies a mining setting without paying for any LLM call again."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from helpers import dvc, git, make_project_repo

pytestmark = [pytest.mark.e2e, pytest.mark.llm, pytest.mark.slow]

SMALL = {
    "sample": {"num_samples": 6, "max_pool": 60},
    "generate": {"tasks": ["code_summary_retrieval", "code_context_retrieval"], "max_tokens": 40},
    "mine_negatives": {"num_negatives": 4, "range_max": 30, "eval_fraction": 0.5},
    "train_data": {"train_group_size": 4},
    "evaluate": {"k_values": [1, 3, 10], "significance": {"n_permutations": 200}},
}
STAGES = ["sample", "pair-similar", "generate", "mine-negatives", "convert-formats", "train-data", "evaluate"]


def _metrics(repo: Path, name: str) -> dict:
    return json.loads((repo / "metrics" / f"{name}.json").read_text())


def test_main_job_then_noop_then_mining_experiment(tmp_path: Path) -> None:
    repo = make_project_repo(tmp_path, params=SMALL)
    out = dvc(repo, "repro").stdout
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out, stage

    # every stage wrote its outputs and metrics
    pairs = pl.read_parquet(repo / "data/generated/pairs.parquet")
    mined = pl.read_parquet(repo / "data/mined/triplets.parquet")
    assert pairs.height > 0 and mined.height == pairs.height
    assert set(mined["split"].unique()) <= {"train", "eval"}
    for row in mined.iter_rows(named=True):  # never a positive among its own negatives
        assert not set(row["pos"]) & set(row["neg"])
    train_files = list((repo / "data/train/embedder").rglob("*.jsonl"))
    assert train_files
    for line in train_files[0].read_text().splitlines():
        rec = json.loads(line)
        assert rec["neg"] and rec.get("prompt", "") is not None
    ev = _metrics(repo, "evaluate")
    assert 0.0 <= ev["models"]["minilm"]["eval"]["overall"]["ndcg_at_10"] <= 1.0
    gen = _metrics(repo, "generate")
    assert gen["cache_misses"] > 0
    assert "ndcg_at_10" in dvc(repo, "metrics", "show", "--json").stdout

    # a second repro does nothing
    again = dvc(repo, "repro").stdout
    assert "Running stage" not in again

    # vary mining: only mine-negatives and what follows re-run, and no LLM call is repeated
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "baseline")
    exp = dvc(repo, "exp", "run", "-n", "margin90", "-S", "mine_negatives.relative_margin=0.9").stdout
    assert "Running stage 'mine-negatives'" in exp and "Running stage 'generate'" not in exp
    show = dvc(repo, "exp", "show", "--csv", "--no-pager").stdout
    assert "margin90" in show and "0.9" in show
