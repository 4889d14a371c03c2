"""Stage evaluate: retrieval metrics of one or more embedders + a data-quality report.

Reads the BEIR/MTEB eval split `data/formats/eval/` (plus any `evaluate.external` directories)
and `data/mined/triplets.parquet`; writes `metrics/evaluate.json` (overall and per-task metrics
per model and dataset, dataset diagnostics, quality report, comparison with significance),
per-query values `data/evaluate/per_query.parquet`, and DVC plots: per-k curves
`metrics/evaluate_curves/<model>__<dataset>.csv`, per-task bars `metrics/evaluate_per_task.csv`,
positive-rank histogram `metrics/evaluate_pos_rank.csv`.
"""

from __future__ import annotations

import re
from pathlib import Path

import _src  # noqa: F401  (first: this checkout's src/, see stages/_src.py)
import typer

from tripleforge.errors import UserError
from tripleforge.progress import log
from tripleforge.stage import PARAMS_OPTION, SET_OPTION, new_app, user_errors

EVAL_DIR = Path("data/formats/eval")
app = new_app("Evaluate embedders on the eval split (and external BEIR/MTEB/CoIR dirs); report data quality.")


def _dataset_name(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).resolve().name) or "external"


def _has_no_queries(path: Path) -> bool:
    """An existing queries file without a record (a missing one is load_dataset's error)."""
    if not path.is_file():
        return False
    with open(path, "rb") as fh:  # bytes: a file that is not UTF-8 is load_dataset's error, file:line
        return not any(line.strip() for line in fh)


@app.command()
@user_errors
def main(
    params: Path = PARAMS_OPTION,
    set_: list[str] = SET_OPTION,
    eval_dir: Path = typer.Option(EVAL_DIR, help="BEIR/MTEB directory of the eval split (another one is reported "
                                  "under its folder name)"),
    triplets: Path = typer.Option(Path("data/mined/triplets.parquet"), help="mined triplets (quality report)"),
    per_query: Path = typer.Option(Path("data/evaluate/per_query.parquet"), help="per-query metric values"),
    metrics: Path = typer.Option(Path("metrics/evaluate.json"), help="metrics file"),
    curves: Path = typer.Option(Path("metrics/evaluate_curves"), help="directory of per-k curve CSVs (DVC plots)"),
    per_task: Path = typer.Option(Path("metrics/evaluate_per_task.csv"), help="per-task main metric (DVC plot)"),
    pos_rank: Path = typer.Option(Path("metrics/evaluate_pos_rank.csv"), help="positive-rank histogram (DVC plot)"),
) -> None:
    import polars as pl

    from tripleforge.evaluation import (
        EvaluateParams,
        check_models,
        check_curve_stems,
        curve_frames,
        empty_split_reason,
        evaluate_models,
        load_dataset,
        per_task_frame,
        summarize,
    )
    from tripleforge.inputs import check_input_path, model_folders, warn_untracked
    from tripleforge.io import (
        atomic_dir,
        atomic_path,
        check_output_paths,
        read_parquet,
        write_json,
        write_parquet,
    )
    from tripleforge.params import load_params
    from tripleforge.quality_report import quality_report, rank_histogram

    cfg = load_params(EvaluateParams, "evaluate", params, set_)
    check_output_paths([per_query, metrics, per_task, pos_rank], [curves])
    for i, ext in enumerate(cfg.external):  # before naming them: a symlink loop does not resolve
        check_input_path(ext, f"evaluate.external.{i}", "folder")
    if cfg.significance.baseline and cfg.significance.baseline not in [m.name for m in cfg.models]:
        raise UserError(f"{params}: evaluate.significance.baseline '{cfg.significance.baseline}' is not a model name")
    # another --eval-dir is another dataset: named "eval", its metrics read as the pipeline's eval split's
    builtin = eval_dir.expanduser().resolve() == EVAL_DIR.resolve()  # however the path is written
    eval_name = "eval" if builtin else _dataset_name(str(eval_dir))
    names = [eval_name, *(_dataset_name(p) for p in cfg.external)]
    if len(set(names)) != len(names):
        raise UserError(f"{params}: evaluate.external: dataset folder names must be unique and not "
                        f"'{eval_name}': {names}")
    check_curve_stems([m.name for m in cfg.models], names)
    check_models(cfg)  # before reading inputs: a missing GPU or a bad model folder would surface after encoding
    trip = None
    if cfg.quality_report:
        trip = read_parquet(triplets, "triplets file", "or set evaluate.quality_report=false")
    skipped: dict[str, str] = {}
    datasets = []
    if _has_no_queries(eval_dir / "queries.jsonl") and not builtin:
        # a folder of the user's: the pipeline's split params have nothing to do with it
        raise UserError(f"{eval_dir / 'queries.jsonl'}: no queries, nothing to evaluate")
    if _has_no_queries(eval_dir / "queries.jsonl"):
        why, advice = empty_split_reason(triplets)
        if not cfg.external:
            raise UserError(f"{eval_dir / 'queries.jsonl'}: {why}; {advice}")
        log(f"warning: evaluate: skipping {eval_dir}: {why}; scoring evaluate.external only")
        skipped[eval_name] = why
    else:
        # the built-in split's qrels are binary (grade 1) and always qrels/test.tsv (convert-formats):
        # evaluate.relevance_level and evaluate.split are for external data
        level, split = (1, "test") if builtin else (cfg.relevance_level, cfg.split)
        datasets.append(load_dataset(eval_dir, eval_name, split, level))
    datasets += [load_dataset(p, n, cfg.split, cfg.relevance_level) for p, n in zip(cfg.external, names[1:])]

    result = evaluate_models(datasets, cfg)
    summary = summarize(result, datasets, cfg)
    hist = None
    if trip is not None:
        summary["quality"] = quality_report(trip, str(triplets))
        hist = rank_histogram(trip)

    untracked = (warn_untracked("evaluate.external", cfg.external)
                 + warn_untracked("evaluate.models", model_folders([m.model for m in cfg.models])))
    write_parquet(result.per_query, per_query)
    # the curves dir is a DVC output: rebuilt whole so a removed model leaves no stale file
    with atomic_dir(curves) as tmp_dir:
        for stem, frame in curve_frames(summary, cfg.k_values).items():
            frame.write_csv(tmp_dir / f"{stem}.csv", float_precision=5)
    with atomic_path(per_task) as tmp:
        per_task_frame(summary).write_csv(tmp, float_precision=5)
    if hist is None:  # the plot is a declared output: write it empty rather than not at all
        hist = pl.DataFrame(schema={"bucket": pl.String, "pairs": pl.Int64, "share": pl.Float64})
    with atomic_path(pos_rank) as tmp:
        hist.write_csv(tmp, float_precision=5)
    write_json({**summary, "skipped_datasets": skipped, "untracked_inputs": untracked}, metrics)


if __name__ == "__main__":
    app()
