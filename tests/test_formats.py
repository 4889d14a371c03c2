"""The four record formats: detection, validation (file:line), conversions and round trips."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from formats_data import SPEC_CANDIDATES, SPEC_LEGACY, SPEC_PAIR, SPEC_TRIPLET, write_lines

from tripleforge import formats as F
from tripleforge.errors import UserError

SPEC = {"triplets": SPEC_TRIPLET, "pairs": SPEC_PAIR, "candidates": SPEC_CANDIDATES, "legacy_nested": {
    "query": SPEC_LEGACY["query"], "pos": SPEC_LEGACY["pos"]}}


@pytest.mark.parametrize("fmt", list(SPEC))
def test_detects_each_spec_example(tmp_path: Path, fmt: str) -> None:
    rec = F.read_records(write_lines(tmp_path / "x.jsonl", [SPEC[fmt]]))
    assert rec.format == fmt
    assert rec.frame["source_format"].to_list() == [fmt]
    assert rec.frame["line"].to_list() == [1]


def test_spec_legacy_with_neg_is_triplets_unless_overridden(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "legacy.jsonl", [SPEC_LEGACY])
    assert F.read_records(path).format == "triplets"  # the spec's detection: pos + neg
    g, p, rec = F.read_external(path, override="legacy_nested")
    assert rec.format == "legacy_nested" and g["source_format"].to_list() == ["legacy_nested"]
    assert p["label"].to_list() == [1, 1, 0, 0]
    assert p["score"].to_list() == [0.93, 0.86, 0.14, 0.22]  # original scores kept


def test_triplets_round_trip_through_pairs(tmp_path: Path) -> None:
    g, p, _ = F.read_external(write_lines(tmp_path / "t.jsonl", [SPEC_TRIPLET]))
    assert p.select("passage", "label", "score").rows() == [
        (SPEC_TRIPLET["pos"][0], 1, 0.95), (SPEC_TRIPLET["pos"][1], 1, 0.88),
        (SPEC_TRIPLET["neg"][0], 0, 0.15), (SPEC_TRIPLET["neg"][1], 0, 0.08)]
    back = F.pairs_to_grouped(p)
    assert back.to_dicts() == g.to_dicts()
    assert F.to_record_dicts(back, "triplets") == [SPEC_TRIPLET]


def test_pairs_round_trip_through_triplets(tmp_path: Path) -> None:
    rows = [SPEC_PAIR, {**SPEC_PAIR, "passage": "Pizza is food.", "label": 0, "score": 0.1, "pid": "p2"},
            {"query": "other", "passage": "x", "label": 1, "qid": "q2", "pid": "p3", "score": 0.7}]
    g, p, _ = F.read_external(write_lines(tmp_path / "p.jsonl", rows))
    assert g["qid"].to_list() == ["q1", "q2"]  # grouped by query id, first-seen order
    assert g["pos"].to_list() == [[SPEC_PAIR["passage"]], ["x"]]
    assert g["neg"].to_list() == [["Pizza is food."], []]
    assert F.to_record_dicts(p, "pairs") == rows
    again = F.grouped_to_pairs(g)
    assert again.select("qid", "passage", "label", "score").rows() == p.select("qid", "passage", "label", "score").rows()
    # triplets hold no passage ids: given pids stay in the pairs frame, the trip names by position
    assert p["pid"].to_list() == ["p1", "p2", "p3"] and again["pid"].to_list() == ["q1:p0", "q1:n0", "q2:p0"]


def test_candidates_threshold_and_round_trip(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "c.jsonl", [SPEC_CANDIDATES])
    g, p, _ = F.read_external(path)
    assert p["label"].to_list() == [1, 1, 0]
    assert p["pid"].to_list() == ["c1", "c2", "c3"]
    assert g["pos_scores"].to_list() == [[0.94, 0.87]]
    _, p9, _ = F.read_external(path, threshold=0.9)
    assert p9["label"].to_list() == [1, 0, 0]
    again = F.grouped_to_pairs(g)
    assert again.select("qid", "passage", "label", "score").rows() == p.select("qid", "passage", "label", "score").rows()
    assert again["pid"].to_list() == ["q1:p0", "q1:p1", "q1:n0"]
    assert F.to_record_dicts(again, "pairs") == [  # candidates -> pairs -> triplets -> pairs
        {"query": SPEC_CANDIDATES["query"], "passage": c["text"], "label": int(c["score"] >= 0.5), "score": c["score"],
         "qid": "q1", "pid": f"q1:{'p' if c['score'] >= 0.5 else 'n'}{i}"}
        for i, c in zip([0, 1, 0], SPEC_CANDIDATES["candidates"], strict=True)]


def test_candidates_missing_score_labels_one_and_pid_is_generated(tmp_path: Path) -> None:
    row = {"query": "q", "candidates": [{"text": "a"}, {"text": "b", "score": 0.2}, {"text": "c", "score": 0.9}]}
    g, p, rec = F.read_external(write_lines(tmp_path / "c.jsonl", [row]))
    # 1.0 decides the label, but is no teacher score: `teacher` selection once preferred "a"
    assert p["score"].to_list() == [None, 0.2, 0.9]
    assert p["label"].to_list() == [1, 0, 1]
    assert g.row(0, named=True)["pos"] == ["a", "c"] and g["pos_scores"].to_list() == [None]
    assert rec.drops["partial_scores"] == 1
    assert p["pid"].to_list() == [f"{tmp_path / 'c.jsonl'}:1:c{i}" for i in range(3)]


def test_legacy_to_pairs_has_only_positives(tmp_path: Path) -> None:
    g, p, _ = F.read_external(write_lines(tmp_path / "l.jsonl", [SPEC["legacy_nested"]]))
    assert g["neg"].to_list() == [[]]
    assert p["label"].to_list() == [1, 1] and p["source_format"].unique().to_list() == ["legacy_nested"]
    assert F.pairs_to_grouped(p).to_dicts() == g.to_dicts()  # legacy -> pairs -> triplets round trip


def test_spec_legacy_round_trip_with_override(tmp_path: Path) -> None:
    g, p, _ = F.read_external(write_lines(tmp_path / "l.jsonl", [SPEC_LEGACY]), override="legacy_nested")
    back = F.pairs_to_grouped(p)
    assert back.to_dicts() == g.to_dicts()
    assert F.to_record_dicts(back, "legacy_nested") == [SPEC_LEGACY]


def test_every_row_keeps_source_and_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [SPEC_TRIPLET, "", {**SPEC_TRIPLET, "query": "second"}])
    g, p, _ = F.read_external(path)
    assert g["source"].to_list() == [f"{path}:1", f"{path}:3"]  # blank line 2 skipped, numbering kept
    assert set(p["source_format"]) == {"triplets"}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"query": "q", "pos": [], "neg": ["n"]}, "empty 'pos'"),
        ({"query": "q", "pos": ["a"], "neg": ["n"], "pos_scores": [1.0, 2.0]}, "'pos_scores' length differs"),
        ({"query": "q", "pos": ["a"], "neg": ["n", "m"], "neg_scores": [0.1]}, "'neg_scores' length differs"),
        ({"query": 5, "pos": ["a"], "neg": []}, "'query' must be str"),
        ({"query": "q", "pos": ["a", 3], "neg": []}, "'pos' must be list[str]"),
        ({"query": "q", "pos": "a", "neg": []}, "'pos' must be list[str]"),
        ({"query": "q", "passage": "p", "label": 2}, "'label' must be 0 or 1"),
        ({"query": "q", "passage": "p", "label": "1"}, "'label' must be int"),
        ({"query": "q", "passage": "p", "label": 1.5}, "'label' must be int"),
        ({"query": "q", "passage": "p"}, "missing 'label'"),
        ({"passage": "p", "label": 1}, "missing 'query'"),
        ({"query": "q", "candidates": []}, "empty 'candidates'"),
        ({"query": "q", "candidates": [{"score": 1}]}, "a candidate has no 'text'"),
        ({"query": "q", "candidates": [{"text": 7}]}, "'candidates' must be a list of objects"),
        ({"query": "", "pos": ["a"], "neg": ["n"]}, "empty 'query'"),
        ({"query": " \t", "passage": "p", "label": 1}, "empty 'query'"),
        ({"query": "q", "pos": [""], "neg": ["n"]}, "empty text in 'pos'"),
        ({"query": "q", "pos": ["a"], "neg": ["n", "  "]}, "empty text in 'neg'"),
        ({"query": "q", "passage": "", "label": 1}, "empty 'passage'"),
        ({"query": "q", "candidates": [{"text": "a"}, {"text": "\n"}]}, "a candidate has an empty 'text'"),
        ({"query": "q", "pos": ["a"], "neg": ["n"], "pos_scores": [float("nan")], "neg_scores": [0.1]},
         "NaN or infinite value in a score list"),
        ({"query": "q", "pos": ["a"], "neg": ["n"], "pos_scores": [1.0], "neg_scores": [float("-inf")]},
         "NaN or infinite value in a score list"),
        ({"query": "q", "passage": "p", "label": 1, "score": float("nan")}, "'score' is NaN or infinite"),
        ({"query": "q", "candidates": [{"text": "a", "score": float("inf")}]}, "a candidate 'score' is NaN or infinite"),
        ({"query": "q", "candidates": [{"text": "a"}, {"text": "b", "score": None}]},
         "a candidate 'score' is null (leave the key out to label it by the default 1.0, or give a number)"),
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_line_is_a_file_line_error(tmp_path: Path, row: object, reason: str) -> None:
    good = SPEC_PAIR if isinstance(row, dict) and ("passage" in row) else SPEC_TRIPLET
    if isinstance(row, dict) and "candidates" in row:
        good = SPEC_CANDIDATES
    path = write_lines(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(UserError) as err:
        F.read_records(path)
    assert str(err.value).startswith(f"{path}:2: ")
    assert reason in str(err.value)


def test_not_strict_drops_and_counts(tmp_path: Path) -> None:
    rows = [SPEC_TRIPLET, "{oops", {**SPEC_TRIPLET, "pos": []}, {"query": "x", "passage": "p", "label": 1},
            {"query": "no format"}, {**SPEC_TRIPLET, "query": "kept"}]
    g, p, rec = F.read_external(write_lines(tmp_path / "m.jsonl", rows), strict=False)
    assert g["query"].to_list() == [SPEC_TRIPLET["query"], "kept"]
    assert g["source"].str.split(":").list.last().to_list() == ["1", "6"]
    assert dict(rec.drops) == {"malformed": 1, "empty_pos": 1, "mixed_format": 1, "unknown_format": 1}


def test_not_strict_drops_and_counts_empty_texts_and_non_finite_scores(tmp_path: Path) -> None:
    rows = [{**SPEC_TRIPLET, "query": " "}, {**SPEC_TRIPLET, "pos": ["", "x"]}, {**SPEC_TRIPLET, "neg": ["", "y"]},
            {**SPEC_TRIPLET, "pos_scores": [float("nan"), 0.5]}, {**SPEC_TRIPLET, "query": "kept"}]
    g, _, rec = F.read_external(write_lines(tmp_path / "t.jsonl", rows), strict=False)
    assert g["query"].to_list() == ["kept"]
    assert dict(rec.drops) == {"empty_query": 1, "empty_text_in_pos": 1, "empty_text_in_neg": 1,
                               "nan_or_infinite_value_in_a_score_list": 1}
    pairs = [SPEC_PAIR, {**SPEC_PAIR, "passage": ""}, {**SPEC_PAIR, "score": float("inf")}]
    _, p, rec = F.read_external(write_lines(tmp_path / "p.jsonl", pairs), strict=False)
    assert p.height == 1 and dict(rec.drops) == {"empty_passage": 1, "score_is_nan_or_infinite": 1}
    cands = [SPEC_CANDIDATES, {"query": "q", "candidates": [{"text": " "}]},
             {"query": "q", "candidates": [{"text": "a", "score": float("nan")}]}]
    _, p, rec = F.read_external(write_lines(tmp_path / "c.jsonl", cands), strict=False)
    assert p.height == 3 and dict(rec.drops) == {"a_candidate_has_an_empty_text": 1,
                                                 "a_candidate_score_is_nan_or_infinite": 1}


def test_rows_read_counts_records_not_drops(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert F.read_records(empty, strict=False).rows_read == 0
    # a file of bad lines is not also an empty file
    rec = F.read_records(write_lines(tmp_path / "bad.jsonl", ["{x", "", "{y"]), strict=False)
    assert rec.rows_read == 2 and dict(rec.drops) == {"malformed": 2}
    rows = [SPEC_TRIPLET, "{x", {**SPEC_TRIPLET, "pos": []}]
    assert F.read_records(write_lines(tmp_path / "t.jsonl", rows), strict=False).rows_read == 3


def test_mixed_formats_in_one_file_is_an_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "mixed.jsonl", [SPEC_TRIPLET, SPEC_TRIPLET, SPEC_PAIR])
    with pytest.raises(UserError, match=r"mixed.jsonl:3: mixed formats: this line is pairs, line 1 is triplets"):
        F.read_records(path)


def test_triplets_rows_sharing_a_qid_number_their_pids_on(tmp_path: Path) -> None:
    rows = [{"qid": "k", "query": "merge dicts", "pos": ["a | b"], "neg": ["a + b", "x"]},
            {"qid": "k", "query": "merge dicts", "pos": ["{**a, **b}"], "neg": ["a + b"]},
            {"qid": "j", "query": "other", "pos": ["y"], "neg": ["z"]}]
    g, p, _ = F.read_external(write_lines(tmp_path / "t.jsonl", rows))
    assert p.select("qid", "pid").rows() == [("k", "k:p0"), ("k", "k:n0"), ("k", "k:n1"), ("k", "k:p1"), ("k", "k:n2"),
                                            ("j", "j:p0"), ("j", "j:n0")]
    # pairs -> triplets merges the qid's rows; the pids are the positions in the merged lists
    merged = F.pairs_to_grouped(p).filter(pl.col("qid") == "k").row(0, named=True)
    assert merged["pos"] == ["a | b", "{**a, **b}"] and merged["neg"] == ["a + b", "x", "a + b"]
    back = F.grouped_to_pairs(F.pairs_to_grouped(p))
    assert sorted(back.select("passage", "pid").rows()) == sorted(p.select("passage", "pid").rows())


def test_triplets_scored_on_one_side_lose_both_lists_and_are_counted(tmp_path: Path) -> None:
    base = {"query": "q", "pos": ["p"], "neg": ["n"]}
    rows = [{**base, "pos_scores": [0.9]}, {**base, "query": "r", "neg_scores": [0.1]},
            {**base, "query": "s", "neg": [], "pos_scores": [0.8]},
            {**base, "query": "t", "pos_scores": [0.7], "neg_scores": [0.2]}]
    g, p, rec = F.read_external(write_lines(tmp_path / "t.jsonl", rows))
    assert g.select("pos_scores", "neg_scores").rows() == [(None, None), (None, None), ([0.8], []), ([0.7], [0.2])]
    assert dict(rec.drops) == {"partial_scores": 2}
    assert p.filter(pl.col("query") == "q")["score"].to_list() == [None, None]


def test_triplets_lines_without_neg_are_triplets_without_negatives(tmp_path: Path) -> None:
    # the spec makes `neg` optional in triplets; such lines were once "mixed formats" (legacy)
    no_neg = {k: v for k, v in SPEC_TRIPLET.items() if k not in ("neg", "neg_scores")}
    for rows in ([SPEC_TRIPLET, no_neg], [no_neg, SPEC_TRIPLET]):
        g, p, rec = F.read_external(write_lines(tmp_path / "t.jsonl", rows))
        assert rec.format == "triplets" and g["neg"].list.len().to_list() == [len(r.get("neg", [])) for r in rows]
        assert p["label"].to_list().count(0) == 2
    pq = tmp_path / "null_neg.parquet"
    pl.DataFrame({"query": ["a", "b"], "pos": [["x"], ["y"]], "neg": [["n"], None]}).write_parquet(pq)
    g, _, rec = F.read_external(pq)
    assert rec.format == "triplets" and g["neg"].to_list() == [["n"], []]
    g, _, rec = F.read_external(write_lines(tmp_path / "o.jsonl", [no_neg]), override="triplets")
    assert rec.format == "triplets" and g["neg"].to_list() == [[]]
    # without any `neg` list the file stays legacy
    assert F.read_records(write_lines(tmp_path / "l.jsonl", [no_neg, no_neg])).format == "legacy_nested"


def test_a_json_array_file_is_named_as_such(tmp_path: Path) -> None:
    pretty = tmp_path / "a.json"
    pretty.write_text(json.dumps([SPEC_TRIPLET], indent=2))
    one_line = tmp_path / "b.json"
    one_line.write_text(json.dumps([SPEC_TRIPLET, SPEC_TRIPLET]))
    for path in (pretty, one_line):
        with pytest.raises(UserError, match=re.escape(f"{path}:1: ") + r".*\(a JSON array: JSONL takes one JSON object per line"):
            F.read_records(path)


def test_unknown_format_and_bad_override(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "u.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(UserError, match=r"u.jsonl:1: unknown format"):
        F.read_records(path)
    # a format's key set to null reads as missing: the message says "non-null value"
    nulled = write_lines(tmp_path / "n.jsonl", [{"query": "q", "passage": "p", "label": 1}, {"query": "q2", "passage": None, "label": 1}])
    with pytest.raises(UserError, match=r"n.jsonl:2: unknown format: no 'candidates', 'passage' or 'pos' key with a non-null value"):
        F.read_records(nulled)
    with pytest.raises(UserError, match="unknown format override 'nested'"):
        F.read_records(write_lines(tmp_path / "t.jsonl", [SPEC_TRIPLET]), override="nested")


def test_override_names_missing_field(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [SPEC_TRIPLET])
    with pytest.raises(UserError, match=r"t.jsonl:1: missing 'passage'"):
        F.read_records(path, override="pairs")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(UserError, match="empty.jsonl: empty file"):
        F.read_records(path)
    g, p, rec = F.read_external(path, strict=False)
    assert g.height == 0 and p.height == 0 and rec.drops["empty_file"] == 1


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("query,pos\n")
    with pytest.raises(UserError, match="unsupported file type '.csv'"):
        F.read_records(path)


def test_parquet_input_and_type_check(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pl.DataFrame([SPEC_TRIPLET, {**SPEC_TRIPLET, "query": "two"}]).write_parquet(path)
    g, p, rec = F.read_external(path)
    assert rec.format == "triplets" and g.height == 2 and p.height == 8
    assert g["source"].to_list() == [f"{path}:1", f"{path}:2"]
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"query": ["q"], "pos": ["not a list"], "neg": [["n"]]}).write_parquet(bad)
    with pytest.raises(UserError, match="column 'pos' has type String, expected List"):
        F.read_records(bad)


def test_a_parquet_file_polars_panics_on_is_a_one_line_error(tmp_path: Path) -> None:
    # Polars raises a Rust panic (a BaseException, not an Exception) on list_view columns
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "listview.parquet"
    pq.write_table(pa.table({"query": ["q"], "pos": pa.array([["p"]], type=pa.list_view(pa.string())),
                             "neg": [["n"]]}), path)
    with pytest.raises(UserError, match=r"listview.parquet: not a readable Parquet file \(PanicException\)"):
        F.read_records(path)


def test_parquet_rows_get_the_same_checks_as_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    base = {"query": "q", "pos": ["a"], "neg": ["n"], "pos_scores": [0.9], "neg_scores": [0.1]}
    for bad, reason in [({"query": ""}, "empty 'query'"), ({"pos": [" "]}, "empty text in 'pos'"),
                        ({"pos_scores": [float("nan")]}, "NaN or infinite value in a score list")]:
        pl.DataFrame([base, {**base, **bad}]).write_parquet(path)
        with pytest.raises(UserError, match=rf"t.parquet:2: {reason}"):
            F.read_records(path)


def test_parquet_candidates_may_lack_optional_struct_fields(tmp_path: Path) -> None:
    rows = [{"query": "q", "qid": "q1", "candidates": [{"text": "a", "score": 0.9}, {"text": "b", "score": 0.1}]}]
    pl.DataFrame(rows).write_parquet(tmp_path / "c.parquet")
    _, p, rec = F.read_external(tmp_path / "c.parquet")
    _, pj, _ = F.read_external(write_lines(tmp_path / "c.jsonl", rows))
    assert rec.frame.schema["candidates"] == pl.List(F.CANDIDATE)
    assert p.select("passage", "pid", "label", "score").rows() == pj.select("passage", "pid", "label", "score").rows()
    pl.DataFrame({"query": ["q"], "candidates": [[{"text": "a", "pid": "x", "extra": 1}]]}).write_parquet(tmp_path / "n.parquet")
    _, p, _ = F.read_external(tmp_path / "n.parquet")
    assert p.select("pid", "score", "label").rows() == [("x", None, 1)]  # no score: labelled by the spec's 1.0
    pl.DataFrame({"query": ["q"], "candidates": [[{"text": "a", "score": 1}]]}).write_parquet(tmp_path / "i.parquet")
    assert F.read_external(tmp_path / "i.parquet")[1]["score"].to_list() == [1.0]
    pl.DataFrame({"query": ["q"], "candidates": [[{"score": 0.5}]]}).write_parquet(tmp_path / "t.parquet")
    with pytest.raises(UserError, match=r"t.parquet:1: a candidate has no 'text'"):
        F.read_records(tmp_path / "t.parquet")
    for bad in ({"text": 1, "score": 0.5}, {"text": "a", "pid": 3}, {"text": "a", "score": "high"}):
        pl.DataFrame({"query": ["q"], "candidates": [[bad]]}).write_parquet(tmp_path / "bad.parquet")
        with pytest.raises(UserError, match="column 'candidates' has type"):
            F.read_records(tmp_path / "bad.parquet")


def test_unicode_and_extra_keys_survive(tmp_path: Path) -> None:
    row = {**SPEC_TRIPLET, "query": "Ünïcödé — 查询", "extra": {"ignored": True}}
    g, _, _ = F.read_external(write_lines(tmp_path / "u.jsonl", [row]))
    assert g["query"].to_list() == ["Ünïcödé — 查询"] and g["prompt"].to_list() == ["为此查询生成表示:"]


def test_blank_lines_keep_numbering_and_two_records_on_a_line_are_reported(tmp_path: Path) -> None:
    q = json.dumps(SPEC_PAIR)
    path = tmp_path / "b.jsonl"
    path.write_bytes(f"{q}\r\n\r\n   \n\t\n  {q}\n\n".encode())
    assert F.read_records(path).frame["line"].to_list() == [1, 5]
    # Arrow reads "{...} {...}" as two records; with a whitespace-only line the record count
    # would equal the line count, yet the line must still be rejected
    bad = tmp_path / "two.jsonl"
    bad.write_text(f"{q}\n{q} {q}\n   \n{q}\n")
    with pytest.raises(UserError, match=r"two.jsonl:2: invalid JSON"):
        F.read_records(bad)


def test_a_record_over_two_lines_is_reported_though_another_line_holds_two(tmp_path: Path) -> None:
    """Arrow reads a record over two lines and two records on one line; together their counts
    cancel out, and the reader took the records for one per line: strict mode named line 2 for
    line 3's empty query, or passed the file, and line numbers (``source``, qids) were off by one."""
    split = '{"query": "a",\n"passage": "p", "label": 1}\n'
    two = '{"query": " ", "passage": "q", "label": 1}{"query": "d", "passage": "r", "label": 0}\n'
    (tmp_path / "s.jsonl").write_text(split + two)
    with pytest.raises(UserError, match=r"s.jsonl:1: invalid JSON"):
        F.read_records(tmp_path / "s.jsonl")
    (tmp_path / "s2.jsonl").write_text('{"query": "a", "passage": "p", "label": 1}{"query": "b",\n'
                                       '"passage": "q", "label": 0}\n')
    with pytest.raises(UserError, match=r"s2.jsonl:1: invalid JSON"):
        F.read_records(tmp_path / "s2.jsonl")
    lenient = F.read_records(tmp_path / "s.jsonl", strict=False)
    assert lenient.frame.height == 0 and dict(lenient.drops) == {"malformed": 3}
    # edge whitespace, a CR and a BOM around a one-line record are still one record per line
    (tmp_path / "ok.jsonl").write_bytes(b'  {"query": "a", "passage": "p", "label": 1} \r\n'
                                        b'\xef\xbb\xbf{"query": "b", "passage": "q", "label": 0}\t\n')
    assert F.read_records(tmp_path / "ok.jsonl").frame["line"].to_list() == [1, 2]


