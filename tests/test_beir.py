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
