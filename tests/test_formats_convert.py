"""convert_all: mined rows + external files -> one grouped and one pairs frame, with counts."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from formats_data import SPEC_CANDIDATES, SPEC_TRIPLET, mined_frame, write_lines

from tripleforge import formats as F
from tripleforge.convert import ConvertFormatsParams, convert_all, convert_metrics
from tripleforge.errors import UserError


def test_mined_and_external_rows_keep_their_source(tmp_path: Path) -> None:
    ext = write_lines(tmp_path / "t.jsonl", [SPEC_TRIPLET])
    cand = write_lines(tmp_path / "c.jsonl", [SPEC_CANDIDATES])
    c = convert_all(mined_frame(n_docs=4), "m.parquet", ConvertFormatsParams(external=[str(ext), str(cand)]))
    assert c.grouped["source_format"].to_list() == ["mined"] * 4 + ["triplets", "candidates"]
    assert c.grouped["source"].to_list()[:4] == [f"m.parquet:{i}" for i in range(1, 5)]
    mined = c.grouped.filter(pl.col("source_format") == "mined")
    assert mined["qid"].to_list() == sorted(mined["pair_id"].to_list())
    assert set(c.grouped.filter(pl.col("source_format") != "mined")["split"]) == {"train"}
    m = convert_metrics(c, {"queries": 1})
    assert m["pairs"]["by_source_format"] == {"candidates": 3, "mined": 20, "triplets": 4}
    assert m["by_source"][str(cand)]["format"] == "candidates" and m["dropped_total"] == 0
    assert m["by_source"]["m.parquet"]["dropped"] == {}  # every source has the same keys


def test_a_record_copied_in_a_later_source_is_dropped_there(tmp_path: Path) -> None:
    """A copy of a record in a second file (the same dataset as JSONL and as pairs, or mined rows
    exported and added back) once sat twice in data/formats/ and its counts."""
    mined = mined_frame(n_docs=2)
    row = mined.row(1, named=True)
    back = {k: row[k] for k in ("query", "prompt", "pos", "neg", "pos_scores", "neg_scores")}
    own = {"query": "how to read a file", "pos": ["open(p).read()"], "neg": ["print(1)"]}
    a = write_lines(tmp_path / "a.jsonl", [own, {"query": "other", "pos": ["x = 1"], "neg": ["y = 2"]}])
    b = write_lines(tmp_path / "b.jsonl", [back, own])
    pairs = write_lines(tmp_path / "p.jsonl", [{"query": "how to read a file", "passage": "open(p).read()", "label": 1, "qid": "r"},
                                               {"query": "how to read a file", "passage": "print(1)", "label": 0, "qid": "r"}])
    c = convert_all(mined, "m.parquet", ConvertFormatsParams(external=[str(a), str(b), str(pairs)]))
    assert c.grouped["source"].to_list() == ["m.parquet:1", "m.parquet:2", f"{a}:1", f"{a}:2"]
    assert c.pairs.filter(pl.col("source").str.starts_with(str(tmp_path))).height == 4  # a's 2 records
    assert c.sources[str(pairs)]["triplets"] == 0 and c.sources[str(pairs)]["pairs"] == 0
    assert c.sources[str(b)]["dropped"] == {"duplicate_record": 2} and c.sources[str(b)]["triplets"] == 0
    assert c.sources[str(b)]["pairs"] == 0 and c.sources[str(pairs)]["dropped"] == {"duplicate_record": 1}
    assert c.drops["duplicate_record"] == 3 and c.sources[str(a)]["dropped"] == {}


def test_a_home_relative_external_is_read_and_named_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`~/t.jsonl` passed the path check (which expands ~) and then failed as "file not found"."""
    write_lines(tmp_path / "t.jsonl", [SPEC_TRIPLET])
    monkeypatch.setenv("HOME", str(tmp_path))
    c = convert_all(None, "", ConvertFormatsParams(external=["~/t.jsonl"]))
    assert c.grouped["source"].to_list() == ["~/t.jsonl:1"] and "~/t.jsonl" in c.sources


