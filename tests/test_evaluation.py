"""Loading BEIR/MTEB/CoIR dirs (diagnostics, bad input), params, and retrieval with the real MiniLM."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import polars as pl
import pytest

from tripleforge.errors import UserError
from tripleforge.evaluation import (
    EvalModel,
    EvaluateParams,
    check_curve_stems,
    check_models,
    curve_frames,
    evaluate_models,
    load_dataset,
    per_task_frame,
    retrieve,
    summarize,
)
from tripleforge.params import validate_params

DOCS = [
    ("d1", "def add(a, b):\n    return a + b"),
    ("d2", "def read_file(path):\n    with open(path) as f:\n        return f.read()"),
    ("d3", "SELECT name FROM users WHERE age > 30"),
    ("d4", "function sortArray(arr) { return arr.sort((x, y) => x - y); }"),
]
QUERIES = [
    ("q1", "add two numbers", "text2code"),
    ("q2", "read the contents of a file", "text2code"),
    ("q3", "sql query for users older than thirty", "text2sql"),
    ("q4", "sort numbers in javascript", "text2code"),
]


def write_beir(root: Path, docs=DOCS, queries=QUERIES, qrels_lines: list[str] | None = None,
               coir: bool = False) -> Path:
    """A tiny BEIR dir; `coir=True` uses CoIR's `query_id`/`corpus_id` qrels header."""
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as fh:
        for d, t in docs:
            fh.write(json.dumps({"_id": d, "title": "", "text": t}) + "\n")
    with open(root / "queries.jsonl", "w") as fh:
        for q, t, task in queries:
            fh.write(json.dumps({"_id": q, "text": t, "task": task, "prompt": "Retrieve the code: "}) + "\n")
    header = "query_id\tcorpus_id\tscore" if coir else "query-id\tcorpus-id\tscore"
    lines = qrels_lines if qrels_lines is not None else [f"q{i}\td{i}\t1" for i in range(1, 5)]
    (root / "qrels" / "test.tsv").write_text("\n".join([header, *lines]) + "\n")
    return root


def test_diagnostics_count_every_anomaly(tmp_path: Path) -> None:
    docs = [*DOCS, ("d4", "a duplicate id")]
    queries = [*QUERIES, ("q5", "no qrels for me", "text2code"), ("q1", "dup", "x")]
    qrels = ["q1\td1\t1", "q1\td1\t1", "q2\td2\t1", "q3\td3\t1", "q4\td4\t1", "q4\td99\t1", "qx\td1\t1", "q5\td2\t0"]
    ds = load_dataset(write_beir(tmp_path / "b", docs, queries, qrels), "b")
    assert ds.diagnostics == {
        "corpus_docs": 4,
        "queries": 5,
        "qrels_rows": 8,
        "duplicate_doc_ids": 1,
        "duplicate_query_ids": 1,
        "duplicate_qrels": 1,
        "qrels_unknown_queries": 1,
        "qrels_unknown_docs": 1,
        "queries_without_qrels": 1,
        "evaluated_queries": 4,
        "relevance_level": 1,
    }
    # the unknown document stays relevant (recall cannot reach 1 for q4: no silent denominator change)
    assert ds.qrels["q4"] == {"d4": 1, "d99": 1}
    assert ds.corpus.filter(ds.corpus["doc_id"] == "d4")["text"][0].startswith("function")


def test_a_home_relative_folder_is_read(tmp_path: Path, monkeypatch) -> None:
    """`~/beir/c` passed the params check (which expands ~), then was "not found"."""
    write_beir(tmp_path / "beir" / "c")
    monkeypatch.setenv("HOME", str(tmp_path))
    ds = load_dataset("~/beir/c")
    assert ds.name == "c" and ds.diagnostics["evaluated_queries"] == 4


def test_coir_and_jsonl_qrels(tmp_path: Path) -> None:
    ds = load_dataset(write_beir(tmp_path / "c", coir=True))
    assert ds.diagnostics["evaluated_queries"] == 4 and ds.name == "c"
    root = write_beir(tmp_path / "j")
    (root / "qrels" / "test.tsv").unlink()
    (root / "qrels" / "test.jsonl").write_text(
        "\n".join(json.dumps({"query_id": f"q{i}", "corpus_id": f"d{i}", "score": 1}) for i in range(1, 4)) + "\n"
    )
    assert load_dataset(root).diagnostics["evaluated_queries"] == 3


