"""BEIR/MTEB export of the eval split: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``.

The eval corpus is every positive and every negative of the eval queries (deduplicated by
``text_id``), so each query is searched among its own hard negatives and everyone else's
passages. Ids are stable: a corpus ``_id`` is ``text_id(text)`` (equal to the upstream
``doc_id`` for positives), a query ``_id`` is the row's ``qid`` (the ``pair_id`` for mined rows).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tripleforge.hashing import text_id
from tripleforge.io import atomic_text, write_jsonl


def _ids(texts: pl.Series) -> pl.Series:
    """text_id for each text, hashing each distinct text once."""
    uniq = texts.unique(maintain_order=True).to_list()
    mapping = {t: text_id(t) for t in uniq}
    return texts.replace_strict(mapping, return_dtype=pl.String)


def eval_tables(grouped: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Grouped eval rows (``qid, query, task, prompt, pos, neg``) -> (corpus, queries, qrels).

    corpus: ``_id, title, text`` sorted by ``_id``; queries: ``_id, text, task, prompt`` sorted by
    ``_id`` (null task/prompt stay null: the evaluator then uses its defaults); qrels: ``query-id, corpus-id,
    score`` (1 per positive) sorted by both ids."""
    texts = pl.concat([grouped.select(text=pl.col("pos")).explode("text"), grouped.select(text=pl.col("neg")).explode("text")])
    texts = texts.filter(pl.col("text").is_not_null()).unique(maintain_order=True)
    corpus = (
        texts.with_columns(_id=_ids(texts["text"]), title=pl.lit(""))
        .unique("_id", keep="first", maintain_order=True)
        .select("_id", "title", "text")
        .sort("_id")
    )
    queries = (
        grouped.select(_id=pl.col("qid"), text=pl.col("query"), task=pl.col("task"), prompt=pl.col("prompt"))
        .unique("_id", keep="first", maintain_order=True)
        .sort("_id")
    )
    pos = grouped.select(qid=pl.col("qid"), text=pl.col("pos")).explode("text").filter(pl.col("text").is_not_null())
    qrels = (
        pos.with_columns(cid=_ids(pos["text"]))
        .select(**{"query-id": pl.col("qid"), "corpus-id": pl.col("cid"), "score": pl.lit(1, pl.Int64)})
        .unique(["query-id", "corpus-id"], maintain_order=True)
        .sort(["query-id", "corpus-id"])
    )
    return corpus, queries, qrels


def write_beir(out_dir: str | Path, corpus: pl.DataFrame, queries: pl.DataFrame, qrels: pl.DataFrame,
               coir_naming: bool = False) -> None:
    """Write the three files atomically. ``coir_naming`` writes the qrels header as CoIR's
    ``query_id``/``corpus_id`` instead of BEIR/MTEB's ``query-id``/``corpus-id``."""
    out = Path(out_dir)
    write_jsonl(corpus.iter_rows(named=True), out / "corpus.jsonl")
    write_jsonl(queries.iter_rows(named=True), out / "queries.jsonl")
    qid_col, cid_col = ("query_id", "corpus_id") if coir_naming else ("query-id", "corpus-id")
    with atomic_text(out / "qrels" / "test.tsv") as fh:
        fh.write(f"{qid_col}\t{cid_col}\tscore\n")
        for q, c, s in qrels.iter_rows():
            fh.write(f"{q}\t{c}\t{s}\n")
