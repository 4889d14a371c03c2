"""The `convert-formats` stage logic: mined triplets + external files -> embedder triplets,
reranker pairs and the eval split, with counts per format, source, task and drop reason."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import field_validator

from tripleforge import formats as F
from tripleforge.errors import UserError
from tripleforge.io import require_columns
from tripleforge.params import StageParams

MINED_REQUIRED = ("pair_id", "query", "pos", "neg", "split")


def _same_file(path: str) -> Path:
    try:
        return Path(path).expanduser().resolve()
    except RuntimeError:  # Python 3.11 raises it for a symlink loop
        raise ValueError(f"'{path}' is a symlink loop") from None


class ConvertFormatsParams(StageParams):
    include_mined: bool = True  # read data/mined/triplets.parquet (off: external files only)
    external: list[str] = []  # JSONL/Parquet files in any of the four formats (all go to split train)
    format_override: dict[str, Literal["triplets", "pairs", "candidates", "legacy_nested"]] = {}  # path -> format
    strict: bool = True  # first bad line is an error `file:line: reason`; off: drop and count
    label_threshold: float = 0.5  # candidates: score >= threshold -> label 1
    coir_naming: bool = False  # qrels header query_id/corpus_id (CoIR) instead of query-id/corpus-id

    @field_validator("external")
    @classmethod
    def _no_duplicates(cls, v: list[str]) -> list[str]:
        # A file listed twice would be read twice: every row and qid duplicated, nothing reported.
        seen: dict[Path, str] = {}
        for path in v:
            key = _same_file(path)
            if key in seen:
                same = "twice" if seen[key] == path else f"twice (as '{seen[key]}' and '{path}')"
                raise ValueError(f"'{path}' is listed {same}")
            seen[key] = path
        return v


@dataclass
class Converted:
    grouped: pl.DataFrame  # formats.GROUPED_SCHEMA
    pairs: pl.DataFrame  # formats.PAIRS_SCHEMA
    drops: Counter[str] = field(default_factory=Counter)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)


def mined_to_grouped(mined: pl.DataFrame, path: str, strict: bool, drops: Counter[str]) -> pl.DataFrame:
    """Mined triplets (contract of `mine-negatives`) -> GROUPED_SCHEMA, qid = ``pair_id``,
    source_format ``mined``, sorted by ``pair_id``; ``source`` is ``path:<row>``, the row's
    1-based number in the file as given (numbered before the sort, so an error names that row)."""
    require_columns(mined, MINED_REQUIRED, path, "the triplets of mine-negatives")

    def opt(name: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in mined.columns else pl.lit(None, dtype)

    df = mined.with_row_index("_row", offset=1).sort("pair_id", maintain_order=True).select(
        qid=pl.col("pair_id"),
        query=pl.col("query"),
        prompt=opt("prompt", pl.String()),
        type=pl.lit(None, pl.String),
        task=opt("task", pl.String()),
        language=opt("language", pl.String()),
        code_language=opt("code_language", pl.String()),
        tgt_code_language=opt("tgt_code_language", pl.String()),
        doc_id=opt("doc_id", pl.String()),
        pair_id=pl.col("pair_id"),
        candidate_idx=opt("candidate_idx", pl.Int64()),
        split=pl.col("split"),
        source_format=pl.lit("mined"),
        source=pl.lit(path + ":") + pl.col("_row").cast(pl.String),
        pos=pl.col("pos"),
        neg=pl.col("neg").fill_null(pl.lit([], dtype=F.STR_LIST)),
        pos_scores=opt("pos_scores", F.F64_LIST),
        neg_scores=opt("neg_scores", F.F64_LIST),
    )
    # a split other than train/eval (a hand-edited file) would be trained on without a word
    unknown_split = pl.when(~pl.col("split").is_in(["train", "eval"]).fill_null(False)).then(pl.lit("unknown_split"))
    df = df.with_columns(_problem=pl.coalesce(F.grouped_row_problem(df), unknown_split))
    bad = df.filter(pl.col("_problem").is_not_null())
    if bad.height:
        if strict:
            raise UserError(f"{bad['source'][0]}: {bad['_problem'][0].replace('_', ' ')} (pair_id {bad['qid'][0]})")
        for reason, n in bad.group_by("_problem").len().sort("_problem").iter_rows():
            drops[reason] += n
    return df.filter(pl.col("_problem").is_null()).select(list(F.GROUPED_SCHEMA))


def drop_eval_overlap(
    grouped: pl.DataFrame, pairs: pl.DataFrame, eval_rows: pl.DataFrame, drops: Counter[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """External (train) rows without those whose query or a positive is an eval query or an eval
    positive, in either role (texts compared whitespace-normalized): training on them would leak
    the eval split, and a pair turned around (the eval positive as query, the eval query as
    positive) teaches the same judgment. Removed rows are counted as `eval_overlap` (triplets) and
    `eval_overlap_pairs` (pairs; a label-0 pair whose passage is an eval text stays: a negative
    teaches nothing about the eval judgment)."""
    evals = pl.concat([
        eval_rows.select(t=F.normalized(pl.col("query"))),
        eval_rows.select(t=F.normalized(pl.col("pos").explode())),
    ]).get_column("t").unique().implode()
    leaks_g = F.normalized(pl.col("query")).is_in(evals) | (
        pl.col("pos").list.eval(F.normalized(pl.element()).is_in(evals)).list.any()
    )
    leaks_p = F.normalized(pl.col("query")).is_in(evals) | (
        (pl.col("label") == 1) & F.normalized(pl.col("passage")).is_in(evals)
    )
    g_out, p_out = grouped.filter(~leaks_g), pairs.filter(~leaks_p)
    if grouped.height - g_out.height:
        drops["eval_overlap"] += grouped.height - g_out.height
    if pairs.height - p_out.height:
        drops["eval_overlap_pairs"] += pairs.height - p_out.height
    return g_out, p_out


def overrides_by_external(params: ConvertFormatsParams) -> dict[str, str]:
    """`format_override` keyed by the `external` entry each names, matched as files (`./a.jsonl`
    and `a.jsonl` are one file), as `external`'s own duplicate check matches them."""
    by_file = {_same_file(path): path for path in params.external}
    out = {}
    for path, fmt in params.format_override.items():
        if _same_file(path) not in by_file:
            raise UserError(f"params.yaml: convert_formats.format_override names '{path}', which is not in external")
        out[by_file[_same_file(path)]] = fmt
    return out


