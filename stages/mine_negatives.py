"""Stage mine-negatives: generated (query, positive) pairs + the pool -> triplets with hard negatives.

Reads `data/generated/pairs.parquet` and `data/sample/pool.parquet`; writes
`data/mined/triplets.parquet` (sorted by pair_id), `metrics/mine_negatives.json` and the score
histogram `metrics/mine_negatives_scores.csv` (a DVC plot).
"""

from __future__ import annotations

from pathlib import Path

import _src  # noqa: F401  (first: this checkout's src/, see stages/_src.py)
import typer

from tripleforge.errors import UserError
from tripleforge.stage import (
    PARAMS_OPTION,
    SET_OPTION,
    name_input_file,
    new_app,
    user_errors,
)

app = new_app("Mine hard negatives for generated pairs from the candidate pool.")


@app.command()
@user_errors
def main(
    params: Path = PARAMS_OPTION,
    set_: list[str] = SET_OPTION,
    pairs: Path = typer.Option(Path("data/generated/pairs.parquet"), help="generated pairs"),
    pool: Path = typer.Option(Path("data/sample/pool.parquet"), help="candidate pool"),
    out: Path = typer.Option(Path("data/mined/triplets.parquet"), help="output triplets"),
    metrics: Path = typer.Option(Path("metrics/mine_negatives.json"), help="metrics file"),
    plot: Path = typer.Option(Path("metrics/mine_negatives_scores.csv"), help="score histogram (DVC plot)"),
) -> None:
    from tripleforge.io import atomic_path, check_output_paths, read_parquet, write_json, write_parquet
    from tripleforge.mining import (
        MineParams,
        mine_metrics,
        mine_negatives,
        score_histogram,
    )
    from tripleforge.inputs import model_folders, warn_untracked
    from tripleforge.params import load_params
    from tripleforge.progress import log

    cfg = load_params(MineParams, "mine_negatives", params, set_)
    check_output_paths([out, metrics, plot])
    pairs_df = read_parquet(pairs, "pairs file")
    pool_df = read_parquet(pool, "pool file")
    try:
        triplets, report = mine_negatives(pairs_df, pool_df, cfg)
    except UserError as exc:
        raise UserError(name_input_file(str(exc), {"pairs:": pairs, "pool:": pool})) from None
    # everything is computed before the first write: a failure must not leave a partial output set
    hist = score_histogram(triplets, cfg.histogram_bins)
    summary = mine_metrics(triplets, report, pairs_df.height, cfg)
    # a model retrained in place elsewhere would leave these outputs stale without a word
    summary["untracked_inputs"] = (warn_untracked("mine_negatives.embedder.model", model_folders([cfg.embedder.model]))
                                   + warn_untracked("mine_negatives.rescore_model", model_folders([cfg.rescore_model])))
    write_parquet(triplets, out)
    with atomic_path(plot) as tmp:
        hist.write_csv(tmp, float_precision=6)
    write_json(summary, metrics)
    log(summary_line(summary, out))
    if not summary["pairs"]:
        log(f"warning: mine-negatives: no triplet written (of {summary['pairs_in']} pairs in {pairs}; "
            "metrics: skipped)")


def summary_line(m: dict, out: Path) -> str:
    """The one-line stderr summary, as the other stages print one (stdout stays empty)."""
    llm = m["llm_negatives"]
    return (f"mine-negatives: {m['pairs']} of {m['pairs_in']} pairs, {m['negatives_mean']:.2f} negatives per pair "
            f"(num_negatives {m['num_negatives']}), {m['short_of_negatives']} short of negatives "
            f"({m['without_negatives']} with none), "
            f"{llm['kept']} of {llm['in_pairs']} LLM negatives kept -> {out}")


if __name__ == "__main__":
    app()
