"""pair-similar with the real MiniLM on a tiny pool."""

from __future__ import annotations

import numpy as np
import polars as pl

from tripleforge.embed import EmbedderConfig, encode_documents
from tripleforge.hashing import text_id
from tripleforge.pairing import PairSimilarParams, pair_similar, token_jaccard

PY = [
    "def add(a, b):\n    return a + b",
    "def add(a, b):\n    return a + b + b",  # near-duplicate of the first (same token set)
    "def add_three(a, b, c):\n    return a + b + c",
    "def read_file(path):\n    return open(path).read()",
    "def mean(xs):\n    return sum(xs) / len(xs)",
]
JS = ["function add(a, b) { return a + b; }", "function sub(a, b) { return a - b; }"]


def frame(texts, lang):
    return pl.DataFrame({"doc_id": [text_id(t) for t in texts], "text": texts, "code_language": [lang] * len(texts)})


def test_jaccard():
    assert token_jaccard("a b c", "a  b\nc") == 1.0
    assert token_jaccard("a b", "c d") == 0.0


def test_pairs_skip_self_near_duplicates_and_top(tmp_path):
    pool = pl.concat([frame(PY, "python"), frame(JS, "javascript")])
    docs = pool.filter(pl.col("doc_id").is_in([text_id(PY[0]), text_id(JS[0])]))
    params = PairSimilarParams(skip_top=0, search_depth=10, cache_dir=str(tmp_path))
    out, counts = pair_similar(docs, pool, params)
    py = out.filter(pl.col("code_language") == "python").row(0, named=True)
    js = out.filter(pl.col("code_language") == "javascript").row(0, named=True)
    # reference: best same-language candidate that is neither itself nor its whitespace twin
    emb = encode_documents(PY, EmbedderConfig(), cache_dir=str(tmp_path))
    sims = emb[2:] @ emb[0]
    assert py["similar_text"] == PY[2 + int(np.argmax(sims))]
    assert py["similar_score"] == float(np.max(sims)) or abs(py["similar_score"] - float(np.max(sims))) < 1e-5
    assert js["similar_text"] == JS[1]  # only same-language candidates
    assert counts["skipped_self"] == 2 and counts["skipped_near_duplicate"] == 1 and counts["paired"] == 2

    # skip_top larger than the javascript pool: no candidate, counted, null kept
    out2, counts2 = pair_similar(docs, pool, params.model_copy(update={"skip_top": 2}))
    js2 = out2.filter(pl.col("code_language") == "javascript").row(0, named=True)
    assert js2["similar_doc_id"] is None and js2["similar_score"] is None
    assert counts2["no_candidate"] == 1 and out2.height == 2


def test_min_score_leaves_weak_candidates_unpaired_and_counts_them(tmp_path):
    pool = frame(PY, "python")
    docs = pool.filter(pl.col("doc_id") == text_id(PY[0]))
    params = PairSimilarParams(skip_top=0, search_depth=10, cache_dir=str(tmp_path))
    _, counts = pair_similar(docs, pool, params)
    best = pair_similar(docs, pool, params)[0]["similar_score"][0]
    kept, c_kept = pair_similar(docs, pool, params.model_copy(update={"min_score": best - 1e-6}))
    assert kept["similar_score"][0] == best and c_kept["below_min_score"] == 0
    none, c_none = pair_similar(docs, pool, params.model_copy(update={"min_score": best + 1e-6}))
    assert none["similar_doc_id"][0] is None and c_none["below_min_score"] == 1 and c_none["no_candidate"] == 1
    assert counts["below_min_score"] == 0  # null: no floor


def test_disabled_copies_with_null_columns(tmp_path):
    docs = frame(PY[:2], "python")
    out, counts = pair_similar(docs, docs.head(0), PairSimilarParams(enabled=False))
    assert out.height == 2 and out.get_column("similar_text").null_count() == 2
    assert out.schema["similar_score"] == pl.Float64 and counts["enabled"] is False


def test_text_of_the_wrong_type_is_one_line_error(tmp_path):
    import pytest

    from tripleforge.errors import UserError

    docs = frame(PY[:2], "python")
    bad = docs.with_columns(pl.int_range(pl.len()).alias("text"))
    with pytest.raises(UserError, match=r"^docs: column 'text' has type Int64, expected String$"):
        pair_similar(bad, docs, PairSimilarParams(cache_dir=str(tmp_path)))
    with pytest.raises(UserError, match=r"^pool: column 'text' has type Int64, expected String$"):
        pair_similar(docs, bad, PairSimilarParams(cache_dir=str(tmp_path)))


def test_blank_texts_are_dropped_and_counted(tmp_path):
    pool = pl.concat([frame(PY, "python"),
                      pl.DataFrame({"doc_id": ["n1", "b1"], "text": [None, "  \n"], "code_language": ["python"] * 2})])
    docs = pool.filter(pl.col("doc_id").is_in([text_id(PY[0]), "n1", "b1"]))
    out, counts = pair_similar(docs, pool, PairSimilarParams(skip_top=0, search_depth=10, cache_dir=str(tmp_path)))
    assert out.get_column("doc_id").to_list() == [text_id(PY[0])]
    assert counts["docs_empty_text"] == 2 and counts["pool_empty_text"] == 2
    assert counts["docs"] == counts["paired"] + counts["no_candidate"] == 1
    assert out.get_column("similar_text").to_list()[0] in PY[2:]


def test_jaccard_max_above_one_is_rejected():
    """Token Jaccard is at most 1, so 1.5 filtered nothing while looking like a filter."""
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="jaccard_max"):
        PairSimilarParams(jaccard_max=1.5)
    assert PairSimilarParams(jaccard_max=1.0).jaccard_max == 1.0  # 1 = never skip


def test_repeated_doc_id_is_one_line_error(tmp_path):
    """A docs file with every doc twice was paired and written twice, uncounted."""
    import pytest

    from tripleforge.errors import UserError

    docs = frame(PY[:2], "python")
    twice = pl.concat([docs, docs])
    params = PairSimilarParams(cache_dir=str(tmp_path))
    first = text_id(PY[0])
    with pytest.raises(UserError, match=rf"^docs: doc_id '{first}' is on 2 rows \(2 ids repeated\); doc ids must be unique"):
        pair_similar(twice, frame(PY, "python"), params)
    with pytest.raises(UserError, match=rf"^docs: doc_id '{first}' is on 2 rows"):
        pair_similar(twice, twice.head(0), params.model_copy(update={"enabled": False}))
    with pytest.raises(UserError, match=rf"^pool: doc_id '{first}' is on 2 rows \(1 ids repeated\)"):
        pair_similar(docs, pl.concat([frame(PY, "python"), docs.head(1)]), params)


def test_empty_pool_is_one_line_error(tmp_path):
    """An empty pool paired nothing and exited 0 (every doc `no_candidate`), while mine-negatives
    refuses the same file: the docs are drawn from the pool, so an empty pool is a wrong file."""
    import pytest

    from tripleforge.errors import UserError

    docs = frame(PY[:2], "python")
    params = PairSimilarParams(cache_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"^pool: no documents to pair 2 docs with \(the pool file is empty\)$"):
        pair_similar(docs, docs.head(0), params)
    blank = docs.with_columns(text=pl.lit(" "))
    with pytest.raises(UserError, match=r"^pool: no documents .*\(all 2 rows have null or blank text\)$"):
        pair_similar(docs, blank, params)
    out, counts = pair_similar(docs.head(0), docs.head(0), params)  # no docs: nothing to pair, no error
    assert out.height == 0 and counts["paired"] == 0
