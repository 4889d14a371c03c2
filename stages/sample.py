"""Stage `sample`: read the corpus, split into code units, clean, bucket, dedup, sample docs and pool."""

from __future__ import annotations

from pathlib import Path

import _src  # noqa: F401  (first: this checkout's src/, see stages/_src.py)
import typer

from tripleforge.corpus import SampleParams, input_files, sample_corpus
from tripleforge.inputs import warn_untracked
from tripleforge.io import check_output_paths, write_json, write_parquet
from tripleforge.params import load_params
from tripleforge.progress import log
from tripleforge.stage import PARAMS_OPTION, SET_OPTION, new_app, user_errors

app = new_app(__doc__ or "")


@app.command()
@user_errors
def main(
    params: Path = PARAMS_OPTION,
    set_: list[str] = SET_OPTION,
    docs: Path = typer.Option(Path("data/sample/docs.parquet"), help="sampled documents (num_samples per language)"),
    pool: Path = typer.Option(Path("data/sample/pool.parquet"), help="larger pool (max_pool per language), docs included"),
    metrics: Path = typer.Option(Path("metrics/sample.json"), help="counts: docs, pool, skipped by reason, per language"),
) -> None:
    p = load_params(SampleParams, "sample", params, set_)
    check_output_paths([docs, pool, metrics])
    result = sample_corpus(p)
    for line in result.warnings:
        log(f"warning: {line}")
    skipped = {k: v for k, v in result.metrics["skipped"].items() if v}
    if skipped:
        log("sample: skipped " + ", ".join(f"{k}={v}" for k, v in skipped.items()))
    if result.metrics["docs"] == 0:  # a corpus without any usable unit is an error (sample_corpus)
        log(f"warning: sample: no documents sampled of {result.metrics['candidates']} candidates "
            f"(sample.num_samples is {p.num_samples})")
    untracked = warn_untracked("sample.corpus/external", input_files(p))
    write_parquet(result.docs, docs)
    write_parquet(result.pool, pool)
    write_json({**result.metrics, "untracked_inputs": untracked}, metrics)
    log(f"sample: {result.metrics['docs']} docs, {result.metrics['pool']} pool "
        f"from {result.metrics['files_read']} files ({result.metrics['candidates']} unique units)")


if __name__ == "__main__":
    app()
