"""Lay out the `train-data` directory. Everything is written into a temp sibling directory and
swapped in at the end, so `data/train/` is always either the old or the new complete set.

    embedder/<language>/<task>.jsonl        FlagEmbedding embedder records (never empty neg / null prompt);
                                            the only layout with `instructions` applied (+ tokenized/)
    reranker/<language>/<task>.jsonl        FlagEmbedding reranker records (raw texts)
    sentence_transformers/<layout>/<language>/<task>.jsonl  one file per dataset, as embedder/ (raw texts):
        triplet       anchor, positive, negative
        ntuple        anchor, positive, negative_1..n
        labeled_pair  sentence1, sentence2, label
        labeled_list  query, docs, labels
    tokenized/                              pre-tokenized shards + manifest.json
    batch_plan.jsonl                        step, epoch, dataset, indices
    dpo.jsonl                               prompt, chosen, rejected, chosen_score, rejected_score, doc_id, task,
                                            language (n_candidates > 1, text2code single-call tasks)
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from tripleforge import formats as F
from tripleforge.batching import (
    RowTexts,
    batch_plan,
    can_keep_apart,
    clashing_rows,
    flagembedding_rows_per_epoch,
    left_out_reason,
    rows_in_first_epoch,
    size_left_out,
    small_datasets,
)
from tripleforge.errors import UserError
from tripleforge.io import atomic_dir, write_jsonl
from tripleforge.progress import log
from tripleforge.training import (
    TrainDataParams,
    apply_instructions,
    embedder_records,
    flag_type,
    reranker_records,
    select_training_groups,
)

# A dataset name part is the value itself only when it is plainly safe as a file name everywhere:
# lower-case letters, digits, `_`, `+`, `-` (not first), at most 100 characters, and not ending
# like a hashed name or in `no_in_batch_neg` (FlagEmbedding's switch, set by NO_IN_BATCH_NEG_MODES
# alone); the dot is left out since it sets off the mode suffix.
_PLAIN = re.compile(r"[a-z0-9_+][a-z0-9_+-]{0,99}")
_HASHED = re.compile(r".*-[0-9a-f]{8}")
_UNSAFE = r"[^A-Za-z0-9_+-]"
# FlagEmbedding's modes whose rows share their passages (a class's label text, a cluster's name):
# another row's positive in the batch is then the query's own label, and an in-batch negative
# would teach the model to push it away. FlagEmbedding's own example data for them sits in
# `classification-no_in_batch_neg` and `clustering-no_in_batch_neg` folders.
NO_IN_BATCH_NEG_MODES = ("symmetric_class", "symmetric_clustering")
_NO_IN_BATCH_NEG_FLAG = "no_in_batch_neg"  # what FlagEmbedding looks for at the end of a name
NO_IN_BATCH_NEG = "-" + _NO_IN_BATCH_NEG_FLAG
# What a missing value is called in a dataset name (and so in folder names and metrics).
_DATASET_DEFAULTS = {"language": "any", "task": "default"}


def _safe_part(value: str) -> str:
    """`value` when it is plain (see `_PLAIN`); otherwise its first 100 characters, each one other
    than a letter, digit, `_`, `+` or `-` (and a leading `-`) written `_`, then `-` and 8 hex
    digits of its SHA-256. Two values never share a file: "x y" and "x_y", a task "sts.only_1neg"
    and task "sts" in mode only_1neg, "Search" and "search" on a case-insensitive file system;
    and a long name still fits the file system's 255 bytes with the temp-file suffix."""
    if _PLAIN.fullmatch(value) and not _HASHED.fullmatch(value) and not value.endswith(_NO_IN_BATCH_NEG_FLAG):
        return value
    stem = re.sub(_UNSAFE, "_", value[:100])
    stem = "_" + stem[1:] if stem.startswith("-") else stem or "_"
    return stem + "-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _dataset_part(df: pl.DataFrame, col: str) -> pl.Expr:
    """One part of a dataset name: the column's value (its default when null) made path-safe."""
    value = pl.col(col).fill_null(_DATASET_DEFAULTS[col])
    names = {v: _safe_part(v) for v in df.select(value.unique()).to_series().to_list()}
    return value.replace_strict(names, return_dtype=pl.String) if names else value


