"""The `tripleforge` console script: `summary` (headline numbers), `check` (record files), help screens."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tripleforge.cli import app


def test_summary_reads_metrics_and_tolerates_missing(tmp_path: Path) -> None:
    (tmp_path / "sample.json").write_text(json.dumps({"docs": 27, "pool": 603}))
    (tmp_path / "evaluate.json").write_text(json.dumps(
        {"models": {"minilm": {"eval": {"overall": {"ndcg_at_10": 0.5, "recall_at_10": 0.75}}}}}))
    res = CliRunner().invoke(app, ["summary", "--metrics-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "27 / 603" in res.output
    assert "0.5 / 0.75 / -" in res.output  # a missing metric shows as '-', no crash
    assert "generate" not in res.output  # no metrics file, no row


def test_summary_of_a_metrics_file_of_another_layout_shows_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "sample.json").write_text(json.dumps({"docs": 27, "pool": 603}))
    for layout in ({"models": {"m": {"eval": 1}}}, {"models": [1]}, {"models": {"m": 3}}, [1, 2]):
        (tmp_path / "evaluate.json").write_text(json.dumps(layout))
        res = CliRunner().invoke(app, ["summary", "--metrics-dir", str(tmp_path)])
        assert res.exit_code == 0 and res.exception is None, (layout, res.output)
        assert "27 / 603" in res.output


def test_summary_shows_the_configured_main_metric_and_its_k(tmp_path: Path) -> None:
    (tmp_path / "evaluate.json").write_text(json.dumps({"main_metric": "recall_at_5", "models": {"minilm": {"eval": {
        "overall": {"recall_at_5": 0.6, "ndcg_at_5": 0.4, "mrr_at_5": 0.3, "ndcg_at_10": 0.9}}}}}))
    res = CliRunner().invoke(app, ["summary", "--metrics-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "recall@5 / ndcg@5 / mrr@5" in res.output and "0.6 / 0.4 / 0.3" in res.output


def test_summary_without_metrics_or_with_a_broken_file_is_a_one_line_error(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["summary", "--metrics-dir", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "is not a directory" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["summary", "--metrics-dir", str(tmp_path)])
    assert res.exit_code == 2 and "no stage metrics" in res.output
    (tmp_path / "sample.json").write_text('{"docs": 27,\n "pool": }')
    res = runner.invoke(app, ["summary", "--metrics-dir", str(tmp_path)])
    assert res.exit_code == 2 and f"{tmp_path / 'sample.json'}:2: not a metrics file" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_help_shows_flags_without_a_value_placeholder() -> None:
    # typer 0.29 prints `--help <bool>`, as if --help took a value (hence the 0.28 pin)
    for args in (["--help"], ["tasks", "--help"], ["summary", "--help"], ["check", "--help"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        assert "--help" in res.output and "<bool>" not in res.output, res.output


def test_check_reports_each_file_and_stops_at_a_bad_line(tmp_path: Path) -> None:
    good = tmp_path / "p.jsonl"
    good.write_text('{"query": "q", "passage": "a", "label": 1}\n{"query": "q", "passage": "b", "label": 0}\n'
                    '{"query": "q", "passage": "a", "label": 0}\n')
    res = CliRunner().invoke(app, ["check", str(good)])
    assert res.exit_code == 0, res.output
    assert res.output == f'{good}: pairs, 3 records -> 1 triplets, 2 pairs; dropped: {{"negative_is_positive": 1}}\n'
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "passage": "a", "label": 1}\n{"query": "q", "passage": "a", "label": 3}\n')
    res = CliRunner().invoke(app, ["check", str(good), str(bad)])
    assert res.exit_code == 2 and res.output.splitlines()[-1] == f"error: {bad}:2: 'label' must be 0 or 1"
    res = CliRunner().invoke(app, ["check", "--lenient", str(bad)])
    assert res.exit_code == 0 and '1 triplets, 1 pairs; dropped: {"label_must_be_0_or_1": 1}' in res.output
    res = CliRunner().invoke(app, ["check", "--format", "triplets", str(good)])
    assert res.exit_code == 2 and "missing 'pos'" in res.output
    st = tmp_path / "st.jsonl"  # a sentence-transformers layout: the advice names this command's switch
    st.write_text('{"anchor": "q", "positive": "a", "negative": "b"}\n')
    res = CliRunner().invoke(app, ["check", str(st)])
    assert res.exit_code == 2 and res.output.splitlines()[-1].endswith("(use --format to force one)"), res.output
    res = CliRunner().invoke(app, ["check", "--label-threshold", "nan", str(good)])
    assert res.exit_code == 2 and "--label-threshold: nan is not a finite number" in res.output
    half = tmp_path / "half.jsonl"  # scored on one side: the row stays, its scores go
    half.write_text('{"query": "q", "pos": ["a"], "neg": ["b"], "pos_scores": [1.0]}\n')
    res = CliRunner().invoke(app, ["check", str(half)])
    assert res.output == f'{half}: triplets, 1 record -> 1 triplets, 2 pairs; dropped: nothing; ' \
                         f'kept without scores: {{"partial_scores": 1}}\n'


def test_check_reads_several_files_together_as_the_stage_does(tmp_path: Path) -> None:
    """Each file was checked alone: a qid naming another query in an earlier file, a record
    copied from one, or a file listed twice passed `check` and then failed (or was dropped by)
    the stage."""
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    a.write_text('{"qid": "1", "query": "alpha query", "passage": "p a", "label": 1}\n')
    b.write_text('{"qid": "1", "query": "beta query", "passage": "p b", "label": 1}\n')
    c.write_text(a.read_text())
    res = CliRunner().invoke(app, ["check", str(a), str(b)])
    assert res.exit_code == 2, res.output
    assert res.output.splitlines()[-1] == (f"error: {b}:1: 'qid' \"1\" already names another query ({a}:1; a qid "
                                           "must name one query across all sources)")
    res = CliRunner().invoke(app, ["check", "--lenient", str(a), str(b)])
    assert res.exit_code == 0 and res.output.splitlines()[-1] == (
        f'{b}: pairs, 1 record -> 0 triplets, 0 pairs; dropped: {{"qid_already_names_another_query": 1}}')
    res = CliRunner().invoke(app, ["check", str(a), str(c)])
    assert res.exit_code == 0 and res.output.splitlines() == [
        f"{a}: pairs, 1 record -> 1 triplets, 1 pairs; dropped: nothing",
        f'{c}: pairs, 1 record -> 0 triplets, 0 pairs; dropped: {{"duplicate_record": 1}}']
    res = CliRunner().invoke(app, ["check", str(a), str(a)])
    assert res.exit_code == 2 and res.output.strip() == f"error: files: '{a}' is listed twice"


def test_check_names_what_is_wrong_with_a_path(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["check", str(tmp_path)])
    assert res.exit_code == 2 and res.output.strip() == f"error: {tmp_path} is a directory, not a file"
    res = CliRunner().invoke(app, ["check", str(tmp_path / "none.jsonl")])
    assert res.exit_code == 2 and res.output.strip() == f"error: file not found: {tmp_path / 'none.jsonl'}"
