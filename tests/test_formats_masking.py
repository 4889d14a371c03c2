"""External files get mining's guarantee: no negative equal to a positive of its query, no
repeated negative; removed and counted in both strict modes, scores kept aligned."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import polars as pl
import pytest
from formats_data import mined_frame, write_lines

from tripleforge import formats as F
from tripleforge.convert import ConvertFormatsParams, convert_all, convert_metrics
from tripleforge.hashing import normalize_text
from tripleforge.io import is_blank

POS = "with open(p) as f: pass"


@pytest.fixture(params=["hashes", "colliding hashes", "no compiled module"])
def hashes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Masking compares hashes, then texts where hashes agree: with every hash equal, each
    negative takes the exact path, which must give the same result; so must the Polars hashes
    and checks a copy without the compiled module uses."""
    if request.param == "no compiled module":
        monkeypatch.setitem(sys.modules, "tripleforge._whitespace", None)  # an import of it fails
        assert F._compiled_whitespace() is None
    if request.param == "colliding hashes":
        monkeypatch.setattr(F, "normalized_hash_series", lambda texts, seed: pl.repeat(7, len(texts), dtype=pl.UInt64, eager=True))
        monkeypatch.setattr(pl.Series, "hash", lambda self, *a, **k: pl.repeat(7, len(self), dtype=pl.UInt64, eager=True))
    return str(request.param)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.usefixtures("hashes")
def test_triplets_negative_equal_to_a_positive_or_repeated_is_removed_and_counted(tmp_path: Path, strict: bool) -> None:
    rows = [
        # the tryout's line: the positive among the negatives, and a negative twice
        {"query": "open file", "pos": [POS], "neg": [POS, "import os", "import os"]},
        # whitespace-normalized comparison; scores follow their texts
        {"query": "read json", "pos": ["json.load(f)", "x"], "neg": ["json.load( f )", "  json.load(f)\n", "y", "y "],
         "pos_scores": [0.9, 0.8], "neg_scores": [0.7, 0.6, 0.5, 0.4]},
        # another row of the same query (normalized): its positive is masked here too, as mining does
        {"query": " open  file", "pos": ["os.open(p)"], "neg": ["with open(p)  as f:\tpass", "os.open(p)", "ok"]},
        {"query": "clean", "pos": ["a"], "neg": ["b", "c"], "pos_scores": [1.0], "neg_scores": [0.2, 0.1]},
        # a row left without negatives stays (a valid triplets row), its score list empty too
        {"query": "only", "pos": ["p"], "neg": ["p "], "pos_scores": [1.0], "neg_scores": [0.3]},
    ]
    g, p, rec = F.read_external(write_lines(tmp_path / "t.jsonl", rows), strict=strict)
    assert g["neg"].to_list() == [["import os"], ["json.load( f )", "y"], ["ok"], ["b", "c"], []]
    assert g["neg_scores"].to_list() == [None, [0.7, 0.5], None, [0.2, 0.1], []]
    assert g["pos"].to_list() == [r["pos"] for r in rows]  # positives are never touched
    assert dict(rec.drops) == {"negative_is_positive": 5, "duplicate_negative": 2}
    # the pairs frame is derived from the cleaned rows: no contradiction, pids follow the new positions
    negs = p.filter(pl.col("label") == 0)
    assert negs.filter(pl.col("qid") == f"{tmp_path / 't.jsonl'}:2").select("passage", "pid", "score").rows() == [
        ("json.load( f )", f"{tmp_path / 't.jsonl'}:2:n0", 0.7), ("y", f"{tmp_path / 't.jsonl'}:2:n1", 0.5)]
    assert _no_contradiction(p)


def _no_contradiction(p: pl.DataFrame) -> bool:
    """No label-0 pair equals a label-1 pair of the same (normalized) query, none repeats in a qid."""
    keyed = p.select("qid", "label", q=F.normalized(pl.col("query")), t=F.normalized(pl.col("passage")))
    neg = keyed.filter(pl.col("label") == 0)
    clash = neg.join(keyed.filter(pl.col("label") == 1), on=["q", "t"], how="semi")
    return clash.height == 0 and not neg.select(pl.struct("qid", "t").is_duplicated().any()).item()