def _dataset_expr(df: pl.DataFrame) -> pl.Expr:
    """``<language>/<task>`` with each part made path-safe (`_safe_part`), and ``.<mode>`` for rows
    of a FlagEmbedding mode other than normal (`training.flag_type`): its same-dataset batches
    must not mix modes. Rows of a mode in NO_IN_BATCH_NEG_MODES go to
    ``<language>-no_in_batch_neg/<task>.<mode>-no_in_batch_neg``: FlagEmbedding switches in-batch
    negatives off for a folder given to ``--train_data`` whose name ends so, and for a file whose
    name does before the extension, and looks at nothing else."""
    mode = flag_type()
    tag = pl.when(mode.is_in(NO_IN_BATCH_NEG_MODES)).then(pl.lit(NO_IN_BATCH_NEG)).otherwise(pl.lit(""))
    suffix = pl.when(mode == "normal").then(pl.lit("")).otherwise(pl.lit(".") + mode + tag)
    return pl.concat_str([_dataset_part(df, "language"), tag, pl.lit("/"), _dataset_part(df, "task"), suffix])


def _counts(df: pl.DataFrame, col: str) -> dict[str, int]:
    """Rows per value of ``col``; a language or task is named as in the dataset folders (a
    missing one is ``any``/``default``), so these keys match ``datasets``."""
    if df.height == 0:
        return {}
    key = _dataset_part(df, col) if col in _DATASET_DEFAULTS else pl.col(col).cast(pl.String).fill_null("none")
    return {str(k): int(n) for k, n in df.select(key.alias("_k")).group_by("_k").len().sort("_k").iter_rows()}


def _st_layouts(sel: pl.DataFrame, n_neg: int) -> dict[str, pl.DataFrame]:
    """The sentence-transformers layouts of one dataset's grouped rows."""
    return {
        "triplet": F.st_triplet(sel),
        "ntuple": F.st_ntuple(sel, n_neg),
        "labeled_pair": F.st_labeled_pair(F.grouped_to_pairs(sel)),
        "labeled_list": F.st_labeled_list(sel),
    }


def _write_st(parts: dict[str, pl.DataFrame], root: Path, n_neg: int, group_size: int) -> dict[str, int]:
    """One file per layout and dataset (`parts`: dataset name -> its grouped rows); a dataset with
    no row in a layout has no file there. Per dataset, not one file per layout: a document gives
    rows to several tasks whose texts overlap (the code_context positive is the tail of the
    web_code positive), and in-batch negatives then turn one row's positive into a false negative
    of the other's query. Loaded as a `DatasetDict`, sentence-transformers draws each batch from
    one dataset (its multi-dataset batch sampler), as FlagEmbedding's `same_dataset_within_batch`."""
    rows: Counter[str] = Counter()
    total = 0
    for name, sel in parts.items():
        total += sel.height
        for layout, df in _st_layouts(sel, n_neg).items():
            rows[layout] += df.height
            if df.height:
                write_jsonl(df.iter_rows(named=True), root / layout / f"{name}.jsonl")
    if total and rows["ntuple"] < total:
        # a row needs n_neg negatives, and the selection keeps at most train_group_size - 1
        why = (f"a row keeps at most train_data.train_group_size - 1 = {group_size - 1} negatives; lower "
               "st_ntuple_negatives or raise train_group_size" if n_neg > group_size - 1 else
               "the others have fewer negatives")
        log(f"warning: train-data: sentence-transformers ntuple keeps {rows['ntuple']} of {total} rows at "
            f"train_data.st_ntuple_negatives={n_neg}: {why}")
    return {layout: rows[layout] for layout in ("triplet", "ntuple", "labeled_pair", "labeled_list")}