def test_texts_of_separator_characters_are_blank(tmp_path: Path) -> None:
    # Python's whitespace (and `normalized`) includes U+001C-U+001F; Rust's class does not
    with pytest.raises(UserError, match=r"x.jsonl:1: empty 'query'"):
        F.read_records(write_lines(tmp_path / "x.jsonl", [{**SPEC_PAIR, "query": "\u001f\u001e "}]))
    with pytest.raises(UserError, match=r"y.jsonl:1: .*pos"):
        F.read_records(write_lines(tmp_path / "y.jsonl", [{**SPEC_TRIPLET, "pos": ["\u001c"]}]))


def test_keys_the_head_does_not_show_are_still_typed(tmp_path: Path) -> None:
    # The reader gives Arrow only the keys seen in a file's first 64 KiB; a key that appears later,
    # an unknown key of mixed types, or an extra key in a candidate must neither slip through
    # untyped nor change the frame.
    head = [SPEC_PAIR] * 1000  # ~170 KB
    late_bad = write_lines(tmp_path / "late.jsonl", [*head, {**SPEC_PAIR, "prompt": 5}])
    with pytest.raises(UserError, match=r"late.jsonl:1001: 'prompt' must be str, got int"):
        F.read_records(late_bad)
    late_ok = F.read_records(write_lines(tmp_path / "ok.jsonl", [*head, {**SPEC_PAIR, "prompt": "p"}])).frame
    assert late_ok["prompt"].to_list()[-2:] == [None, "p"]
    assert dict(late_ok.select(list(F.READ_SCHEMA)).schema) == F.READ_SCHEMA
    # an unknown key past the head (refused by the first parse, inferred by the second), then one
    # of mixed types there (ignored by the full-schema parse)
    late_unknown = F.read_records(write_lines(tmp_path / "lu.jsonl", [*head, {**SPEC_PAIR, "id": 7}])).frame
    assert late_unknown.height == 1001 and dict(late_unknown.select(list(F.READ_SCHEMA)).schema) == F.READ_SCHEMA
    late_mixed = [*head, {**SPEC_PAIR, "id": 7}, {**SPEC_PAIR, "id": "x", "label": 0}]
    assert F.read_records(write_lines(tmp_path / "lm.jsonl", late_mixed)).frame["label"].to_list()[-2:] == [1, 0]
    mixed_unknown = write_lines(tmp_path / "m.jsonl", [{**SPEC_PAIR, "id": 1}, {**SPEC_PAIR, "id": "x"}])
    assert F.read_records(mixed_unknown).frame.height == 2
    cand = {**SPEC_CANDIDATES, "candidates": [{**c, "extra": 1} for c in SPEC_CANDIDATES["candidates"]]}
    frame = F.read_records(write_lines(tmp_path / "c.jsonl", [cand])).frame
    assert frame.schema["candidates"] == pl.List(F.CANDIDATE)