@pytest.mark.usefixtures("hashes")
def test_candidates_listed_above_and_below_the_threshold_keep_only_the_positive(tmp_path: Path) -> None:
    rows = [{"query": "q", "qid": "q1", "candidates": [
        {"text": POS, "score": 0.8}, {"text": POS + " ", "score": 0.1},
        {"text": "z", "score": 0.2, "pid": "first"}, {"text": "z", "score": 0.3}, {"text": "w", "score": 0.0}]}]
    g, p, rec = F.read_external(write_lines(tmp_path / "c.jsonl", rows))
    assert p.select("passage", "pid", "label").rows() == [(POS, "q1:c0", 1), ("z", "first", 0), ("w", "q1:c4", 0)]
    assert g["pos"].to_list() == [[POS]] and g["neg"].to_list() == [["z", "w"]]
    assert g["neg_scores"].to_list() == [[0.2, 0.0]]
    assert dict(rec.drops) == {"negative_is_positive": 1, "duplicate_negative": 1}


@pytest.mark.usefixtures("hashes")
def test_pairs_lines_without_qid_are_masked_by_query_text(tmp_path: Path) -> None:
    # without qids lines are grouped by query text, and "q" says x is relevant and not relevant
    rows = [{"query": "q", "passage": "x", "label": 1}, {"query": "q ", "passage": " x", "label": 0},
            {"query": "q", "passage": "y", "label": 0}, {"query": "other", "passage": "x", "label": 0}]
    g, p, rec = F.read_external(write_lines(tmp_path / "p.jsonl", rows))
    assert p.select("query", "passage", "label").rows() == [("q", "x", 1), ("q", "y", 0), ("other", "x", 0)]
    assert dict(rec.drops) == {"negative_is_positive": 1, "no_positive": 1}  # "other" has no positive
    assert g.select("pos", "neg").rows() == [(["x"], ["y"])]


def test_convert_all_counts_the_removed_negatives_per_source(tmp_path: Path) -> None:
    ext = write_lines(tmp_path / "t.jsonl", [{"query": "open file", "pos": [POS], "neg": [POS, "b", "b"]}])
    c = convert_all(mined_frame(n_docs=4), "m.parquet", ConvertFormatsParams(external=[str(ext)]))
    m = convert_metrics(c, {})
    assert m["dropped"] == {"duplicate_negative": 1, "negative_is_positive": 1}
    assert m["by_source"][str(ext)]["dropped"] == m["dropped"]
    assert c.grouped.filter(pl.col("source_format") == "triplets")["neg"].to_list() == [["b"]]
    assert c.grouped.filter(pl.col("source_format") == "mined").equals(
        convert_all(mined_frame(n_docs=4), "m.parquet", ConvertFormatsParams()).grouped)
    doc = (Path(__file__).parents[1] / "docs" / "formats.md").read_text()
    assert "`negative_is_positive` / `duplicate_negative` are counted **in both strict modes**" in doc


def test_a_negative_another_source_gives_as_the_positive_is_removed(tmp_path: Path) -> None:
    """One file says s[::-1] answers the query, another that it does not; and a mined negative
    that an external file has as its query's answer."""
    q = "how do I reverse a string"
    xa = write_lines(tmp_path / "xa.jsonl", [{"query": q, "pos": ["s[::-1]"], "neg": ["len(s)"]}])
    xb = write_lines(tmp_path / "xb.jsonl", [{"query": q + " ", "pos": ["reversed(s)"], "neg": [" s[::-1]", "x"],
                                               "pos_scores": [0.9], "neg_scores": [0.8, 0.1]}])
    xc = write_lines(tmp_path / "xc.jsonl", [{"query": q, "passage": "s[::-1]", "label": 0},
                                             {"query": q, "passage": "y", "label": 0}])
    mined = mined_frame(n_docs=4, eval_every=100)
    first = mined.filter(pl.col("split") == "train").row(0, named=True)
    xd = write_lines(tmp_path / "xd.jsonl", [{"query": first["query"], "pos": [first["neg"][1]], "neg": ["z"]}])
    c = convert_all(mined, "m.parquet", ConvertFormatsParams(external=[str(p) for p in (xa, xb, xc, xd)]))
    m = convert_metrics(c, {})
    assert m["dropped"] == {"negative_is_positive": 3, "no_positive": 1}  # xc's query has no positive
    assert [m["by_source"][str(p)]["dropped"] for p in (xa, xb, xc, xd)] == [
        {}, {"negative_is_positive": 1}, {"negative_is_positive": 1, "no_positive": 1}, {}]
    assert m["by_source"]["m.parquet"]["dropped"] == {"negative_is_positive": 1}
    g = c.grouped.filter(pl.col("source").str.contains("xb.jsonl"))
    assert g.select("neg", "neg_scores").rows() == [(["x"], [0.1])]
    assert c.pairs.filter(pl.col("label") == 0).filter(pl.col("passage").str.strip_chars() == "s[::-1]").height == 0
    assert c.pairs.filter(pl.col("source").str.contains("xc.jsonl"))["passage"].to_list() == ["y"]
    mined_row = c.grouped.filter(pl.col("qid") == first["pair_id"]).row(0, named=True)
    assert first["neg"][1] not in mined_row["neg"] and len(mined_row["neg"]) == len(first["neg"]) - 1
    assert m["by_source"]["m.parquet"]["pairs"] == c.pairs.filter(pl.col("source_format") == "mined").height
    # the row's label-0 pids are the positions left in its `neg`, as after a removal within one file
    negs = c.pairs.filter((pl.col("qid") == first["pair_id"]) & (pl.col("label") == 0))
    assert negs.select("passage", "pid").rows() == [(t, f"{first['pair_id']}:n{i}") for i, t in enumerate(mined_row["neg"])]
    assert c.pairs.select("qid", "pid").is_unique().all()


