"""The `evaluate` stage: standalone CLI (outputs, determinism, one-line errors) and under real DVC."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from helpers import PROJECT, dvc, make_project_repo, run
from test_evaluation import write_beir

STAGE = PROJECT / "stages" / "evaluate.py"


def write_triplets(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "pair_id": ["p1", "p2", "p3"],
            "pos_rank": [0, 2, None],
            "pos_scores": [[0.8], [0.6], [0.3]],
            "neg_scores": [[0.5, 0.4], [0.7], [0.2]],
            "split": ["eval", "train", "train"],
        },
        schema_overrides={"pos_rank": pl.Int64},
    ).write_parquet(path)


def _stage(cwd: Path, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return run([sys.executable, str(STAGE), *args], cwd, check=check)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    write_beir(tmp_path / "data" / "formats" / "eval")
    write_triplets(tmp_path / "data" / "mined" / "triplets.parquet")
    shutil.copy(PROJECT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


@pytest.mark.slow
def test_stage_outputs_are_complete_and_deterministic(workdir: Path) -> None:
    args = ["--set", "models=[{name: plain, query_prompts: false}, {name: prompted}]",
            "--set", "significance.n_permutations=300"]
    proc = _stage(workdir, *args)
    assert proc.stdout == ""  # stdout stays clean; progress and logs go to stderr
    m = json.loads((workdir / "metrics/evaluate.json").read_text())
    assert set(m["models"]) == {"plain", "prompted"}
    assert m["models"]["plain"]["eval"]["overall"]["ndcg_at_10"] > 0.5
    assert m["datasets"]["eval"]["evaluated_queries"] == 4
    assert m["quality"]["too_easy_share"] == pytest.approx(1 / 3, abs=1e-5)
    assert m["comparison"]["baseline"] == "plain" and "p_ttest" in m["comparison"]["prompted"]["eval"]
    pq = pl.read_parquet(workdir / "data/evaluate/per_query.parquet")
    assert pq.height == 8 and pq["model"].unique().sort().to_list() == ["plain", "prompted"]
    assert sorted(p.name for p in (workdir / "metrics/evaluate_curves").iterdir()) == ["plain__eval.csv", "prompted__eval.csv"]
    outs = ["metrics/evaluate.json", "data/evaluate/per_query.parquet", "metrics/evaluate_per_task.csv",
            "metrics/evaluate_pos_rank.csv", "metrics/evaluate_curves/plain__eval.csv"]
    first = {o: (workdir / o).read_bytes() for o in outs}
    _stage(workdir, *args)
    assert {o: (workdir / o).read_bytes() for o in outs} == first
    # a removed model leaves no stale curve file
    _stage(workdir, "--set", "models=[{name: plain}]")
    assert [p.name for p in (workdir / "metrics/evaluate_curves").iterdir()] == ["plain__eval.csv"]
    assert "comparison" not in json.loads((workdir / "metrics/evaluate.json").read_text())


@pytest.mark.slow
def test_stage_external_dataset(workdir: Path) -> None:
    from tripleforge.embed import bundled_minilm_dir

    ext = write_beir(workdir / "ext-coir", coir=True)
    mine = workdir / "my-model"  # a model retrained in place there would leave the metrics stale
    mine.symlink_to(bundled_minilm_dir())
    _stage(workdir, "--set", f"external=[{ext}]", "--set", "quality_report=false", "--set", "k_values=[1, 10]",
           "--set", f"models=[{{name: minilm}}, {{name: mine, model: {mine}}}]")
    m = json.loads((workdir / "metrics/evaluate.json").read_text())
    assert set(m["models"]["minilm"]) == {"eval", "ext-coir"}
    assert "quality" not in m
    assert m["untracked_inputs"] == [str(ext), str(mine)]  # outside data/external/: dvc repro would miss edits


@pytest.mark.slow
def test_another_eval_dir_is_reported_under_its_folder_name(workdir: Path) -> None:
    """It was reported as `eval`, so its numbers read as the pipeline's eval split's."""
    shutil.copytree(workdir / "data/formats/eval", workdir / "scifact")
    _stage(workdir, "--eval-dir", "scifact", "--set", "quality_report=false", "--metrics", "other.json")
    m = json.loads((workdir / "other.json").read_text())
    assert set(m["datasets"]) == {"scifact"} and set(m["models"]["minilm"]) == {"scifact"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "k_values=[1, 5]"], "--set: params keys 'evaluate.k_values' and 'evaluate.main_metric'"),
        (["--set", "significance.baseline=nope"], "evaluate.significance.baseline 'nope'"),
        (["--eval-dir", "missing"], "evaluation directory not found: missing"),
        (["--triplets", "none.parquet"], "triplets file not found: none.parquet"),
        (["--set", "relevance_level=0"], "params key 'evaluate.relevance_level'"),  # was a pytrec_eval traceback
        (["--set", "significance.alpha=7"], "params key 'evaluate.significance.alpha'"),
        (["--set", "search_device=banana"], "params key 'evaluate.search_device'"),  # was after encoding
        # named the folder only, not the params key
        (["--set", "external=[/nonexistent]"], "error: --set: evaluate.external.0: folder not found: /nonexistent"),
        (["--set", "external=[params.yaml]"], "--set: evaluate.external.0: params.yaml is a file, not a folder"),
        (["--set", "k_values=[10, 10]"], "--set: params key 'evaluate.k_values': Value error, 10 is listed twice"),
    ],
)
def test_stage_errors_are_one_line(workdir: Path, args: list[str], message: str) -> None:
    _assert_one_line_error(_stage(workdir, *args, check=False), message, workdir)


def _assert_one_line_error(proc, message: str, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (workdir / "metrics/evaluate.json").exists()


def test_stage_external_without_judgments_is_an_error(workdir: Path) -> None:
    """An empty qrels file once gave `ndcg_at_10 = 0.0 over 0 queries` with exit 0."""
    ext = write_beir(workdir / "data" / "external" / "empty", qrels_lines=[])
    proc = _stage(workdir, "--set", f"external=[{ext}]", "--set", "quality_report=false", check=False)
    _assert_one_line_error(proc, f"{ext}/qrels/test.tsv: no judgments", workdir)


@pytest.mark.e2e
def test_dvc_repro_metrics_and_plots(tmp_path: Path) -> None:
    repo = make_project_repo(tmp_path, stages=["evaluate"])
    # make_project_repo drops top-level plots when filtering stages; put ours back
    project_plots = yaml.safe_load((PROJECT / "dvc.yaml").read_text()).get("plots", [])
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["plots"] = [p for p in project_plots if next(iter(p)).startswith("metrics/evaluate")]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    write_beir(repo / "data" / "formats" / "eval")
    write_triplets(repo / "data" / "mined" / "triplets.parquet")
    dvc(repo, "repro", "evaluate")
    shown = json.loads(dvc(repo, "metrics", "show", "--json").stdout)
    flat = json.dumps(shown)
    assert "ndcg_at_10" in flat and "too_easy_share" in flat
    plots = json.loads(dvc(repo, "plots", "show", "--json").stdout)
    assert not plots.get("errors")
    # each drawn once, by its top-level definition (a stage `plots:` entry drew a second, untitled copy)
    assert sorted(plots["data"]) == ["metrics/evaluate_curves/minilm__eval.csv", "metrics/evaluate_per_task.csv",
                                     "metrics/evaluate_pos_rank.csv"]
    again = dvc(repo, "repro", "evaluate")
    assert "didn't change" in again.stdout or "up to date" in again.stdout


def test_an_empty_eval_split_is_skipped_for_external_datasets_else_an_error(workdir: Path) -> None:
    """`mine_negatives.eval_fraction: 0` leaves the built-in eval split empty."""
    builtin = workdir / "data" / "formats" / "eval"
    shutil.rmtree(builtin)
    write_beir(builtin, docs=[], queries=[], qrels_lines=[])
    trip = workdir / "data" / "mined" / "triplets.parquet"
    pl.read_parquet(trip).with_columns(split=pl.lit("train")).write_parquet(trip)
    proc = _stage(workdir, "--set", "quality_report=false", check=False)
    _assert_one_line_error(proc, "data/formats/eval/queries.jsonl: the eval split has no queries", workdir)
    assert "raise mine_negatives.eval_fraction" in proc.stderr
    ext = write_beir(workdir / "data" / "external" / "bench")
    proc = _stage(workdir, "--set", f"external=[{ext}]", "--set", "quality_report=false",
                  "--set", "significance.n_permutations=100")
    assert "skipping" in proc.stderr
    m = json.loads((workdir / "metrics/evaluate.json").read_text())
    assert list(m["datasets"]) == ["bench"] and "eval_fraction" in m["skipped_datasets"]["eval"]
    assert m["models"]["minilm"]["bench"]["overall"]["ndcg_at_10"] > 0.5


def test_evaluate_split_names_the_external_qrels_and_the_built_in_split_keeps_test(workdir: Path) -> None:
    """`split: dev` for an external dataset made the stage look for the built-in split's
    qrels/dev.tsv, which convert-formats never writes: an error naming no params key."""
    ext = write_beir(workdir / "data" / "external" / "bench")
    (ext / "qrels" / "test.tsv").rename(ext / "qrels" / "dev.tsv")
    _stage(workdir, "--set", f"external=[{ext}]", "--set", "split=dev", "--set", "quality_report=false",
           "--set", "significance.n_permutations=100")
    m = json.loads((workdir / "metrics/evaluate.json").read_text())
    assert sorted(m["datasets"]) == ["bench", "eval"] and not m.get("skipped_datasets")


def test_an_empty_eval_split_from_no_pairs_at_all_says_so(workdir: Path) -> None:
    """A tryout where generate kept no pair was sent to eval_fraction and split_seed, which cannot help."""
    builtin = workdir / "data" / "formats" / "eval"
    shutil.rmtree(builtin)
    write_beir(builtin, docs=[], queries=[], qrels_lines=[])
    trip = workdir / "data" / "mined" / "triplets.parquet"
    pl.read_parquet(trip).clear().write_parquet(trip)
    proc = _stage(workdir, "--set", "quality_report=false", check=False)
    _assert_one_line_error(proc, "the eval split has no queries: there are no pairs to split", workdir)
    assert "make generate keep pairs" in proc.stderr and "eval_fraction" not in proc.stderr
    assert "mine-negatives keep them (its skipped: filter_rank" in proc.stderr  # mining can drop them all too


def test_eval_rows_that_convert_formats_did_not_export_are_not_blamed_on_the_split(workdir: Path) -> None:
    """`convert_formats.include_mined: false` exports no eval split; the error sent the user to
    eval_fraction and split_seed, which cannot help."""
    builtin = workdir / "data" / "formats" / "eval"
    shutil.rmtree(builtin)
    write_beir(builtin, docs=[], queries=[], qrels_lines=[])
    proc = _stage(workdir, "--set", "quality_report=false", check=False)
    _assert_one_line_error(proc, "the eval split has no queries, although data/mined/triplets.parquet has 1 eval rows: "
                           "convert-formats exported none (convert_formats.include_mined is false", workdir)
    assert "set convert_formats.include_mined=true or name datasets in evaluate.external" in proc.stderr
    assert "eval_fraction" not in proc.stderr


def test_an_empty_eval_dir_of_the_users_is_not_blamed_on_the_split(workdir: Path) -> None:
    # the tryout: the error sent the user to mine_negatives.eval_fraction for their own folder
    mine = write_beir(workdir / "mine", docs=[], queries=[], qrels_lines=[])
    proc = _stage(workdir, "--eval-dir", str(mine), "--set", "quality_report=false", check=False)
    _assert_one_line_error(proc, f"{mine}/queries.jsonl: no queries, nothing to evaluate", workdir)


def test_stage_names_a_queries_file_that_is_not_utf8(workdir: Path) -> None:
    """The stage's own empty-eval-split check read it as text: a UnicodeDecodeError traceback."""
    (workdir / "data" / "formats" / "eval" / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "caf\xe9"}\n')
    proc = _stage(workdir, "--set", "quality_report=false", check=False)
    _assert_one_line_error(proc, "data/formats/eval/queries.jsonl:1: not valid UTF-8 (byte 0xe9", workdir)