def test_deeply_nested_unknown_key_past_the_head_is_read(tmp_path: Path) -> None:
    """Arrow's type inference of an unknown key crashed the process (SIGSEGV, no message) on a value
    nested 30000 deep once the head had picked the narrow schema; unknown keys are now ignored,
    never inferred. Run in a child process: a regression would kill the test session."""
    import subprocess
    import sys

    deep = "[" * 30000 + "]" * 30000
    for first in (SPEC_TRIPLET, {**SPEC_TRIPLET, "meta": {"a": 1}}):  # the head without and with an unknown key
        path = tmp_path / "deep.jsonl"
        path.write_text(json.dumps(first) + "\n" + json.dumps(SPEC_TRIPLET)[:-1] + f', "meta": {deep}}}\n')
        code = f"from tripleforge import formats as F; print(F.read_records({str(path)!r}).frame.height)"
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and run.stdout.strip() == "2", run.stderr[-500:]
    # the same depth spread over short lines (Arrow reads a record across lines): short lines alone
    # bound nothing, and this crashed too once inference was limited to files of short lines
    path = tmp_path / "multiline.jsonl"
    path.write_text(json.dumps(SPEC_TRIPLET) + "\n" + json.dumps(SPEC_TRIPLET)[:-1] + ', "meta":\n'
                    + "[\n" * 30000 + "]\n" * 30000 + "}\n")
    code = (f"from tripleforge import formats as F\ntry:\n    F.read_records({str(path)!r})\n"
            "except Exception as e:\n    print(e)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip().endswith("multiline.jsonl:2: invalid JSON: Expecting value"), \
        (run.returncode, run.stdout[-300:], run.stderr[-500:])


def test_a_deep_value_gets_one_verdict_whatever_the_other_lines(tmp_path: Path) -> None:
    """Python's json gives up at ~1000 levels where Arrow reads on: a line with a value 1200 deep
    under an unknown key was read, but dropped as malformed once another line was bad."""
    deep_unknown = json.dumps(SPEC_TRIPLET)[:-1] + ', "meta": ' + "[" * 1200 + "]" * 1200 + "}"
    deep_known = json.dumps(SPEC_TRIPLET)[:-1].replace('"neg": [', '"neg": [' + "[" * 1200 + "]" * 1200 + ", ", 1) + "}"
    alone = F.read_records(write_lines(tmp_path / "a.jsonl", [SPEC_TRIPLET, deep_unknown]), strict=False)
    with_bad = F.read_records(write_lines(tmp_path / "b.jsonl", [SPEC_TRIPLET, deep_unknown, "garbage"]), strict=False)
    assert alone.frame.height == with_bad.frame.height == 2 and dict(with_bad.drops) == {"malformed": 1}
    with pytest.raises(UserError, match=r"c.jsonl:2: invalid JSON: nested too deeply$"):
        F.read_records(write_lines(tmp_path / "c.jsonl", [SPEC_TRIPLET, deep_known, "garbage"]))
    with pytest.raises(UserError, match=r"d.jsonl:2: invalid JSON: nested too deeply$"):
        F.read_records(write_lines(tmp_path / "d.jsonl", [SPEC_TRIPLET, deep_known]))


def test_strict_reports_a_value_problem_above_an_unreadable_line_first(tmp_path: Path) -> None:
    """The unreadable line 4 was reported although line 2 is the file's first problem."""
    rows = [SPEC_TRIPLET, {**SPEC_TRIPLET, "query": ""}, SPEC_TRIPLET, "not json"]
    with pytest.raises(UserError, match=r"o.jsonl:2: empty 'query'$"):
        F.read_records(write_lines(tmp_path / "o.jsonl", rows))
    with pytest.raises(UserError, match=r"o2.jsonl:4: invalid JSON"):  # nothing wrong above it
        F.read_records(write_lines(tmp_path / "o2.jsonl", [SPEC_TRIPLET, SPEC_TRIPLET, SPEC_TRIPLET, "not json"]))
    with pytest.raises(UserError, match=r"o3.jsonl:1: invalid JSON"):
        F.read_records(write_lines(tmp_path / "o3.jsonl", ["not json", {**SPEC_TRIPLET, "query": ""}]))


def test_a_null_inside_a_list_gets_one_reason_whatever_the_other_lines(tmp_path: Path) -> None:
    """A bad line elsewhere sends a file to the per-line Python check, which took a null text or
    score for a type error: the same line was `malformed` there and `null_text_in_pos_neg` alone."""
    rows = [SPEC_TRIPLET, {**SPEC_TRIPLET, "query": "b", "pos": [None]},
            {**SPEC_TRIPLET, "query": "c", "pos_scores": [None, 1.0]},
            {"query": "d", "candidates": [None]}]
    alone = F.read_records(write_lines(tmp_path / "a.jsonl", rows[:3]), strict=False)
    with_bad = F.read_records(write_lines(tmp_path / "b.jsonl", [*rows[:3], "garbage"]), strict=False)
    assert dict(alone.drops) == {"null_text_in_pos_neg": 1, "null_in_a_score_list": 1}
    assert dict(with_bad.drops) == {**alone.drops, "malformed": 1}
    for path in (tmp_path / "a.jsonl", tmp_path / "b.jsonl"):
        with pytest.raises(UserError, match=r":2: null text in 'pos'/'neg'$"):
            F.read_records(path)
    cands = [{"query": "d", "candidates": [None, {"text": "x", "score": 0.9}]}, {"query": "e", "candidates": [{"text": None}]}]
    for extra in ([], ["garbage"]):
        rec = F.read_records(write_lines(tmp_path / "c.jsonl", [*cands, *extra]), strict=False)
        assert rec.drops["a_candidate_has_no_text"] == 2 and rec.frame.height == 0  # a null candidate has no text


def test_a_list_where_a_string_belongs_is_named_a_list(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"t.jsonl:1: 'type' must be str, got list$"):
        F.read_records(write_lines(tmp_path / "t.jsonl", [{**SPEC_TRIPLET, "type": ["x"]}]))
    with pytest.raises(UserError, match=r"p.jsonl:1: 'pos' must be list\[str\], got list with an element of another type$"):
        F.read_records(write_lines(tmp_path / "p.jsonl", [{**SPEC_TRIPLET, "pos": [1]}]))


def test_sentence_transformers_layouts(tmp_path: Path) -> None:
    g, p, _ = F.read_external(write_lines(tmp_path / "t.jsonl", [SPEC_TRIPLET]))
    assert F.st_triplet(g).columns == ["anchor", "positive", "negative"]
    assert F.st_triplet(g).row(0) == (SPEC_TRIPLET["query"], SPEC_TRIPLET["pos"][0], SPEC_TRIPLET["neg"][0])
    nt = F.st_ntuple(g, 2)
    assert nt.columns == ["anchor", "positive", "negative_1", "negative_2"] and nt.height == 1
    assert F.st_ntuple(g, 3).height == 0  # too few negatives for 3
    lp = F.st_labeled_pair(p)
    assert lp.columns == ["sentence1", "sentence2", "label"] and lp["label"].to_list() == [1.0, 1.0, 0.0, 0.0]
    ll = F.st_labeled_list(g)
    assert ll.row(0) == (SPEC_TRIPLET["query"], SPEC_TRIPLET["pos"] + SPEC_TRIPLET["neg"], [1, 1, 0, 0])


def test_record_dicts_are_valid_spec_json(tmp_path: Path) -> None:
    g, p, _ = F.read_external(write_lines(tmp_path / "c.jsonl", [SPEC_CANDIDATES]))
    out = F.to_record_dicts(g, "triplets")
    again = write_lines(tmp_path / "again.jsonl", out)
    assert json.loads(again.read_text().splitlines()[0])["neg"] == [SPEC_CANDIDATES["candidates"][2]["text"]]
    assert F.read_records(again).format == "triplets"


def test_parquet_columns_of_empty_lists_only_read_like_jsonl(tmp_path: Path) -> None:
    """pandas and polars write `neg: []` on every row as list<null>; that file was refused while
    the same JSONL was accepted (e.g. the project's own BGE-Coder triplets, converted)."""
    rows = {"query": ["q1", "q2"], "pos": [["a"], ["b"]], "neg": [[], []], "neg_scores": [[], []],
            "pos_scores": [[1.0], [0.5]]}
    pl.DataFrame(rows).write_parquet(tmp_path / "e.parquet")
    g, _, rec = F.read_external(tmp_path / "e.parquet")
    assert rec.frame.schema["neg"] == F.STR_LIST and rec.frame.schema["neg_scores"] == F.F64_LIST
    g_json, _, _ = F.read_external(write_lines(tmp_path / "e.jsonl", [dict(zip(rows, r)) for r in zip(*rows.values())]))
    assert g.select("query", "pos", "neg", "neg_scores").rows() == g_json.select("query", "pos", "neg", "neg_scores").rows()
    pl.DataFrame({"query": ["q"], "candidates": [[]]}).write_parquet(tmp_path / "c.parquet")
    with pytest.raises(UserError, match=r"c.parquet:1: empty 'candidates'$"):
        F.read_records(tmp_path / "c.parquet")


def test_parquet_integer_beyond_int64_is_one_line_error(tmp_path: Path) -> None:
    labels = pl.Series([1, 2**63 + 5], dtype=pl.UInt64)
    pl.DataFrame({"query": ["q1", "q1"], "passage": ["a", "b"], "label": labels}).write_parquet(tmp_path / "u.parquet")
    with pytest.raises(UserError, match=r"u.parquet: column 'label' has values that do not fit Int64 \(type UInt64\)$"):
        F.read_records(tmp_path / "u.parquet")


def test_parquet_integer_scores_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ints.parquet"
    pl.DataFrame({"query": ["q"], "pos": [["a"]], "neg": [["n"]], "pos_scores": [[1]], "neg_scores": [[0]]}).write_parquet(path)
    g, _, _ = F.read_external(path)
    assert g["pos_scores"].to_list() == [[1.0]] and g.schema["neg_scores"] == pl.List(pl.Float64)


# Lines Python's json accepts and Arrow's reader rejects (written verbatim: json.dumps cannot).
ARROW_ONLY = [
    ('{"query": "a", "pos": ["x"], "neg": ["y"], "query": "b"}', "key 'query' appears twice"),
    ('{"query": "a", "pos": ["x"], "neg": ["y"], "pos_scores": [1e400], "neg_scores": [0.1]}',
     "a number beyond the float range"),
    ('{"query": "a", "pos": ["x"], "neg": ["y"], "label": 99999999999999999999}',
     "integer 99999999999999999999 is out of the 64-bit range"),
    ('{"query": "a\\ud800", "pos": ["x"], "neg": ["y"]}', "unpaired UTF-16 surrogate"),
]


@pytest.mark.parametrize(("line", "reason"), ARROW_ONLY)
def test_line_only_arrow_rejects_is_a_file_line_error_or_a_malformed_drop(tmp_path: Path, line: str,
                                                                           reason: str) -> None:
    json.loads(line)  # the premise: Python's json takes it
    rows = [SPEC_TRIPLET, {**SPEC_TRIPLET, "query": "two"}, line, {**SPEC_TRIPLET, "query": "four"}]
    path = write_lines(tmp_path / "a.jsonl", rows)
    with pytest.raises(UserError) as err:
        F.read_records(path)
    assert str(err.value) == f"{path}:3: invalid JSON: {str(err.value).split('invalid JSON: ', 1)[1]}"
    assert reason in str(err.value)
    rec = F.read_records(path, strict=False)
    assert rec.frame["line"].to_list() == [1, 2, 4] and rec.frame["query"][2] == "four"
    assert dict(rec.drops) == {"malformed": 1} and rec.rows_read == 4


def test_arrow_only_rejections_are_found_among_many_lines(tmp_path: Path) -> None:
    # Several bad lines of both kinds spread over the file: the halving must find each Arrow-only
    # one, keep every good line in order, and strict mode must name the first bad line of any kind.
    rows: list[object] = [{**SPEC_PAIR, "passage": f"p{i}"} for i in range(40)]
    rows[5] = ARROW_ONLY[0][0]
    rows[17] = {**SPEC_PAIR, "query": 5}  # a Python-side type error, after the Arrow-only line
    rows[33] = ARROW_ONLY[3][0]
    path = write_lines(tmp_path / "many.jsonl", rows)
    with pytest.raises(UserError, match=r"many.jsonl:6: invalid JSON: key 'query' appears twice"):
        F.read_records(path)
    rec = F.read_records(path, strict=False)
    assert rec.frame["line"].to_list() == [n for n in range(1, 41) if n not in (6, 18, 34)]
    assert rec.frame["passage"].to_list() == [f"p{n - 1}" for n in rec.frame["line"].to_list()]
    assert dict(rec.drops) == {"malformed": 3}
    rows[5] = {**SPEC_PAIR, "passage": "p5"}
    with pytest.raises(UserError, match=r"many.jsonl:18: 'query' must be str"):
        F.read_records(write_lines(tmp_path / "many.jsonl", rows))


def test_pairs_without_pid_are_numbered_per_query_and_label(tmp_path: Path) -> None:
    rows = [{"query": "a", "passage": t, "label": label, "qid": "q1"}
            for t, label in [("x", 1), ("y", 0), ("z", 1), ("w", 0)]]
    rows.insert(2, {"query": "b", "passage": "v", "label": 1, "qid": "q2"})
    rows.append({"query": "a", "passage": "u", "label": 1, "qid": "q1", "pid": "given"})
    rows.append({"query": "a", "passage": "t", "label": 1, "qid": "q1"})
    g, p, _ = F.read_external(write_lines(tmp_path / "p.jsonl", rows))
    assert p["pid"].to_list() == ["q1:p0", "q1:n0", "q2:p0", "q1:p1", "q1:n1", "given", "q1:p3"]
    # the same pids as the grouped frame's pos/neg positions give
    back = F.grouped_to_pairs(g).filter(pl.col("passage") != "u").sort("pid")["pid"].to_list()
    assert back == p.filter(pl.col("pid") != "given").sort("pid")["pid"].to_list()
    # without a qid, lines are grouped by query (whitespace-normalized): qid = the first line's source
    n = tmp_path / "n.jsonl"
    no_qid = [{k: v for k, v in r.items() if k != "qid"} for r in rows[:3]]
    g, p, _ = F.read_external(write_lines(n, [*no_qid, {**no_qid[1], "query": " a ", "passage": "s"}]))
    assert p["pid"].to_list() == [f"{n}:1:p0", f"{n}:1:n0", f"{n}:3:p0", f"{n}:1:n1"]
    assert g.select("qid", "pos", "neg").rows() == [(f"{n}:1", ["x"], ["y", "s"]), (f"{n}:3", ["v"], [])]


def test_a_qid_given_to_two_queries_is_an_error_or_a_counted_drop(tmp_path: Path) -> None:
    rows = [{"qid": "a", "query": "sort list", "candidates": [{"text": "sorted(x)", "score": 0.9}]},
            {"qid": "a", "query": "sort  list ", "candidates": [{"text": "x.sort()", "score": 0.8}]},  # same query
            {"qid": "a", "query": "open file", "candidates": [{"text": "open(p)", "score": 0.9},
                                                              {"text": "sorted(x)", "score": 0.1}]}]
    path = write_lines(tmp_path / "c.jsonl", rows)
    with pytest.raises(UserError, match=r"c.jsonl:3: 'qid' \"a\" already names another query \(line 1\)$"):
        F.read_records(path)
    g, p, rec = F.read_external(path, strict=False)
    assert dict(rec.drops) == {"qid_already_names_another_query": 1}
    assert g.select("query", "pos", "neg").rows() == [("sort list", ["sorted(x)", "x.sort()"], [])]
    assert p["pid"].is_unique().all()
    # lenient: a line dropped for another reason claims no qid (its valid namesakes were dropped as clashes)
    for bad in ({"query": ""}, {"label": 2}, {"score": float("nan")}):
        lines = [{"qid": "q1", "query": "Q", "passage": "p0", "label": 1, **bad},
                 {"qid": "q1", "query": "Real", "passage": "p1", "label": 1},
                 {"qid": "q1", "query": "Real", "passage": "p2", "label": 0}]
        g, p, rec = F.read_external(write_lines(tmp_path / "l.jsonl", lines), strict=False)
        assert (g.height, p.height, sum(rec.drops.values())) == (1, 2, 1), (bad, rec.drops)
    pairs = [{"qid": "q", "query": "a", "passage": "p", "label": 1}, {"qid": "q", "query": "b", "passage": "n", "label": 0}]
    with pytest.raises(UserError, match=r"p.jsonl:2: 'qid' \"q\" already names another query \(line 1\)"):
        F.read_records(write_lines(tmp_path / "p.jsonl", pairs))


def test_a_file_that_is_not_utf8_is_named_at_its_line(tmp_path: Path) -> None:
    good = json.dumps(SPEC_TRIPLET).encode()
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b"\n".join([good] * 3 + ['{"query": "caf\xe9", "pos": ["p"], "neg": ["n"]}'.encode("latin-1"), good]))
    with pytest.raises(UserError, match=r"latin1.jsonl:4: not valid UTF-8 \(byte 0xe9 at byte 15 of the line"):
        F.read_records(path)
    rec = F.read_records(path, strict=False)
    assert rec.frame["line"].to_list() == [1, 2, 3, 5] and dict(rec.drops) == {"malformed": 1}
    rec.frame.write_parquet(tmp_path / "out.parquet")  # what passes is readable again
    assert pl.read_parquet(tmp_path / "out.parquet").height == 4


