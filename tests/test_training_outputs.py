"""The train-data directory: dataset naming, and all-or-nothing replacement."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from formats_data import mined_frame

from tripleforge.convert import ConvertFormatsParams, convert_all
from tripleforge.errors import UserError
from tripleforge.train_outputs import write_train_dir
from tripleforge.training import TrainDataParams


def _grouped() -> pl.DataFrame:
    return convert_all(mined_frame(n_docs=6, n_neg=3, eval_every=100), "m.parquet", ConvertFormatsParams()).grouped


def test_unsafe_task_names_and_null_language(tmp_path: Path) -> None:
    g = _grouped().with_columns(task=pl.lit("a/b c"), language=pl.lit(None, pl.String))
    m = write_train_dir(g, TrainDataParams(tokenizer={"enabled": False}), tmp_path / "train")  # type: ignore[arg-type]
    name = "a_b_c-0af99a60"  # the first 8 hex digits of the task's sha256
    assert m["datasets"] == {f"any/{name}": 5}  # doc 0 is eval
    assert (tmp_path / "train" / "embedder" / "any" / f"{name}.jsonl").is_file()
    # the counts name language and task as the dataset folders do, never "none"
    assert m["by_language"] == {"any": 5} and m["by_task"] == {name: 5}
    nulls = _grouped().with_columns(task=pl.lit(None, pl.String), language=pl.lit(None, pl.String))
    m = write_train_dir(nulls, TrainDataParams(tokenizer={"enabled": False}), tmp_path / "train")  # type: ignore[arg-type]
    assert m["datasets"] == {"any/default": 5}
    assert m["by_language"] == {"any": 5} and m["by_task"] == {"default": 5}


def test_two_tasks_never_share_a_dataset_file(tmp_path: Path) -> None:
    """Path-safe names merged "x y" with "x_y", and a task "sts.only_1neg" with task "sts" in mode
    only_1neg: one file then held two FlagEmbedding types, which its same-dataset batches refuse."""
    import json

    g = _grouped()
    n = g.height // 4
    task = pl.Series(["x y"] * n + ["x_y"] * n + ["sts.only_1neg"] * n + ["sts"] * (g.height - 3 * n))
    typ = pl.Series([None] * (3 * n) + ["only_1neg"] * (g.height - 3 * n), dtype=pl.String)
    g = g.with_columns(task=task, type=typ, split=pl.lit("train"))
    m = write_train_dir(g, TrainDataParams(tokenizer={"enabled": False}), tmp_path / "train")  # type: ignore[arg-type]
    assert len(m["datasets"]) == 4 and sum(m["datasets"].values()) == g.height
    assert "en/x_y" in m["datasets"] and "en/sts.only_1neg" in m["datasets"]  # safe names stay as they are
    for path in (tmp_path / "train" / "embedder").rglob("*.jsonl"):
        types = {json.loads(line).get("type", "normal") for line in path.read_text().splitlines()}
        assert len(types) == 1, path


def test_dataset_name_parts_are_one_to_one_and_fit_the_file_system(tmp_path: Path) -> None:
    from tripleforge.train_outputs import _safe_part

    values = ["code_search", "x y", "x_y", "Search", "search", "-rf", "", "t" * 230, "x_y-887fcea6", "查询"]
    names = [_safe_part(v) for v in values]
    assert names[:3] == ["code_search", "x_y-887fcea6", "x_y"]  # plain names stay as they are
    assert len({n.lower() for n in names}) == len(values)  # distinct even on a case-insensitive file system
    assert all(not n.startswith("-") and len(n) <= 109 and "." not in n for n in names)
    # a 230-character task crashed train-data: its temp file name passed the 255-byte limit
    g = _grouped().with_columns(task=pl.lit("t" * 230))
    m = write_train_dir(g, TrainDataParams(tokenizer={"enabled": False}), tmp_path / "train")  # type: ignore[arg-type]
    assert m["datasets"] == {f"en/{names[7]}": 5} and m["by_task"] == {names[7]: 5}


def test_failed_run_leaves_previous_output_intact(tmp_path: Path) -> None:
    out = tmp_path / "train"
    write_train_dir(_grouped(), TrainDataParams(tokenizer={"enabled": False}), out)  # type: ignore[arg-type]
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    bad = TrainDataParams(tokenizer={"model": str(tmp_path / "no-such-tokenizer")})  # type: ignore[arg-type]
    with pytest.raises(UserError, match="not a local directory"):
        write_train_dir(_grouped(), bad, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["train"]  # no temp directory left behind


def test_max_len_over_the_model_limit_fails_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "train"
    write_train_dir(_grouped(), TrainDataParams(tokenizer={"enabled": False}), out)  # type: ignore[arg-type]
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = TrainDataParams(tokenizer={"passage_max_len": 100000})  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"^params.yaml: train_data.tokenizer.passage_max_len: 100000 is more than "
                                        r"the model's 512 positions"):
        write_train_dir(_grouped(), bad, out)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["train"]


def test_short_ntuple_rows_are_counted_and_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = TrainDataParams(train_group_size=3, st_ntuple_negatives=3, tokenizer={"enabled": False})  # type: ignore[arg-type]
    m = write_train_dir(_grouped(), p, tmp_path / "train")
    assert m["sentence_transformers"]["ntuple"] == 0 and m["sentence_transformers"]["triplet"] > 0
    err = capsys.readouterr().err
    assert "ntuple keeps 0 of" in err and "train_group_size - 1 = 2 negatives" in err  # the cause, not the data
    assert not (tmp_path / "train" / "sentence_transformers" / "ntuple").exists()  # no empty files


@pytest.mark.parametrize("mode", ["epoch", "epoch-random", "random"])
def test_rows_the_batch_plan_leaves_out_are_counted_and_warned(tmp_path: Path, mode: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    p = TrainDataParams(batch={"batch_size": 2, "mode": mode, "drop_last": True},  # type: ignore[arg-type]
                        tokenizer={"enabled": False})  # type: ignore[arg-type]
    m = write_train_dir(_grouped(), p, tmp_path / "train")
    sizes = m["datasets"]
    total = sum(sizes.values())
    assert any(n % 2 for n in sizes.values())  # a partial batch somewhere
    used = {(b["dataset"], i) for b in _jsonl(tmp_path / "train" / "batch_plan.jsonl") for i in b["indices"]}
    assert m["batch_plan"]["rows_in_epoch"] == len(used) < total
    assert m["batch_plan"]["rows_left_out_per_epoch"] == total - len(used)
    err = capsys.readouterr().err
    assert f"trains on {len(used)} of {total} rows per epoch: {mode} mode " in err
    # the tryout: every mode blamed datasets smaller than a batch, and random mode partial batches
    assert m["batch_plan"]["datasets_smaller_than_batch"] == [] and "smaller than" not in err
    assert ("some rows are drawn in several steps and others in none" in err) == (mode == "random")
    assert ("last partial batch" in err) == (mode != "random")
    big = max(sizes.values()) + 1
    p = TrainDataParams(batch={"batch_size": big, "drop_last": True}, tokenizer={"enabled": False})  # type: ignore[arg-type]
    m = write_train_dir(_grouped(), p, tmp_path / "train")
    assert m["batch_plan"]["steps"] == 0 and m["batch_plan"]["rows_left_out_per_epoch"] == total
    assert (f"the batch plan is empty: every dataset is smaller than train_data.batch.batch_size={big} "
            f"(the largest has {big - 1} rows)") in capsys.readouterr().err
    write_train_dir(_grouped(), TrainDataParams(batch={"batch_size": 1}, tokenizer={"enabled": False}),  # type: ignore[arg-type]
                    tmp_path / "train")
    assert "batch plan" not in capsys.readouterr().err  # every row planned: nothing to say
    if mode != "random":  # by default (drop_last false) the epoch modes plan every row, short batches and all
        p = TrainDataParams(batch={"batch_size": big, "mode": mode, "keep_clashing_rows_apart": False},  # type: ignore[arg-type]
                            tokenizer={"enabled": False})  # type: ignore[arg-type]
        m = write_train_dir(_grouped(), p, tmp_path / "train")
        assert m["batch_plan"]["rows_left_out_per_epoch"] == 0 and m["batch_plan"]["steps"] == len(sizes)
        assert "batch plan" not in capsys.readouterr().err


def test_truncated_texts_are_counted_and_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the tryout: at the then default 32/128 (FlagEmbedding's) every code query was cut after its
    # 13-16 prompt tokens, and nothing said so. Here one text2code query and one positive outgrow 32 / 128 ids.
    g = _grouped()  # train rows: en/code2code 3, en/text2code 2; 4 passages each; all short
    first = (pl.col("task") == "text2code") & (pl.col("split") == "train") & (pl.col("qid") == pl.col("qid").min().over("task", "split"))
    g = g.with_columns(query=pl.when(first).then(pl.col("query") + " word" * 40).otherwise("query"),
                       pos=pl.when(first).then(pl.col("pos").list.eval(pl.element() + " x" * 200)).otherwise("pos"))
    m = write_train_dir(g, TrainDataParams(tokenizer={"query_max_len": 32, "passage_max_len": 128}),  # type: ignore[arg-type]
                        tmp_path / "train")
    assert m["tokenized"] == {
        "enabled": True, "rows": 5, "shards": 2, "query_max_len": 32, "passage_max_len": 128,
        "queries": 5, "queries_truncated": 1, "passages": 20, "passages_truncated": 1,
        "by_dataset": {"en/code2code": {"queries": 3, "queries_truncated": 0, "passages": 12, "passages_truncated": 0},
                       "en/text2code": {"queries": 2, "queries_truncated": 1, "passages": 8, "passages_truncated": 1}}}
    # 1 of 5 queries (20%) and 1 of 20 passages are cut: counted, below the 25% that warns
    assert "tokenized shards" not in capsys.readouterr().err
    m = write_train_dir(g, TrainDataParams(tokenizer={"query_max_len": 8, "passage_max_len": 128}),  # type: ignore[arg-type]
                        tmp_path / "train")
    assert ("warning: train-data: the tokenized shards cut 5 of 5 queries (prompt + query) (100%) at "
            "train_data.tokenizer.query_max_len=8 tokens; raise that key to keep more text (metrics: tokenized.by_dataset)\n"
            ) in capsys.readouterr().err
    m = write_train_dir(g, TrainDataParams(tokenizer={"query_max_len": 8, "passage_max_len": 8}),  # type: ignore[arg-type]
                        tmp_path / "train")
    assert (m["tokenized"]["queries_truncated"], m["tokenized"]["passages_truncated"]) == (5, 20)
    assert ("cut 5 of 5 queries (prompt + query) (100%) at train_data.tokenizer.query_max_len=8 tokens and 20 of 20 "
            "passages (100%) at train_data.tokenizer.passage_max_len=8 tokens; raise those keys") in capsys.readouterr().err
    # nothing cut: counted as 0, nothing to say
    m = write_train_dir(_grouped(), TrainDataParams(), tmp_path / "train")
    assert (m["tokenized"]["queries_truncated"], m["tokenized"]["passages_truncated"]) == (0, 0)
    assert "tokenized shards" not in capsys.readouterr().err


def test_datasets_without_scores_are_named_before_distillation(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # the tryout: an external file without scores became any/default.jsonl without pos_scores, and
    # FlagEmbedding --knowledge_distillation True stopped on it only once training began
    g = _grouped()  # train rows: en/code2code 3, en/text2code 2 (scored)
    external = pl.col("task") == "text2code"
    g = pl.concat([g, g.filter(external, pl.col("split") == "train").with_columns(  # a partly scored dataset: one row lost its scores
        task=pl.lit("web_code_retrieval"), qid=pl.col("qid") + "-w", query=pl.col("query") + " (web)",
        pos_scores=pl.when(pl.col("qid") == pl.col("qid").min()).then(None).otherwise("pos_scores"))])
    g = g.with_columns(task=pl.when(external).then(None).otherwise("task"),  # an unscored external file
                       language=pl.when(external).then(None).otherwise("language"),
                       pos_scores=pl.when(external).then(None).otherwise("pos_scores"))
    no_tok = {"enabled": False}
    m = write_train_dir(g, TrainDataParams(tokenizer=no_tok), tmp_path / "train")  # type: ignore[arg-type]
    assert m["embedder"]["datasets_without_scores"] == ["any/default", "en/web_code_retrieval"]
    assert m["embedder"]["rows_repeating_a_query"] == {}
    assert "pos_scores" not in _jsonl(tmp_path / "train" / "embedder" / "any" / "default.jsonl")[0]
    assert "pos_scores" in _jsonl(tmp_path / "train" / "embedder" / "en" / "code2code.jsonl")[0]
    err = capsys.readouterr().err
    assert ("warning: train-data: 2 datasets written without pos_scores/neg_scores in embedder/ and reranker/, "
            "since not every row has teacher scores: any/default (0 of 2 rows scored), en/web_code_retrieval "
            "(1 of 2 rows scored); with --knowledge_distillation True, FlagEmbedding trains their batches without "
            "distillation, saying nothing (--same_dataset_within_batch True), or stops on them") in err
    assert err.count("knowledge_distillation") == 1  # one warning, not one per dataset
    # no row scored anywhere (nobody can distil), or scores turned off: nothing to say
    for frame, params in ((g.with_columns(pos_scores=pl.lit(None, pl.List(pl.Float64))), {}), (g, {"keep_scores": False})):
        m = write_train_dir(frame, TrainDataParams(tokenizer=no_tok, **params), tmp_path / "train")  # type: ignore[arg-type]
        assert "knowledge_distillation" not in capsys.readouterr().err
        assert m["embedder"]["datasets_without_scores"] == sorted(m["datasets"])  # true of every file
    m = write_train_dir(_grouped(), TrainDataParams(tokenizer=no_tok), tmp_path / "train")  # type: ignore[arg-type]
    assert m["embedder"]["datasets_without_scores"] == [] and "knowledge_distillation" not in capsys.readouterr().err


def _jsonl(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_instructions_reach_the_embedder_layout_only(tmp_path: Path) -> None:
    # the tryout: reranker positives started with "passage: " while the ST anchor had no instruction
    from tripleforge.tokenized import load_tokenized, load_tokenizer

    raw = _grouped()
    p = TrainDataParams(instructions={"*": {"query": "Represent this query: ", "passage": "passage: "}})  # type: ignore[dict-item]
    out = tmp_path / "train"
    write_train_dir(raw, p, out)
    queries = set(raw["query"].to_list())
    texts = set(raw["pos"].explode().to_list() + raw["neg"].explode().to_list())
    emb = _jsonl(out / "embedder" / "en" / "text2code.jsonl")
    # FlagEmbedding: the query instruction is the per-row `prompt`, the passage prefix baked in
    assert {r["prompt"] for r in emb} == {"Represent this query:"} and {r["query"] for r in emb} <= queries
    assert all(t.startswith("passage: ") and t[len("passage: "):] in texts for r in emb for t in r["pos"] + r["neg"])
    # the tokenized shards are the embedder records, instruction and all
    ids = load_tokenized(out / "tokenized", "en/text2code")
    tok = load_tokenizer("minilm")
    assert ids["query_ids"].to_list()[0] == tok("Represent this query: " + emb[0]["query"], truncation=True,  # one space
                                                max_length=32)["input_ids"]
    # reranker and sentence-transformers: raw texts, instructions left to the trainers' arguments
    rr = _jsonl(out / "reranker" / "en" / "text2code.jsonl")
    assert all(r["query"] in queries and set(r["pos"] + r["neg"]) <= texts for r in rr)
    st = out / "sentence_transformers"
    for name, q_col, text_cols in (("triplet", "anchor", ("positive", "negative")),
                                   ("ntuple", "anchor", ("positive", "negative_1")),
                                   ("labeled_pair", "sentence1", ("sentence2",)),
                                   ("labeled_list", "query", ("docs",))):
        files = sorted((st / name).rglob("*.jsonl"))
        # one file per dataset, as embedder/
        assert [str(f.relative_to(st / name)) for f in files] == ["en/code2code.jsonl", "en/text2code.jsonl"]
        rows = [r for f in files for r in _jsonl(f)]
        assert rows and all(r[q_col] in queries for r in rows), name
        got = {t for r in rows for c in text_cols for t in (r[c] if isinstance(r[c], list) else [r[c]])}
        assert got <= texts, name


def _train_data_python_examples() -> list[str]:
    import re

    doc = (Path(__file__).parents[1] / "docs" / "formats.md").read_text(encoding="utf-8")
    section = doc[doc.index("## `train-data`"):doc.index("## Speed")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_documented_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the tokenized example used to name "en/text2code"; datasets are <language>/<catalog task>
    from tripleforge.embed import bundled_minilm_dir

    g = _grouped().with_columns(task=pl.lit("code_summary_retrieval"))  # a dataset the default run has
    monkeypatch.chdir(tmp_path)
    write_train_dir(g, TrainDataParams(), Path("data/train"))
    blocks = _train_data_python_examples()
    assert len(blocks) == 2
    for code in blocks:  # the one change: the bundled model instead of a download
        code = code.replace('"sentence-transformers/all-MiniLM-L6-v2"', repr(str(bundled_minilm_dir())))
        scope: dict = {}
        exec(compile(code, "docs/formats.md", "exec"), scope)  # noqa: S102 - our own docs
    assert scope["ids"].height == 5 and scope["ids"].columns == ["query_ids", "passage_ids"]


def test_batches_of_one_row_are_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With drop_last false, a 5-row dataset in batches of 2 ends with a batch of one row: no in-batch
    negative for that step, planned without a word."""
    plain = {"keep_clashing_rows_apart": False}  # batches as they fall (apart, clashing rows make more short ones)
    m = write_train_dir(_grouped(), TrainDataParams(batch={"batch_size": 2, **plain}, tokenizer={"enabled": False}),  # type: ignore[arg-type]
                        tmp_path / "train")
    assert sum(m["datasets"].values()) == 5
    sizes = sorted(len(b["indices"]) for b in _jsonl(tmp_path / "train" / "batch_plan.jsonl"))
    assert sizes == [1, 2, 2]
    assert "batch_plan.jsonl has 1 batch of one row, which gives no in-batch negative" in capsys.readouterr().err
    write_train_dir(_grouped(), TrainDataParams(batch={"batch_size": 5, **plain}, tokenizer={"enabled": False}),  # type: ignore[arg-type]
                    tmp_path / "train")
    assert "one row" not in capsys.readouterr().err


