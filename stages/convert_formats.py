"""Stage `convert-formats`: mined triplets + external files (any of the four BGE formats) ->
embedder triplets, reranker pairs and the eval split as BEIR/MTEB files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _src  # noqa: F401  (first: this checkout's src/, see stages/_src.py)
import polars as pl
import typer

from tripleforge.stage import PARAMS_OPTION, SET_OPTION, new_app, user_errors

app = new_app(__doc__ or "")


@app.command()
@user_errors
def main(
    params: Path = PARAMS_OPTION,
    set_: list[str] = SET_OPTION,
    triplets: Path = typer.Option(Path("data/mined/triplets.parquet"), help="mined triplets (stage mine-negatives)"),
    out_dir: Path = typer.Option(Path("data/formats"), help="output directory"),
    metrics: Path = typer.Option(Path("metrics/convert_formats.json"), help="metrics file"),
) -> None:
    from tripleforge.beir import eval_tables, write_beir
    from tripleforge.convert import ConvertFormatsParams, convert_all, convert_metrics
    from tripleforge.inputs import check_input_path, warn_untracked
    from tripleforge.io import check_output_paths, read_parquet, write_json, write_parquet
    from tripleforge.params import load_params
    from tripleforge.progress import log

    p = load_params(ConvertFormatsParams, "convert_formats", params, set_)
    check_output_paths([metrics, out_dir / "triplets.parquet", out_dir / "pairs.parquet"], [out_dir, out_dir / "eval"])
    mined = None
    if p.include_mined:
        mined = read_parquet(triplets, "input", "run mine-negatives, or set convert_formats.include_mined=false")
    for i, path in enumerate(p.external):
        check_input_path(path, f"convert_formats.external.{i}")
    if mined is None and not p.external:
        log("warning: convert-formats: convert_formats.include_mined is false and convert_formats.external is "
            "empty: every output is empty")
    elif mined is None:  # the eval split is the mined rows' (external rows all train): say it before evaluate fails
        log("warning: convert-formats: convert_formats.include_mined is false, so the eval split "
            f"({out_dir / 'eval'}) is empty: the evaluate stage needs datasets in evaluate.external")
    c = convert_all(mined, str(triplets), p)
    left_out: dict[str, Any] = {}
    corpus, queries, qrels = eval_tables(c.grouped.filter(pl.col("split") == "eval"), left_out)
    untracked = warn_untracked("convert_formats.external", p.external)
    # Everything is computed before the first write, so a bad input never leaves half the outputs.
    write_parquet(c.grouped, out_dir / "triplets.parquet")
    write_parquet(c.pairs, out_dir / "pairs.parquet")
    write_beir(out_dir / "eval", corpus, queries, qrels, coir_naming=p.coir_naming)
    sizes = {"queries": queries.height, "corpus": corpus.height, "qrels": qrels.height}
    m = convert_metrics(c, {**sizes, "left_out": left_out})
    write_json({**m, "untracked_inputs": untracked}, metrics)
    log(f"convert-formats: {c.grouped.height} triplets, {c.pairs.height} pairs, eval {sizes}, "
        f"dropped {m['dropped_total']} records, removed {m['negatives_removed_total']} negatives")
    if left_out["masked_queries"]:
        # Not an error (the rest of the eval split is sound), but it shrinks the eval split: say so.
        log(f"convert-formats: eval: {left_out['masked_queries']} queries left out beyond one query per document "
            f"({left_out['queries_by_task']} in all): their own text or source document is another eval query's "
            "positive (see docs/formats.md)")


if __name__ == "__main__":
    app()