def test_explicit_null_candidate_score_is_an_error_where_a_missing_one_means_one(tmp_path: Path) -> None:
    rows = [{"query": "q1", "candidates": [{"text": "a", "score": 0.9}, {"text": "b"}]},
            {"query": "q2", "candidates": [{"text": "c", "score": 0.9}, {"text": "d", "score": None}]},
            {"query": "q3", "candidates": [{"text": "e", "score": 0.2}]}]
    path = write_lines(tmp_path / "c.jsonl", rows)
    with pytest.raises(UserError, match=r"c.jsonl:2: a candidate 'score' is null"):
        F.read_records(path)
    _, p, rec = F.read_external(path, strict=False)
    # q3 has no positive; q1 is partly scored
    assert dict(rec.drops) == {"a_candidate_score_is_null": 1, "no_positive": 1, "partial_scores": 1}
    assert p.select("query", "passage", "label", "score").rows() == [
        ("q1", "a", 1, 0.9), ("q1", "b", 1, None), ("q3", "e", 0, 0.2)]
    # the key spelled with an escape is the same key
    escaped = tmp_path / "e.jsonl"
    escaped.write_bytes(b'{"query": "q", "candidates": [{"text": "a", "score": 0.9}, {"text": "b"}]}\n'
                        b'{"query": "r", "candidates": [{"text": "c", "sc\\u006fre": null}]}\n')
    with pytest.raises(UserError, match=r"e.jsonl:2: a candidate 'score' is null"):
        F.read_records(escaped)
    # Parquet: a null in an existing score field is explicit; a struct without the field is not
    pl.DataFrame({"query": ["q"], "candidates": [[{"text": "a", "score": 0.9}, {"text": "b", "score": None}]]}
                 ).write_parquet(tmp_path / "n.parquet")
    with pytest.raises(UserError, match=r"n.parquet:1: a candidate 'score' is null"):
        F.read_records(tmp_path / "n.parquet")