def test_rows_repeating_a_query_are_counted_and_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two rows of one query (one per positive, as exports from pair tables have them) trained
    in one batch each other's positive as a negative of their query: nothing said so."""
    g = _grouped().filter(pl.col("split") == "train")
    first = g.row(0, named=True)
    twin = g.head(1).with_columns(qid=pl.lit("twin"), query=pl.lit("  " + first["query"] + " "),
                                  pos=pl.lit(["another answer"]))
    classes = g.head(2).with_columns(type=pl.lit("symmetric_class"), query=pl.lit("same label query"),
                                     qid=pl.Series(["c1", "c2"]))  # in-batch negatives are off there
    m = write_train_dir(pl.concat([g, twin, classes]), TrainDataParams(tokenizer={"enabled": False}),  # type: ignore[arg-type]
                        tmp_path / "train")
    name = f"{first['language']}/{first['task']}"
    assert m["embedder"]["rows_repeating_a_query"] == {name: 1}
    err = capsys.readouterr().err
    assert f"warning: train-data: 1 row repeats the query of an earlier row of its dataset ({name}: 1)" in err
    m = write_train_dir(g, TrainDataParams(tokenizer={"enabled": False}), tmp_path / "train")  # type: ignore[arg-type]
    assert m["embedder"]["rows_repeating_a_query"] == {} and "repeat" not in capsys.readouterr().err