def build_train_dir(grouped: pl.DataFrame, p: TrainDataParams, root: Path, tokenizer: Any = None) -> dict[str, Any]:
    """Write every output under ``root`` (which should be empty); returns the metrics.
    ``tokenizer``: already loaded and checked (see write_train_dir), or None to load it here."""
    sel = select_training_groups(grouped, p)
    drops: Counter[str] = Counter(sel.drops)
    eval_rows = drops.pop("not_train_split", 0)
    if sel.grouped.height == 0 and grouped.height > eval_rows:
        # empty files would pass for a training set until a trainer stops on them, far from the cause
        why = ", ".join(f"{k} {n}" for k, n in sorted(drops.items()) if n)
        raise UserError(f"train-data: all {grouped.height - eval_rows} train rows were dropped ({why}), nothing to "
                        "train on: see the train_data keys these reasons name in docs/formats.md")
    g = sel.grouped.with_columns(_ds=_dataset_expr(sel.grouped))
    sizes: dict[str, int] = {}
    records_by_ds: dict[str, list[dict[str, Any]]] = {}
    st_parts: dict[str, pl.DataFrame] = {}
    unscored: dict[str, tuple[int, int]] = {}  # dataset written without scores -> (scored rows, rows)
    # `instructions` reach the embedder records (and so the tokenized shards) only; the reranker
    # and sentence-transformers layouts keep the raw texts (see apply_instructions)
    parts = {str(name): part.drop("_ds") for (name,), part in g.group_by(["_ds"], maintain_order=True)}
    instructed = {name: apply_instructions(part, p.instructions) for name, part in parts.items()}
    with_prompt = any(part["prompt"].null_count() < part.height for part in instructed.values())
    for name in sorted(parts):
        part = parts[name]
        st_parts[name] = part
        recs = embedder_records(instructed[name], p.keep_scores, with_prompt)
        write_jsonl(recs, root / "embedder" / f"{name}.jsonl")
        write_jsonl(reranker_records(part, p.keep_scores), root / "reranker" / f"{name}.jsonl")
        sizes[name] = len(recs)
        records_by_ds[name] = recs
        if recs and "pos_scores" not in recs[0]:
            unscored[name] = (_scored_rows(part), len(recs))
    if p.keep_scores:
        _warn_about_unscored(unscored, _scored_rows(g))
    repeated = rows_repeating_a_query(parts)
    _warn_about_repeated_queries(repeated)
    sel_plain = g.drop("_ds")
    st_sizes = _write_st(st_parts, root / "sentence_transformers", p.st_ntuple_negatives, p.train_group_size)
    tok: dict[str, Any] = {"enabled": p.tokenizer.enabled}
    if p.tokenizer.enabled and records_by_ds:
        from tripleforge.tokenized import build_tokenized

        man = build_tokenized(records_by_ds, root / "tokenized", p.tokenizer.model, p.tokenizer.query_max_len,
                              p.tokenizer.passage_max_len, p.tokenizer.shard_rows, tokenizer)
        tok.update(rows=sum(d["rows"] for d in man["datasets"].values()),
                   shards=sum(len(d["shards"]) for d in man["datasets"].values()),
                   **_truncation_counts(man))
        _warn_about_truncation(tok)
    texts = {name: row_texts(instructed[name]) for name in sizes if not name.endswith(NO_IN_BATCH_NEG)}
    shared = rows_with_positive_in_other_rows(texts)
    apart = {name: t for name, t in texts.items() if can_keep_apart(t, p.batch.batch_size)}
    plan = batch_plan(sizes, p.batch.batch_size, p.batch.mode, p.seed, p.batch.epochs, p.batch.drop_last,
                      apart if p.batch.keep_clashing_rows_apart else None)
    clashing = sum(clashing_rows(b, texts.get(d)) for d, b in plan.filter(pl.col("epoch") == 0)
                   .select("dataset", "indices").iter_rows())
    _warn_about_shared_positives(shared, clashing, p.batch.keep_clashing_rows_apart,
                                 sorted(n for n in shared if n not in apart))
    write_jsonl(plan.iter_rows(named=True), root / "batch_plan.jsonl")
    planned, total = rows_in_first_epoch(plan), sum(sizes.values())
    clash_short = 0
    if p.batch.mode != "random" and p.batch.drop_last:
        clash_short = max(total - planned - size_left_out(sizes, p.batch.batch_size), 0)
    _warn_about_plan(planned, sizes, p.batch.batch_size, p.batch.mode, clash_short)
    _warn_about_single_row_batches(plan, p.batch.batch_size,
                                   apart_made_short=p.batch.keep_clashing_rows_apart
                                   and parting_made_single_rows(plan, sizes, p.batch.batch_size))
    flag = flagembedding_epoch({n: r[0].get("type", "normal") for n, r in records_by_ds.items() if r}, sizes,
                               p.batch.batch_size)
    _warn_about_flagembedding_epoch(flag, total, some_unscored=bool(unscored) and len(unscored) < len(sizes))
    if sel.dpo.height:
        write_jsonl(sel.dpo.iter_rows(named=True), root / "dpo.jsonl")
    return {
        "input_rows": grouped.height,
        "eval_rows_excluded": eval_rows,
        "embedder_rows": sum(sizes.values()),
        "embedder": {"datasets_without_scores": sorted(unscored), "rows_repeating_a_query": repeated,
                     "rows_with_positive_in_other_rows": shared},
        "reranker_rows": sum(sizes.values()),
        "datasets": dict(sorted(sizes.items())),
        "by_task": _counts(sel_plain, "task"),
        "by_language": _counts(sel_plain, "language"),
        "by_source_format": _counts(sel_plain, "source_format"),
        "sentence_transformers": st_sizes,
        "dpo_pairs": sel.dpo.height,
        "dpo_skipped": dict(sorted(sel.dpo_skipped.items())),
        "batch_plan": {"mode": p.batch.mode, "batch_size": p.batch.batch_size, "steps": plan.height,
                       "rows_in_epoch": planned, "rows_left_out_per_epoch": total - planned,
                       "rows_clashing_in_batches": clashing,
                       "datasets_smaller_than_batch": small_datasets(sizes, p.batch.batch_size)},
        "flagembedding_same_dataset": flag,
        "tokenized": tok,
        "dropped": dict(sorted(drops.items())),
        "dropped_total": sum(drops.values()),
    }


