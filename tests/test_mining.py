"""mine_negatives with the real MiniLM on tiny frames, and the stage CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from tripleforge.errors import UserError
from tripleforge.hashing import normalize_text, text_id
from tripleforge.io import write_parquet
from tripleforge.embed import bundled_minilm_dir, encode_documents, encode_queries
from tripleforge.mining import SCORE_RULES, MineParams, mine_metrics, mine_negatives

ROOT = Path(__file__).resolve().parents[1]

POOL_TEXTS = [
    "def add(a, b):\n    return a + b",
    "def subtract(a, b):\n    return a - b",
    "def multiply(a, b):\n    return a * b",
    "def read_file(path):\n    with open(path) as fh:\n        return fh.read()",
    "def write_file(path, text):\n    with open(path, 'w') as fh:\n        fh.write(text)",
    "def reverse(s):\n    return s[::-1]",
    "def is_even(n):\n    return n % 2 == 0",
    "class Stack:\n    def __init__(self):\n        self.items = []",
    "def mean(xs):\n    return sum(xs) / len(xs)",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "import json\ndef load(path):\n    return json.load(open(path))",
    "def square(x):\n    return x * x",
]


def make_pairs() -> pl.DataFrame:
    rows = [
        ("p1", POOL_TEXTS[0], "add two numbers", [POOL_TEXTS[0]], ["def plus(x, y): return x + y"]),
        ("p2", POOL_TEXTS[3], "read the contents of a file", [POOL_TEXTS[3]], []),
        # same normalized query as p2, another positive: each row must mask both
        ("p3", POOL_TEXTS[10], "read the  contents of a file", [POOL_TEXTS[10]], []),
        ("p4", POOL_TEXTS[9], "fibonacci number", [POOL_TEXTS[9], "def fibo(n): ..."], []),
    ]
    return pl.DataFrame(
        {
            "pair_id": [r[0] for r in rows],
            "doc_id": [text_id(r[1]) for r in rows],
            "task": ["web_code_retrieval"] * 4,
            "prompt": ["Given a question, retrieve code that answers it."] * 4,
            "query": [r[2] for r in rows],
            "pos": [r[3] for r in rows],
            "neg": [r[4] for r in rows],
        }
    )


def make_pool(texts=POOL_TEXTS) -> pl.DataFrame:
    return pl.DataFrame({"doc_id": [text_id(t) for t in texts], "text": texts})


def test_mine_masks_positives_groups_queries_and_reports(tmp_path):
    params = MineParams(num_negatives=4, range_max=20, relative_margin=None, cache_dir=str(tmp_path))
    pairs = make_pairs()
    out, report = mine_negatives(pairs, make_pool(), params)
    assert out.get_column("pair_id").to_list() == ["p1", "p2", "p3", "p4"]
    for col in ("pos_scores", "neg_scores", "neg_ranks", "pos_rank", "split"):
        assert col in out.columns
    group = {}
    for row in out.iter_rows(named=True):
        group.setdefault(normalize_text(row["query"]), set()).update(text_id(p) for p in row["pos"])
    for row in out.iter_rows(named=True):
        neg_ids = [text_id(n) for n in row["neg"]]
        assert not set(neg_ids) & group[normalize_text(row["query"])]
        assert text_id(row["query"]) not in neg_ids
        assert len(neg_ids) == len(set(neg_ids)) == 4
        assert len(row["neg_scores"]) == len(row["neg_ranks"]) == 4
        assert row["neg_ranks"] == sorted(row["neg_ranks"])
        assert row["neg_scores"] == sorted(row["neg_scores"], reverse=True)
        assert len(row["pos_scores"]) == len(row["pos"])
    # MiniLM ranks the obvious positive first for these queries
    assert out.filter(pl.col("pair_id") == "p1").get_column("pos_rank").item() == 0
    metrics = mine_metrics(out, report, pairs.height, params)
    assert metrics["pairs"] == 4 and metrics["short_of_negatives"] == 0
    assert metrics["skipped"]["masked_positive_or_query"] >= 4
    assert metrics["pos_rank"]["histogram"]["1"] >= 1  # 1-based buckets, as the evaluate report
    assert set(metrics["split"]) == {"train", "eval"}


def test_relative_margin_bounds_negatives(tmp_path):
    params = MineParams(num_negatives=15, range_max=50, relative_margin=0.9, cache_dir=str(tmp_path))
    out, report = mine_negatives(make_pairs(), make_pool(), params)
    for row in out.iter_rows(named=True):
        ref = min(row["pos_scores"])
        assert all(s <= ref - abs(ref) * 0.1 + 1e-6 for s in row["neg_scores"])
    assert report.short_of_negatives == out.height  # 12 candidates cannot give 15 negatives
    assert report.skipped.get("relative_margin", 0) > 0


def test_short_pool_is_counted_not_padded_and_can_drop(tmp_path):
    pool = make_pool(POOL_TEXTS[:3])
    params = MineParams(num_negatives=15, range_max=30, fallback_range_max=100, relative_margin=None,
                        cache_dir=str(tmp_path))
    out, report = mine_negatives(make_pairs(), pool, params)
    assert report.short_of_negatives == 4
    for row in out.iter_rows(named=True):
        assert not {text_id(n) for n in row["neg"]} & {text_id(p) for p in row["pos"]}
    dropped, rep2 = mine_negatives(make_pairs(), pool, params.model_copy(update={"drop_short": True}))
    assert dropped.height == 0 and rep2.skipped["short_dropped"] == 4


def test_random_and_mixed_neg_types_and_llm_negatives(tmp_path):
    base = MineParams(num_negatives=4, range_max=20, relative_margin=None, cache_dir=str(tmp_path))
    for neg_type in ("random", "mixed"):
        out, _ = mine_negatives(make_pairs(), make_pool(), base.model_copy(update={"neg_type": neg_type}))
        for row in out.iter_rows(named=True):
            ids = [text_id(n) for n in row["neg"]]
            assert len(ids) == len(set(ids)) == 4
            assert not set(ids) & {text_id(p) for p in row["pos"]}
    kept, _ = mine_negatives(make_pairs(), make_pool(), base.model_copy(update={"keep_llm_negatives": True}))
    p1 = kept.filter(pl.col("pair_id") == "p1").row(0, named=True)
    assert p1["neg"][-1] == "def plus(x, y): return x + y" and p1["neg_ranks"][-1] is None
    # the LLM negative takes the last mined one's place: never more than num_negatives
    hard, _ = mine_negatives(make_pairs(), make_pool(), base)
    mined = hard.filter(pl.col("pair_id") == "p1").row(0, named=True)
    assert len(p1["neg"]) == len(p1["neg_scores"]) == 4
    assert p1["neg"][:3] == mined["neg"][:3] and p1["neg_ranks"][:3] == mined["neg_ranks"][:3]


def test_filter_rank_and_bad_input(tmp_path):
    params = MineParams(num_negatives=2, range_max=10, relative_margin=None, filter_rank=0, cache_dir=str(tmp_path))
    out, report = mine_negatives(make_pairs(), make_pool(), params)
    assert out.height == 0 and report.skipped["filter_rank"] == 4
    with pytest.raises(UserError, match="missing column"):
        mine_negatives(make_pairs().drop("pos"), make_pool(), params)
    with pytest.raises(UserError, match="no documents"):
        mine_negatives(make_pairs(), make_pool([]).cast({"text": pl.String}), params)
    bad = make_pairs().with_columns(pl.when(pl.col("pair_id") == "p4").then(pl.lit([], pl.List(pl.String)))
                                    .otherwise(pl.col("pos")).alias("pos"))
    out, report = mine_negatives(bad, make_pool(), params.model_copy(update={"filter_rank": None}))
    assert out.height == 3 and report.skipped["no_positive"] == 1


def test_cross_encoder_rescoring_gives_teacher_scores(tmp_path):
    """A tiny cross-encoder built from the bundled MiniLM weights (seeded head) rescoring pos/neg."""
    import torch
    from sentence_transformers import CrossEncoder

    from tripleforge.embed import bundled_minilm_dir

    torch.manual_seed(0)
    ce_dir = tmp_path / "ce"
    CrossEncoder(str(bundled_minilm_dir()), num_labels=1, device="cpu").save(str(ce_dir))
    params = MineParams(num_negatives=2, range_max=10, relative_margin=None, rescore_model=str(ce_dir),
                        cache_dir=str(tmp_path))
    out, _ = mine_negatives(make_pairs(), make_pool(), params)
    row = out.row(0, named=True)
    assert row["dense_pos_scores"] != row["pos_scores"]
    assert len(row["neg_scores"]) == len(row["neg"]) == 2
    ce = CrossEncoder(str(ce_dir), device="cpu")
    expect = float(ce.predict([(row["query"], row["neg"][0])], activation_fn=torch.nn.Identity())[0])  # raw logits
    assert row["neg_scores"][0] == pytest.approx(expect, abs=1e-4)


def _stage(tmp_path, *extra):
    return subprocess.run(
        [sys.executable, str(ROOT / "stages/mine_negatives.py"), "--params", str(tmp_path / "params.yaml"),
         "--pairs", str(tmp_path / "pairs.parquet"), "--pool", str(tmp_path / "pool.parquet"),
         "--out", str(tmp_path / "out/triplets.parquet"), "--metrics", str(tmp_path / "out/m.json"),
         "--plot", str(tmp_path / "out/scores.csv"), *extra],
        capture_output=True, text=True, cwd=tmp_path,
    )


def test_stage_warns_when_no_triplet_is_written(tmp_path):
    write_parquet(make_pairs().head(0), tmp_path / "pairs.parquet")
    write_parquet(make_pool(), tmp_path / "pool.parquet")
    (tmp_path / "params.yaml").write_text(f"mine_negatives:\n  range_max: 20\n  cache_dir: {tmp_path / 'cache'}\n")
    proc = _stage(tmp_path)
    assert proc.returncode == 0 and proc.stdout == ""
    assert f"warning: mine-negatives: no triplet written (of 0 pairs in {tmp_path / 'pairs.parquet'}" in proc.stderr


def test_stage_cli_byte_identical_and_errors(tmp_path):
    write_parquet(make_pairs(), tmp_path / "pairs.parquet")
    write_parquet(make_pool(), tmp_path / "pool.parquet")
    (tmp_path / "params.yaml").write_text(
        f"mine_negatives:\n  num_negatives: 3\n  range_max: 20\n  cache_dir: {tmp_path / 'cache'}\n"
    )
    first = _stage(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    bytes1 = (tmp_path / "out/triplets.parquet").read_bytes()
    assert _stage(tmp_path).returncode == 0
    assert (tmp_path / "out/triplets.parquet").read_bytes() == bytes1
    metrics = json.loads((tmp_path / "out/m.json").read_text())
    assert {"pairs", "short_of_negatives", "skipped", "pos_rank", "search", "llm_negatives"} <= set(metrics)
    assert metrics["untracked_inputs"] == []  # the bundled model is pinned by its package
    md = tmp_path / "my-embedder"  # a folder outside data/external/: dvc repro would not see it retrained
    md.symlink_to(bundled_minilm_dir())
    own = _stage(tmp_path, "--set", f"embedder.model={md}")
    assert json.loads((tmp_path / "out/m.json").read_text())["untracked_inputs"] == [str(md)]
    assert f"warning: mine_negatives.embedder.model: {md} is outside data/external/" in own.stderr
    # a one-line summary on stderr, as the other stages print; p1's LLM negative is dropped by
    # the default keep_llm_negatives: false, which a warning says
    lines = first.stderr.strip().splitlines()
    assert lines[-1] == (f"mine-negatives: 4 of 4 pairs, {metrics['negatives_mean']:.2f} negatives per pair "
                         f"(num_negatives 3), {metrics['short_of_negatives']} short of negatives "
                         f"({metrics['without_negatives']} with none), 0 of 1 LLM "
                         f"negatives kept -> {tmp_path / 'out/triplets.parquet'}")
    assert sum("mine_negatives.keep_llm_negatives is false" in line for line in lines) == 1
    kept = _stage(tmp_path, "--set", "keep_llm_negatives=true", "--set", "relative_margin=null")
    assert kept.returncode == 0 and kept.stdout == "" and "keep_llm_negatives is false" not in kept.stderr
    assert kept.stderr.strip().splitlines()[-1].endswith(", 1 of 1 LLM negatives kept -> "
                                                         f"{tmp_path / 'out/triplets.parquet'}")
    csv = (tmp_path / "out/scores.csv").read_text().splitlines()
    assert csv[0] == "score,pos,neg" and len(csv) == 21
    bad = _stage(tmp_path, "--set", "num_negativs=3")
    assert bad.returncode == 2 and "mine_negatives.num_negativs" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "pool.parquet").unlink()
    missing = _stage(tmp_path)
    assert missing.returncode == 2 and "pool file not found" in missing.stderr


def _no_encoding(monkeypatch):
    """Fail the test if mining starts encoding: the checks under test must come first."""
    from tripleforge import mining

    def fail(*_a, **_k):
        raise AssertionError("encoded before checking the input")

    monkeypatch.setattr(mining, "encode_documents", fail)
    monkeypatch.setattr(mining, "encode_queries", fail)


@pytest.mark.parametrize(
    "column,value,expected",
    [
        ("query", pl.int_range(pl.len()), "String"),
        ("query", pl.col("query").cast(pl.Categorical), "String"),
        ("pos", pl.col("pos").list.first(), "List(String)"),
        ("pair_id", pl.int_range(pl.len()), "String"),
    ],
)
def test_pairs_of_the_wrong_type_name_column_and_type(monkeypatch, tmp_path, column, value, expected):
    _no_encoding(monkeypatch)
    pairs = make_pairs().with_columns(value.alias(column))
    with pytest.raises(UserError, match=rf"^pairs: column '{column}' has type .*, expected {re.escape(expected)}$"):
        mine_negatives(pairs, make_pool(), MineParams(cache_dir=str(tmp_path)))
    with pytest.raises(UserError, match=r"^pool: column 'text' has type Int64, expected String$"):
        mine_negatives(make_pairs(), make_pool().with_columns(pl.int_range(pl.len()).alias("text")),
                       MineParams(cache_dir=str(tmp_path)))


def test_all_null_columns_are_read_as_their_type(tmp_path):
    """A pairs file whose `neg` and `prompt` are null everywhere is valid (typed Null by the writer)."""
    pairs = make_pairs().with_columns(pl.lit(None).alias("neg"), pl.lit(None).alias("prompt"))
    params = MineParams(num_negatives=2, range_max=10, relative_margin=None, cache_dir=str(tmp_path))
    out, _ = mine_negatives(pairs, make_pool(), params)
    assert out.height == 4 and out.schema["prompt"] == pl.String


def test_blank_pool_rows_are_counted_and_an_all_blank_pool_is_empty(monkeypatch, tmp_path):
    params = MineParams(num_negatives=2, range_max=10, relative_margin=None, cache_dir=str(tmp_path))
    # U+001C and U+2003 are whitespace to Python (normalize_text), and U+001C is not to Rust
    pool = pl.concat([make_pool(), pl.DataFrame({"doc_id": ["b1", "b2", "b3"], "text": [None, " \n ", "\x1c\u2003"]})])
    out, report = mine_negatives(make_pairs(), pool, params)
    assert report.skipped["pool_empty_text"] == 3 and out.height == 4
    assert mine_metrics(out, report, 4, params)["skipped"]["pool_empty_text"] == 3
    _no_encoding(monkeypatch)
    blank = pl.DataFrame({"doc_id": ["b1", "b2"], "text": [None, "  "]})
    with pytest.raises(UserError, match=r"^pool: no documents; .*all 2 rows have null or blank text"):
        mine_negatives(make_pairs(), blank, params)
    with pytest.raises(UserError, match=r"^pool: no documents; .*\(the pool file is empty\)$"):
        mine_negatives(make_pairs(), make_pool([]).cast({"text": pl.String}), params)


def test_rescore_model_and_device_checked_before_any_encoding(monkeypatch, tmp_path):
    import torch

    _no_encoding(monkeypatch)
    params = MineParams(cache_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"^mine_negatives.rescore_model: '/nonexistent' is not a local"):
        mine_negatives(make_pairs(), make_pool(), params.model_copy(update={"rescore_model": "/nonexistent"}))
    with pytest.raises(UserError, match=r"^mine_negatives.rescore_model: 'minilm' is the bundled bi-encoder"):
        mine_negatives(make_pairs(), make_pool(), params.model_copy(update={"rescore_model": "minilm"}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cuda = params.model_copy(update={"search": params.search.model_copy(update={"device": "cuda"})})
    with pytest.raises(UserError, match=r"^mine_negatives.search.device: 'cuda' asked for"):
        mine_negatives(make_pairs(), make_pool(), cuda)


def test_stage_names_the_given_files_in_input_errors(tmp_path):
    write_parquet(make_pairs().with_columns(pl.int_range(pl.len()).alias("query")), tmp_path / "pairs.parquet")
    write_parquet(make_pool(), tmp_path / "pool.parquet")
    write_parquet(make_pool([]).cast({"text": pl.String}), tmp_path / "my_empty_pool.parquet")
    (tmp_path / "params.yaml").write_text(f"mine_negatives:\n  cache_dir: {tmp_path / 'cache'}\n")
    typed = _stage(tmp_path)
    assert typed.returncode == 2 and "Traceback" not in typed.stderr
    assert typed.stderr.strip() == f"error: {tmp_path / 'pairs.parquet'}: column 'query' has type Int64, expected String"
    write_parquet(make_pairs(), tmp_path / "pairs.parquet")
    empty = _stage(tmp_path, "--pool", str(tmp_path / "my_empty_pool.parquet"))
    assert empty.returncode == 2
    assert empty.stderr.startswith(f"error: {tmp_path / 'my_empty_pool.parquet'}: no documents")
    assert "data/sample/pool.parquet" not in empty.stderr
    assert not (tmp_path / "out").exists()
    # an output that cannot be written is named before any work, and nothing is written
    (tmp_path / "a_file").write_text("")
    blocked = _stage(tmp_path, "--metrics", str(tmp_path / "a_file/m.json"))
    assert blocked.returncode == 2 and "Traceback" not in blocked.stderr
    assert blocked.stderr.strip() == f"error: {tmp_path / 'a_file/m.json'}: cannot write this output: '{tmp_path / 'a_file'}' is a file"
    assert not (tmp_path / "out").exists()


def test_stage_computes_everything_before_writing(monkeypatch, tmp_path):
    """A failure after mining (here in the metrics) leaves no output at all, not a lone parquet."""
    import importlib.util

    from typer.testing import CliRunner

    from tripleforge import mining
    from tripleforge.mining import MineReport

    triplets = make_pairs().with_columns(
        pl.lit([0.5], pl.List(pl.Float64)).alias("pos_scores"), pl.lit([0.1], pl.List(pl.Float64)).alias("neg_scores"),
        pl.lit(0, pl.Int64).alias("pos_rank"), pl.lit("train").alias("split"),
    )
    monkeypatch.setattr(mining, "mine_negatives", lambda *_a: (triplets, MineReport()))

    def broken(*_a):
        raise RuntimeError("metrics failed")

    monkeypatch.setattr(mining, "mine_metrics", broken)
    monkeypatch.syspath_prepend(str(ROOT / "stages"))  # for its `import _src`
    spec = importlib.util.spec_from_file_location("mine_stage", ROOT / "stages/mine_negatives.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    write_parquet(make_pairs(), tmp_path / "pairs.parquet")
    write_parquet(make_pool(), tmp_path / "pool.parquet")
    (tmp_path / "params.yaml").write_text("mine_negatives: {}\n")
    result = CliRunner().invoke(stage.app, [
        "--params", str(tmp_path / "params.yaml"), "--pairs", str(tmp_path / "pairs.parquet"),
        "--pool", str(tmp_path / "pool.parquet"), "--out", str(tmp_path / "out/t.parquet"),
        "--metrics", str(tmp_path / "out/m.json"), "--plot", str(tmp_path / "out/s.csv"),
    ])
    assert isinstance(result.exception, RuntimeError)
    assert not (tmp_path / "out/t.parquet").exists()


def test_kept_llm_negatives_get_the_query_group_mask(tmp_path):
    """p3 shares p2's normalized query: p2's positive is as much a positive for p3 as for p2."""
    params = MineParams(num_negatives=2, range_max=10, relative_margin=None, keep_llm_negatives=True,
                        cache_dir=str(tmp_path))
    plus = "def plus(x, y): return x + y"
    llm = {"p3": [POOL_TEXTS[3].replace("\n", "\n  "), "read the contents  of a file", " \n", plus, plus]}
    pairs = make_pairs().with_columns(
        pl.col("pair_id").replace_strict(llm, default=pl.col("neg"), return_dtype=pl.List(pl.String)).alias("neg"))
    out, report = mine_negatives(pairs, make_pool(), params)
    p3 = out.filter(pl.col("pair_id") == "p3").row(0, named=True)
    assert p3["neg"][1:] == [plus] and p3["neg_ranks"][1:] == [None]  # plus took the second mined place
    assert not {text_id(n) for n in p3["neg"]} & {text_id(POOL_TEXTS[3]), text_id(POOL_TEXTS[10])}
    # p2's positive and the query text; one blank; the second `plus`
    assert report.llm_negatives["dropped_by_mask"] == {"empty_text": 1, "positive_or_query": 2, "eval_text": 0,
                                                       "duplicate": 1}
    assert report.llm_negatives["kept"] == 2 and report.llm_negatives["in_pairs"] == 6  # p1 has `plus` too
    # with the score rules on, the masks still come first: a masked positive outscores the
    # positive, and is counted as masked, never as a rule's drop (nor kept)
    ruled, rep2 = mine_negatives(pairs, make_pool(), params.model_copy(update={"relative_margin": 0.95}))
    p3 = ruled.filter(pl.col("pair_id") == "p3").row(0, named=True)
    assert not {text_id(n) for n in p3["neg"]} & {text_id(POOL_TEXTS[3]), text_id(POOL_TEXTS[10]), text_id(p3["query"])}
    assert len({text_id(n) for n in p3["neg"]}) == len(p3["neg"]) == len(p3["neg_scores"])
    assert rep2.llm_negatives["dropped_by_mask"] == report.llm_negatives["dropped_by_mask"]


# MiniLM scores for "add two numbers" (p1's query; its positive, POOL_TEXTS[0], scores about 0.65,
# so relative_margin 0.95 allows at most about 0.62): sum_two about 0.68 (it outscores the
# positive: a likely false negative), plus 0.56, stack 0.10, sql 0.05
SUM_TWO = 'def sum_two(a, b):\n    """Add two numbers."""\n    return a + b'
PLUS = "def plus(x, y): return x + y"
STACK = "class Stack:\n    pass"
SQL = "SELECT name FROM users;"


def llm_pairs(negs: list[str]) -> pl.DataFrame:
    return make_pairs().with_columns(
        pl.when(pl.col("pair_id") == "p1").then(pl.lit(negs, pl.List(pl.String))).otherwise(pl.col("neg")).alias("neg"))


def llm_accounting_holds(llm: dict) -> bool:
    return llm["in_pairs"] == (llm["kept"] + llm["dropped_by_setting"] + llm["dropped_with_pair"]
                               + sum(llm["dropped_by_mask"].values()) + sum(llm["dropped_by_rule"].values())
                               + llm["dropped_over_num_negatives"])


@pytest.mark.parametrize("rules,kept,dropped", [
    ({"relative_margin": 0.95}, [PLUS, STACK, SQL], {"relative_margin": 1}),  # 3 > num_negatives: see below
    ({"relative_margin": None, "max_score": 0.6, "min_score": 0.2}, [PLUS], {"max_score": 1, "min_score": 2}),
    ({"relative_margin": None, "margin": 0.2}, [STACK, SQL], {"margin": 2}),
])
def test_kept_llm_negatives_pass_the_score_rules_of_mined_ones(tmp_path, rules, kept, dropped):
    """An LLM negative above its positive's relative margin was once kept (0.708 against a positive
    at 0.621): the score rules now apply to LLM negatives as to mined ones, drops counted by rule."""
    params = MineParams(num_negatives=3, range_max=10, keep_llm_negatives=True, cache_dir=str(tmp_path), **rules)
    out, report = mine_negatives(llm_pairs([SUM_TWO, PLUS, STACK, SQL]), make_pool(), params)
    p1 = out.filter(pl.col("pair_id") == "p1").row(0, named=True)
    n_mined = sum(r is not None for r in p1["neg_ranks"])
    assert p1["neg"][n_mined:] == kept and p1["neg_ranks"][n_mined:] == [None] * len(kept)
    assert report.llm_negatives["dropped_by_rule"] == {**dict.fromkeys(SCORE_RULES, 0), **dropped}
    assert report.llm_negatives["kept"] == len(kept) and llm_accounting_holds(report.llm_negatives)
    # the scores stay aligned with the texts: each is the query's dense score of that negative
    q = encode_queries([p1["query"]], params.embedder, None, params.cache_dir)[0]
    e = encode_documents(kept, params.embedder, params.cache_dir)
    assert p1["neg_scores"][n_mined:] == pytest.approx([float(q @ v) for v in e], abs=1e-6)
    ref = min(p1["pos_scores"])
    for s in p1["neg_scores"]:  # every negative, mined or written, obeys every rule set
        assert rules.get("relative_margin") is None or s <= ref - abs(ref) * (1 - rules["relative_margin"]) + 1e-9
        assert rules.get("margin") is None or s <= ref - rules["margin"] + 1e-9
        assert s <= rules.get("max_score", 1.0) + 1e-9 and s >= rules.get("min_score", -1.0) - 1e-9
    assert mine_metrics(out, report, 4, params)["llm_negatives"] == report.llm_negatives


def test_llm_negatives_dropped_by_the_setting_are_counted_and_warned(tmp_path, capsys):
    params = MineParams(num_negatives=2, range_max=10, cache_dir=str(tmp_path))
    out, report = mine_negatives(llm_pairs([PLUS, STACK]), make_pool(), params)
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "keep_llm_negatives" in line]
    assert warning == ["warning: mine-negatives: the pairs carry 2 LLM-written negatives (generate.gen_hard_neg) and "
                       "mine_negatives.keep_llm_negatives is false, so all are dropped; set it to true to keep those "
                       "that pass the masks and score rules"]
    assert not {PLUS, STACK} & set(out.get_column("neg").explode().to_list())
    m = mine_metrics(out, report, 4, params)["llm_negatives"]
    assert (m["in_pairs"], m["kept"], m["dropped_by_setting"]) == (2, 0, 2) and llm_accounting_holds(m)
    mine_negatives(llm_pairs([]), make_pool(), params)  # nothing to drop, nothing to say
    assert "keep_llm_negatives" not in capsys.readouterr().err


def test_llm_negatives_of_dropped_pairs_are_counted_with_their_pair(tmp_path):
    pairs = pl.concat([llm_pairs([PLUS, STACK]), make_pairs().slice(0, 1).with_columns(
        pl.lit("p0").alias("pair_id"), pl.lit("  ").alias("query"), pl.lit([SQL], pl.List(pl.String)).alias("neg"))])
    params = MineParams(num_negatives=2, range_max=10, relative_margin=None, keep_llm_negatives=True,
                        cache_dir=str(tmp_path))
    out, report = mine_negatives(pairs, make_pool(), params)
    llm = report.llm_negatives
    assert (llm["in_pairs"], llm["kept"], llm["dropped_with_pair"]) == (3, 2, 1) and llm_accounting_holds(llm)
    none, report = mine_negatives(pairs, make_pool(), params.model_copy(update={"filter_rank": 0}))
    llm = report.llm_negatives
    assert none.height == 0 and (llm["kept"], llm["dropped_with_pair"]) == (0, 3) and llm_accounting_holds(llm)
    assert "__llm_negatives_kept" not in out.columns


@pytest.mark.parametrize("update", [{}, {"filter_rank": 0}, {"filter_rank": 1},
                                    {"drop_short": True, "num_negatives": 12}])
def test_pos_rank_histogram_describes_the_output_pairs(tmp_path, update):
    params = MineParams(num_negatives=2, range_max=20, relative_margin=None, cache_dir=str(tmp_path))
    params = params.model_copy(update=update)
    out, report = mine_negatives(make_pairs(), make_pool(), params)
    metrics = mine_metrics(out, report, 4, params)
    assert sum(metrics["pos_rank"]["histogram"].values()) == metrics["pairs"] == out.height
    assert metrics["pos_rank"]["found"] == out.get_column("pos_rank").drop_nulls().len()


def test_blank_positive_texts_are_counted(tmp_path):
    params = MineParams(num_negatives=2, range_max=10, relative_margin=None, cache_dir=str(tmp_path))
    pos = {"p1": ["", POOL_TEXTS[0]], "p2": [" \x1f\n"], "p4": [POOL_TEXTS[9], None, "def fibo(n): ..."]}
    pairs = make_pairs().with_columns(
        pl.col("pair_id").replace_strict(pos, default=pl.col("pos"), return_dtype=pl.List(pl.String)).alias("pos"))
    out, report = mine_negatives(pairs, make_pool(), params)
    assert out.get_column("pair_id").to_list() == ["p1", "p3", "p4"]
    assert out.get_column("pos").to_list()[::2] == [[POOL_TEXTS[0]], [POOL_TEXTS[9], "def fibo(n): ..."]]
    assert report.skipped["empty_positive_text"] == 3 and report.skipped["no_positive"] == 1


def test_blank_queries_are_counted_by_pythons_whitespace(tmp_path):
    """A query of separators (U+001D) normalizes to "" like a space-only one: neither is mined."""
    params = MineParams(num_negatives=2, range_max=10, relative_margin=None, cache_dir=str(tmp_path))
    pairs = make_pairs().with_columns(
        pl.col("pair_id").replace_strict({"p1": "\x1d", "p3": " \t"}, default=pl.col("query")).alias("query"))
    out, report = mine_negatives(pairs, make_pool(), params)
    assert out.get_column("pair_id").to_list() == ["p2", "p4"]
    assert report.skipped["empty_query"] == 2


def test_rank_window_past_every_candidate_fails_before_encoding(monkeypatch, tmp_path, capsys):
    from tripleforge.mining import check_rank_window

    _no_encoding(monkeypatch)
    # code/eval: 12 pool texts + 1 positive outside the pool ("def fibo(n): ...") = 13 candidates;
    # code/train: the pool without the eval documents = 10, the smallest set, named with the advice
    # that holds for every set
    params = MineParams(range_min=13, range_max=20, cache_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"^mine_negatives.range_min: 13 is past the last of the 10 candidates "
                                        r"\(pool \+ code positives: candidate set 'code/train'\).*set range_min below 10$"):
        mine_negatives(make_pairs(), make_pool(), params)
    capsys.readouterr()  # what mine_negatives said (the warning about p1's dropped LLM negative)
    with pytest.raises(UserError, match="no fallback window"):  # a fallback as far out helps no more
        check_rank_window(params.model_copy(update={"fallback_range_min": 13, "fallback_range_max": 30}), 13)
    check_rank_window(params.model_copy(update={"range_min": 12}), 13)
    check_rank_window(params.model_copy(update={"neg_type": "random"}), 13)  # no window is used
    assert capsys.readouterr().err == ""
    check_rank_window(params.model_copy(update={"fallback_range_max": 10}), 13)
    err = capsys.readouterr().err
    assert err.startswith("warning: mine_negatives.range_min: 13") and "fallback window [0, 10)" in err


def test_duplicate_pair_ids_fail_naming_the_first(monkeypatch, tmp_path):
    _no_encoding(monkeypatch)
    pairs = pl.concat([make_pairs(), make_pairs().slice(2, 1), make_pairs().slice(1, 1)])
    with pytest.raises(UserError, match=r"^pairs: duplicate pair_id 'p2' \(4 rows"):
        mine_negatives(pairs, make_pool(), MineParams(cache_dir=str(tmp_path)))
    write_parquet(pairs, tmp_path / "pairs.parquet")
    write_parquet(make_pool(), tmp_path / "pool.parquet")
    (tmp_path / "params.yaml").write_text(f"mine_negatives:\n  cache_dir: {tmp_path / 'cache'}\n")
    stage = _stage(tmp_path)
    assert stage.returncode == 2
    assert stage.stderr.startswith(f"error: {tmp_path / 'pairs.parquet'}: duplicate pair_id 'p2'")
    assert "\n" not in stage.stderr.strip() and not (tmp_path / "out").exists()
    nulls = make_pairs().with_columns(pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise(pl.col("pair_id")).alias("pair_id"))
    with pytest.raises(UserError, match=r"^pairs: 1 row\(s\) have a null pair_id"):
        mine_negatives(nulls, make_pool(), MineParams(cache_dir=str(tmp_path)))
    # the tryout: a null doc_id was a TypeError traceback from sorting the documents for the split
    no_doc = make_pairs().with_columns(pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise(pl.col("doc_id")).alias("doc_id"))
    with pytest.raises(UserError, match=r"^pairs: 1 row\(s\) have a null doc_id"):
        mine_negatives(no_doc, make_pool(), MineParams(cache_dir=str(tmp_path)))


SUMMARIES = [
    "Adds two numbers and returns the sum.",
    "Reads a whole text file and returns its contents.",
    "Computes the arithmetic mean of a list of numbers.",
    "Returns the string reversed.",
    "Checks whether an integer is even.",
]


def mixed_kind_pairs() -> pl.DataFrame:
    """Two text->code rows (positive: a pool function) and five code->summary rows (positive: prose)."""
    code_rows = [("c1", POOL_TEXTS[0], "add two numbers", POOL_TEXTS[0]),
                 ("c2", POOL_TEXTS[3], "read the contents of a file", POOL_TEXTS[3])]
    docs = [POOL_TEXTS[0], POOL_TEXTS[3], POOL_TEXTS[8], POOL_TEXTS[5], POOL_TEXTS[6]]
    text_rows = [(f"s{i}", d, d, s) for i, (d, s) in enumerate(zip(docs, SUMMARIES, strict=True))]
    rows = code_rows + text_rows
    return pl.DataFrame({
        "pair_id": [r[0] for r in rows],
        "doc_id": [text_id(r[1]) for r in rows],
        "task": ["web_code_retrieval"] * 2 + ["code_summary_retrieval"] * 5,
        "prompt": [""] * 7,
        "query": [r[2] for r in rows],
        "pos": [[r[3]] for r in rows],
        "neg": [[] for _ in rows],
    })


def test_prose_positives_get_prose_negatives_and_code_positives_code(tmp_path):
    params = MineParams(num_negatives=3, range_max=20, relative_margin=None, eval_fraction=0.0, cache_dir=str(tmp_path))
    out, report = mine_negatives(mixed_kind_pairs(), make_pool(), params)
    rows = {r["pair_id"]: r for r in out.iter_rows(named=True)}
    for pid in ("s0", "s1", "s2", "s3", "s4"):
        negs = rows[pid]["neg"]
        assert len(negs) == 3 and set(negs) <= set(SUMMARIES) and rows[pid]["pos"][0] not in negs
    for pid in ("c1", "c2"):
        assert len(rows[pid]["neg"]) == 3 and not set(rows[pid]["neg"]) & set(SUMMARIES)
    assert report.candidate_sets == {"code/train": {"queries": 2, "candidates": 12},
                                     "text/train": {"queries": 5, "candidates": 5}}
    m = mine_metrics(out, report, 7, params)
    assert m["candidates"] == 17 and m["candidate_sets"]["text/train"]["queries"] == 5
    assert m["unknown_task"] == 0

    # `all`: one set, the pool plus every positive (summaries then draw code negatives)
    out_all, rep_all = mine_negatives(mixed_kind_pairs(), make_pool(), params.model_copy(update={"candidates": "all"}))
    assert rep_all.candidate_sets == {"all/train": {"queries": 7, "candidates": 17}}
    assert any(set(r["neg"]) - set(SUMMARIES) for r in out_all.iter_rows(named=True) if r["pair_id"].startswith("s"))


def test_no_eval_text_is_a_train_negative_and_eval_rows_see_every_text(tmp_path):
    """Train negatives once included eval documents and eval positives (and eval prose positives
    were the train summaries' negatives), contradicting a split by document."""
    params = MineParams(num_negatives=4, range_max=20, relative_margin=None, eval_fraction=0.4, cache_dir=str(tmp_path))
    out, report = mine_negatives(mixed_kind_pairs(), make_pool(), params)
    ev, tr = out.filter(pl.col("split") == "eval"), out.filter(pl.col("split") == "train")
    assert ev.height and tr.height
    eval_texts = {text_id(t) for t in ev["pos"].explode()} | set(ev["doc_id"])
    train_negs = [text_id(t) for t in tr["neg"].explode().drop_nulls()]
    assert train_negs and not eval_texts & set(train_negs)
    # eval rows draw from the whole set: training texts are their distractors
    train_texts = {text_id(t) for t in tr["pos"].explode()} | set(tr["doc_id"])
    assert train_texts & {text_id(t) for t in ev["neg"].explode().drop_nulls()}
    assert set(report.candidate_sets) == {"code/eval", "code/train", "text/eval", "text/train"}
    assert report.candidate_sets["code/train"]["candidates"] < report.candidate_sets["code/eval"]["candidates"]


def _own_document_rows(texts: list[str], prefix: str = "r") -> list[tuple[str, str, str, list[str], str]]:
    """(pair_id, document, query, pos, task): one text-to-code row per document, its own positive."""
    return [(f"{prefix}{i:02d}", t, f"query about {t.splitlines()[0]}", [t], "web_code_retrieval")
            for i, t in enumerate(texts)]


def _pairs_of(rows: list[tuple[str, str, str, list[str], str]], **columns: list[Any]) -> pl.DataFrame:
    """A pairs frame of (pair_id, document, query, pos, task) rows, without prompts or negatives."""
    return pl.DataFrame({"pair_id": [r[0] for r in rows], "doc_id": [text_id(r[1]) for r in rows],
                         "task": [r[4] for r in rows], "prompt": [""] * len(rows), "query": [r[2] for r in rows],
                         "pos": [r[3] for r in rows], "neg": [[] for _ in rows], **columns})


def test_no_eval_document_reaches_a_train_row(tmp_path):
    """Code-to-code rows can have another pool document as positive. Split by the row's own
    document, a train row carried an eval document as its positive, and the other train rows
    mined it as a negative (72-86 such negatives in a review's case). Such a row is now left out,
    and so is a train row holding a text written for an eval row too (the same summary); an eval
    row whose positive is a training document is not: the eval corpus holds training texts."""
    from tripleforge.generate import Job, _similar_query
    from tripleforge.mining import row_splits
    from tripleforge.tasks import TASKS

    rows = _own_document_rows(POOL_TEXTS)
    rows += [(f"s{i}", POOL_TEXTS[i], POOL_TEXTS[i], [POOL_TEXTS[(i + 1) % 12]], "code_translation_retrieval")
             for i in range(12)]
    rows += [(f"u{k}", POOL_TEXTS[k], POOL_TEXTS[k], ["Returns a value computed from its arguments."],
              "code_summary_retrieval") for k in range(12)]
    # a comparison quotes its document and the similar one in the query, as generate writes it
    comparisons = [Job(f"c{i}", text_id(POOL_TEXTS[i]), POOL_TEXTS[i], TASKS["code_comparison_retrieval"], "en",
                       "python", None, 0, POOL_TEXTS[(i + 1) % 12], [], outputs=["Which one is faster?"])
                   for i in range(12)]
    rows += [(j.pair_id, j.text, _similar_query(j), [f"The first one, answer {i}."], j.task.name)
             for i, j in enumerate(comparisons)]
    pairs = _pairs_of(rows)
    params = MineParams(num_negatives=8, range_max=30, relative_margin=None, eval_fraction=0.3, split_jaccard=None,
                        cache_dir=str(tmp_path))
    out, report = mine_negatives(pairs, make_pool(), params)
    splits = row_splits([text_id(t) for t in POOL_TEXTS], [], params)[0]
    eval_docs = {i for i in range(12) if splits[i] == "eval"}
    assert 0 < len(eval_docs) < 12
    # left out: s<i> whose positive (document i + 1) is eval, and every train u<k> (its summary is eval's too)
    left_out = {f"{t}{i}" for t in "sc" for i in range(12) if i not in eval_docs and (i + 1) % 12 in eval_docs}
    left_out |= {f"u{k}" for k in range(12) if k not in eval_docs}
    assert report.skipped["train_positive_is_eval_text"] == len(left_out) > 0
    assert set(out["pair_id"]) == {r[0] for r in rows} - left_out
    tr = out.filter(pl.col("split") == "train")
    eval_doc_ids = {text_id(POOL_TEXTS[i]) for i in eval_docs}
    train_texts = {text_id(t) for col in ("pos", "neg") for ts in tr[col] for t in ts} | {text_id(q) for q in tr["query"]}
    assert tr["neg"].list.len().min() > 0 and not eval_doc_ids & train_texts
    assert not [q for q in tr["query"] for i in eval_docs if POOL_TEXTS[i] in q]  # nor quoted in a query
    assert text_id("Returns a value computed from its arguments.") not in train_texts
    assert mine_metrics(out, report, len(rows), params)["pairs"] == len(rows) - len(left_out)


def test_the_similar_code_a_comparison_quotes_is_found_even_when_it_holds_the_mark():
    from tripleforge.generate import Job, _similar_query
    from tripleforge.mining import quoted_similar_code
    from tripleforge.tasks import TASKS

    template = 'PROMPT = """Explain.\n\nOutput Code:\n```\nx = 1\n```"""\ndef b(): pass\n'
    for similar in (POOL_TEXTS[3], template):
        job = Job("c", text_id(POOL_TEXTS[0]), POOL_TEXTS[0], TASKS["code_comparison_retrieval"], "en", "python",
                  None, 0, similar, [], outputs=["Which one is faster?"])
        assert text_id(similar) in {text_id(c) for c in quoted_similar_code(_similar_query(job))}
    assert quoted_similar_code("no code here") == []


def test_a_window_missing_every_train_set_stops_with_same_code_language_too(tmp_path):
    """The eval set holds the whole pool, so it is larger than its train set; it must not make a
    window that misses every train set a mere warning (every train row then had no negative)."""
    pairs = _pairs_of(_own_document_rows(POOL_TEXTS), code_language=["python"] * 12)
    pool = make_pool().with_columns(code_language=pl.lit("python"))
    params = MineParams(num_negatives=2, range_min=11, range_max=30, relative_margin=None, eval_fraction=0.3,
                        split_jaccard=None, cache_dir=str(tmp_path))
    for same in (False, True):
        with pytest.raises(UserError, match=r"candidate set 'code(@python)?/train'.*set range_min below"):
            mine_negatives(pairs, pool, params.model_copy(update={"same_code_language": same}))


def test_an_eval_only_small_language_only_warns_while_a_train_set_is_reached(tmp_path, capsys):
    """Split seed 8 at 0.15 puts one Go document alone in eval: the Go sets are both smaller than
    the window while the Python train set is not, so training has its hard negatives."""
    texts = [(t, "python") for t in POOL_TEXTS] + [(t, "go") for t in GO_TEXTS]
    pairs = _pairs_of(_own_document_rows([t for t, _ in texts]), code_language=[lang for _, lang in texts])
    pool = pl.DataFrame({"doc_id": [text_id(t) for t, _ in texts], "text": [t for t, _ in texts],
                         "code_language": [lang for _, lang in texts]})
    params = MineParams(num_negatives=2, range_min=8, range_max=30, relative_margin=None, eval_fraction=0.15,
                        split_seed=8, split_jaccard=None, same_code_language=True, cache_dir=str(tmp_path))
    out, _ = mine_negatives(pairs, pool, params)
    assert out.filter(pl.col("split") == "eval")["code_language"].to_list() == ["go"]
    err = capsys.readouterr().err
    assert "candidate set 'code@go/eval'" in err and "candidate set 'code@go/train'" in err
    assert out.filter(pl.col("code_language") == "python")["neg"].list.len().min() == 2


def test_near_duplicate_documents_share_a_split():
    from tripleforge.mining import assign_split, pool_with_ids, row_splits

    a = "def getregentry():\n    return codecs.CodecInfo(name='iso8859-3', encode=Codec().encode, decode=Codec().decode)"
    b = a.replace("iso8859-3", "iso8859-10")
    others = [f"def f{i}(x):\n    return x * {i} + {i}" for i in range(40)]
    pool = pool_with_ids([a, b, *others])
    ids = [tid for tid, _ in pool]
    alone = [assign_split([ids[0]], 0.5, seed)[0] != assign_split([ids[1]], 0.5, seed)[0] for seed in range(20)]
    assert any(alone)  # split by document alone, the two often land apart
    for seed in range(20):
        splits, grouped = row_splits(ids, pool, MineParams(eval_fraction=0.5, split_seed=seed))
        assert splits[0] == splits[1] and grouped == 1
        assert splits[2:] == assign_split(ids[2:], 0.5, seed)  # the rest keep their own split
    off, grouped = row_splits(ids, pool, MineParams(eval_fraction=0.5, split_seed=3, split_jaccard=None))
    assert off == assign_split(ids, 0.5, 3) and grouped == 0


def test_resampling_negatives_keeps_the_eval_set():
    """`seed` reseeds the negatives only; `split_seed` moves documents between the splits."""
    from tripleforge.mining import pool_with_ids, row_splits

    pool = pool_with_ids([f"def f{i}(x):\n    return x * {i} + {i}" for i in range(40)])
    ids = [tid for tid, _ in pool]
    base, _ = row_splits(ids, pool, MineParams(eval_fraction=0.5))
    assert all(row_splits(ids, pool, MineParams(eval_fraction=0.5, seed=s))[0] == base for s in range(1, 6))
    assert any(row_splits(ids, pool, MineParams(eval_fraction=0.5, split_seed=s))[0] != base for s in range(1, 6))


def test_unknown_tasks_are_counted_and_warned(tmp_path, capsys):
    pairs = mixed_kind_pairs().with_columns(
        pl.Series("task", ["web_code_retrieval", "my_own_task", None] + ["code_summary_retrieval"] * 4))
    params = MineParams(num_negatives=3, range_max=20, relative_margin=None, cache_dir=str(tmp_path))
    out, report = mine_negatives(pairs, make_pool(), params)
    assert report.unknown_task == 2 and mine_metrics(out, report, 7, params)["unknown_task"] == 2
    err = capsys.readouterr().err
    assert "2 pairs have a task that is none of tripleforge's tasks (null, 'my_own_task')" in err


def test_candidate_sets_by_kind_task_and_all():
    from tripleforge.mining import candidate_sets, positive_kind

    assert [positive_kind(t) for t in ("web_code_retrieval", "code_summary_retrieval", "code_context_retrieval",
                                       "code_modification_retrieval", "code_comparison_retrieval", "nope", None)] == [
        "code", "text", "code", "code", "text", "code", "code"]
    tasks = ["code_summary_retrieval", "web_code_retrieval", "code_review_retrieval", None]
    assert candidate_sets(tasks, "kind") == [("code", True, [1, 3]), ("text", False, [0, 2])]
    assert candidate_sets(tasks, "task") == [
        ("code:None", True, [3]), ("code:web_code_retrieval", True, [1]),
        ("text:code_review_retrieval", False, [2]), ("text:code_summary_retrieval", False, [0])]
    assert candidate_sets(tasks, "all") == [("all", True, [0, 1, 2, 3])]


def test_candidate_sets_cut_by_code_language():
    from tripleforge.mining import candidate_sets, positive_languages, split_candidate_sets

    tasks = ["code_summary_retrieval", "web_code_retrieval", "web_code_retrieval", None]
    langs = ["go", "python", "go", None]
    assert candidate_sets(tasks, "kind", langs) == [
        ("code@", True, [3]), ("code@go", True, [2]), ("code@python", True, [1]), ("text@go", False, [0])]
    assert candidate_sets(tasks, "all", langs) == [("all@", True, [3]), ("all@go", True, [0, 2]),
                                                   ("all@python", True, [1])]
    # the language is the rows', not parsed back from a label: "@" in a name, or a language named "null"
    odd = ["objc@2", None, "null"]
    sets = candidate_sets(["web_code_retrieval"] * 3, "kind", odd)
    assert sets == [("code@", True, [1]), ("code@null", True, [2]), ("code@objc@2", True, [0])]
    pool = [("t1", "A"), ("t2", "B"), ("t3", "C")]
    parts = split_candidate_sets(sets, ["train"] * 3, frozenset(), pool, ["objc@2", None, "null"], odd)
    assert [(label, part) for label, part, _, _ in parts] == [
        ("code@/train", [("t2", "B")]), ("code@null/train", [("t3", "C")]), ("code@objc@2/train", [("t1", "A")])]
    rows = pl.DataFrame({"code_language": ["python", "python", None, "go", " "], "tgt_code_language": [None, "rust", None, "", ""]})
    assert positive_languages(rows) == ["python", "rust", None, "go", None]  # "" is not set
    with pytest.raises(UserError, match="mine_negatives.same_code_language is true but the pairs have no 'code_language'"):
        positive_languages(pl.DataFrame({"query": ["q"]}))


GO_TEXTS = [
    "func Add(a, b int) int {\n\treturn a + b\n}",
    "func ReadFile(path string) ([]byte, error) {\n\treturn os.ReadFile(path)\n}",
    "func Reverse(s string) string {\n\tr := []rune(s)\n\tslices.Reverse(r)\n\treturn string(r)\n}",
    "func Mean(xs []float64) float64 {\n\treturn Sum(xs) / float64(len(xs))\n}",
    "func Square(x int) int {\n\treturn x * x\n}",
    "func IsEven(n int) bool {\n\treturn n%2 == 0\n}",
]


def test_same_code_language_keeps_every_negative_in_the_positives_language(tmp_path, capsys):
    """Off, a Go query's hard negatives include Python code (cross-language negatives); on, each
    row draws only texts of its positive's language, pool and positives alike, in both splits."""
    pool = pl.concat([make_pool().with_columns(code_language=pl.lit("python")),
                      make_pool(GO_TEXTS).with_columns(code_language=pl.lit("go"))])
    pairs = pl.concat([
        make_pairs().with_columns(code_language=pl.lit("python"), tgt_code_language=pl.lit(None, pl.String)),
        # x1: a Python-to-Go row (code-to-code), whose positive is Go: its negatives are Go too
        pl.DataFrame({"pair_id": ["g1", "g2", "g3", "x1"], "doc_id": [text_id(t) for t in GO_TEXTS[:3]] + [
                      text_id(POOL_TEXTS[11])], "task": ["web_code_retrieval"] * 3 + ["code_translation_retrieval"],
                      "prompt": [""] * 4, "query": ["add two numbers", "read a file", "reverse a string", POOL_TEXTS[11]],
                      "pos": [[t] for t in GO_TEXTS[:3]] + [[GO_TEXTS[4]]], "neg": [[]] * 4,
                      "code_language": ["go"] * 3 + ["python"], "tgt_code_language": [None, None, None, "go"]}),
    ], how="diagonal_relaxed")
    lang_of = {text_id(t): "python" for t in POOL_TEXTS} | {text_id(t): "go" for t in GO_TEXTS}
    lang_of[text_id("def fibo(n): ...")] = "python"  # p4's second positive
    base = MineParams(num_negatives=4, range_max=20, relative_margin=None, eval_fraction=0.3, cache_dir=str(tmp_path))
    off, _ = mine_negatives(pairs, pool, base)
    assert any(lang_of[text_id(n)] == "python" for r in off.filter(pl.col("code_language") == "go").iter_rows(named=True)
               for n in r["neg"])
    on, report = mine_negatives(pairs, pool, base.model_copy(update={"same_code_language": True}))
    assert set(on["split"]) == {"train", "eval"}
    for r in on.iter_rows(named=True):
        want = r["tgt_code_language"] or r["code_language"]
        assert r["neg"] and {lang_of[text_id(n)] for n in r["neg"]} == {want}, r["pair_id"]
    assert {label.split("/")[0] for label in report.candidate_sets} == {"code@go", "code@python"}
    with pytest.raises(UserError, match="pool: mine_negatives.same_code_language is true but the pool has no"):
        mine_negatives(pairs, make_pool(), base.model_copy(update={"same_code_language": True}))
    # a window past a small language's candidates only warns while another set is reached
    narrow = base.model_copy(update={"same_code_language": True, "range_min": 8, "eval_fraction": 0.0})
    out, report = mine_negatives(pairs, pool, narrow)
    assert "candidate set 'code@go/train'" in capsys.readouterr().err
    go = pl.col("pair_id").is_in(["g1", "g2", "g3", "x1"])  # x1: a Python query, a Go positive
    assert out.filter(go)["neg"].list.len().max() == 0 and out.filter(~go)["neg"].list.len().min() > 0
    with pytest.raises(UserError, match="set range_min below"):
        mine_negatives(pairs, pool, narrow.model_copy(update={"range_min": 19}))


def test_best_positive_rank_skips_masked_hits():
    from tripleforge.mining import best_positive_rank

    idx = np.array([[7, 3, 9, 5, 1], [2, 4, 6, 8, 0], [1, 2, 3, 4, 5]])
    valid = np.ones(idx.shape, bool)
    pos = np.array([[5, -2], [2, -2], [42, -2]])
    masked = np.array([[7, 5], [2, 4], [1, 2]])  # row 0: its document (7) ranks first; row 1: positive first
    assert best_positive_rank(idx, valid, pos, masked).tolist() == [2, 0, -1]
    valid[0, 3] = False  # a positive in an invalid (approximate search) slot is not found
    assert best_positive_rank(idx, valid, pos, masked).tolist() == [-1, 0, -1]


def test_continuation_positive_is_not_ranked_behind_its_own_masked_document(tmp_path):
    """code_context_retrieval: query = a document's beginning, positive = its rest; the document
    itself (masked) is the top hit, and must not push the positive's rank down."""
    doc = POOL_TEXTS[3]
    head, tail = doc[:30], doc[30:]
    pairs = pl.DataFrame({"pair_id": ["c"], "doc_id": [text_id(doc)], "task": ["code_context_retrieval"],
                          "prompt": [""], "query": [head], "pos": [[tail]], "neg": [[]]})
    params = MineParams(num_negatives=3, range_max=20, relative_margin=None, cache_dir=str(tmp_path))
    out, _ = mine_negatives(pairs, make_pool(), params)
    assert 0 not in out["neg_ranks"][0].to_list()  # the masked document took raw rank 0
    # reference: the unmasked candidates (pool minus the document) that outscore the positive
    q = encode_queries([head], params.embedder, None, params.cache_dir)[0]
    others = [t for t in POOL_TEXTS if t != doc]
    c = encode_documents([*others, tail], params.embedder, params.cache_dir)
    ahead = int((c[:-1] @ q > c[-1] @ q).sum())
    assert out["pos_rank"][0] == ahead and ahead <= 2
    kept, report = mine_negatives(pairs, make_pool(), params.model_copy(update={"filter_rank": ahead + 1}))
    assert kept.height == 1 and report.skipped["filter_rank"] == 0


def test_a_positive_cut_from_the_same_document_is_no_negative_of_its_other_rows(tmp_path):
    """The tasks of one document share its text: the tail that is the document's
    code_context_retrieval positive was mined as a negative of its web_code_retrieval row (at rank
    1 in the audit), teaching that most of the answer is irrelevant to the query."""
    doc = POOL_TEXTS[3]
    head, tail = doc[:30], doc[30:]
    pairs = pl.DataFrame({
        "pair_id": ["ctx", "web"], "doc_id": [text_id(doc)] * 2,
        "task": ["code_context_retrieval", "web_code_retrieval"], "prompt": ["", ""],
        "query": [head, "read the contents of a file"], "pos": [[tail], [doc]], "neg": [[], []]})
    params = MineParams(num_negatives=20, range_max=30, relative_margin=None, cache_dir=str(tmp_path))
    out, _ = mine_negatives(pairs, make_pool(), params)
    web = out.filter(pl.col("pair_id") == "web").row(0, named=True)
    ctx = out.filter(pl.col("pair_id") == "ctx").row(0, named=True)
    assert tail not in web["neg"] and doc not in ctx["neg"]
    assert len(web["neg"]) == len(POOL_TEXTS) - 1  # every other pool text is still a candidate


def test_random_negatives_obey_the_score_rules(tmp_path):
    base = MineParams(num_negatives=6, neg_type="random", relative_margin=0.9, cache_dir=str(tmp_path))
    out, _ = mine_negatives(make_pairs(), make_pool(), base)
    for row in out.iter_rows(named=True):
        bound = min(row["pos_scores"]) - abs(min(row["pos_scores"])) * 0.1
        assert row["neg"] and all(s <= bound + 1e-9 for s in row["neg_scores"])
    strict, report = mine_negatives(make_pairs(), make_pool(), base.model_copy(update={"max_score": -1.0}))
    assert strict["neg"].list.len().to_list() == [0, 0, 0, 0] and report.short_of_negatives == 4
    assert mine_metrics(strict, report, 4, base)["without_negatives"] == 4
    assert mine_metrics(out, report, 4, base)["without_negatives"] == 0


def test_kept_llm_negatives_never_take_a_row_past_num_negatives(tmp_path):
    """Kept LLM negatives once came on top of num_negatives mined ones: they now take the last
    mined places, and those beyond num_negatives are dropped and counted."""
    params = MineParams(num_negatives=2, range_max=10, relative_margin=None, keep_llm_negatives=True,
                        cache_dir=str(tmp_path))
    out, report = mine_negatives(llm_pairs([PLUS, STACK, SQL]), make_pool(), params)
    assert out.get_column("neg").list.len().max() == 2
    p1 = out.filter(pl.col("pair_id") == "p1").row(0, named=True)
    assert p1["neg"] == [PLUS, STACK] and p1["neg_ranks"] == [None, None] and len(p1["neg_scores"]) == 2
    llm = report.llm_negatives
    assert (llm["kept"], llm["dropped_over_num_negatives"], llm["replaced_mined"]) == (2, 1, 2)
    assert llm_accounting_holds(llm) and report.short_of_negatives == 0
    one, rep1 = mine_negatives(llm_pairs([PLUS]), make_pool(), params)
    p1 = one.filter(pl.col("pair_id") == "p1").row(0, named=True)
    assert p1["neg"][1] == PLUS and p1["neg_ranks"][0] is not None and rep1.llm_negatives["replaced_mined"] == 1


def test_every_skip_reason_is_in_the_metrics_even_at_zero(tmp_path):
    """With neg_type random some reasons were absent, so `dvc exp show` printed "-" for them."""
    from tripleforge.mining import SKIP_REASONS

    for update in ({}, {"neg_type": "random"}):
        params = MineParams(num_negatives=2, range_max=10, cache_dir=str(tmp_path), **update)
        out, report = mine_negatives(make_pairs(), make_pool(), params)
        skipped = mine_metrics(out, report, 4, params)["skipped"]
        assert set(skipped) == set(SKIP_REASONS) and all(isinstance(v, int) for v in skipped.values())


def test_documents_numbered_by_hand_are_masked_like_text_ids(tmp_path):
    """A pool whose doc_ids are not text ids (hand-made files number their documents): the row's
    source document is still masked, and the result equals the text-id run."""
    tail = "with open(path) as fh:\n        return fh.read()"
    pairs = pl.DataFrame({"pair_id": ["p1"], "task": ["code_context_retrieval"], "prompt": [""],
                          "query": ["def read_file(path):"], "pos": [[tail]], "neg": [[]]},
                         schema_overrides={"neg": pl.List(pl.String)})
    params = MineParams(num_negatives=15, range_max=20, relative_margin=None, eval_fraction=0.0,
                        cache_dir=str(tmp_path))
    numbered = make_pool().with_columns(doc_id=pl.format("d{}", pl.int_range(pl.len())))
    out, _ = mine_negatives(pairs.with_columns(doc_id=pl.lit("d3")), numbered, params)
    assert POOL_TEXTS[3] not in out["neg"][0] and len(out["neg"][0]) == len(POOL_TEXTS) - 1
    by_text_id, _ = mine_negatives(pairs.with_columns(doc_id=pl.lit(text_id(POOL_TEXTS[3]))), make_pool(), params)
    assert out.drop("doc_id").equals(by_text_id.drop("doc_id"))
    integers = make_pool().with_columns(doc_id=pl.int_range(pl.len()))  # matched by the same numbers as strings
    as_ints, _ = mine_negatives(pairs.with_columns(doc_id=pl.lit("3")), integers, params)
    assert as_ints.drop("doc_id").equals(by_text_id.drop("doc_id"))
    with pytest.raises(UserError, match="pool: column 'doc_id' has type Float64"):
        mine_negatives(pairs.with_columns(doc_id=pl.lit("3")), integers.with_columns(pl.col("doc_id").cast(pl.Float64)), params)
    clash = numbered.with_columns(doc_id=pl.when(pl.col("doc_id") == "d4").then(pl.lit("d3")).otherwise("doc_id"))
    with pytest.raises(UserError, match="pool: doc_id 'd3' names two different texts"):
        mine_negatives(pairs.with_columns(doc_id=pl.lit("d3")), clash, params)


@pytest.mark.parametrize("update", [{"sampling": "random"}, {"neg_type": "random"}, {"neg_type": "mixed"}])
def test_random_choices_do_not_depend_on_the_pool_order_or_other_documents(tmp_path, update):
    params = MineParams(num_negatives=3, range_max=20, relative_margin=None, eval_fraction=0.0,
                        cache_dir=str(tmp_path), **update)
    out, _ = mine_negatives(make_pairs(), make_pool(), params)
    rev, _ = mine_negatives(make_pairs(), make_pool(POOL_TEXTS[::-1]), params)
    assert out["neg"].to_list() == rev["neg"].to_list()
    # another seed draws other negatives (the keys are random, not the pool order)
    other, _ = mine_negatives(make_pairs(), make_pool(), params.model_copy(update={"seed": 7}))
    assert other["neg"].to_list() != out["neg"].to_list()


def test_a_train_rows_llm_negatives_never_hold_an_eval_text(tmp_path):
    """Mined negatives of train rows never are eval texts; LLM-written (or hand-made) ones kept with
    keep_llm_negatives were only masked against the row's own query group and document."""
    # split_seed 28 puts p4's document in eval and the other three in train (eval_fraction 0.5)
    params = MineParams(num_negatives=3, range_max=10, relative_margin=None, keep_llm_negatives=True,
                        eval_fraction=0.5, split_seed=28, split_jaccard=None, cache_dir=str(tmp_path))
    eval_positive = "def fibo(n): ..."  # p4's second positive
    out, report = mine_negatives(llm_pairs([POOL_TEXTS[9], eval_positive, PLUS]), make_pool(), params)
    assert out.get_column("split").to_list() == ["train", "train", "train", "eval"]
    p1 = out.filter(pl.col("pair_id") == "p1").row(0, named=True)
    assert p1["neg"][-1] == PLUS and not {POOL_TEXTS[9], eval_positive} & set(p1["neg"])
    assert report.llm_negatives["dropped_by_mask"]["eval_text"] == 2
    assert llm_accounting_holds(report.llm_negatives)


def test_filter_rank_deeper_than_the_rank_window_keeps_the_positives_it_allows(tmp_path):
    """The search went only as deep as the rank window: a positive ranked 37 was "not found" with
    range_max 5 and dropped by filter_rank 100."""
    far = make_pairs().vstack(pl.DataFrame({
        "pair_id": ["p5"], "doc_id": [text_id(POOL_TEXTS[7])], "task": ["web_code_retrieval"],
        "prompt": ["Given a question, retrieve code that answers it."], "query": ["add two numbers together"],
        "pos": [[POOL_TEXTS[7]]], "neg": [[]]}))
    wide, _ = mine_negatives(far, make_pool(), MineParams(num_negatives=1, range_max=20, relative_margin=None,
                                                          cache_dir=str(tmp_path)))
    p5_rank = wide.filter(pl.col("pair_id") == "p5")["pos_rank"].item()
    assert p5_rank is not None and p5_rank >= 6  # beyond range_max 1 plus the widest mask
    params = MineParams(num_negatives=1, range_max=1, relative_margin=None, filter_rank=20, cache_dir=str(tmp_path))
    assert params.depth() == 20
    narrow, report = mine_negatives(far, make_pool(), params)
    assert report.skipped["filter_rank"] == 0
    assert narrow["pos_rank"].to_list() == wide["pos_rank"].to_list()
    assert narrow["neg"].list.len().max() == 1  # negatives still come from the window [0, 1) only


def test_every_rank_window_is_checked_before_any_encoding(tmp_path):
    """The code set was encoded (minutes on a real pool) before the small prose set failed, and
    its `range_min below N` advice then failed on the next set."""
    prose = make_pairs().with_columns(
        task=pl.when(pl.col("pair_id") == "p1").then(pl.lit("code_summary_retrieval")).otherwise(pl.col("task")),
        pos=pl.when(pl.col("pair_id") == "p1").then(pl.lit(["Adds two numbers."])).otherwise(pl.col("pos")))
    cache = tmp_path / "cache"
    with pytest.raises(UserError) as exc:
        mine_negatives(prose, make_pool(), MineParams(range_min=5, range_max=10, cache_dir=str(cache)))
    assert "candidate set 'text/eval'" in str(exc.value) and str(exc.value).endswith("set range_min below 1")
    assert not cache.exists() or not any(cache.rglob("*.sqlite"))  # nothing encoded


def test_candidate_counts_match_the_candidates_built(tmp_path):
    """The rank windows are checked on counts made before any candidate list is built."""
    from tripleforge.mining import build_candidates, candidate_counts, pool_with_ids

    pool = pool_with_ids([*POOL_TEXTS, POOL_TEXTS[0], " "])  # a repeated text, a blank one
    train_pool = pool[3:]
    pos_lists = [[POOL_TEXTS[1]], ["new text", "new text"], [POOL_TEXTS[5], "other new"], []]
    parts = [(pool, [0, 1]), (train_pool, [0, 2, 3]), ([], [1, 2]), (pool, [])]
    expected = [len(build_candidates(part, [pos_lists[r] for r in rows])[0]) for part, rows in parts]
    assert candidate_counts(parts, pos_lists) == expected == [13, 12, 3, 12]
