"""BEIR/MTEB export of the eval split: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``.

The eval queries are those of one task per eval document (`one_task_per_document`), and the
corpus is every positive and every negative of them (deduplicated by ``text_id``), so each query
is searched among its own hard negatives and everyone else's passages, less what mining would
have masked for a query (`masked_for_queries`). Ids are stable:
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

from tripleforge.formats import CANDIDATE_KEY
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


def masked_for_queries(grouped: pl.DataFrame, corpus_ids: pl.Series, rel: pl.DataFrame,
                       siblings: pl.DataFrame | None = None) -> tuple[pl.Series, pl.Series]:
    """(corpus ids to leave out, qids to leave out) so that no eval query is scored against a
    document mining masks for it: its source document (``doc_id``), its own text (`text_id`
    of the query), or a positive of a row made from the same document (among `siblings`, the
    grouped rows before `one_task_per_document`; default `grouped`), unless that document is
    relevant to it (`rel`, ``qid, cid``).

    Such a document is left out of the corpus (it is then missing only as other queries'
    negative), unless it is some eval query's positive: it must then stay, and a shared corpus
    cannot hide it from one query only, so the queries it is masked for are left out instead.
    Both are sorted."""
    doc_id = pl.col("doc_id") if "doc_id" in grouped.columns else pl.lit(None, pl.String)
    docs_of = grouped.select("qid", _doc=doc_id.cast(pl.String)).drop_nulls()
    sib = grouped if siblings is None else siblings
    sib_docs = sib.select("qid", _doc=(pl.col("doc_id") if "doc_id" in sib.columns
                                       else pl.lit(None, pl.String)).cast(pl.String)).drop_nulls()
    same_doc = docs_of.join(_texts(sib, "pos").join(sib_docs, on="qid").select("_doc", "cid"), on="_doc")
    own = pl.concat([
        docs_of.select("qid", cid=pl.col("_doc")),
        grouped.select("qid", cid=_ids(grouped["query"])),
        same_doc.select("qid", "cid"),
    ]).drop_nulls().unique()
    harmful = own.join(rel, on=["qid", "cid"], how="anti").filter(pl.col("cid").is_in(corpus_ids.implode()))
    needed = pl.col("cid").is_in(rel["cid"].unique().implode())
    docs = harmful.filter(~needed)["cid"].unique().sort()
    queries = harmful.filter(needed)["qid"].unique().sort()
    return docs, queries


def first_candidates(grouped: pl.DataFrame) -> pl.DataFrame:
    """The grouped eval rows of each generation job's first candidate (lowest ``candidate_idx``
    among the rows sharing ``formats.CANDIDATE_KEY``, generate's ``n_candidates``); rows without
    ``doc_id`` or ``candidate_idx`` all stay. A job's candidates are copies of one query
    (code_summary's is the document) or cuts of one document whose positives mining masks for
    each other (code_context): keeping them all weighted a document n times or left out all its
    queries. The first, not the best-scored: picking by the mining model's scores would keep the
    queries that model finds easiest, and flatter it on its own eval."""
    if "candidate_idx" not in grouped.columns or grouped["candidate_idx"].null_count() == grouped.height:
        return grouped
    key = [c for c in CANDIDATE_KEY if c in grouped.columns]
    job = pl.col("doc_id").is_not_null() & pl.col("candidate_idx").is_not_null()
    first = pl.col("candidate_idx") == pl.col("candidate_idx").min().over(key)
    return grouped.filter(~job | first.fill_null(True))


def one_task_per_document(grouped: pl.DataFrame) -> pl.DataFrame:
    """The grouped eval rows of one task per source document (``doc_id``; rows without one all
    stay; every row of the chosen task stays, e.g. several candidate queries).

    The tasks of a document share its text: its code_context positive is the document's tail,
    its code_summary query is the document, its web_code positive is the document. In one corpus
    each such passage is a non-relevant document for the document's other queries (in an audit
    the tail ranked first for every code_summary query: nDCG@10 0.57 instead of 0.82), and hiding
    it from them means leaving those queries out anyway. The task kept is the one with the fewest
    documents so far, documents taken in ``doc_id`` order (ties: task name), which keeps the
    tasks balanced and depends on nothing but the rows."""
    if "doc_id" not in grouped.columns or grouped.height == 0:
        return grouped
    tasks_of = (grouped.filter(pl.col("doc_id").is_not_null())
                .group_by("doc_id").agg(pl.col("task").unique().sort(nulls_last=True)).sort("doc_id"))
    per_task: dict[str | None, int] = {}
    chosen: list[tuple[str, str | None]] = []
    for doc, tasks in tasks_of.iter_rows():
        task = min(tasks, key=lambda t: (per_task.get(t, 0), t is None, str(t)))
        per_task[task] = per_task.get(task, 0) + 1
        chosen.append((doc, task))
    keep = pl.DataFrame(chosen, schema={"doc_id": pl.String, "task": pl.String}, orient="row")
    kept = grouped.join(keep, on=["doc_id", "task"], how="semi", nulls_equal=True, maintain_order="left")
    return pl.concat([kept, grouped.filter(pl.col("doc_id").is_null())]) if grouped["doc_id"].null_count() else kept


def _task_counts(rows: pl.DataFrame) -> dict[str, int]:
    return {str(t) if t is not None else "none": int(n)
            for t, n in rows.group_by("task").len().sort("task", nulls_last=True).iter_rows()}


def eval_tables(grouped: pl.DataFrame, left_out: dict[str, Any] | None = None
                ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Grouped eval rows (``qid, query, task, prompt, pos, neg``, optional ``doc_id``) ->
    (corpus, queries, qrels).

    corpus: ``_id, title, text`` sorted by ``_id``; queries: ``_id, text, task, prompt`` sorted by
    ``_id`` (null task/prompt stay null: the evaluator then uses its defaults); qrels: ``query-id, corpus-id,
    score`` (1 per relevant document, `relevant_docs`) sorted by both ids. One query per source
    document (`first_candidates`, `one_task_per_document`). What is left out is counted into
    `left_out` when given: ``other_candidates`` (queries of a generation job's later candidates),
    ``same_document`` (queries of a task their document does not give the eval),
    ``masked_documents``, ``masked_queries`` (see `masked_for_queries`), ``queries`` and
    ``queries_by_task`` (all queries left out, ``none`` for a row without task)."""
    all_rows = grouped
    first = first_candidates(grouped)
    grouped = one_task_per_document(first)
    texts = pl.concat([_texts(grouped, "pos"), _texts(grouped, "neg")]).select("cid", "text")
    texts = texts.unique("cid", keep="first", maintain_order=True)
    rel = relevant_docs(grouped)
    drop_docs, drop_queries = masked_for_queries(grouped, texts["cid"], rel, all_rows)
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
        kept = queries.filter(~pl.col("_id").is_in(drop_queries.implode()))["_id"]
        gone = all_rows.select("qid", "task").unique("qid", keep="first").filter(~pl.col("qid").is_in(kept.implode()))
        left_out.update(other_candidates=all_rows["qid"].n_unique() - first["qid"].n_unique(),
                        same_document=first["qid"].n_unique() - grouped["qid"].n_unique(),
                        masked_documents=drop_docs.len(), masked_queries=drop_queries.len(),
                        queries=gone.height, queries_by_task=_task_counts(gone))
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