def test_translation_targets_travel_into_both_frames(tmp_path: Path) -> None:
    """convert-formats once dropped tgt_code_language: two targets of one document looked alike."""
    mined = mined_frame(n_docs=2).with_columns(tgt_code_language=pl.Series(["java", None]))
    ext = write_lines(tmp_path / "t.jsonl", [SPEC_TRIPLET])
    c = convert_all(mined, "m.parquet", ConvertFormatsParams(external=[str(ext)]))
    assert c.grouped["tgt_code_language"].to_list() == ["java", None, None]
    by_qid = dict(c.pairs.select("qid", "tgt_code_language").unique().iter_rows())
    assert by_qid[c.grouped["qid"][0]] == "java" and by_qid[c.grouped["qid"][1]] is None


def test_mined_validation_strict_and_counted() -> None:
    bad = mined_frame(n_docs=4).with_columns(
        pos=pl.when(pl.int_range(pl.len()) == 1).then(pl.lit([], dtype=pl.List(pl.String))).otherwise("pos"))
    with pytest.raises(UserError, match=r"m.parquet:2: empty pos \(pair_id "):
        convert_all(bad, "m.parquet", ConvertFormatsParams())
    c = convert_all(bad, "m.parquet", ConvertFormatsParams(strict=False))
    assert c.grouped.height == 3 and dict(c.drops) == {"empty_pos": 1}
    assert c.sources["m.parquet"]["dropped"] == {"empty_pos": 1}
    with pytest.raises(UserError, match="missing column"):
        convert_all(bad.drop("split"), "m.parquet", ConvertFormatsParams())


def test_mined_rows_are_named_by_their_row_in_the_file() -> None:
    """The rows were numbered after the sort by pair_id: an unsorted file's error named another row."""
    m = mined_frame(n_docs=4).sort("pair_id", descending=True)
    bad = m.with_columns(query=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("  ")).otherwise("query"))
    with pytest.raises(UserError, match=rf"m.parquet:1: empty query \(pair_id {m['pair_id'][0]}\)"):
        convert_all(bad, "m.parquet", ConvertFormatsParams())
    c = convert_all(m, "m.parquet", ConvertFormatsParams())
    assert c.grouped["qid"].to_list() == sorted(m["pair_id"])  # still sorted by pair_id
    assert c.grouped["source"].to_list() == [f"m.parquet:{i}" for i in (4, 3, 2, 1)]


def test_override_must_name_an_external_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="format_override names 'x.jsonl'"):
        convert_all(None, "", ConvertFormatsParams(format_override={"x.jsonl": "pairs"}))
    # the same file spelled another way is the same file, as in external's duplicate check
    ext = write_lines(tmp_path / "legacy.jsonl", [{"query": "q", "pos": ["a"], "neg": ["n"]}])
    odd = f"{tmp_path}/./legacy.jsonl"
    c = convert_all(None, "", ConvertFormatsParams(external=[str(ext)], format_override={odd: "legacy_nested"}))
    assert c.sources[str(ext)]["format"] == "legacy_nested"


def test_external_listed_twice_is_a_params_error(tmp_path: Path) -> None:
    from tripleforge.params import validate_params

    with pytest.raises(UserError, match=r"params key 'convert_formats.external': .*'t.jsonl' is listed twice"):
        validate_params(ConvertFormatsParams, "convert_formats", {"external": ["t.jsonl", "u.jsonl", "t.jsonl"]})
    same = str(tmp_path / "t.jsonl")
    with pytest.raises(UserError, match="listed twice"):
        validate_params(ConvertFormatsParams, "convert_formats", {"external": [same, str(tmp_path / "." / "t.jsonl")]})