def test_sources_masked_against_each_other_keep_every_other_pair(tmp_path: Path) -> None:
    """Two rows of one file share a qid and a negative: no pair of theirs is lost when another
    source is read (the cross-source check looks for contradictions, not repeats), and a copy of
    one row in another file takes that row's pairs only."""
    shared = [{"qid": "k", "query": "merge dicts", "pos": ["a | b"], "neg": ["a + b"]},
              {"qid": "k", "query": "merge dicts", "pos": ["{**a, **b}"], "neg": ["a + b"]}]
    t2 = write_lines(tmp_path / "t2.jsonl", shared)
    other = write_lines(tmp_path / "other.jsonl", [{"query": "something else", "pos": ["zzz"], "neg": ["yyy"]}])
    c = convert_all(None, "", ConvertFormatsParams(include_mined=False, external=[str(t2), str(other)]))
    m = convert_metrics(c, {})
    assert m["dropped"] == {} and m["by_source"][str(t2)]["pairs"] == 4
    assert c.pairs.filter(pl.col("qid") == "k").height == 4 and c.pairs.height == m["pairs"]["rows"] == 6
    copy = write_lines(tmp_path / "t3.jsonl", [{k: v for k, v in shared[0].items() if k != "qid"}])
    c = convert_all(None, "", ConvertFormatsParams(include_mined=False, external=[str(copy), str(t2)]))
    m = convert_metrics(c, {})
    assert m["by_source"][str(t2)]["dropped"] == {"duplicate_record": 1}
    assert m["by_source"][str(t2)]["triplets"] == 1 and m["by_source"][str(t2)]["pairs"] == 2
    kept = c.pairs.filter(pl.col("source").str.contains("t2.jsonl"))
    assert kept["passage"].to_list() == ["{**a, **b}", "a + b"]


def test_normalized_expression_is_normalize_text() -> None:
    # every code point as a separator, alone and in runs, at the ends and inside
    chars = [chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i <= 0xDFFF]
    texts = [f"a{c}b" for c in chars] + [f"{c}{c}x {c}y{c}" for c in chars]
    got = pl.Series(texts).to_frame("t").select(F.normalized(pl.col("t")))["t"].to_list()
    assert [t for t, n in zip(texts, got, strict=True) if normalize_text(t) != n] == []


def test_normalized_series_is_normalize_text_and_rewrites_only_what_changes() -> None:
    chars = [chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i <= 0xDFFF]
    texts: list[str | None] = [f"a{c}b" for c in chars] + [f"{c}{c}x {c}y{c}" for c in chars]
    texts += ["plain ascii text", " lead", "trail ", "two  spaces", "tab\there", "", None]
    got = F.normalized_series(pl.Series("t", texts))
    assert got.to_list() == [None if t is None else normalize_text(t) for t in texts]
    clean = pl.Series("t", ["a b", "sort list"])
    assert F.normalized_series(clean) is clean  # nothing to rewrite: the input comes back as is


