"""Stage `generate`: documents -> LLM-written (query, positive) pairs for every requested task."""

from __future__ import annotations

from pathlib import Path

import _src  # noqa: F401  (first: this checkout's src/, see stages/_src.py)
import polars as pl
import typer

from tripleforge.generate import (
    GenerateParams,
    check_docs,
    check_params,
    generate_pairs,
    jsonl_groups,
    make_backend,
)
from tripleforge.inputs import warn_untracked
from tripleforge.io import (
    atomic_dir,
    check_output_paths,
    read_parquet,
    write_json,
    write_jsonl,
    write_parquet,
)
from tripleforge.llm.cache import ResponseCache, default_cache_path
from tripleforge.params import load_params
from tripleforge.progress import log
from tripleforge.stage import PARAMS_OPTION, SET_OPTION, new_app, user_errors

app = new_app("Generate (query, positive) pairs with an LLM: task catalog x languages x code languages.")


def write_jsonl_tree(pairs: pl.DataFrame, root: Path) -> int:
    """The original's per-task JSONL layout, built aside and swapped in whole (never half-written)."""
    with atomic_dir(root) as tmp:
        files = jsonl_groups(pairs, tmp)
        for path, rows in files.items():
            write_jsonl(rows, path)
    return len(files)


def untracked_inputs(p: GenerateParams) -> list[str]:
    """Files named in params that `dvc repro` does not watch (warned once each, listed in metrics)."""
    examples = warn_untracked("generate.examples_dir", [p.examples_dir] if p.examples_dir else [])
    return examples + warn_untracked("generate.dedup_against", p.dedup_against)


@app.command()
@user_errors
def main(
    params: Path = PARAMS_OPTION,
    set_: list[str] = SET_OPTION,
    docs: Path = typer.Option(Path("data/paired/docs.parquet"), help="input documents (pair-similar output)"),
    pairs: Path = typer.Option(Path("data/generated/pairs.parquet"), help="output pairs"),
    jsonl_dir: Path = typer.Option(Path("data/generated/jsonl"), help="output FlagEmbedding JSONL tree"),
    metrics: Path = typer.Option(Path("metrics/generate.json"), help="output metrics"),
) -> None:
    p = load_params(GenerateParams, "generate", params, set_)
    check_output_paths([pairs, metrics], [jsonl_dir])
    check_params(p)
    frame = read_parquet(docs, "input", "run the pair-similar stage first")
    check_docs(frame, p, str(docs))
    untracked = untracked_inputs(p)
    backend = make_backend(p)  # model file / API key / endpoint checked before any LLM call
    cache = ResponseCache(default_cache_path(p.cache_dir or None))
    try:
        out, stats = generate_pairs(frame, p, backend, cache)
    finally:
        cache.close()
        if backend is not None:
            backend.close()
    write_parquet(out, pairs)
    stats["jsonl_files"] = write_jsonl_tree(out, jsonl_dir)
    stats["untracked_inputs"] = untracked
    write_json(stats, metrics)
    log(f"generate: kept {stats['kept']} of {stats['requested']} pairs "
        f"({stats['cache_hits']} cached answers, {stats['cache_misses']} LLM calls) -> {pairs}")
    if stats["requested"] and not stats["kept"]:
        log(f"warning: generate: no pair kept of {stats['requested']}: the filters rejected every reply "
            f"(metrics: rejected_by_reason); the next stages will have nothing to train on")
    if stats["llm_failures"]:
        # tolerated by max_failed_fraction, but DVC now records the run as done: say how to retry
        log(f"warning: generate: {stats['llm_failures']} of {stats['llm_requests']} LLM requests failed "
            f"(allowed by generate.max_failed_fraction={p.max_failed_fraction:g}); their pairs are missing "
            "(metrics: rejected_by_reason.llm_error); `dvc repro -f -s generate` retries only those")


if __name__ == "__main__":
    app()