def test_rows_read_per_source(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    # two label-0 records of one query: one group without a positive, yet two rows read
    pairs = write_lines(tmp_path / "p.jsonl", [{"query": "q", "passage": f"x{i}", "label": 0, "qid": "q"} for i in range(2)])
    c = convert_all(None, "", ConvertFormatsParams(external=[str(empty), str(pairs)], strict=False))
    by = convert_metrics(c, {})["by_source"]
    assert by[str(empty)]["rows_read"] == 0 and by[str(empty)]["dropped"] == {"empty_file": 1}
    assert by[str(pairs)]["rows_read"] == 2 and by[str(pairs)]["dropped"] == {"no_positive": 1}


def test_mined_empty_texts_and_non_finite_scores() -> None:
    m = mined_frame(n_docs=4)
    i = pl.int_range(pl.len())
    bad = m.with_columns(
        query=pl.when(i == 0).then(pl.lit(" ")).otherwise("query"),
        neg=pl.when(i == 1).then(pl.lit([""], dtype=pl.List(pl.String))).otherwise("neg"),
        neg_scores=pl.when(i == 1).then(pl.lit([0.1], dtype=pl.List(pl.Float64)))
        .when(i == 2).then(pl.col("neg_scores").list.eval(pl.element() / 0.0)).otherwise("neg_scores"),
    )
    with pytest.raises(UserError, match=r"m.parquet:1: empty query \(pair_id "):
        convert_all(bad, "m.parquet", ConvertFormatsParams())
    c = convert_all(bad, "m.parquet", ConvertFormatsParams(strict=False))
    assert c.grouped.height == 1
    assert dict(c.drops) == {"empty_query": 1, "empty_text_in_neg": 1, "nan_or_infinite_value_in_a_score_list": 1}


def test_an_eval_pair_turned_around_is_a_leak_too(tmp_path: Path) -> None:
    """The eval positive as the query and the eval query as the positive teaches the same
    judgment; it was kept (query compared only with eval queries, positives with positives)."""
    mined = mined_frame(n_docs=8, n_neg=2)
    ev = mined.filter(pl.col("split") == "eval").row(0, named=True)
    ext = write_lines(tmp_path / "rev.jsonl", [{"query": ev["pos"][0], "pos": [ev["query"]], "neg": ["n"]},
                                               {"query": "fine", "pos": ["ok"], "neg": ["n"]}])
    pairs = write_lines(tmp_path / "revp.jsonl", [{"qid": "a", "query": ev["pos"][0], "passage": ev["query"], "label": 1},
                                                  {"qid": "b", "query": "b", "passage": ev["query"], "label": 1}])
    c = convert_all(mined, "m.parquet", ConvertFormatsParams(external=[str(ext), str(pairs)]))
    assert c.grouped.filter(pl.col("source_format") != "mined")["query"].to_list() == ["fine"]
    assert convert_metrics(c, {})["dropped"] == {"eval_overlap": 3, "eval_overlap_pairs": 4}


def test_query_without_positive_is_a_counted_drop_even_when_strict(tmp_path: Path) -> None:
    # Valid pairs data (a reranker negative) that cannot form a triplet: kept in pairs, left out
    # of triplets and counted, never a strict-mode error; the docs must say so.
    pairs = write_lines(tmp_path / "p.jsonl", [{"query": "a", "passage": "x", "label": 0},
                                               {"query": "b", "passage": "y", "label": 1}])
    c = convert_all(None, "", ConvertFormatsParams(external=[str(pairs)], strict=True))
    assert c.pairs["passage"].to_list() == ["x", "y"] and c.grouped["query"].to_list() == ["b"]
    assert convert_metrics(c, {})["dropped"] == {"no_positive": 1}
    doc = (Path(__file__).parents[1] / "docs" / "formats.md").read_text()
    assert "`no_positive` is not a validation error and is counted **in both strict modes**" in doc


def test_external_rows_sharing_an_eval_query_or_positive_are_dropped_and_counted(tmp_path: Path) -> None:
    mined = mined_frame(n_docs=8, n_neg=2)
    ev = mined.filter(pl.col("split") == "eval").row(0, named=True)
    rows = [
        {"query": "  " + ev["query"].replace(" ", "   "), "pos": ["something else"], "neg": ["n"]},  # eval query
        {"query": "fresh question", "pos": [ev["pos"][0] + "\n"], "neg": ["n"]},  # eval positive
        {"query": "another question", "pos": ["unrelated"], "neg": [ev["pos"][0]]},  # eval doc as a negative only
    ]
    ext = write_lines(tmp_path / "leak.jsonl", rows)
    pairs = write_lines(tmp_path / "p.jsonl", [
        {"qid": "q1", "query": "q1", "passage": ev["pos"][0], "label": 1},  # eval positive as positive: leaks
        {"qid": "q1", "query": "q1", "passage": "p", "label": 1},
        {"qid": "q2", "query": "q2", "passage": ev["pos"][0], "label": 0},  # as a negative: kept
        {"qid": "q2", "query": "q2", "passage": "x", "label": 1},
    ])
    c = convert_all(mined, "m.parquet", ConvertFormatsParams(external=[str(ext), str(pairs)]))
    ext_rows = c.grouped.filter(pl.col("source_format") != "mined")
    assert ext_rows["query"].to_list() == ["another question", "q2"]  # the q1 triplet holds the eval positive
    assert c.pairs.filter(pl.col("source_format") == "pairs")["passage"].to_list() == ["p", ev["pos"][0], "x"]
    m = convert_metrics(c, {})
    # pairs: both of the eval-query row, the eval positive's pos pair, the pairs file's eval positive
    assert m["dropped"] == {"eval_overlap": 3, "eval_overlap_pairs": 4}
    assert m["dropped_total"] == 3  # records: their pairs are not counted again
    assert m["by_source"][str(ext)]["dropped"] == {"eval_overlap": 2, "eval_overlap_pairs": 3}
    # no eval query or eval positive is left among the training rows
    train = c.grouped.filter(pl.col("split") == "train")
    evals = c.grouped.filter(pl.col("split") == "eval")
    assert not set(train["query"]) & set(evals["query"])
    assert not {p.strip() for ps in train["pos"] for p in ps} & {p for ps in evals["pos"] for p in ps}


def test_a_mined_row_with_an_unknown_split_is_refused_or_counted() -> None:
    """`split: "bogus"` in a hand-edited mined file was trained on without a word."""
    bad = mined_frame(n_docs=4).with_columns(split=pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("bogus"))
                                             .otherwise(pl.col("split")))
    with pytest.raises(UserError, match=r"m.parquet:3: unknown split \(pair_id "):
        convert_all(bad, "m.parquet", ConvertFormatsParams())
    c = convert_all(bad, "m.parquet", ConvertFormatsParams(strict=False))
    assert dict(c.drops) == {"unknown_split": 1} and "bogus" not in c.grouped["split"].to_list()