@pytest.mark.parametrize(
    ("where", "content", "message"),
    [
        ("corpus.jsonl", '{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": \n', r"corpus.jsonl:2: invalid JSON"),
        ("corpus.jsonl", '{"_id": "d1"}\n', r"corpus.jsonl:1: missing 'text'"),
        ("queries.jsonl", '{"text": "q"}\n', r"queries.jsonl:1: missing query id"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\thigh\n", r"test.tsv:2: relevance score must be an integer"),
        ("qrels/test.tsv", "q1 d1 1\n", r"test.tsv:1: expected 3 tab-separated columns"),
        # convert-formats rejects blank texts too; an empty string would embed as noise
        ("queries.jsonl", '{"_id": "q1", "text": "x"}\n{"_id": "q2", "text": " \\n"}\n', r"queries.jsonl:2: empty query 'text'"),
        ("corpus.jsonl", '{"_id": "d1", "text": "x"}\n{"_id": "d2", "title": "", "text": ""}\n',
         r"corpus.jsonl:2: empty document"),
        # once tracebacks: not UTF-8, an integer past Python's 4300-digit limit, deep nesting
        ("corpus.jsonl", b'{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": "\xe9t\xe9"}\n',
         r"corpus.jsonl:2: not valid UTF-8 \(byte 0xe9"),
        ("corpus.jsonl", b'{"_id": ' + b"7" * 5000 + b', "text": "x"}\n', r"corpus.jsonl:1: invalid JSON \(Exceeds the limit"),
        ("queries.jsonl", b'{"_id": "q1", "text": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n",
         r"queries.jsonl:1: invalid JSON \(nested too deeply\)$"),
        ("qrels/test.tsv", b"query-id\tcorpus-id\tscore\nq1\td\xff\t1\n", r"test.tsv:2: not valid UTF-8 \(byte 0xff"),
        ("corpus.jsonl", "", r"/bad/corpus.jsonl: no documents, nothing to evaluate$"),  # scored 0.0, exit 0
        # the tryout: JSON true was read as grade 1
        ("qrels/test.jsonl", '{"query-id": "q1", "corpus-id": "d1", "score": true}\n',
         r"test.jsonl:1: relevance score must be an integer, got True"),
        # 2^32 gave nDCG 2e18 with exit 0, 2^62 a segfault; float() also read "1_0" as 10
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t4294967296\n",
         r"test.tsv:2: relevance score '4294967296' is out of range \(grades are integers from -1000 to 1000\)$"),
        ("qrels/test.jsonl", '{"query-id": "q1", "corpus-id": "d1", "score": 5000}\n', r"test.jsonl:1: .* out of range"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1_0\n", r"test.tsv:2: relevance score must be an integer, got '1_0'"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t\u0661\n", r"test.tsv:2: relevance score must be an integer"),
        # too large for a float: was an OverflowError traceback
        ("qrels/test.jsonl", '{"query-id": "q1", "corpus-id": "d1", "score": 1' + "0" * 400 + '}\n',
         r"test.jsonl:1: relevance score '1000.*\(401 characters\)' is out of range"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t" + "9" * 5000 + "\n", r"test.tsv:2: .* out of range"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, where: str, content: str | bytes, message: str) -> None:
    root = write_beir(tmp_path / "bad")
    if where.endswith(".jsonl") and where.startswith("qrels/"):
        (root / "qrels" / "test.tsv").unlink()  # the .tsv is read first
    if isinstance(content, bytes):
        (root / where).write_bytes(content)
    else:
        (root / where).write_text(content)
    with pytest.raises(UserError, match=message):
        load_dataset(root)


def test_title_only_document_is_kept(tmp_path: Path) -> None:
    """BEIR corpora such as TREC-COVID hold documents with a title and an empty text."""
    root = write_beir(tmp_path / "t")
    (root / "corpus.jsonl").write_text('{"_id": "d1", "title": "Adding numbers", "text": ""}\n')
    ds = load_dataset(root)
    assert ds.corpus["title"].to_list() == ["Adding numbers"] and ds.diagnostics["qrels_unknown_docs"] == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queries": []}, r"e/queries.jsonl: no queries"),
        ({"qrels_lines": []}, r"e/qrels/test.tsv: no judgments"),
        ({"qrels_lines": ["q1\td1\t0", "q2\td2\t0"]}, r"e/qrels/test.tsv: no query .* grade >= 1"),
        ({"qrels_lines": ["qx\td1\t1"]}, r"e/qrels/test.tsv: no query of .*queries.jsonl has a judgment"),
    ],
)
def test_no_scorable_query_is_an_error(tmp_path: Path, kwargs: dict, message: str) -> None:
    """0.0 over 0 queries is not a score: an empty or unjudged dataset stops, naming the file."""
    root = write_beir(tmp_path / "e", **kwargs)
    with pytest.raises(UserError, match=message):
        load_dataset(root)


def test_trec_qrels_bom_and_header_order(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "t")
    (root / "qrels" / "test.tsv").unlink()
    (root / "qrels" / "test.trec").write_text("q1 0 d1 1\nq2  0\td2 1\nq3 d3 1\n")  # any whitespace, 4 or 3 columns
    assert load_dataset(root).diagnostics["evaluated_queries"] == 3
    root = write_beir(tmp_path / "b")
    (root / "qrels" / "test.tsv").write_text("\ufeffquery-id\tcorpus-id\tscore\nq1\td1\t1\n")  # a BOM before the header
    assert load_dataset(root).diagnostics["evaluated_queries"] == 1
    (root / "qrels" / "test.tsv").write_text("corpus-id\tquery-id\tscore\nd1\tq1\t1\n")
    with pytest.raises(UserError, match=r"test.tsv:1: header 'corpus-id query-id score': the columns must be query id, "
                                        r"corpus id, score in that order"):
        load_dataset(root)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\tx\nq1\td1\t1\t2\n")  # quoted as written
    with pytest.raises(UserError, match=r"test.tsv:1: header 'query-id corpus-id score x': the columns"):
        load_dataset(root)


def test_headerless_empty_qrels_file_is_an_error(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "e")
    (root / "qrels" / "test.tsv").write_text("")
    with pytest.raises(UserError, match=r"test.tsv: no judgments"):
        load_dataset(root)
    # a dataset built by hand (or loaded at a lower relevance_level) is checked before any encoding
    ds = load_dataset(write_beir(tmp_path / "g", qrels_lines=["q1\td1\t1"]), "g")
    ds.relevance_level = 2
    with pytest.raises(UserError, match=r"dataset g: no query has a judgment with grade >= 2"):
        evaluate_models([ds], EvaluateParams())


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="evaluation directory not found"):
        load_dataset(tmp_path / "nope")
    root = write_beir(tmp_path / "noqrels")
    (root / "qrels" / "test.tsv").unlink()
    with pytest.raises(UserError, match=r"no qrels/test.tsv"):
        load_dataset(root)