def test_normalized_series_on_long_texts_slices_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # texts past 12 bytes live outside their view; a slice has an offset; chunks are joined
    ws = ["\t", "\n", "\u00a0", "\u2003", "\u3000", "\x1f", "  "]
    rng = random.Random(5)
    texts = ["".join(rng.choice(["word", "é", "\x00", " ", *ws]) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts += ["x" * 12, " " + "x" * 12, "x" * 13 + "  ", "\n" * 40, "def f():\n    return 1\n"]
    want = [normalize_text(t) for t in texts]
    series = pl.Series("code", texts)
    got = F.normalized_series(series)
    assert got.name == "code" and got.to_list() == want
    assert F.normalized_series(series.slice(101, 777)).to_list() == want[101:878]
    chunked = pl.concat([series.slice(0, 1500), series.slice(1500)], rechunk=False)
    assert chunked.n_chunks() == 2 and F.normalized_series(chunked).to_list() == want
    assert F.normalized_series(pl.Series("n", [None, None])).to_list() == [None, None]
    # past 65536 texts a share each for two threads, each writing its own buffer
    monkeypatch.setattr(F, "cpus", lambda: 2)
    many = pl.concat([series] * 45)
    assert many.len() > 2 * 65536 and F.normalized_series(many).to_list() == want * 45


def test_blank_series_is_is_blank() -> None:
    chars = [chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i <= 0xDFFF]
    texts: list[str | None] = [*chars, *(c * 7 for c in chars), "", None, " \t\n" * 9, " \u3000 x", "x" * 20]
    series = pl.Series("t", texts)
    want = series.to_frame().select(is_blank(pl.col("t")))["t"].to_list()
    assert F.blank_series(series).to_list() == want
    assert want[-4:] == [None, True, False, False] and F.blank_series(series.slice(5, 99)).to_list() == want[5:104]
    assert F.blank_series(pl.Series("n", [None])).to_list() == [None]
    # a null made by when/then keeps its old view: the check must go by validity, not the view
    nulled = pl.select(pl.when(pl.Series([True, False, True])).then(pl.Series(["x", "  " * 20, " "])).otherwise(None)).to_series()
    assert F.blank_series(nulled).to_list() == [False, None, True]


def test_without_the_compiled_normalizer_the_values_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["a  b", " x\t", "plain", None, "\u3000y\n\nz ", "é\u00a0é", "", " "]
    want = F.normalized_series(pl.Series("t", texts)).to_list()
    blank = F.blank_series(pl.Series("t", texts)).to_list()
    monkeypatch.setitem(sys.modules, "tripleforge._whitespace", None)  # an import of it fails
    assert F._compiled_whitespace() is None
    assert F.normalized_series(pl.Series("t", texts)).to_list() == want == [
        None if t is None else normalize_text(t) for t in texts]
    assert F.blank_series(pl.Series("t", texts)).to_list() == blank == [False, False, False, None, False, False, True, True]


def test_exact_copies_of_a_record_are_dropped_and_counted(tmp_path: Path) -> None:
    """A record pasted twice reached every output: in one FlagEmbedding batch each copy's positive
    is an in-batch negative of the other."""
    t = {"query": "q", "pos": ["a"], "neg": ["b"]}
    other = {"query": "q", "pos": ["a"], "neg": ["c"]}  # same query, other negatives: kept
    g, p, rec = F.read_external(write_lines(tmp_path / "t.jsonl", [t, other, t, t]))
    assert g.select("neg").to_series().to_list() == [["b"], ["c"]] and rec.drops["duplicate_record"] == 2
    assert p.height == 4 and g["source"].to_list() == [f"{tmp_path / 't.jsonl'}:{i}" for i in (1, 2)]
    # pairs: a repeated line of one query, and a qid-less query whose lines repeat an earlier one's
    lines = [{"qid": "1", "query": "q", "passage": "a", "label": 1}, {"qid": "1", "query": "q", "passage": "a", "label": 1},
             {"qid": "1", "query": "q", "passage": "n", "label": 0},
             {"query": "r", "passage": "x", "label": 1}, {"query": "r", "passage": "x", "label": 1}]
    g, p, rec = F.read_external(write_lines(tmp_path / "p.jsonl", lines))
    assert g.select("query", "pos", "neg").rows() == [("q", ["a"], ["n"]), ("r", ["x"], [])]
    assert p.select("query", "passage").rows() == [("q", "a"), ("q", "n"), ("r", "x")]
    assert rec.drops["duplicate_record"] == 2
    # copies that differ in a score are not copies
    scored = [{**t, "pos_scores": [0.9], "neg_scores": [0.1]}, {**t, "pos_scores": [0.8], "neg_scores": [0.1]}]
    g, _, rec = F.read_external(write_lines(tmp_path / "s.jsonl", scored))
    assert g.height == 2 and "duplicate_record" not in rec.drops


def test_any_item_blank_finds_the_rows_with_a_blank_item() -> None:
    def blank_in_lists(lists: pl.Series, field: str | None = None) -> pl.Series:
        return F.any_item(lists, F.blank_series, field)

    lists = pl.Series("l", [["a", " "], None, [], ["b", None], ["\u2028\t", "c"], ["x" * 20, ""]] * 3)
    want = [True, False, False, False, True, True] * 3
    assert blank_in_lists(lists).to_list() == want
    assert blank_in_lists(lists.slice(4, 9)).to_list() == want[4:13]
    assert blank_in_lists(pl.Series("l", [["a"], None], dtype=pl.List(pl.String))).to_list() == [False, False]
    assert blank_in_lists(pl.Series("l", [None, None], dtype=pl.List(pl.String))).to_list() == [False, False]
    cands = pl.Series("c", [[{"text": "a", "score": 1.0}], None, [{"text": " ", "score": None}, None], []],
                      dtype=pl.List(F.CANDIDATE))
    assert blank_in_lists(cands, "text").to_list() == [False, False, True, False]


def test_any_item_is_list_eval_any() -> None:
    lists = pl.Series("s", [[0.5, None], None, [], [float("nan")], [1.0, float("inf")], [2.0]] * 3)
    frame = lists.to_frame()
    for test, expr in ((pl.Series.is_null, pl.element().is_null()), (lambda x: ~x.is_finite(), ~pl.element().is_finite())):
        want = frame.select(pl.col("s").list.eval(expr).list.any().fill_null(False)).to_series().to_list()
        assert F.any_item(lists, test).to_list() == want and any(want)
        assert F.any_item(lists.slice(2, 11), test).to_list() == want[2:13]
    assert F.any_item(lists, pl.Series.is_null).to_list()[:6] == [True, False, False, False, False, False]
    cands = pl.Series("c", [[{"text": "a", "score": None}], None, [None, {"text": None, "score": 1.0}], []],
                      dtype=pl.List(F.CANDIDATE))
    assert F.any_item(cands, pl.Series.is_null, "text").to_list() == [False, False, True, False]  # a null candidate too
    assert F.any_item(cands, pl.Series.is_null, "score").to_list() == [True, False, True, False]
    assert F.any_item(cands.slice(1, 1), pl.Series.is_null, "text").to_list() == [False]


def test_normalized_hash_series_is_equal_exactly_for_equal_normalized_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    pieces = ["a", "b", " ", "  ", "\t", "\n", "\u3000", "é", "x" * 13, "\u2028", "\x1c"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 9))) for _ in range(3000)] + ["x" * 40] * 2
    series = pl.Series("t", [*texts, None])
    monkeypatch.setattr(F, "cpus", lambda: 4)  # `many` below (150k texts) is hashed in shares on threads
    hashes = F.normalized_hash_series(series, 1).to_list()
    by_text: dict[str, set[int]] = {}
    for t, h in zip(texts, hashes, strict=False):
        by_text.setdefault(normalize_text(t), set()).add(h)
    assert all(len(h) == 1 for h in by_text.values())  # equal normalized texts, one hash
    assert len({next(iter(h)) for h in by_text.values()}) == len(by_text)  # distinct texts, distinct hashes
    assert F.normalized_hash_series(series, 2).to_list() != hashes  # the seed matters
    assert F.normalized_hash_series(series.slice(7, 100), 1).to_list() == hashes[7:107]
    many = pl.Series("t", texts * 50)
    assert F.normalized_hash_series(many, 1).to_list() == hashes[: len(texts)] * 50  # across threads
    assert F.normalized_hash_series(pl.Series("n", [None, None], dtype=pl.String), 1).len() == 2
    # an exploded column repeats a record's view for each of its items (so does any gather): a
    # repeated view takes the hash just made, the view after it (another text, a null) a new one
    at = [i for i in range(400) for _ in range(i % 4)] + [0, 3002, 0, 1, 1]  # 3002: the null
    repeated = series.gather(at)
    views = F._string_views(repeated)[2].to_pybytes()
    assert views[16 * 3 : 16 * 4] == views[16 * 4 : 16 * 5]  # (the test tests the shortcut)
    fresh = pl.Series("t", repeated.to_list())  # the same texts, each with a view of its own
    want = F.normalized_hash_series(fresh, 1).to_list()
    assert F.normalized_hash_series(repeated, 1).to_list() == want
    assert want[:-5] == [hashes[i] for i in at[:-5]] and want[-3:] == [hashes[0], hashes[1], hashes[1]]
    assert F.normalized_hash_series(repeated.slice(3, 200), 1).to_list() == want[3:203]