def test_deep_nesting_and_symlink_loops_are_one_line_errors(tmp_path: Path) -> None:
    from tripleforge.params import validate_params

    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"query": "q", "pos": ["a"], "neg": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(UserError, match=r"deep.jsonl:1: "):
        convert_all(None, "", ConvertFormatsParams(external=[str(deep)]))
    c = convert_all(None, "", ConvertFormatsParams(external=[str(deep)], strict=False))
    assert c.grouped.height == 0 and sum(c.drops.values()) == 1
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(tmp_path / "loop2.jsonl")
    (tmp_path / "loop2.jsonl").symlink_to(loop)
    with pytest.raises(UserError, match=r"convert_formats.external.*is a symlink loop"):
        validate_params(ConvertFormatsParams, "convert_formats", {"external": [str(loop)]}, source="params.yaml")


def test_a_qid_another_file_gave_to_another_query_is_an_error_or_a_counted_drop(tmp_path: Path) -> None:
    """Numeric qids ("1", "2") are common in public datasets: two files with qid "1" once merged
    two queries under one qid (and one pid, `1:p0`), with `dropped 0`."""
    a = write_lines(tmp_path / "a.jsonl", [{"qid": "1", "query": "how to sort a list", "passage": "use sorted()", "label": 1},
                                           {"qid": "1", "query": "how to sort a list", "passage": "use print", "label": 0}])
    b = write_lines(tmp_path / "b.jsonl", [{"qid": "2", "query": "read a file", "passage": "open(p)", "label": 1},
                                           {"qid": "1", "query": "open a file in rust", "passage": "File::open", "label": 1},
                                           {"qid": "1", "query": "open a file in rust", "passage": "println!", "label": 0}])
    params = {"external": [str(a), str(b)]}
    with pytest.raises(UserError, match=rf"^{b}:2: 'qid' \"1\" already names another query \({a}:1; a qid must name "
                                        r"one query across all sources\)$"):
        convert_all(None, "", ConvertFormatsParams(**params))
    c = convert_all(None, "", ConvertFormatsParams(**params, strict=False))
    assert c.grouped.select("qid", "query").rows() == [("1", "how to sort a list"), ("2", "read a file")]
    assert c.pairs["passage"].to_list() == ["use sorted()", "use print", "open(p)"]
    assert dict(c.drops) == {"qid_already_names_another_query": 2}  # lines, as within one file
    assert c.sources[str(b)]["dropped"] == {"qid_already_names_another_query": 2}
    assert c.sources[str(b)]["triplets"] == 1 and c.sources[str(b)]["pairs"] == 1