def test_params_validation() -> None:
    with pytest.raises(UserError, match=r"evaluate.main_metric"):
        validate_params(EvaluateParams, "evaluate", {"k_values": [1, 5], "main_metric": "ndcg_at_10"})
    with pytest.raises(UserError, match=r"evaluate.models"):
        validate_params(EvaluateParams, "evaluate", {"models": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(UserError, match=r"unknown params key 'evaluate.models.0.modle'"):
        validate_params(EvaluateParams, "evaluate", {"models": [{"modle": "x"}]})
    with pytest.raises(UserError, match=r"evaluate.models.0.name"):
        validate_params(EvaluateParams, "evaluate", {"models": [{"name": "a/b"}]})
    # a repeated cut-off is a slip (a typo for another k); it was accepted
    with pytest.raises(UserError, match=r"^params: params key 'evaluate.k_values': Value error, 10 is listed twice "
                                        r"\(got \[10, 1, 10\]\)$"):
        validate_params(EvaluateParams, "evaluate", {"k_values": [10, 1, 10]})


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"relevance_level": 0}, "evaluate.relevance_level"),  # pytrec_eval TypeError mid-run
        ({"relevance_level": -3}, "evaluate.relevance_level"),  # every grade, even 0, counted relevant
        ({"significance": {"n_permutations": -5}}, "evaluate.significance.n_permutations"),  # p = -0.25
        ({"significance": {"n_permutations": 0}}, "evaluate.significance.n_permutations"),  # p always 1.0
        ({"significance": {"n_permutations": 19}}, "evaluate.significance.n_permutations"),  # p >= 1/20 = alpha
        ({"significance": {"alpha": 0.01, "n_permutations": 99}}, "evaluate.significance.n_permutations"),
        ({"significance": {"alpha": 7}}, "evaluate.significance.alpha"),  # identical models "significant"
        ({"significance": {"alpha": 1.0}}, "evaluate.significance.alpha"),
        ({"significance": {"alpha": 0}}, "evaluate.significance.alpha"),
        ({"significance": {"seed": -1}}, "evaluate.significance.seed"),  # numpy rejects it after encoding
        ({"search_device": "banana"}, "evaluate.search_device"),  # failed after encoding, naming search.device
        ({"search_device": "cuda:x"}, "evaluate.search_device"),
    ],
)
def test_params_bounds(raw: dict, key: str) -> None:
    with pytest.raises(UserError, match=rf"params keys? (?:'[^']*' and )?'{re.escape(key)}'"):  # a rule over 2 keys names both
        validate_params(EvaluateParams, "evaluate", raw)


