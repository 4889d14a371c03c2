"""The `convert-formats` and `train-data` stages as a user runs them: standalone CLI and DVC."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from formats_data import SPEC_CANDIDATES, SPEC_TRIPLET, mined_frame, write_lines
from helpers import PROJECT, dvc, make_project_repo, run


def _stage(cwd: Path, name: str, *args: str, check: bool = True):  # noqa: ANN202
    return run([sys.executable, str(PROJECT / "stages" / f"{name}.py"), *args], cwd, check=check,
               env={"TRIPLEFORGE_NO_PROGRESS": "1"})


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "data" / "mined").mkdir(parents=True)
    mined_frame(n_docs=8, candidates=2, n_neg=4).write_parquet(tmp_path / "data" / "mined" / "triplets.parquet")
    (tmp_path / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    write_lines(tmp_path / "ext.jsonl", [SPEC_TRIPLET, {**SPEC_TRIPLET, "query": "second"}])
    write_lines(tmp_path / "cand.jsonl", [SPEC_CANDIDATES])
    return tmp_path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_both_stages_standalone_and_byte_identical(workdir: Path) -> None:
    sets = ["--set", "external=[ext.jsonl, cand.jsonl]"]
    train_sets = ["--set", "n_candidates=2", "--set", "train_group_size=3", "--set", "batch.batch_size=2",
                  "--set", "tokenizer.query_max_len=8", "--set", "tokenizer.passage_max_len=16"]
    proc = _stage(workdir, "convert_formats", *sets)
    assert proc.stdout == ""  # stdout stays clean
    _stage(workdir, "train_data", *train_sets)
    first = {**_snapshot(workdir / "data" / "formats"), **_snapshot(workdir / "data" / "train"),
             **_snapshot(workdir / "metrics")}
    _stage(workdir, "convert_formats", *sets)
    _stage(workdir, "train_data", *train_sets)
    second = {**_snapshot(workdir / "data" / "formats"), **_snapshot(workdir / "data" / "train"),
              **_snapshot(workdir / "metrics")}
    assert first.keys() == second.keys() and first == second

    m = json.loads((workdir / "metrics" / "convert_formats.json").read_text())
    assert m["triplets"]["by_source_format"] == {"candidates": 1, "mined": 16, "triplets": 2}
    assert m["by_source"]["ext.jsonl"]["format"] == "triplets" and m["eval"]["queries"] == 2
    assert m["eval"]["left_out"]["other_candidates"] == 2  # 2 eval documents, 2 candidates each: the first goes
    t = json.loads((workdir / "metrics" / "train_data.json").read_text())
    # the fixture's tasks are not catalog tasks: best-of-n still applies, DPO pairs need a catalog task
    assert t["dpo_pairs"] == 0 and t["dpo_skipped"] == {"not_a_catalog_task": 6}
    assert t["dropped"] == {"not_best_candidate": 6}
    assert set(t["datasets"]) == {"any/default", "en/code2code", "en/text2code"}
    assert t["tokenized"]["rows"] == t["embedder_rows"] == 9
    for f in (workdir / "data" / "train" / "embedder").rglob("*.jsonl"):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            assert rec["neg"] and rec.get("prompt", "") is not None and "None" not in rec.get("prompt", "")
    assert not (workdir / "data" / "train" / "dpo.jsonl").exists()
    plan = [json.loads(x) for x in (workdir / "data" / "train" / "batch_plan.jsonl").read_text().splitlines()]
    assert plan and all(1 <= len(b["indices"]) <= 2 for b in plan)
    assert sum(len(b["indices"]) for b in plan) == t["embedder_rows"]  # drop_last false: every row planned


def test_bad_external_line_fails_cleanly_without_outputs(workdir: Path) -> None:
    write_lines(workdir / "bad.jsonl", [SPEC_TRIPLET, {**SPEC_TRIPLET, "pos_scores": [1.0]}])
    proc = _stage(workdir, "convert_formats", "--set", "external=[bad.jsonl]", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: bad.jsonl:2: 'pos_scores' length differs from 'pos'"
    assert not (workdir / "data" / "formats").exists()
    ok = _stage(workdir, "convert_formats", "--set", "external=[bad.jsonl]", "--set", "strict=false")
    assert ok.returncode == 0
    m = json.loads((workdir / "metrics" / "convert_formats.json").read_text())
    assert m["dropped"] == {"pos_scores_length_differs_from_pos": 1}
    assert m["by_source"]["bad.jsonl"]["triplets"] == 1


def test_an_output_inside_the_out_dir_that_cannot_be_written_fails_before_any_work(workdir: Path) -> None:
    out = workdir / "fo"
    out.mkdir()
    (out / "eval").write_text("a file where the BEIR folder goes")
    proc = _stage(workdir, "convert_formats", "--out-dir", "fo", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: fo/eval: cannot write this output: it is a file, and a folder goes here"
    assert sorted(p.name for p in out.iterdir()) == ["eval"] and not (workdir / "metrics").exists()
    (out / "eval").unlink()
    (out / "triplets.parquet").mkdir()
    proc = _stage(workdir, "convert_formats", "--out-dir", "fo", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: fo/triplets.parquet: cannot write this output: it is a folder"


def test_bad_params_and_missing_inputs(workdir: Path) -> None:
    proc = _stage(workdir, "convert_formats", "--set", "strict=maybe", check=False)
    assert proc.returncode == 2 and "convert_formats.strict" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = _stage(workdir, "train_data", "--set", "select_positive=best", check=False)
    assert proc.returncode == 2 and "train_data.select_positive" in proc.stderr
    proc = _stage(workdir, "train_data", check=False)  # convert-formats has not run
    assert proc.returncode == 2 and "input not found: data/formats/triplets.parquet" in proc.stderr
    proc = _stage(workdir, "convert_formats", "--set", "external=[nope.jsonl]", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --set: convert_formats.external.0: file not found: nope.jsonl"
    other = workdir / "other.yaml"
    other.write_text(yaml.safe_dump({"convert_formats": {"external": ["gone.jsonl"]}}))
    proc = _stage(workdir, "convert_formats", "--params", str(other), check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {other}: convert_formats.external.0: file not found: gone.jsonl"
    (workdir / "adir").mkdir()
    proc = _stage(workdir, "convert_formats", "--set", "external=[adir]", check=False)
    assert proc.stderr.strip() == "error: --set: convert_formats.external.0: adir is a directory, not a file"
    proc = _stage(workdir, "convert_formats", "--set", "include_mined=false")  # nothing to convert: said
    assert ("warning: convert-formats: convert_formats.include_mined is false and convert_formats.external is "
            "empty: every output is empty") in proc.stderr


def test_params_without_meaning_fail_before_any_work(workdir: Path) -> None:
    for name, setting, expect in [
        ("train_data", "train_group_size=1", "params key 'train_data.train_group_size': Input should be greater than or equal to 2"),
        ("train_data", 'dpo_prompt_template="{foo} {document}"', "train_data.dpo_prompt_template': Value error, unknown placeholder {foo}"),
        ("convert_formats", "external=[ext.jsonl, ext.jsonl]", "convert_formats.external': Value error, 'ext.jsonl' is listed twice"),
    ]:
        proc = _stage(workdir, name, "--set", setting, check=False)
        assert proc.returncode == 2 and expect in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: --set: ")
    assert not (workdir / "data" / "formats").exists() and not (workdir / "metrics").exists()


def test_empty_query_fails_cleanly_or_is_counted(workdir: Path) -> None:
    write_lines(workdir / "e.jsonl", [SPEC_TRIPLET, {**SPEC_TRIPLET, "query": ""}])
    proc = _stage(workdir, "convert_formats", "--set", "external=[e.jsonl]", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: e.jsonl:2: empty 'query'"
    assert not (workdir / "data" / "formats").exists()
    _stage(workdir, "convert_formats", "--set", "external=[e.jsonl]", "--set", "strict=false")
    m = json.loads((workdir / "metrics" / "convert_formats.json").read_text())
    assert m["dropped"] == {"empty_query": 1} and m["by_source"]["e.jsonl"]["rows_read"] == 2


def test_help_is_fast_and_names_options(workdir: Path) -> None:
    for name in ("convert_formats", "train_data"):
        out = _stage(workdir, name, "--help").stdout
        assert "--set" in out and "--out-dir" in out


@pytest.mark.e2e
def test_dvc_repro_runs_both_stages(tmp_path: Path) -> None:
    repo = make_project_repo(tmp_path, params={"train_data": {"train_group_size": 3, "batch": {"batch_size": 2},
                                                              "tokenizer": {"query_max_len": 8, "passage_max_len": 16}}},
                             stages=["convert-formats", "train-data"])
    (repo / "data" / "mined").mkdir(parents=True)
    mined_frame(n_docs=6, n_neg=3).write_parquet(repo / "data" / "mined" / "triplets.parquet")
    dvc(repo, "repro")
    assert (repo / "data" / "train" / "embedder" / "en" / "text2code.jsonl").is_file()
    assert (repo / "data" / "formats" / "eval" / "qrels" / "test.tsv").is_file()
    assert "up to date" in dvc(repo, "status").stdout
    # a train_data param change re-runs only train-data
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train_data"]["select_negative"] = "first"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = dvc(repo, "repro").stdout
    assert "Running stage 'train-data'" in log and "Running stage 'convert-formats'" not in log
    metrics = dvc(repo, "metrics", "show", "--json").stdout
    assert "train_data.json" in metrics and "convert_formats.json" in metrics


@pytest.mark.e2e
def test_dvc_repro_watches_external_files_under_data_external_and_warns_about_others(tmp_path: Path) -> None:
    repo = make_project_repo(tmp_path, params={"convert_formats": {"external": [
        "data/external/ext.jsonl", "other.jsonl"]}}, stages=["convert-formats"])
    (repo / "data" / "mined").mkdir(parents=True)
    mined_frame(n_docs=4, n_neg=3).write_parquet(repo / "data" / "mined" / "triplets.parquet")
    write_lines(repo / "data" / "external" / "ext.jsonl", [SPEC_TRIPLET])
    write_lines(repo / "other.jsonl", [{**SPEC_TRIPLET, "query": "other"}])
    first = dvc(repo, "repro")
    assert "other.jsonl is outside data/external/" in first.stderr + first.stdout
    m = json.loads((repo / "metrics" / "convert_formats.json").read_text())
    assert m["untracked_inputs"] == ["other.jsonl"]
    assert "up to date" in dvc(repo, "status").stdout
    # an edit outside data/external/ goes unseen (hence the warning) ...
    write_lines(repo / "other.jsonl", [{**SPEC_TRIPLET, "query": "other, edited"}])
    assert "up to date" in dvc(repo, "status").stdout
    # ... an edit inside it re-runs the stage and reaches the outputs
    write_lines(repo / "data" / "external" / "ext.jsonl", [{**SPEC_TRIPLET, "query": "edited"}])
    assert "convert-formats" in dvc(repo, "status").stdout
    assert "Running stage 'convert-formats'" in dvc(repo, "repro").stdout
    m = json.loads((repo / "metrics" / "convert_formats.json").read_text())
    assert m["by_source"]["data/external/ext.jsonl"]["rows_read"] == 1
    assert "edited" in pl.read_parquet(repo / "data" / "formats" / "triplets.parquet")["query"].to_list()


def test_line_only_arrow_rejects_fails_cleanly_or_is_counted(workdir: Path) -> None:
    # Python's json takes a duplicated key; Arrow's reader raised a bare ArrowInvalid traceback.
    write_lines(workdir / "dup.jsonl", [SPEC_TRIPLET, '{"query": "a", "pos": ["x"], "neg": ["y"], "query": "b"}'])
    proc = _stage(workdir, "convert_formats", "--set", "external=[dup.jsonl]", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: dup.jsonl:2: invalid JSON: key 'query' appears twice in one object"
    assert not (workdir / "data" / "formats").exists()
    _stage(workdir, "convert_formats", "--set", "external=[dup.jsonl]", "--set", "strict=false")
    m = json.loads((workdir / "metrics" / "convert_formats.json").read_text())
    assert m["dropped"] == {"malformed": 1} and m["by_source"]["dup.jsonl"]["triplets"] == 1


def test_train_data_names_the_missing_columns_of_a_wrong_input(workdir: Path) -> None:
    proc = _stage(workdir, "convert_formats", "--set", "include_mined=false", "--set", "external=[ext.jsonl]")
    # the eval split is the mined rows': evaluate would fail later without saying why
    assert ("warning: convert-formats: convert_formats.include_mined is false, so the eval split (data/formats/eval) "
            "is empty: the evaluate stage needs datasets in evaluate.external") in proc.stderr
    for wrong, missing in [("data/mined/triplets.parquet", "qid, type, source_format, source"),
                           ("data/formats/pairs.parquet", "pos, neg, pos_scores, neg_scores")]:
        proc = _stage(workdir, "train_data", "--triplets", wrong, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == (f"error: {wrong}: missing column(s) {missing} "
                                       "(expected the triplets of convert-formats, data/formats/triplets.parquet)")
    assert not (workdir / "data" / "train").exists() and not (workdir / "metrics" / "train_data.json").exists()