def test_an_external_qid_equal_to_a_mined_pair_id_of_another_query_is_refused(tmp_path: Path) -> None:
    """Mined rows have qid = pair_id; an external file reusing one (an eval one here) filed its
    query under the eval query's id."""
    mined = mined_frame(n_docs=4)
    ev = mined.with_row_index("row", offset=1).filter(pl.col("split") == "eval").row(0, named=True)
    ext = write_lines(tmp_path / "e.jsonl", [{"qid": ev["pair_id"], "query": "something else", "passage": "x", "label": 1}])
    params = {"external": [str(ext)]}
    with pytest.raises(UserError, match=rf"^{ext}:1: 'qid' \"{ev['pair_id']}\" already names another query "
                                        rf"\(m.parquet:{ev['row']}, a mined row: its qid is its pair_id; "):
        convert_all(mined, "m.parquet", ConvertFormatsParams(**params))
    c = convert_all(mined, "m.parquet", ConvertFormatsParams(**params, strict=False))
    assert c.grouped.filter(pl.col("qid") == ev["pair_id"])["query"].to_list() == [ev["query"]]
    assert c.pairs.filter(pl.col("qid") == ev["pair_id"])["query"].unique().to_list() == [ev["query"]]
    assert c.sources[str(ext)]["dropped"] == {"qid_already_names_another_query": 1}


def test_the_same_query_under_one_qid_in_two_files_stays_and_the_first_file_owns_the_qid(tmp_path: Path) -> None:
    """As within one file: a qid may come back with its own query (whitespace-normalized); a
    third file giving it to another query is compared with the first file's query."""
    a = write_lines(tmp_path / "a.jsonl", [{"qid": "1", "query": "sort a list", "passage": "sorted(x)", "label": 1}])
    b = write_lines(tmp_path / "b.jsonl", [{"qid": "1", "query": " sort  a list", "passage": "x.sort()", "label": 1}])
    cand = write_lines(tmp_path / "c.jsonl", [
        {"qid": "1", "query": "open a file", "candidates": [{"text": "open(p)", "score": 0.9}, {"text": "p", "score": 0.1}]},
        {"qid": "1", "query": "open a file", "candidates": [{"text": "with open(p):", "score": 0.8}]},
    ])
    with pytest.raises(UserError, match=rf"^{cand}:1: 'qid' \"1\" already names another query \({a}:1; "):
        convert_all(None, "", ConvertFormatsParams(external=[str(a), str(b), str(cand)]))
    c = convert_all(None, "", ConvertFormatsParams(external=[str(a), str(b), str(cand)], strict=False))
    assert c.grouped["source"].to_list() == [f"{a}:1", f"{b}:1"]
    assert c.pairs["passage"].to_list() == ["sorted(x)", "x.sort()"]
    assert convert_metrics(c, {})["dropped"] == {"qid_already_names_another_query": 2}  # 2 lines, 3 candidates
    assert convert_all(None, "", ConvertFormatsParams(external=[str(a), str(b)])).grouped.height == 2