def _truncation_counts(manifest: dict[str, Any]) -> dict[str, Any]:
    """The tokenized metrics on truncation: the max lengths, queries and passages written and how
    many of each were cut at those lengths, in all and per dataset (``by_dataset``)."""
    per = {name: {"queries": d["rows"], "queries_truncated": d["queries_truncated"],
                  "passages": d["passages"], "passages_truncated": d["passages_truncated"]}
           for name, d in sorted(manifest["datasets"].items())}
    totals = {k: sum(d[k] for d in per.values())
              for k in ("queries", "queries_truncated", "passages", "passages_truncated")}
    return {"query_max_len": manifest["query_max_len"], "passage_max_len": manifest["passage_max_len"],
            **totals, "by_dataset": per}


# Above this share of truncated queries or passages the limit is wrong for the data (at FlagEmbedding's
# 32 every default query was cut); below it, long code units cut at the embedder's own 256 tokens are
# normal (the default run cuts 13% of queries and 11% of passages), and counted in the metrics.
TRUNCATION_WARN_SHARE = 0.25


def _warn_about_truncation(tok: dict[str, Any]) -> None:
    """Say on stderr when more than TRUNCATION_WARN_SHARE of the queries (prompt + query) or of the
    passages were longer than their max length, naming the key to raise: the shards keep only each
    text's start, and nothing else tells (a code query after a 15-token prompt keeps ~15 tokens)."""
    parts = []
    for kind, key in (("queries", "query_max_len"), ("passages", "passage_max_len")):
        n, cut = tok[kind], tok[f"{kind}_truncated"]
        if n and cut / n > TRUNCATION_WARN_SHARE:
            what = f"{kind} (prompt + query)" if kind == "queries" else kind
            parts.append(f"{cut} of {n} {what} ({cut / n:.0%}) at train_data.tokenizer.{key}={tok[key]} tokens")
    if parts:
        log(f"warning: train-data: the tokenized shards cut {' and '.join(parts)}; "
            f"raise {'that key' if len(parts) == 1 else 'those keys'} to keep more text (metrics: tokenized.by_dataset)")


def _scored_rows(df: pl.DataFrame) -> int:
    """Rows with both ``pos_scores`` and ``neg_scores`` (what a distillation trainer needs)."""
    return df.filter(pl.col("pos_scores").is_not_null() & pl.col("neg_scores").is_not_null()).height


def _warn_about_unscored(unscored: dict[str, tuple[int, int]], scored_rows: int) -> None:
    """Say on stderr which datasets were written without ``pos_scores``/``neg_scores`` (a file
    gets them only when every row has them, see embedder_records) while other rows have scores:
    with ``--knowledge_distillation True``, FlagEmbedding's standard mode stops on such a file
    ("pos_scores and neg_scores not found"), and its same-dataset mode (the documented command)
    trains its batches without distillation and says nothing. ``unscored``: dataset
    -> (scored rows, rows). Nothing to say when no row has scores: then nobody can distil."""
    if not unscored or not scored_rows:
        return
    names = ", ".join(f"{n} ({k} of {rows} rows scored)" for n, (k, rows) in sorted(unscored.items()))
    log(f"warning: train-data: {len(unscored)} dataset{'s' if len(unscored) > 1 else ''} written without "
        f"pos_scores/neg_scores in embedder/ and reranker/, since not every row has teacher scores: {names}; "
        "with --knowledge_distillation True, FlagEmbedding trains their batches without distillation, saying nothing "
        "(--same_dataset_within_batch True), or stops on them (pos_scores and neg_scores not found): "
        "leave them out of a distillation run or score every row (metrics: embedder.datasets_without_scores)")


