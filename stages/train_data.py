"""Stage `train-data`: formats -> FlagEmbedding embedder/reranker JSONL per language and task,
sentence-transformers layouts, pre-tokenized shards, a same-dataset batch plan and DPO pairs."""

from __future__ import annotations

from pathlib import Path

import _src  # noqa: F401  (first: this checkout's src/, see stages/_src.py)
import typer

from tripleforge.stage import PARAMS_OPTION, SET_OPTION, new_app, user_errors

app = new_app(__doc__ or "")


@app.command()
@user_errors
def main(
    params: Path = PARAMS_OPTION,
    set_: list[str] = SET_OPTION,
    triplets: Path = typer.Option(Path("data/formats/triplets.parquet"), help="grouped triplets (stage convert-formats)"),
    out_dir: Path = typer.Option(Path("data/train"), help="output directory (replaced as a whole)"),
    metrics: Path = typer.Option(Path("metrics/train_data.json"), help="metrics file"),
) -> None:
    from tripleforge.io import check_output_paths, read_parquet, write_json
    from tripleforge.params import load_params
    from tripleforge.progress import log
    from tripleforge.train_outputs import write_train_dir
    from tripleforge.training import TrainDataParams, check_train_input

    p = load_params(TrainDataParams, "train_data", params, set_)
    check_output_paths([metrics], [out_dir])
    grouped = check_train_input(read_parquet(triplets, "input", "run convert-formats first"), str(triplets))
    m = write_train_dir(grouped, p, out_dir)
    write_json(m, metrics)
    skipped = sum(m["dpo_skipped"].values())  # so "0 DPO pairs" is not a mystery
    no_pair = f" ({skipped} candidate groups without one, see dpo_skipped in {metrics})" if skipped else ""
    log(f"train-data: {m['embedder_rows']} embedder rows in {len(m['datasets'])} datasets, "
        f"{m['dpo_pairs']} DPO pairs{no_pair}, dropped {m['dropped_total']}")


if __name__ == "__main__":
    app()