def test_rows_kept_without_scores_are_not_counted_as_dropped(tmp_path: Path) -> None:
    """`partial_scores` sat under `dropped` (and in `dropped_total`) although its rows are kept."""
    half = {**SPEC_TRIPLET, "query": "half", "neg_scores": None}  # scored on the positive side only
    half = {k: v for k, v in half.items() if v is not None}
    ext = write_lines(tmp_path / "h.jsonl", [SPEC_TRIPLET, half])
    c = convert_all(None, "m.parquet", ConvertFormatsParams(include_mined=False, external=[str(ext)]))
    m = convert_metrics(c, {})
    assert m["triplets"]["rows"] == 2 and m["dropped"] == {} and m["dropped_total"] == 0
    assert m["scores_removed"] == {"partial_scores": 1}
    assert m["by_source"][str(ext)]["scores_removed"] == {"partial_scores": 1}
    assert m["by_source"][str(ext)]["dropped"] == {}


def test_dropped_total_counts_records_not_the_negatives_taken_out_of_kept_rows(tmp_path: Path) -> None:
    """One record whose negative repeated its positive read as "dropped 1" though every record
    was kept: `dropped_total` summed negatives, pairs and records."""
    ext = write_lines(tmp_path / "d.jsonl", [
        {"query": "parse json", "pos": ["json.loads(s)"], "neg": ["json.loads(s)", "json.dumps(o)", "json.dumps(o)"]},
        {"query": "read csv", "pos": ["csv.reader(f)"], "neg": ["open(p)"]},
        {"query": "read csv", "pos": ["csv.reader(f)"], "neg": ["open(p)"]},  # a copy: this record goes
    ])
    c = convert_all(None, "m.parquet", ConvertFormatsParams(include_mined=False, external=[str(ext)]))
    m = convert_metrics(c, {})
    assert m["triplets"]["rows"] == 2 and c.grouped["neg"].to_list() == [["json.dumps(o)"], ["open(p)"]]
    assert m["dropped"] == {"negative_is_positive": 1, "duplicate_negative": 1, "duplicate_record": 1}
    assert m["dropped_total"] == 1 and m["negatives_removed_total"] == 2


