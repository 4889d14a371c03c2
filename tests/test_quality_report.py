"""Data-quality report over mined triplets: positive ranks, too-easy share, score margins."""

from __future__ import annotations

import polars as pl
import pytest

from tripleforge.errors import UserError
from tripleforge.quality_report import margins, quality_report, rank_histogram


def _triplets(**extra: list) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "pair_id": ["a", "b", "c", "d"],
            "pos_rank": [0, 3, None, 0],
            "pos_scores": [[0.9], [0.6, 0.7], [0.2], [0.8]],
            "neg_scores": [[0.5, 0.4], [0.75], [], [0.8, None]],
            "split": ["train", "train", "eval", "train"],
            **extra,
        },
        schema_overrides={"pos_rank": pl.Int64, "neg_scores": pl.List(pl.Float64)},
    )


def test_rank_histogram_and_shares() -> None:
    t = _triplets()
    hist = rank_histogram(t)
    counts = dict(zip(hist["bucket"].to_list(), hist["pairs"].to_list()))
    assert counts == {"1": 2, "2-5": 1, "6-10": 0, "11-20": 0, "21-50": 0, "51-100": 0, ">100": 0, "not_found": 1}
    rep = quality_report(t)
    assert rep["pairs"] == 4 and rep["too_easy_share"] == 0.5 and rep["not_found_share"] == 0.25
    assert rep["pos_rank"]["mean"] == pytest.approx((1 + 4 + 1) / 3, abs=1e-5)
    assert rep["splits"] == {"eval": 1, "train": 3}


def test_margins_use_best_positive() -> None:
    m = margins(_triplets())
    # a: 0.9-0.5, 0.9-0.4; b: best pos 0.7 - 0.75; d: 0.8-0.8 (the null negative is skipped)
    assert m.to_list() == pytest.approx([0.4, 0.5, -0.05, 0.0])
    rep = quality_report(_triplets())
    assert rep["margins"]["negatives"] == 4
    assert rep["margins"]["negative_share"] == 0.5  # b's negative beats its positive; d's ties
    assert rep["margins"]["min"] == pytest.approx(-0.05)


def test_prefers_dense_scores_when_a_teacher_rescored() -> None:
    t = _triplets(dense_pos_scores=[[1.0], [1.0], [1.0], [1.0]], dense_neg_scores=[[0.0], [0.0], [], [0.0]])
    assert margins(t).to_list() == [1.0, 1.0, 1.0]


def test_empty_and_missing_columns() -> None:
    rep = quality_report(_triplets().head(0))
    assert rep["pairs"] == 0 and rep["too_easy_share"] == 0.0 and rep["margins"]["mean"] is None
    with pytest.raises(UserError, match=r"t.parquet: missing column\(s\) pos_rank"):
        quality_report(_triplets().drop("pos_rank"), "t.parquet")


def test_reads_real_mining_output() -> None:
    """Contract check with `mining.py`: the report reads what mine-negatives writes (real MiniLM)."""
    from tripleforge.hashing import text_id
    from tripleforge.mining import MineParams, mine_negatives

    texts = ["def add(a, b):\n    return a + b", "def read_file(path):\n    return open(path).read()",
             "def reverse(s):\n    return s[::-1]", "def square(x):\n    return x * x",
             "def is_even(n):\n    return n % 2 == 0"]
    pairs = pl.DataFrame({
        "pair_id": ["p1", "p2"], "doc_id": [text_id(texts[0]), text_id(texts[1])], "task": ["t", "t"],
        "prompt": ["", ""], "query": ["add two numbers", "read a file"], "pos": [[texts[0]], [texts[1]]],
        "neg": [[], []],
    })
    pool = pl.DataFrame({"doc_id": [text_id(t) for t in texts], "text": texts})
    triplets, _ = mine_negatives(pairs, pool, MineParams(num_negatives=2, relative_margin=None))
    rep = quality_report(triplets)
    assert rep["pairs"] == 2
    assert sum(rep["pos_rank"]["counts"].values()) == 2
    assert rep["too_easy_share"] == 1.0  # these positives are the obvious top hit
    assert rep["margins"]["negatives"] == int(triplets["neg"].list.len().sum())
    assert rep["margins"]["min"] > 0