def test_stage_names_a_symlink_loop_in_external(workdir: Path) -> None:
    """Naming the dataset resolved the path first: a RuntimeError traceback."""
    (workdir / "loop").symlink_to(workdir / "loop")
    proc = _stage(workdir, "--set", "external=[loop]", check=False)
    _assert_one_line_error(proc, "error: --set: evaluate.external.0: loop is a symlink loop", workdir)


def test_relevance_level_applies_to_graded_external_data_not_the_binary_split(workdir: Path) -> None:
    """The built-in split's qrels are all grade 1, so relevance_level 2 stopped the stage on it:
    graded external datasets could not be scored at level 2 in the pipeline."""
    ext = write_beir(workdir / "data" / "external" / "graded",
                     qrels_lines=["q1\td1\t2", "q2\td2\t2", "q3\td3\t1", "q4\td4\t2"])
    _stage(workdir, "--set", f"external=[{ext}]", "--set", "relevance_level=2", "--set", "quality_report=false",
           "--set", "significance.n_permutations=100")
    m = json.loads((workdir / "metrics/evaluate.json").read_text())
    assert m["datasets"]["eval"]["evaluated_queries"] == 4  # grade 1 is relevant in the binary split
    assert m["datasets"]["graded"]["evaluated_queries"] == 3  # q3's only judgment is below the level
    assert (m["datasets"]["eval"]["relevance_level"], m["datasets"]["graded"]["relevance_level"]) == (1, 2)
    # the built-in split however its path is written
    _stage(workdir, "--eval-dir", str(workdir / "data/formats/eval"), "--set", "relevance_level=2",
           "--set", "quality_report=false", "--set", "significance.n_permutations=100")
    m = json.loads((workdir / "metrics/evaluate.json").read_text())
    assert m["datasets"]["eval"]["relevance_level"] == 1 and m["datasets"]["eval"]["evaluated_queries"] == 4
