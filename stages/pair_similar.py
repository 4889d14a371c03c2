"""Stage pair-similar: add the most similar (but clearly different) pool document to each sample.

Reads `data/sample/docs.parquet` and `data/sample/pool.parquet`; writes `data/paired/docs.parquet`
(the docs plus `similar_doc_id`, `similar_text`, `similar_score`, sorted by code_language, doc_id)
and `metrics/pair_similar.json`.
"""

from __future__ import annotations

from pathlib import Path

import _src  # noqa: F401  (first: this checkout's src/, see stages/_src.py)
import typer

from tripleforge.errors import UserError
from tripleforge.progress import log
from tripleforge.stage import (
    PARAMS_OPTION,
    SET_OPTION,
    name_input_file,
    new_app,
    user_errors,
)

app = new_app("Pair each sampled document with its most similar pool document (similar-code tasks).")



@app.command()
@user_errors
def main(
    params: Path = PARAMS_OPTION,
    set_: list[str] = SET_OPTION,
    docs: Path = typer.Option(Path("data/sample/docs.parquet"), help="sampled documents"),
    pool: Path = typer.Option(Path("data/sample/pool.parquet"), help="candidate pool"),
    out: Path = typer.Option(Path("data/paired/docs.parquet"), help="output documents"),
    metrics: Path = typer.Option(Path("metrics/pair_similar.json"), help="metrics file"),
) -> None:
    from tripleforge.inputs import model_folders, warn_untracked
    from tripleforge.io import check_output_paths, read_parquet, write_json, write_parquet
    from tripleforge.pairing import PairSimilarParams, pair_similar
    from tripleforge.params import load_params

    cfg = load_params(PairSimilarParams, "pair_similar", params, set_)
    check_output_paths([out, metrics])
    docs_df = read_parquet(docs, "docs file")
    pool_df = read_parquet(pool, "pool file") if cfg.enabled else docs_df.head(0)
    try:
        paired, counts = pair_similar(docs_df, pool_df, cfg)
    except UserError as exc:
        raise UserError(name_input_file(str(exc), {"docs:": docs, "pool:": pool})) from None
    untracked = warn_untracked("pair_similar.embedder.model", model_folders([cfg.embedder.model])) if cfg.enabled else []
    write_parquet(paired.sort(["code_language", "doc_id"], maintain_order=True), out)
    write_json({**counts, "untracked_inputs": untracked}, metrics)
    log(f"pair-similar: {counts['paired']} of {counts['docs']} documents paired, {counts['no_candidate']} without "
        f"a candidate -> {out}")


if __name__ == "__main__":
    app()
