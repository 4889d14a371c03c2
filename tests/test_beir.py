"""BEIR/MTEB export of the eval split."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from formats_data import mined_frame

from tripleforge.beir import eval_tables, write_beir
from tripleforge.convert import ConvertFormatsParams, convert_all
from tripleforge.hashing import text_id


def _eval_grouped() -> pl.DataFrame:
    c = convert_all(mined_frame(n_docs=8, n_neg=3), "mined.parquet", ConvertFormatsParams())
    return c.grouped.filter(pl.col("split") == "eval")


def test_corpus_is_every_pos_and_neg_with_stable_ids() -> None:
    g = _eval_grouped()
    corpus, queries, qrels = eval_tables(g)
    texts = set(g["pos"].explode().to_list()) | set(g["neg"].explode().to_list())
    assert set(corpus["text"]) == texts and corpus.height == len(texts)
    assert corpus["_id"].to_list() == [text_id(t) for t in corpus["text"]]
    assert corpus["_id"].to_list() == sorted(corpus["_id"])
    assert set(queries["_id"]) == set(g["pair_id"])
    # positives are the mined docs: their corpus id is the upstream doc_id
    assert set(qrels["corpus-id"]) == set(g["doc_id"])
    assert qrels["score"].to_list() == [1] * qrels.height


def test_write_beir_layout_and_coir_naming(tmp_path: Path) -> None:
    corpus, queries, qrels = eval_tables(_eval_grouped())
    write_beir(tmp_path / "beir", corpus, queries, qrels)
    write_beir(tmp_path / "coir", corpus, queries, qrels, coir_naming=True)
    lines = (tmp_path / "beir" / "qrels" / "test.tsv").read_text().splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore" and len(lines) == qrels.height + 1
    assert (tmp_path / "coir" / "qrels" / "test.tsv").read_text().splitlines()[0] == "query_id\tcorpus_id\tscore"
    q = [json.loads(x) for x in (tmp_path / "beir" / "queries.jsonl").read_text().splitlines()]
    assert set(q[0]) == {"_id", "text", "task", "prompt"} and q[0]["prompt"].startswith("Given a")
    c = [json.loads(x) for x in (tmp_path / "beir" / "corpus.jsonl").read_text().splitlines()]
    assert set(c[0]) == {"_id", "title", "text"}


def test_beir_files_load_in_pytrec_eval_shape(tmp_path: Path) -> None:
    """The qrels read back as a {qid: {docid: rel}} dict whose ids all exist in the files."""
    corpus, queries, qrels = eval_tables(_eval_grouped())
    write_beir(tmp_path, corpus, queries, qrels)
    rows = [ln.split("\t") for ln in (tmp_path / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    q_ids = {json.loads(x)["_id"] for x in (tmp_path / "queries.jsonl").read_text().splitlines()}
    c_ids = {json.loads(x)["_id"] for x in (tmp_path / "corpus.jsonl").read_text().splitlines()}
    assert rows and all(r[0] in q_ids and r[1] in c_ids and r[2] == "1" for r in rows)


DOC_D = "def area(r):\n    import math\n    return math.pi * r * r\n"
DOC_E = "def greet(name):\n    message = 'hello ' + name\n    return message.upper()\n"


def _row(qid: str, task: str, query: str, doc: str, pos: list[str], neg: list[str]) -> dict[str, object]:
    return {"qid": qid, "query": query, "task": task, "prompt": None, "doc_id": text_id(doc), "pos": pos, "neg": neg}


def _masked_rows() -> pl.DataFrame:
    """Eval rows as mining writes them: a document's code_summary query is the document itself,
    its code_context query is cut from it (doc_id = the document), its web_code positive is it."""
    rows = [
        _row("s_d", "code_summary_retrieval", DOC_D, DOC_D, ["Computes a circle's area."], ["Greets a person."]),
        _row("c_d", "code_context_retrieval", DOC_D[:25], DOC_D, [DOC_D[25:]], [DOC_E]),
        _row("w_d", "web_code_retrieval", "python circle area", DOC_D, [DOC_D], []),
        # whitespace differs from the document: still its own text (ids are of normalized text)
        _row("s_e", "code_summary_retrieval", DOC_E.replace(" = ", "  =  "), DOC_E, ["Greets a person."], [DOC_D[25:]]),
        _row("c_e", "code_context_retrieval", DOC_E[:30], DOC_E, [DOC_E[30:]], [DOC_D[25:]]),
    ]
    return pl.DataFrame(rows, schema_overrides={"prompt": pl.String})


def _own_passages(g: pl.DataFrame, row: dict[str, object]) -> set[str]:
    """What mining masks for a row: its document, its own text, the positives of its document's rows."""
    same_doc = g.filter(pl.col("doc_id") == row["doc_id"])["pos"].explode().to_list()
    return {row["doc_id"], text_id(row["query"])} | {text_id(t) for t in same_doc}


def test_no_eval_query_is_scored_against_what_mining_masks_for_it(tmp_path: Path) -> None:
    g = _masked_rows()
    corpus, queries, qrels = eval_tables(g)
    ids = set(corpus["_id"])
    # one task per document, the tasks balanced: D and E give one query each, of different tasks
    kept = g.filter(pl.col("qid").is_in(queries["_id"].implode()))
    assert kept.height == 2 and kept["doc_id"].n_unique() == 2 and kept["task"].n_unique() == 2
    # the guarantee, for every query written: no corpus document is its document, its own text or
    # a passage cut from its document (a positive of any row of the document) unless relevant to it
    rel = {(q, c) for q, c, _ in qrels.iter_rows()}
    for r in kept.iter_rows(named=True):
        assert all(own not in ids or (r["qid"], own) in rel for own in _own_passages(g, r))
        assert any(q == r["qid"] for q, _ in rel)
    left_out: dict[str, object] = {}
    eval_tables(g, left_out)
    assert left_out["same_document"] == 3 and left_out["queries"] == 3
    assert sum(left_out["queries_by_task"].values()) == 3  # type: ignore[union-attr]
    write_beir(tmp_path, corpus, queries, qrels)
    from tripleforge.evaluation import load_dataset

    d = load_dataset(tmp_path).diagnostics
    assert d["evaluated_queries"] == 2 and d["qrels_unknown_docs"] == 0 and d["queries_without_qrels"] == 0