def test_params_bounds_accept_the_edges() -> None:
    p = validate_params(EvaluateParams, "evaluate", {"relevance_level": 2, "search_device": "cuda:1",
                                                      "significance": {"n_permutations": 20, "alpha": 0.05}})
    assert p.relevance_level == 2 and p.significance.n_permutations == 20
    assert validate_params(EvaluateParams, "evaluate", {"significance": {"alpha": 0.5, "n_permutations": 2}})


def test_missing_gpu_fails_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device this machine lacks names the evaluate key, before anything is encoded."""
    import torch

    from tripleforge import evaluation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(evaluation, "retrieve", lambda *a, **k: pytest.fail("encoded before the device check"))
    ds = load_dataset(write_beir(tmp_path / "d"))
    with pytest.raises(UserError, match=r"^evaluate.search_device: 'cuda' asked for"):
        evaluate_models([ds], EvaluateParams(search_device="cuda"))
    with pytest.raises(UserError, match=r"^evaluate.models.1.device: 'cuda:0' asked for"):
        check_models(EvaluateParams(models=[EvalModel(name="a"), EvalModel(name="b", device="cuda:0")]))


def test_empty_corpus_counts_empty_runs(tmp_path: Path) -> None:
    # an empty corpus.jsonl is an error (every query would score 0.0); a dataset built in code may
    # still have no documents, and its queries stay in the denominator with empty runs
    with pytest.raises(UserError, match=r"e/corpus.jsonl: no documents, nothing to evaluate$"):
        load_dataset(write_beir(tmp_path / "e", docs=[]))
    ds = load_dataset(write_beir(tmp_path / "full"), "e")
    ds = dataclasses.replace(ds, corpus=ds.corpus.clear())
    params = EvaluateParams(k_values=[1, 10])
    res = evaluate_models([ds], params)
    summary = summarize(res, [ds], params)
    entry = summary["models"]["minilm"]["e"]
    assert entry["evaluated_queries"] == 4 and entry["queries_with_empty_run"] == 4
    assert entry["overall"]["ndcg_at_10"] == 0.0


def test_a_corpus_of_ten_documents_or_fewer_is_warned_about(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tryout scored nDCG@10 = 1.0 on a one-document corpus without a word."""
    ds = load_dataset(write_beir(tmp_path / "small"), "small")
    evaluate_models([ds], EvaluateParams(k_values=[1, 10]))
    err = capsys.readouterr().err
    assert f"warning: evaluate: dataset small has only {ds.corpus.height} documents" in err
    big = dataclasses.replace(ds, corpus=pl.concat([ds.corpus] + [
        ds.corpus.with_columns(pl.col("doc_id") + f"_{i}") for i in range(3)]))
    evaluate_models([big], EvaluateParams(k_values=[1, 10]))
    assert big.corpus.height > 10 and "warning" not in capsys.readouterr().err