def rows_repeating_a_query(parts: dict[str, pl.DataFrame]) -> dict[str, int]:
    """Per dataset (`parts`: name -> its grouped rows) that trains with in-batch negatives, the
    rows whose query (whitespace-normalized) an earlier row of it has; datasets without any are
    left out. Two such rows in one batch make each one's positive an in-batch negative of the
    other's query, which it answers: a false negative. Data with one row per (query, positive)
    has them; the pairs format groups a qid into one row instead."""
    out = {}
    for name, part in sorted(parts.items()):
        if part.height < 2 or name.endswith(NO_IN_BATCH_NEG):
            continue
        n = part.height - F.normalized_series(part["query"]).n_unique()
        if n:
            out[name] = n
    return out


def row_texts(part: pl.DataFrame) -> list[RowTexts]:
    """Each row's query, positives and passages (``query, pos, neg`` of one dataset's rows, as
    written), as hashes of the whitespace-normalized texts, for `batching.batch_plan` to keep
    clashing rows apart."""
    def h(e: pl.Expr) -> pl.Expr:
        return F.normalized(e).hash(7)

    cols = part.select(q=h(pl.col("query")), p=pl.col("pos").list.eval(h(pl.element())),
                       n=pl.col("neg").list.eval(h(pl.element())))
    out = []
    for q, pos, neg in cols.iter_rows():
        ps = frozenset(pos)
        out.append(RowTexts(q, ps, ps.union(neg)))
    return out


def rows_with_positive_in_other_rows(texts: dict[str, list[RowTexts]]) -> dict[str, int]:
    """Per dataset (`texts`: its rows' texts; datasets without such rows left out), the rows whose
    positive another row of the dataset lists as a passage: mined negatives are other rows'
    positives, so in one batch with such a row, a query meets its own positive again as an in-batch
    negative. (A shared query is counted apart, `rows_repeating_a_query`.)"""
    out = {}
    for name, rows in sorted(texts.items()):
        listed: Counter[int] = Counter(t for r in rows for t in r.passages)
        n = sum(any(listed[t] > 1 for t in r.positives) for r in rows)
        if n:
            out[name] = n
    return out


def _warn_about_shared_positives(shared: dict[str, int], clashing: int, apart: bool, too_shared: list[str]) -> None:
    """Say on stderr which datasets have rows whose positive another row lists (`shared`), what the
    plan did about them (`clashing`: rows that meet their own positive again in a batch of the first
    epoch, `batching.clashing_rows`; `apart`: the
    param; `too_shared`: datasets where too many rows share one positive or query to part them),
    and what the trainers do."""
    if not shared:
        return
    total = sum(shared.values())
    shown = ", ".join(f"{name}: {n}" for name, n in list(shared.items())[:5]) + (", …" if len(shared) > 5 else "")
    if not apart:
        plan = (f"in batch_plan.jsonl, {clashing} rows meet their own positive again in their batch "
                "(train_data.batch.keep_clashing_rows_apart)")
    elif too_shared:
        plan = (f"batch_plan.jsonl keeps them apart but in {', '.join(too_shared[:3])}"
                f"{', …' if len(too_shared) > 3 else ''}, where more rows share one positive or query than there "
                f"are batches ({clashing} rows meet their own positive again in their batch)")
    elif clashing:
        plan = f"batch_plan.jsonl keeps them apart but for {clashing} rows its random draws could not part"
    else:
        plan = "batch_plan.jsonl keeps them apart, with shorter batches where they are dense"
    log(f"warning: train-data: {total} row{'s have a positive' if total > 1 else ' has a positive'} that another "
        f"row of {'their' if total > 1 else 'its'} dataset lists as a passage, mostly as a mined negative ({shown}): "
        f"in one batch with that row, a query meets its own positive again as an in-batch negative. {plan}; "
        "sentence-transformers does with batch_sampler=BatchSamplers.NO_DUPLICATES (it then skips some rows of "
        "such a dataset each epoch); FlagEmbedding's sampler does not look, and such rows meet less often the "
        "larger a dataset (metrics: embedder.rows_with_positive_in_other_rows)")