def convert_all(mined: pl.DataFrame | None, mined_path: str, params: ConvertFormatsParams) -> Converted:
    """Everything -> one grouped frame and one pairs frame. Order: mined rows (by pair_id), then
    each external file in params order, each in file order — deterministic without a re-sort."""
    drops: Counter[str] = Counter()
    sources: dict[str, dict[str, Any]] = {}
    grouped_parts: list[pl.DataFrame] = []
    pairs_parts: list[pl.DataFrame] = []
    owners = QidOwners()
    if mined is not None:
        mined_drops: Counter[str] = Counter()
        g = mined_to_grouped(mined, mined_path, params.strict, mined_drops)
        drops.update(mined_drops)
        grouped_parts.append(g)
        pairs_parts.append(F.grouped_to_pairs(g))
        owners.admit(g, pairs_parts[-1], params.strict, mined_drops)  # the first source: nothing to refuse
        # the same keys as an external source's, so scripts can read every source alike
        sources[mined_path] = {"format": "mined", "rows_read": mined.height, "triplets": g.height,
                               "pairs": pairs_parts[-1].height, **F.drop_metrics(mined_drops)}
    overrides = overrides_by_external(params)
    eval_rows = grouped_parts[0].filter(pl.col("split") == "eval") if grouped_parts else None
    for path in params.external:
        g, p, rec = F.read_external(path, overrides.get(path), params.strict, params.label_threshold)
        # a validation check, like the one within the file: before the data-level removals below
        g, p = owners.admit(g, p, params.strict, rec.drops)
        if eval_rows is not None and eval_rows.height:
            g, p = drop_eval_overlap(g, p, eval_rows, rec.drops)
        drops.update(rec.drops)
        grouped_parts.append(g)
        pairs_parts.append(p)
        sources[path] = {"format": rec.format or "none", "rows_read": rec.rows_read,
                         "triplets": g.height, "pairs": p.height, **F.drop_metrics(rec.drops)}
    drop_copies_across_sources(grouped_parts, pairs_parts, list(sources.values()), drops)
    mask_negatives_across_sources(grouped_parts, pairs_parts, list(sources.values()), drops)
    grouped = pl.concat(grouped_parts) if grouped_parts else pl.DataFrame(schema=F.GROUPED_SCHEMA)
    pairs = pl.concat(pairs_parts) if pairs_parts else pl.DataFrame(schema=F.PAIRS_SCHEMA)
    return Converted(grouped, pairs, drops, sources)


