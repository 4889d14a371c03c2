"""The DVC workflow a user runs, end to end in a temp git repo: repro, no-op repro, exp run -S,
exp show, push to a local remote, clone + pull, dag."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import polars as pl
import pytest
from helpers import dvc, git, make_project_repo

pytestmark = pytest.mark.e2e

FUNC = "def f{i}(xs):\n    total = 0\n    for x in xs:\n        total += x * {i}\n    return total\n"


def add_corpus(repo: Path) -> None:
    src = repo / "corpus"
    (src / "pkg").mkdir(parents=True)
    for i in range(8):
        (src / "pkg" / f"m{i}.py").write_text(FUNC.format(i=i))
    (src / "q.sql").write_text("SELECT id, name FROM users WHERE active = 1 ORDER BY name;\n")
    (src / "bad.py").write_bytes(b"\x00binary")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "corpus")


def test_repro_exp_push_clone_pull(tmp_path: Path) -> None:
    repo = make_project_repo(tmp_path, stages=["sample"], params={
        "sample": {"corpus": "corpus", "num_samples": 2, "max_pool": 5, "min_chars": 20}})
    add_corpus(repo)

    first = dvc(repo, "repro")
    assert "Running stage 'sample'" in first.stdout
    docs = repo / "data/sample/docs.parquet"
    assert pl.read_parquet(docs)["code_language"].value_counts().sort("code_language").rows() == [
        ("python", 2), ("sql", 1)]
    metrics = json.loads((repo / "metrics/sample.json").read_text())
    assert metrics["skipped"]["binary"] == 1
    assert metrics["untracked_inputs"] == ["corpus"]  # outside data/external/: warned, listed
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "sample")

    again = dvc(repo, "repro")
    assert "Running stage" not in again.stdout
    assert "Data and pipelines are up to date" in again.stdout

    dag = dvc(repo, "dag")
    assert "sample" in dag.stdout

    # an input the user versions with `dvc add` under data/external/ (as the README says)
    extra = repo / "data" / "external" / "extra"
    extra.mkdir()
    (extra / "x.jsonl").write_text('{"query": "q", "pos": ["p"]}\n')
    dvc(repo, "add", "data/external/extra")
    git(repo, "add", "-A")
    before = (repo / "data/sample/docs.parquet").read_bytes()
    assert "data/external" in dvc(repo, "status").stdout  # sample watches the whole folder
    dvc(repo, "repro")
    assert (repo / "data/sample/docs.parquet").read_bytes() == before  # a file it does not read
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "extra input")

    # push, then a fresh clone + pull restores the outputs (and that input) byte for byte
    dvc(repo, "push")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert not (clone / "data" / "sample").exists()
    assert (clone / "data" / "external" / "README.md").is_file()  # git's: the stage depends on the folder
    dvc(clone, "pull")
    for name in ("docs.parquet", "pool.parquet"):
        assert (clone / "data/sample" / name).read_bytes() == (repo / "data/sample" / name).read_bytes()
    assert (clone / "data/external/extra/x.jsonl").read_bytes() == (extra / "x.jsonl").read_bytes()
    assert "Data and pipelines are up to date" in dvc(clone, "status").stdout

    # an experiment with another num_samples changes the output and shows in exp show
    baseline = docs.read_bytes()
    dvc(repo, "exp", "run", "-n", "more", "-S", "sample.num_samples=4")
    assert docs.read_bytes() != baseline
    assert (extra / "x.jsonl").is_file()  # the experiment's checkout keeps the dvc-added input
    assert pl.read_parquet(docs).filter(pl.col("code_language") == "python").height == 4
    shown = dvc(repo, "exp", "show", "--csv", "--no-pager").stdout
    rows = list(csv.DictReader(io.StringIO(shown)))
    exp = [r for r in rows if r["Experiment"] == "more"]
    assert exp and exp[0]["sample.num_samples"] == "4" and exp[0]["docs"] == "5"
    base = [r for r in rows if r["Experiment"] == "" and r["rev"] == "main"] or [rows[0]]
    assert base[0]["sample.num_samples"] == "2"