def test_small_corpus_warning_names_the_main_metric_k(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The warning said @10 whatever k_values held, and missed @100 on a 50-document corpus."""
    ds = load_dataset(write_beir(tmp_path / "small"), "small")
    evaluate_models([ds], EvaluateParams(k_values=[1, 3, 7], main_metric="ndcg_at_3"))
    assert "warning" not in capsys.readouterr().err  # 4 documents > 3
    evaluate_models([ds], EvaluateParams(k_values=[1, 7], main_metric="ndcg_at_7"))
    assert "top 7 holds all of them, so its @7 scores (ndcg_at_7) rank at most 4 candidates" in capsys.readouterr().err


def test_documents_tied_at_the_cut_are_taken_by_doc_id(tmp_path: Path) -> None:
    """The search cut ties by corpus position and the ranking by doc id: with three identical
    documents, nDCG@1 was 0 with k_values [1] and 1 with [1, 2]."""
    same = "def add(a, b):\n    return a + b"
    docs = [("zz", same), ("aa", same), ("mm", same)] + [(f"o{i}", f"def other_{i}(x):\n    return x * {i} - {i}")
                                                          for i in range(10)]
    ds = load_dataset(write_beir(tmp_path / "tie", docs, [("q1", "add two numbers", "t")], ["q1\taa\t1"]), "tie")
    assert list(retrieve(ds, EvalModel(), depth=1)["q1"]) == ["aa"]
    assert list(retrieve(ds, EvalModel(), depth=2)["q1"]) == ["aa", "mm"]
    values = [evaluate_models([ds], EvaluateParams(k_values=ks, main_metric="ndcg_at_1")).per_query["ndcg_at_1"][0]
              for ks in ([1], [1, 2])]
    assert values == [1.0, 1.0]
    # a tie wider than the spare hits, and past the first deeper search (9 -> 36 -> all 90)
    many = [(f"t{i:02d}", same) for i in reversed(range(80))] + docs[3:]
    ds = load_dataset(write_beir(tmp_path / "many", many, [("q1", "add two numbers", "t")], ["q1\tt00\t1"]), "many")
    assert list(retrieve(ds, EvalModel(), depth=2)["q1"]) == ["t00", "t01"]


def test_minilm_retrieval_and_summary(tmp_path: Path) -> None:
    """The real bundled MiniLM finds the matching snippet for these obvious queries."""
    ds = load_dataset(write_beir(tmp_path / "m"), "m")
    run = retrieve(ds, EvalModel(), depth=3)
    assert set(run) == {"q1", "q2", "q3", "q4"} and all(len(h) == 3 for h in run.values())
    top1 = {q: max(h, key=h.get) for q, h in run.items()}
    assert top1 == {"q1": "d1", "q2": "d2", "q3": "d3", "q4": "d4"}

    params = validate_params(
        EvaluateParams, "evaluate",
        {"k_values": [1, 3], "main_metric": "mrr_at_3", "ignore_identical_ids": True,
         "models": [{"name": "a"}, {"name": "b", "query_prompts": False}],
         "significance": {"n_permutations": 200}},
    )
    res = evaluate_models([ds], params)
    assert res.per_query.columns[:4] == ["dataset", "model", "query_id", "task"]
    assert res.per_query.height == 8
    summary = summarize(res, [ds], params)
    assert summary["models"]["a"]["m"]["overall"]["mrr_at_3"] == 1.0
    assert set(summary["models"]["a"]["m"]["per_task"]) == {"text2code", "text2sql"}
    assert summary["models"]["a"]["m"]["per_task"]["text2sql"]["queries"] == 1
    comp = summary["comparison"]["b"]["m"]
    assert comp["queries"] == 4 and comp["delta"] == 0.0 and comp["p_randomization"] == 1.0
    curves = curve_frames(summary, params.k_values)
    assert list(curves) == ["a__m", "b__m"] and curves["a__m"]["k"].to_list() == [1, 3]
    bars = per_task_frame(summary)
    assert bars["series"].to_list() == ["a/m/text2code", "a/m/text2sql", "b/m/text2code", "b/m/text2sql"]


def test_reads_what_convert_formats_writes(tmp_path: Path) -> None:
    """Contract check with `beir.py` (convert-formats): ids, empty prompt/task, qrels header."""
    import polars as pl

    from tripleforge.beir import eval_tables
    from tripleforge.beir import write_beir as export

    grouped = pl.DataFrame({
        "qid": ["p1", "p2"], "query": ["add numbers", "read a file"], "task": ["text2code", None],
        "prompt": [None, "Retrieve code: "], "pos": [[DOCS[0][1]], [DOCS[1][1]]], "neg": [[DOCS[2][1]], []],
    })
    export(tmp_path / "eval", *eval_tables(grouped))
    ds = load_dataset(tmp_path / "eval", "eval")
    assert ds.diagnostics["evaluated_queries"] == 2 and ds.diagnostics["corpus_docs"] == 3
    assert ds.diagnostics["qrels_unknown_docs"] == 0
    assert ds.queries["task"].to_list() == ["text2code", "all"]
    assert ds.queries["prompt"].to_list() == [None, "Retrieve code: "]  # null: the model default applies


def test_two_pairs_that_would_write_one_curve_file_are_an_error() -> None:
    # the tryout: model `a` on dataset `b__tiny` and model `a__b` on `tiny` both wrote a__b__tiny.csv
    with pytest.raises(UserError, match=r"model 'a__b' on dataset 'tiny' and model 'a' on dataset 'b__tiny' would both "
                                        r"write the curve a__b__tiny.csv"):
        check_curve_stems(["a", "a__b"], ["tiny", "b__tiny"])
    check_curve_stems(["a", "b"], ["eval", "tiny"])  # distinct stems: fine