def test_partly_scored_pairs_keep_their_rows_and_count_the_lost_scores(tmp_path: Path) -> None:
    rows = [{"qid": "q3", "query": "q", "passage": "a", "label": 1, "score": 0.9},
            {"qid": "q3", "query": "q", "passage": "b", "label": 0},
            {"qid": "q3", "query": "q", "passage": "c", "label": 0, "score": 0.2},
            {"qid": "q4", "query": "r", "passage": "d", "label": 1, "score": 0.8}]
    g, p, rec = F.read_external(write_lines(tmp_path / "p.jsonl", rows))
    assert dict(rec.drops) == {"partial_scores": 1} and p.height == 4
    assert g.select("qid", "pos_scores", "neg_scores").rows() == [("q3", None, None), ("q4", [0.8], [])]


def test_ids_as_numbers_and_categorical_text(tmp_path: Path) -> None:
    """Parquet: integer qid/pid columns and pandas' categorical text columns are cast (lossless);
    JSONL: a numeric qid is an error that says how to write it."""
    df = pl.DataFrame({"qid": [7, 8], "query": ["a", "b"], "passage": ["x", "y"], "label": [1, 1], "pid": [1, 2]})
    df.with_columns(pl.col("query").cast(pl.Categorical)).write_parquet(tmp_path / "p.parquet")
    g, p, _ = F.read_external(tmp_path / "p.parquet")
    assert g["qid"].to_list() == ["7", "8"] and p["pid"].to_list() == ["1", "2"] and g["query"].to_list() == ["a", "b"]
    path = write_lines(tmp_path / "p.jsonl", [{"qid": 7, "query": "a", "passage": "x", "label": 1}])
    with pytest.raises(UserError, match=r"""p.jsonl:1: 'qid' must be str, got int \(write ids as strings: "qid": "7"\)$"""):
        F.read_records(path)