@pytest.mark.parametrize("order", ["runs", "interleaved"])
def test_grouping_by_qid_runs_gives_the_groups_of_grouping_by_qid(monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    # q0 has no positive, q1 a prompt, q2 no scores, q3 a score missing (so no score lists)
    rows = [{"qid": f"q{q}", "query": f"query {q}", "passage": f"a passage of query {q}, number {i}",
             "label": int(i == 1 and q != 0), "score": None if q == 2 or (q, i) == (3, 0) else i / 10,
             "prompt": "find the code" if q == 1 else None} for q in range(4) for i in range(3)]
    if order == "interleaved":
        rows = rows[::2] + rows[1::2]
    pairs = pl.DataFrame(rows).with_columns(
        *[pl.lit(None, F.PAIRS_SCHEMA[c]).alias(c) for c in F.PAIRS_SCHEMA if c not in rows[0]]).select(list(F.PAIRS_SCHEMA))
    assert (F._run_starts(pairs) is not None) == (order == "runs")
    got = F.pairs_to_grouped(pairs)
    with_positive, without = F.grouped_with_positive(pairs)
    assert with_positive.equals(got.filter(pl.col("pos").list.len() > 0)) and without == 1
    monkeypatch.setattr(F, "_run_starts", lambda _: None)
    assert got.equals(F.pairs_to_grouped(pairs)) and got.schema == F.pairs_to_grouped(pairs).schema
    by_qid, without_by_qid = F.grouped_with_positive(pairs)
    assert by_qid.equals(with_positive) and by_qid.schema == with_positive.schema and without_by_qid == 1
    assert got["qid"].to_list() == list(dict.fromkeys(r["qid"] for r in rows))
    q0, q1, q2, q3 = got.sort("qid").iter_rows(named=True)
    assert q0["pos"] == [] and len(q0["neg"]) == 3 and q0["pos_scores"] == [] and sorted(q0["neg_scores"]) == [0.0, 0.1, 0.2]
    assert q1["prompt"] == "find the code" and q1["pos_scores"] == [0.1] and sorted(q1["neg_scores"]) == [0.0, 0.2]
    assert q2["pos_scores"] is None and q3["pos_scores"] is None and q3["neg_scores"] is None


def test_groups_with_a_positive_are_built_alone_wherever_the_others_are() -> None:
    # runs without a positive first, between and last; one with partial scores among them
    labels = {"a": [0, 0], "b": [1, 0, 0], "c": [0], "d": [0, 1], "e": [1], "f": [0, 0, 0]}
    rows = [{"qid": q, "query": f"query {q}", "passage": f"{q}{i}", "label": lab, "score": None if q == "d" and i else 0.5}
            for q, ls in labels.items() for i, lab in enumerate(ls)]
    pairs = pl.DataFrame(rows).with_columns(
        *[pl.lit(None, F.PAIRS_SCHEMA[c]).alias(c) for c in F.PAIRS_SCHEMA if c not in rows[0]]).select(list(F.PAIRS_SCHEMA))
    got, without = F.grouped_with_positive(pairs)
    assert got.equals(F.pairs_to_grouped(pairs).filter(pl.col("pos").list.len() > 0)) and without == 3
    assert got.select("qid", "pos", "neg", "pos_scores").rows() == [
        ("b", ["b0"], ["b1", "b2"], [0.5]), ("d", ["d1"], ["d0"], None), ("e", ["e0"], [], [0.5])]
    none, all_without = F.grouped_with_positive(pairs.filter(pl.col("label") == 0))
    assert none.height == 0 and none.schema == got.schema and all_without == 5  # e had only its positive
    empty, zero = F.grouped_with_positive(pairs.clear())
    assert empty.height == 0 and empty.schema == got.schema and zero == 0


def test_candidate_records_with_their_own_qids_give_the_runs_of_their_pairs() -> None:
    def cand(text: str, score: float | None) -> dict[str, object]:
        return {"text": text, "score": score, "pid": None}

    lists = [[cand("a", 0.9), cand("b", 0.1)], [None, cand("c", 0.2)], [None], [cand("d", None)], [cand("e", 0.3)]]
    df = pl.DataFrame({"qid": ["q0", "q1", "q2", "q3", "q4"], "query": ["x", "y", "z", "w", "v"], "candidates": lists},
                      schema={"qid": pl.String, "query": pl.String, "candidates": pl.List(F.CANDIDATE)})
    pairs, runs = F._candidate_pairs(df, 0.5)
    assert pairs.equals(F.candidates_to_pairs(df)) and pairs["passage"].to_list() == ["a", "b", "c", "d", "e"]
    assert runs is not None and runs.to_list() == F._run_starts(pairs).to_list() == [0, 2, 3, 4]  # q2 has none
    assert F.grouped_with_positive(pairs, runs)[0].equals(F.grouped_with_positive(pairs)[0])
    assert F.grouped_with_positive(pairs, runs)[1] == 2  # q1 and q4: below the threshold
    shared, none = F._candidate_pairs(df.with_columns(qid=pl.Series(["q0", "q1", "q2", "q3", "q0"])), 0.5)
    assert none is None and shared["pid"].to_list()[-1] == "q0:c2"  # q0's count goes on


def test_qid_runs_count_a_null_qid_like_any_other() -> None:
    frame = pl.DataFrame({"qid": [None, "a", None]}, schema={"qid": pl.String})
    assert F._run_starts(frame) is None and F._run_starts(frame.slice(0, 2)) is not None