class QidOwners:
    """The qids of the sources read so far (mined rows: qid = pair_id), to refuse a later source
    that gives one of them to another query (whitespace-normalized), as `formats._qid_clash` does
    within one file: the outputs would hold two queries under one qid (and the same generated
    pids), merged by anyone grouping by qid. The same query under the same qid is fine, as within
    a file. Cost: one hash of the qid column per source; texts are compared only for qids whose
    hash an earlier source has."""

    def __init__(self) -> None:
        self.rows: list[pl.DataFrame] = []  # qid, query, source (file:line), source_format of each source's pairs
        self.hashes: list[pl.Series] = []  # distinct qid hashes of each source

    def admit(self, g: pl.DataFrame, p: pl.DataFrame, strict: bool,
              drops: Counter[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
        """`g, p` (one source) without the queries whose qid an earlier source gave to another
        query, their lines counted as `qid_already_names_another_query` (an error at the first
        such line when `strict`); the qids kept are then this source's too."""
        probe = pl.col("qid").hash()
        mine = p.select(probe.unique()).to_series()
        shared = mine.filter(mine.is_in(pl.concat(self.hashes).implode())) if self.hashes else mine.clear()
        if shared.len():  # else the common case: no qid of this source is used before
            n = p.height
            g, p = self._without_clashes(g, p, shared, strict, drops)
            if p.height < n:
                mine = p.select(probe.unique()).to_series()
        self.rows.append(p.select("qid", "query", "source", "source_format"))
        self.hashes.append(mine)
        return g, p

    def _without_clashes(self, g: pl.DataFrame, p: pl.DataFrame, shared: pl.Series, strict: bool,
                         drops: Counter[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
        probe = pl.col("qid").hash()

        def first_per_qid(df: pl.DataFrame) -> pl.DataFrame:
            return df.filter(probe.is_in(shared.implode())).group_by("qid", maintain_order=True).agg(
                pl.col("query").first(), pl.col("source").first(), pl.col("source_format").first())

        old = first_per_qid(pl.concat(self.rows))  # the first source with that qid owns it
        new = first_per_qid(p).join(
            old, on="qid", how="inner", suffix="_old", maintain_order="left")
        clash = new.filter(F.normalized_series(new["query"]) != F.normalized_series(new["query_old"]))
        if clash.height == 0:
            return g, p
        if strict:
            qid, src, owner, fmt = clash.select("qid", "source", "source_old", "source_format_old").row(0)
            owner += ", a mined row: its qid is its pair_id" if fmt == "mined" else ""
            raise UserError(f"{src}: 'qid' {json.dumps(qid)} already names another query ({owner}; a qid must name "
                            "one query across all sources)")
        gone = pl.col("qid").is_in(clash["qid"].implode())
        drops["qid_already_names_another_query"] += p.filter(gone)["source"].n_unique()  # lines, as within a file
        return g.filter(~gone), p.filter(~gone)


def drop_copies_across_sources(
    grouped_parts: list[pl.DataFrame], pairs_parts: list[pl.DataFrame], sources: list[dict[str, Any]],
    drops: Counter[str],
) -> None:
    """In place, per source in order: drop records that copy one of an earlier source (the same
    `formats.RECORD_CONTENT`), with their pairs (a pairs source's by qid, a row's by its line),
    counted as `duplicate_record` in that source's `dropped` and in `drops`. Each reader drops
    copies within its own file; a copy in a second file (a dataset listed once as JSONL and once
    as Parquet, or our own mined rows exported and added back) would otherwise count twice in
    `data/formats/` and its metrics."""
    if len(grouped_parts) < 2:
        return
    both = pl.concat([g.select(F.RECORD_CONTENT).with_columns(_part=pl.lit(i, pl.UInt32))
                      for i, g in enumerate(grouped_parts)])
    keep = F.first_copies(both, F.RECORD_CONTENT, F.record_probe())
    if keep is None:
        return
    start = 0
    for i, g in enumerate(grouped_parts):
        part_keep = keep.slice(start, g.height)
        start += g.height
        if part_keep.all():
            continue
        # a pairs source's triplet is its qid's pairs; a triplets row's pairs are those of its line
        # (two rows may share a qid, and only the copy goes)
        key = "qid" if _pairs_first(sources[i]) else "source"
        gone = g.filter(~part_keep).get_column(key)
        grouped_parts[i] = g.filter(part_keep)
        pairs_parts[i] = pairs_parts[i].filter(~pl.col(key).is_in(gone.implode()))
        sources[i]["triplets"] = grouped_parts[i].height
        _count_drop(sources[i], pairs_parts[i], "duplicate_record", int((~part_keep).sum()), drops)


def _pairs_first(src: dict[str, Any]) -> bool:
    """Whether a source was read as pairs (pairs, candidates; its triplets derived per qid) rather
    than as rows (mined, triplets, legacy_nested; its pairs derived per row): the frame it counts by."""
    return src["format"] in ("pairs", "candidates")


def _count_drop(src: dict[str, Any], pairs: pl.DataFrame, reason: str, n: int, drops: Counter[str]) -> None:
    """Record `n` removals for `reason` in one source's entry (and its pairs count) and in `drops`."""
    drops[reason] += n
    src["pairs"] = pairs.height
    src["dropped"] = dict(sorted({**src["dropped"], reason: src["dropped"].get(reason, 0) + n}.items()))


def mask_negatives_across_sources(
    grouped_parts: list[pl.DataFrame], pairs_parts: list[pl.DataFrame], sources: list[dict[str, Any]],
    drops: Counter[str],
) -> None:
    """In place: remove the negatives (`neg` entries, label-0 pairs) that equal a positive another
    source gives the same query (texts and queries whitespace-normalized), counted as
    `negative_is_positive` in that source's `dropped` and in `drops`: one file saying a passage
    answers a query and another saying it does not (or a mined negative that an external file
    has as the answer) would train the pair both ways. Each source was masked on its own when
    read, so what is removed here is what another source contradicts; repeats are not looked
    for (each pair is its own group below), since each source settled its own. A triplets or mined
    source's label-0 pids (`<qid>:n<i>`, `formats.grouped_to_pairs`) are renumbered to the
    positions left, as a removal within one file leaves them."""
    if len(grouped_parts) < 2:
        return
    heights = [g.height for g in grouped_parts]
    grouped = F.mask_negatives(pl.concat(grouped_parts), Counter())
    tagged = pl.concat([p.with_columns(_part=pl.lit(i, pl.UInt32)) for i, p in enumerate(pairs_parts)])
    tagged = tagged.with_row_index("_row").with_columns(_qid=pl.col("qid"), qid=pl.col("_row").cast(pl.String))
    pairs = F.mask_negative_pairs(tagged, Counter()).with_columns(qid=pl.col("_qid")).drop("_row", "_qid")
    start = 0
    for i, (src, h) in enumerate(zip(sources, heights, strict=True)):
        g_new = grouped.slice(start, h)
        start += h
        p_new = pairs.filter(pl.col("_part") == i).drop("_part")
        n_pairs = pairs_parts[i].height - p_new.height
        if not n_pairs:
            continue
        by_pairs = _pairs_first(src)
        if not by_pairs:
            position = pl.int_range(pl.len()).over("qid", "label").cast(pl.String)  # as grouped_to_pairs numbers
            p_new = p_new.with_columns(pid=pl.when(pl.col("label") == 0).then(pl.col("qid") + ":n" + position)
                                       .otherwise(pl.col("pid")))
        n = n_pairs if by_pairs else (int(grouped_parts[i]["neg"].list.len().sum() or 0)
                                      - int(g_new["neg"].list.len().sum() or 0))
        grouped_parts[i], pairs_parts[i] = g_new, p_new
        _count_drop(src, p_new, "negative_is_positive", n, drops)


def _counts(df: pl.DataFrame, col: str) -> dict[str, int]:
    if df.height == 0:
        return {}
    rows = df.group_by(col).len().sort(col, nulls_last=True).iter_rows()
    return {str(k) if k is not None else "none": int(n) for k, n in rows}


# Reasons under `dropped` that remove no record: a negative taken out of a row that stays (a
# label-0 pair of a query that stays), and the pairs of the rows `eval_overlap` counts. Summed with
# the rest, one record whose 500 negatives repeat a positive read as 501 records lost.
NEGATIVE_REMOVALS = ("negative_is_positive", "duplicate_negative")
NOT_RECORD_REMOVALS = frozenset({*NEGATIVE_REMOVALS, "eval_overlap_pairs"})


def convert_metrics(c: Converted, eval_sizes: dict[str, int]) -> dict[str, Any]:
    """The stage's metrics: ``dropped_total`` counts records (lines, or queries of pairs input)
    removed, ``negatives_removed_total`` the negatives removed from the rows that stay."""
    counts = F.drop_metrics(c.drops)
    return {
        "triplets": {
            "rows": c.grouped.height,
            "by_source_format": _counts(c.grouped, "source_format"),
            "by_task": _counts(c.grouped, "task"),
            "by_split": _counts(c.grouped, "split"),
            "without_negatives": int((c.grouped["neg"].list.len() == 0).sum()) if c.grouped.height else 0,
        },
        "pairs": {
            "rows": c.pairs.height,
            "by_source_format": _counts(c.pairs, "source_format"),
            "by_label": _counts(c.pairs, "label"),
        },
        "by_source": c.sources,
        **counts,
        "dropped_total": sum(n for k, n in counts["dropped"].items() if k not in NOT_RECORD_REMOVALS),
        "negatives_removed_total": sum(counts["dropped"].get(k, 0) for k in NEGATIVE_REMOVALS),
        "eval": eval_sizes,
    }