def _warn_about_repeated_queries(repeated: dict[str, int]) -> None:
    if not repeated:
        return
    total = sum(repeated.values())
    shown = ", ".join(f"{name}: {n}" for name, n in list(repeated.items())[:5]) + (", …" if len(repeated) > 5 else "")
    rows = f"{total} rows repeat" if total > 1 else "1 row repeats"
    log(f"warning: train-data: {rows} the query of an earlier row of {'their' if total > 1 else 'its'} "
        f"dataset ({shown}): in one batch each one's positive is an in-batch "
        "negative of the other's query, which it answers; give such rows one qid in the pairs format "
        "(convert-formats groups a qid into one row) or merge their pos lists; batch_plan.jsonl keeps them apart "
        "where it can (train_data.batch.keep_clashing_rows_apart; batch_plan.rows_clashing_in_batches counts "
        "the rest) (metrics: embedder.rows_repeating_a_query)")


def _warn_about_plan(planned: int, sizes: dict[str, int], batch_size: int, mode: str, clash_short: int = 0) -> None:
    """Say on stderr when the batch plan trains on fewer rows than were written, and why in this
    mode (``batching.left_out_reason``): with ``batch.drop_last`` the epoch modes leave out datasets
    smaller than a batch and each dataset's last partial batch, `random` the rows no step drew; a
    small or finely split run can turn that into most rows."""
    total = sum(sizes.values())
    if not total or planned == total:
        return
    if planned == 0 and not clash_short:
        log(f"warning: train-data: the batch plan is empty: every dataset is smaller than "
            f"train_data.batch.batch_size={batch_size} (the largest has {max(sizes.values())} rows)")
        return
    log(f"warning: train-data: batch_plan.jsonl ({mode}) trains on {planned} of {total} rows per epoch: "
        f"{left_out_reason(sizes, batch_size, mode, clash_short)} "
        "(metrics: batch_plan.rows_left_out_per_epoch; this is about "
        f"trainers that follow the plan; FlagEmbedding and sentence-transformers make their own batches)")


def flagembedding_epoch(modes: dict[str, str], sizes: dict[str, int], batch_size: int) -> dict[str, Any]:
    """What one epoch of FlagEmbedding's same-dataset mode trains of the embedder files (the
    documented command, at ``--per_device_train_batch_size`` = `batch_size`, one process); with
    ``--small_threshold`` = `batch_size`, which merges each folder's smaller files (null where a
    folder's small files are of two modes, which it cannot train); and the largest batch size at
    which every dataset fills a batch. `modes`: dataset -> its FlagEmbedding mode (its rows' ``type``)."""
    trained, never = flagembedding_rows_per_epoch(sizes, modes, batch_size) or (0, [])
    merged = flagembedding_rows_per_epoch(sizes, modes, batch_size, small_threshold=batch_size)
    # a symmetric mode's batch is half the batch size: 2n + 1 still cuts a batch of n, and 1 cuts none
    symmetric = {name for name in sizes if "symmetric" in modes.get(name, "normal")}
    fits = [2 * n + 1 if name in symmetric else n for name, n in sizes.items() if n]
    largest = min(fits, default=None)
    if largest is not None and largest < 2 and symmetric:
        largest = None  # no batch size reads a 1-row file and a symmetric one
    return {"per_device_train_batch_size": batch_size, "rows_in_epoch": trained,
            "rows_left_out_per_epoch": sum(sizes.values()) - trained, "datasets_never_trained": never,
            "rows_never_trained": sum(sizes[n] for n in never),
            "largest_batch_size_reading_every_dataset": largest,
            "with_small_threshold": None if merged is None else {
                "small_threshold": batch_size, "rows_in_epoch": merged[0],
                "rows_never_trained": sum(sizes[n] for n in merged[1])}}