def test_a_selection_that_drops_every_train_row_is_an_error_not_empty_files(tmp_path: Path) -> None:
    """Every row below teacher_scores_min gave empty files and exit 0: a trainer stopped on them later."""
    out = tmp_path / "train"
    write_train_dir(_grouped(), TrainDataParams(tokenizer={"enabled": False}), out)  # type: ignore[arg-type]
    before = {f.relative_to(out): f.read_bytes() for f in out.rglob("*") if f.is_file()}
    strict = TrainDataParams(tokenizer={"enabled": False}, teacher_scores_min=100.0)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"^train-data: all 5 train rows were dropped \(below_teacher_scores_min 5\)"):
        write_train_dir(_grouped(), strict, out)
    assert {f.relative_to(out): f.read_bytes() for f in out.rglob("*") if f.is_file()} == before


def test_flagembedding_epoch_advice_never_names_a_batch_size_it_cannot_train(capsys: pytest.CaptureFixture[str]) -> None:
    from tripleforge.train_outputs import _warn_about_flagembedding_epoch, flagembedding_epoch

    sym = "en-no_in_batch_neg/c.symmetric_class-no_in_batch_neg"
    # a 1-row file beside a symmetric one: batch size 1 would read it, but stops FlagEmbedding
    flag = flagembedding_epoch({sym: "symmetric_class"}, {"en/a": 1, "en/b": 7, sym: 4}, 8)
    assert flag["largest_batch_size_reading_every_dataset"] is None
    assert flag["with_small_threshold"]["rows_in_epoch"] == 8 + 4
    _warn_about_flagembedding_epoch(flag, 12, some_unscored=True)
    err = capsys.readouterr().err
    assert "never trains 8 of 12 rows" in err and "--per_device_train_batch_size 1" not in err
    assert "--small_threshold 8 merges" in err and "not with --knowledge_distillation True" in err
    modes = {"en/c.symmetric_sts": "symmetric_sts"}
    at_one = flagembedding_epoch(modes, {"en/a": 2, "en/c.symmetric_sts": 3}, 1)
    assert at_one["datasets_never_trained"] == ["en/a", "en/c.symmetric_sts"] and at_one["rows_in_epoch"] == 0
    _warn_about_flagembedding_epoch(at_one, 5)
    assert "cannot start at --per_device_train_batch_size 1" in capsys.readouterr().err


