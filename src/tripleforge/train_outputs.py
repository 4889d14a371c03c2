"""Lay out the `train-data` directory. Everything is written into a temp sibling directory and
swapped in at the end, so `data/train/` is always either the old or the new complete set.

    embedder/<language>/<task>.jsonl        FlagEmbedding embedder records (never empty neg / null prompt)
    reranker/<language>/<task>.jsonl        FlagEmbedding reranker records
    sentence_transformers/triplet.jsonl     anchor, positive, negative
    sentence_transformers/ntuple.jsonl      anchor, positive, negative_1..n
    sentence_transformers/labeled_pair.jsonl  sentence1, sentence2, label
    sentence_transformers/labeled_list.jsonl  query, docs, labels
    tokenized/                              pre-tokenized shards + manifest.json
    batch_plan.jsonl                        step, epoch, dataset, indices
    dpo.jsonl                               prompt, chosen, rejected, chosen_score, rejected_score (n_candidates > 1)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from tripleforge import formats as F
from tripleforge.batching import batch_plan, small_datasets
from tripleforge.io import atomic_dir, write_jsonl
from tripleforge.progress import log
from tripleforge.training import (
    TrainDataParams,
    embedder_records,
    reranker_records,
    select_training_groups,
)

_UNSAFE = r"[^A-Za-z0-9_.+-]"


def _dataset_expr() -> pl.Expr:
    """``<language>/<task>`` (see training.dataset_name) with path-unsafe characters replaced."""
    def part(col: str, default: str) -> pl.Expr:
        return pl.col(col).fill_null(default).str.replace_all(_UNSAFE, "_").replace("", "_")

    return pl.concat_str([part("language", "any"), pl.lit("/"), part("task", "default")])


def _counts(df: pl.DataFrame, col: str) -> dict[str, int]:
    if df.height == 0:
        return {}
    return {str(k) if k is not None else "none": int(n)
            for k, n in df.group_by(col).len().sort(col, nulls_last=True).iter_rows()}


def _write_st(sel: pl.DataFrame, root: Path, n_neg: int) -> dict[str, int]:
    layouts = {
        "triplet": F.st_triplet(sel),
        "ntuple": F.st_ntuple(sel, n_neg),
        "labeled_pair": F.st_labeled_pair(F.grouped_to_pairs(sel)),
        "labeled_list": F.st_labeled_list(sel),
    }
    if sel.height and layouts["ntuple"].height < sel.height:
        # a row needs n_neg negatives; with fewer (e.g. train_group_size <= n_neg) it is left out
        log(f"warning: sentence-transformers ntuple.jsonl keeps {layouts['ntuple'].height} of {sel.height} rows: "
            f"the others have fewer than train_data.st_ntuple_negatives={n_neg} negatives")
    for name, df in layouts.items():
        write_jsonl(df.iter_rows(named=True), root / f"{name}.jsonl")
    return {k: v.height for k, v in layouts.items()}


def build_train_dir(grouped: pl.DataFrame, p: TrainDataParams, root: Path) -> dict[str, Any]:
    """Write every output under ``root`` (which should be empty); returns the metrics."""
    sel = select_training_groups(grouped, p)
    drops: Counter[str] = Counter(sel.drops)
    eval_rows = drops.pop("not_train_split", 0)
    g = sel.grouped.with_columns(_ds=_dataset_expr())
    sizes: dict[str, int] = {}
    records_by_ds: dict[str, list[dict[str, Any]]] = {}
    for (name,), part in sorted(g.group_by(["_ds"], maintain_order=True), key=lambda kv: str(kv[0][0])):
        part = part.drop("_ds")
        recs = embedder_records(part, p.keep_scores)
        write_jsonl(recs, root / "embedder" / f"{name}.jsonl")
        write_jsonl(reranker_records(part, p.keep_scores), root / "reranker" / f"{name}.jsonl")
        sizes[str(name)] = len(recs)
        records_by_ds[str(name)] = recs
    sel_plain = g.drop("_ds")
    st_sizes = _write_st(sel_plain, root / "sentence_transformers", p.st_ntuple_negatives)
    tok: dict[str, Any] = {"enabled": p.tokenizer.enabled}
    if p.tokenizer.enabled and records_by_ds:
        from tripleforge.tokenized import build_tokenized

        man = build_tokenized(records_by_ds, root / "tokenized", p.tokenizer.model, p.tokenizer.query_max_len,
                              p.tokenizer.passage_max_len, p.tokenizer.shard_rows)
        tok.update(rows=sum(d["rows"] for d in man["datasets"].values()),
                   shards=sum(len(d["shards"]) for d in man["datasets"].values()))
    plan = batch_plan(sizes, p.batch.batch_size, p.batch.mode, p.seed, p.batch.epochs)
    write_jsonl(plan.iter_rows(named=True), root / "batch_plan.jsonl")
    if sel.dpo.height:
        write_jsonl(sel.dpo.iter_rows(named=True), root / "dpo.jsonl")
    return {
        "input_rows": grouped.height,
        "eval_rows_excluded": eval_rows,
        "embedder_rows": sum(sizes.values()),
        "reranker_rows": sum(sizes.values()),
        "datasets": dict(sorted(sizes.items())),
        "by_task": _counts(sel_plain, "task"),
        "by_language": _counts(sel_plain, "language"),
        "by_source_format": _counts(sel_plain, "source_format"),
        "sentence_transformers": st_sizes,
        "dpo_pairs": sel.dpo.height,
        "batch_plan": {"mode": p.batch.mode, "batch_size": p.batch.batch_size, "steps": plan.height,
                       "datasets_smaller_than_batch": small_datasets(sizes, p.batch.batch_size)},
        "tokenized": tok,
        "dropped": dict(sorted(drops.items())),
        "dropped_total": sum(drops.values()),
    }


def write_train_dir(grouped: pl.DataFrame, p: TrainDataParams, out_dir: str | Path) -> dict[str, Any]:
    """Build into a temp directory next to ``out_dir`` and swap it in; returns the metrics."""
    with atomic_dir(out_dir) as tmp:
        return build_train_dir(grouped, p, tmp)
