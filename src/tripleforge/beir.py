"""BEIR/MTEB export of the eval split: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``.

The eval corpus is every positive and every negative of the eval queries (deduplicated by
``text_id``), so each query is searched among its own hard negatives and everyone else's
passages, less what mining would have masked for a query (`masked_for_queries`). Ids are stable:
a corpus ``_id`` is ``text_id(text)`` (equal to the upstream ``doc_id`` for positives), a query
``_id`` is the row's ``qid`` (the ``pair_id`` for mined rows).

Why masked documents are left out, rather than kept under the query's id for the evaluator's
``ignore_identical_ids``: that option drops one document per query, and only when the evaluator
is told to (it is off by default, and it applies to every dataset of the run); while one source
document is typically masked for several eval queries at once (its code_summary query *is* the
document, its code_context query is cut from it), since the eval split is drawn per document.
Leaving documents out keeps the files correct for any BEIR/MTEB evaluator with default settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from tripleforge.hashing import text_id
from tripleforge.io import atomic_text, write_jsonl


def _ids(texts: pl.Series) -> pl.Series:
    """text_id for each text, hashing each distinct text once."""
    uniq = texts.unique(maintain_order=True).to_list()
    mapping = {t: text_id(t) for t in uniq}
    return texts.replace_strict(mapping, return_dtype=pl.String)


def _texts(grouped: pl.DataFrame, col: str) -> pl.DataFrame:
    """``qid, text, cid`` (cid = text_id) for every non-null element of list column `col`."""
    out = grouped.select("qid", text=pl.col(col)).explode("text").filter(pl.col("text").is_not_null())
    return out.with_columns(cid=_ids(out["text"]))


def relevant_docs(grouped: pl.DataFrame) -> pl.DataFrame:
    """``qid, cid``: the documents relevant to each eval query, that is the positives of every
    row whose query is the same text, whitespace-normalized (one query, several candidate rows:
    mining masks their positives for each other, so none may count against another)."""
    qkey = grouped.select("qid", _qkey=_ids(grouped["query"]))
    pos = _texts(grouped, "pos").join(qkey.unique("qid", keep="first"), on="qid")
    return qkey.join(pos.select("_qkey", "cid"), on="_qkey").select("qid", "cid").unique()


def masked_for_queries(grouped: pl.DataFrame, corpus_ids: pl.Series, rel: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """(corpus ids to leave out, qids to leave out) so that no eval query is scored against a
    document mining masks for it: its source document (``doc_id``) or its own text (`text_id`
    of the query), unless that document is relevant to it (`rel`, ``qid, cid``).

    Such a document is left out of the corpus (it is then missing only as other queries'
    negative), unless it is some eval query's positive: it must then stay, and a shared corpus
    cannot hide it from one query only, so the queries it is masked for are left out instead.
    Both are sorted."""
    doc_id = pl.col("doc_id") if "doc_id" in grouped.columns else pl.lit(None, pl.String)
    own = pl.concat([
        grouped.select("qid", cid=doc_id.cast(pl.String)),
        grouped.select("qid", cid=_ids(grouped["query"])),
    ]).drop_nulls().unique()
    harmful = own.join(rel, on=["qid", "cid"], how="anti").filter(pl.col("cid").is_in(corpus_ids.implode()))
    needed = pl.col("cid").is_in(rel["cid"].unique().implode())
    docs = harmful.filter(~needed)["cid"].unique().sort()
    queries = harmful.filter(needed)["qid"].unique().sort()
    return docs, queries


def eval_tables(grouped: pl.DataFrame, left_out: dict[str, Any] | None = None
                ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Grouped eval rows (``qid, query, task, prompt, pos, neg``, optional ``doc_id``) ->
    (corpus, queries, qrels).

    corpus: ``_id, title, text`` sorted by ``_id``; queries: ``_id, text, task, prompt`` sorted by
    ``_id`` (null task/prompt stay null: the evaluator then uses its defaults); qrels: ``query-id, corpus-id,
    score`` (1 per relevant document, `relevant_docs`) sorted by both ids. What `masked_for_queries`
    leaves out is counted into `left_out` when given: ``masked_documents``, ``queries`` and
    ``queries_by_task`` (``none`` for a row without task)."""
    texts = pl.concat([_texts(grouped, "pos"), _texts(grouped, "neg")]).select("cid", "text")
    texts = texts.unique("cid", keep="first", maintain_order=True)
    rel = relevant_docs(grouped)
    drop_docs, drop_queries = masked_for_queries(grouped, texts["cid"], rel)
    corpus = (
        texts.filter(~pl.col("cid").is_in(drop_docs.implode()))
        .select(_id=pl.col("cid"), title=pl.lit(""), text=pl.col("text"))
        .sort("_id")
    )
    queries = (
        grouped.select(_id=pl.col("qid"), text=pl.col("query"), task=pl.col("task"), prompt=pl.col("prompt"))
        .unique("_id", keep="first", maintain_order=True)
    )
    if left_out is not None:
        gone = queries.filter(pl.col("_id").is_in(drop_queries.implode()))
        left_out.update(masked_documents=drop_docs.len(), queries=gone.height,
                        queries_by_task={str(t) if t is not None else "none": int(n) for t, n in
                                         gone.group_by("task").len().sort("task", nulls_last=True).iter_rows()})
    queries = queries.filter(~pl.col("_id").is_in(drop_queries.implode())).sort("_id")
    qrels = (
        rel.filter(~pl.col("qid").is_in(drop_queries.implode()))
        .select(**{"query-id": pl.col("qid"), "corpus-id": pl.col("cid"), "score": pl.lit(1, pl.Int64)})
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
