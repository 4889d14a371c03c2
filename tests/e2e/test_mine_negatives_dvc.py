"""mine-negatives under real DVC on fixture inputs: repro, metrics, plots, exp -S re-mine."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from helpers import PROJECT, dvc, git, make_project_repo
from test_mining import make_pairs, make_pool

from tripleforge.io import write_parquet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_mine_negatives_stage_in_dvc(tmp_path):
    repo = make_project_repo(tmp_path, params={"mine_negatives": {"num_negatives": 3, "range_max": 20}},
                             stages=["mine-negatives"])
    # the helper drops top-level plots; put ours back to check the declaration renders
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["plots"] = [p for p in yaml.safe_load((PROJECT / "dvc.yaml").read_text())["plots"]
                         if next(iter(p)) == "metrics/mine_negatives_scores.csv"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    write_parquet(make_pairs(), repo / "data/generated/pairs.parquet")
    write_parquet(make_pool(), repo / "data/sample/pool.parquet")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "fixtures")
    dvc(repo, "repro")
    out = pl.read_parquet(repo / "data/mined/triplets.parquet")
    assert out.height == 4 and (out.get_column("neg").list.len() <= 3).all()
    metrics = json.loads(dvc(repo, "metrics", "show", "--json").stdout)
    assert "metrics/mine_negatives.json" in json.dumps(metrics)
    plots = json.loads(dvc(repo, "plots", "show", "--json").stdout)
    assert list(plots["data"]) == ["metrics/mine_negatives_scores.csv"]  # drawn once, by the top-level definition
    dvc(repo, "exp", "run", "-S", "mine_negatives.num_negatives=1")
    again = pl.read_parquet(repo / "data/mined/triplets.parquet")
    assert (again.get_column("neg").list.len() <= 1).all()
    m = json.loads((repo / "metrics/mine_negatives.json").read_text())
    assert m["num_negatives"] == 1