def test_rows_whose_positive_another_row_lists_are_counted_and_kept_apart(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mined negatives are other rows' positives: one batch holding both rows gave a query its own
    positive again as an in-batch negative (16 of the default run's 37 rows, in every plan)."""
    g = _grouped()  # negatives are the next documents, i.e. other rows' positives
    m = write_train_dir(g, TrainDataParams(tokenizer={"enabled": False}), tmp_path / "train")  # type: ignore[arg-type]
    shared = m["embedder"]["rows_with_positive_in_other_rows"]
    assert shared and all(0 < n <= m["datasets"][d] for d, n in shared.items())
    assert "lists as a passage, mostly as a mined negative" in capsys.readouterr().err
    assert m["batch_plan"]["rows_clashing_in_batches"] == 0 and m["batch_plan"]["rows_left_out_per_epoch"] == 0
    for step in _jsonl(tmp_path / "train" / "batch_plan.jsonl"):
        rows = _jsonl(tmp_path / "train" / "embedder" / f"{step['dataset']}.jsonl")
        batch = [rows[i] for i in step["indices"]]
        for i, r in enumerate(batch):
            others = {t for j, o in enumerate(batch) if j != i for t in o["pos"] + o["neg"]}
            assert not set(r["pos"]) & others
    plain = TrainDataParams(batch={"keep_clashing_rows_apart": False}, tokenizer={"enabled": False})  # type: ignore[arg-type]
    m = write_train_dir(g, plain, tmp_path / "train")
    assert m["batch_plan"]["rows_clashing_in_batches"] > 0
    assert "meet their own positive again in their batch" in capsys.readouterr().err
    # with drop_last, batches cut short by the parting are dropped: said as such, not blamed on sizes
    full = TrainDataParams(batch={"batch_size": 2, "drop_last": True}, tokenizer={"enabled": False})  # type: ignore[arg-type]
    m = write_train_dir(g, full, tmp_path / "train")
    assert m["datasets"] == {"en/code2code": 3, "en/text2code": 2} and m["batch_plan"]["rows_left_out_per_epoch"] == 3
    err = capsys.readouterr().err
    assert "trains on 2 of 5 rows per epoch" in err and "2 rows in batches cut short by keeping clashing rows apart" in err
    # and a one-row batch made by the parting names the param, not another batch size
    write_train_dir(g, TrainDataParams(batch={"batch_size": 2}, tokenizer={"enabled": False}), tmp_path / "train")  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "of one row" in err and "keep_clashing_rows_apart: false gives full ones" in err and "another batch_size" not in err
    # but one the sizes explain (3 rows in batches of 2) does not blame it
    one = g.filter(pl.col("task") == "code2code")
    m = write_train_dir(one, TrainDataParams(batch={"batch_size": 2, "keep_clashing_rows_apart": False},  # type: ignore[arg-type]
                                             tokenizer={"enabled": False}), tmp_path / "train")
    assert m["datasets"] == {"en/code2code": 3}
    err = capsys.readouterr().err
    assert "of one row" in err and "or pick another batch_size" in err and "gives full ones" not in err


def test_one_row_batches_are_blamed_on_the_parting_only_beyond_the_sizes() -> None:
    from tripleforge.batching import PLAN_SCHEMA
    from tripleforge.train_outputs import parting_made_single_rows

    def plan(batches: list[list[int]]) -> pl.DataFrame:
        return pl.DataFrame([(i, 0, "en/a", b) for i, b in enumerate(batches)], schema=PLAN_SCHEMA, orient="row")

    assert not parting_made_single_rows(plan([[0, 1], [2]]), {"en/a": 3}, 2)  # 3 rows in batches of 2
    assert parting_made_single_rows(plan([[0], [1], [2]]), {"en/a": 3}, 2)
    assert parting_made_single_rows(plan([[0], [1, 2, 3]]), {"en/a": 4}, 4)  # 4 rows fill one batch of 4