def test_a_masked_document_leaves_the_corpus_and_a_needed_one_takes_its_queries() -> None:
    """The masks within one task per document: DOC_E, only a negative of D's query, leaves the
    corpus; a document masked for a query but relevant to another one must stay, and the query
    goes."""
    from tripleforge.beir import masked_for_queries, relevant_docs

    g = pl.DataFrame([
        _row("c_d", "code_context_retrieval", DOC_D[:25], DOC_D, [DOC_D[25:]], [DOC_E]),
        _row("s_e", "code_summary_retrieval", DOC_E.replace(" = ", "  =  "), DOC_E, ["Greets a person."], []),
        # a web query whose positive is DOC_E (a copy of the document in another file, say)
        _row("w_x", "web_code_retrieval", "greet someone", DOC_D + "#", [DOC_E], []),
    ], schema_overrides={"prompt": pl.String})
    texts = {text_id(t) for col in ("pos", "neg") for ts in g[col] for t in ts}
    docs, queries = masked_for_queries(g, pl.Series(sorted(texts)), relevant_docs(g))
    # DOC_E is s_e's own text and document but w_x's positive: it stays, s_e goes
    assert docs.to_list() == [] and queries.to_list() == ["s_e"]
    no_w = g.filter(pl.col("qid") != "w_x")
    texts = {text_id(t) for col in ("pos", "neg") for ts in no_w[col] for t in ts}
    docs, queries = masked_for_queries(no_w, pl.Series(sorted(texts)), relevant_docs(no_w))
    assert docs.to_list() == [text_id(DOC_E)] and queries.to_list() == []


def test_tasks_are_balanced_over_documents() -> None:
    from tripleforge.beir import one_task_per_document

    docs = [f"def f{i}(x):\n    return x + {i}\n" for i in range(6)]
    rows = [_row(f"{t}{i}", t, f"q {t} {i}", d, [f"{t} pos {i}"], []) for i, d in enumerate(docs) for t in ("a", "b", "c")]
    g = pl.DataFrame(rows, schema_overrides={"prompt": pl.String})
    kept = one_task_per_document(g)
    assert kept["doc_id"].n_unique() == 6 and kept.height == 6
    assert kept.group_by("task").len().sort("task")["len"].to_list() == [2, 2, 2]
    assert one_task_per_document(g.reverse()).sort("qid").equals(kept.sort("qid"))  # row order does not matter


def test_rows_of_one_query_text_judge_each_others_positives_relevant() -> None:
    # two candidate rows of one query (whitespace apart): each positive answers both, as mining
    # masks them for each other; neither may count as a miss for the other
    g = pl.DataFrame([
        _row("a", "t", "sum a list", DOC_D, ["sum(xs)"], ["max(xs)"]),
        _row("b", "t", " sum  a list", DOC_D, ["functools.reduce(add, xs)"], []),
        _row("c", "t", "other", DOC_E, ["x"], []),
    ], schema_overrides={"prompt": pl.String})
    _, _, qrels = eval_tables(g)
    both = sorted([text_id("sum(xs)"), text_id("functools.reduce(add, xs)")])
    assert qrels.filter(pl.col("query-id") != "c").rows() == [(q, c, 1) for q in ("a", "b") for c in both]


def test_stage_metrics_count_what_the_eval_split_leaves_out() -> None:
    from tripleforge.convert import convert_metrics

    c = convert_all(mined_frame(n_docs=8, n_neg=3), "mined.parquet", ConvertFormatsParams())
    left_out: dict[str, object] = {}
    eval_tables(c.grouped.filter(pl.col("split") == "eval"), left_out)
    # the test miner's queries are neither their documents nor cut from them, and each document
    # has one task: nothing to leave out
    assert convert_metrics(c, {"left_out": left_out})["eval"]["left_out"] == {
        "other_candidates": 0, "same_document": 0, "masked_documents": 0, "masked_queries": 0, "queries": 0,
        "queries_by_task": {}}


def test_one_query_per_generation_job_reaches_the_eval() -> None:
    """With generate.n_candidates 2, every candidate was an eval query: copies of one query weighted
    their document twice, and code_context cuts, masked for each other, lost the document's queries."""
    g = mined_frame(n_docs=8, candidates=3, n_neg=3).filter(pl.col("split") == "eval")
    c = convert_all(g, "mined.parquet", ConvertFormatsParams())
    left_out: dict[str, object] = {}
    _, queries, qrels = eval_tables(c.grouped, left_out)
    assert g["doc_id"].n_unique() == 2 and queries.height == 2  # one per document
    first = set(g.filter(pl.col("candidate_idx") == 0)["pair_id"].to_list())
    assert set(queries["_id"].to_list()) == first and set(qrels["query-id"].to_list()) == first
    assert left_out["other_candidates"] == 4 and left_out["queries"] == 4  # 2 documents x 2 later candidates
    # rows from files (no candidate_idx) all stay, as before
    ext = c.grouped.with_columns(candidate_idx=pl.lit(None, pl.Int64), doc_id=pl.lit(None, pl.String))
    assert eval_tables(ext)[1].height == 6
