"""`tripleforge summary` prints each stage's headline numbers from the metrics files."""

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