def _warn_about_flagembedding_epoch(flag: dict[str, Any], total: int, some_unscored: bool = False) -> None:
    """Say on stderr when the documented FlagEmbedding command would never train some rows: its
    same-dataset sampler drops every file's last partial batch, so a file smaller than one batch
    (common: one file per language, task and mode) is never read, and nothing in its log says so.
    (The partial batches of larger files are other rows each epoch: counted in the metrics only.)
    `some_unscored`: some files have teacher scores and others not, which a merge by
    ``--small_threshold`` cannot mix under ``--knowledge_distillation True``."""
    never = flag["datasets_never_trained"]
    if not never:
        return
    bs, alt = flag["per_device_train_batch_size"], flag["with_small_threshold"]
    if bs // 2 == 0 and any("symmetric" in name for name in never):
        log(f"warning: train-data: FlagEmbedding --same_dataset_within_batch True cannot start at "
            f"--per_device_train_batch_size {bs} (train_data.batch.batch_size): a symmetric_* dataset's batch is "
            "half of it, 0 (it stops with 'range() arg 3 must not be zero'); use 2 or more")
        return
    shown = ", ".join(never[:5]) + (", …" if len(never) > 5 else "")
    fixes = []
    if flag["largest_batch_size_reading_every_dataset"]:
        fixes.append(f"--per_device_train_batch_size {flag['largest_batch_size_reading_every_dataset']} "
                     "reads every dataset")
    if alt is not None and alt["rows_in_epoch"] > flag["rows_in_epoch"]:
        kd = "; not with --knowledge_distillation True, as some files have no scores" if some_unscored else ""
        fixes.append(f"--small_threshold {bs} merges each folder's smaller files into one dataset "
                     f"({alt['rows_in_epoch']} rows per epoch; their tasks then share batches{kd})")
    log(f"warning: train-data: FlagEmbedding --same_dataset_within_batch True at --per_device_train_batch_size "
        f"{bs} (train_data.batch.batch_size) never trains {flag['rows_never_trained']} of {total} rows: "
        f"{len(never)} dataset{'s are' if len(never) > 1 else ' is'} smaller than one batch ({shown}); its "
        f"sampler drops every dataset's last partial batch ({flag['rows_in_epoch']} rows per epoch in all)"
        f"{'. ' + '; '.join(fixes) if fixes else ''} (metrics: flagembedding_same_dataset)")


def parting_made_single_rows(plan: pl.DataFrame, sizes: dict[str, int], batch_size: int) -> bool:
    """Whether some dataset has more one-row batches in the plan's first epoch than its size
    explains (one, when it leaves a remainder of one row): keeping clashing rows apart made them."""
    ones = plan.filter((pl.col("epoch") == 0) & (pl.col("indices").list.len() == 1)).group_by("dataset").len()
    return any(n > int(sizes[d] % batch_size == 1) for d, n in ones.iter_rows())


def _warn_about_single_row_batches(plan: pl.DataFrame, batch_size: int, apart_made_short: bool = False) -> None:
    """Say on stderr when the plan has batches of one row (with ``drop_last: false``, a dataset's
    last batch, a one-row dataset, or a row that clashes with every other left, see
    `batching.clash_free_batches`): such a step has no in-batch negative, only the row's own."""
    if batch_size < 2 or plan.height == 0:
        return
    n = int((plan["indices"].list.len() == 1).sum())
    if n:
        fix = ("keeping clashing rows apart makes short batches where they are dense: "
               "train_data.batch.keep_clashing_rows_apart: false gives full ones, with the clashes; "
               if apart_made_short else "")
        log(f"warning: train-data: batch_plan.jsonl has {n} batch{'es' if n > 1 else ''} of one row, which "
            f"give{'' if n > 1 else 's'} no in-batch negative ({fix}train_data.batch.drop_last: true leaves "
            f"{'them' if n > 1 else 'it'} out{'' if apart_made_short else '; or pick another batch_size'})")


def write_train_dir(grouped: pl.DataFrame, p: TrainDataParams, out_dir: str | Path) -> dict[str, Any]:
    """Build into a temp directory next to ``out_dir`` and swap it in; returns the metrics."""
    tokenizer = None
    if p.tokenizer.enabled:
        # The tokenizer settings are params: a missing model or max lengths it cannot take stop
        # the stage before the selection runs and before a temp directory exists.
        from tripleforge.tokenized import load_checked_tokenizer

        tokenizer = load_checked_tokenizer(p.tokenizer.model, p.tokenizer.query_max_len, p.tokenizer.passage_max_len)
    with atomic_dir(out_dir) as tmp:
        return build_train_dir(grouped, p, tmp, tokenizer)
