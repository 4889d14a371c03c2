"""LLM-Embedder group sampling, teacher filters, instructions, best-of-n and DPO, safe records."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from formats_data import mined_frame

from tripleforge.convert import ConvertFormatsParams, convert_all
from tripleforge.errors import UserError
from tripleforge.training import (
    InstructionTemplate,
    TrainDataParams,
    apply_instructions,
    best_of_candidates,
    check_train_input,
    embedder_records,
    sample_per_task,
    select_group,
    select_training_groups,
)

ROW: dict[str, Any] = {
    "qid": "q1", "query": "q", "task": "t",
    "pos": ["p0", "p1"], "neg": ["n0", "n1", "n2", "n3"],
    "pos_scores": [0.5, 0.7], "neg_scores": [0.6, 0.9, 0.1, 0.3],
}


def P(**kw: Any) -> TrainDataParams:
    return TrainDataParams(**{"train_group_size": 3, **kw})


def test_first_first() -> None:
    out, why = select_group(ROW, P(select_positive="first", select_negative="first"))
    assert why is None and out is not None
    assert out["pos"] == ["p0"] and out["neg"] == ["n0", "n1"]
    assert out["pos_scores"] == [0.5] and out["neg_scores"] == [0.6, 0.9]


def test_teacher_positive_may_promote_a_negative() -> None:
    out, _ = select_group(ROW, P(select_positive="teacher", select_negative="first"))
    assert out is not None and out["pos"] == ["n1"] and out["pos_scores"] == [0.9]
    assert "n1" not in out["neg"] and out["neg"] == ["n0", "n2"] and out["neg_scores"] == [0.6, 0.1]


def test_teacher_pos_picks_best_positive_only() -> None:
    out, _ = select_group(ROW, P(select_positive="teacher-pos"))
    assert out is not None and out["pos"] == ["p1"]


def test_teacher_plus_minus_and_stable_distill() -> None:
    hard, _ = select_group(ROW, P(select_negative="teacher+"))
    easy, _ = select_group(ROW, P(select_negative="teacher-"))
    assert hard is not None and easy is not None
    assert hard["neg"] == ["n1", "n0"] and easy["neg"] == ["n2", "n3"]
    sd, _ = select_group(ROW, P(select_negative="teacher-", stable_distill=True))
    assert sd is not None and sd["neg"] == ["n3", "n2"] and sd["neg_scores"] == [0.3, 0.1]


def test_teacher_options_fall_back_to_first_on_rows_without_scores() -> None:
    unscored = {**ROW, "pos_scores": None, "neg_scores": None}
    for option in ("teacher+", "teacher-"):
        for seed in range(5):  # not a seeded random pick that happens to be the first ones
            out, _ = select_group(unscored, P(select_negative=option, seed=seed))
            assert out is not None and out["neg"] == ["n0", "n1"] and out["neg_scores"] is None
    out, _ = select_group(unscored, P(select_positive="teacher"))
    assert out is not None and out["pos"] == ["p0"]


def test_random_is_seeded_per_row() -> None:
    picks = {tuple(select_group(ROW, P(select_negative="random", seed=s))[0]["neg"]) for s in range(20)}  # type: ignore[index]
    assert len(picks) > 1  # really random across seeds
    assert select_group(ROW, P(seed=3)) == select_group(ROW, P(seed=3))
    out, _ = select_group(ROW, P(train_group_size=10))
    assert out is not None and sorted(out["neg"]) == ROW["neg"]  # fewer than G-1: all, no repeats written


def test_teacher_filters_and_drops() -> None:
    assert select_group(ROW, P(teacher_scores_min=0.95)) == (None, "below_teacher_scores_min")
    assert select_group(ROW, P(teacher_scores_margin=0.9)) == (None, "below_teacher_scores_margin")
    assert select_group(ROW, P(teacher_scores_margin=0.5))[1] is None
    assert select_group({**ROW, "neg": [], "neg_scores": []}, P()) == (None, "no_negatives")
    # teacher options fall back to `first` when a row has no scores
    out, _ = select_group({**ROW, "pos_scores": None, "neg_scores": None}, P(select_positive="teacher"))
    assert out is not None and out["pos"] == ["p0"] and out["pos_scores"] is None


def _grouped(**kw: Any) -> pl.DataFrame:
    return convert_all(mined_frame(**kw), "mined.parquet", ConvertFormatsParams()).grouped


# The mined test frame's tasks are not catalog tasks; these are, one per kind of candidate.
T2C, C2T, CONTEXT, BUG = ("web_code_retrieval", "code_summary_retrieval", "code_context_retrieval",
                          "bug_desc_retrieval")


def _catalog(g: pl.DataFrame, task: str = T2C) -> pl.DataFrame:
    return g.with_columns(task=pl.lit(task))


def test_best_of_n_and_dpo(capsys: pytest.CaptureFixture[str]) -> None:
    g = _catalog(_grouped(n_docs=4, candidates=3, eval_every=100))
    c = best_of_candidates(g, P(n_candidates=2))
    kept, dpo = c.kept, c.dpo
    assert kept.height == 4 and set(kept["candidate_idx"]) == {0}  # candidate 0 has the best pos score
    assert c.drops == {"candidate_beyond_n": 4, "not_best_candidate": 4}
    assert dpo.height == 4 and dpo.columns[:5] == ["prompt", "chosen", "rejected", "chosen_score", "rejected_score"]
    assert all(c.endswith("candidate 0") and r.endswith("candidate 1") for c, r in dpo.select("chosen", "rejected").rows())
    assert (dpo["chosen_score"] > dpo["rejected_score"]).all()
    assert dpo["prompt"][0].startswith("Write a ") and "def f" in dpo["prompt"][0]
    margin = best_of_candidates(g, P(n_candidates=2, dpo_min_margin=0.5))
    assert margin.dpo.height == 0 and margin.dpo_skipped == {"margin_not_above_dpo_min_margin": 4}
    capsys.readouterr()
    same = best_of_candidates(g, P(n_candidates=1))
    assert same.kept.height == g.height and same.dpo.height == 0
    # every candidate trains as its own row: said, since generate's n_candidates is usually meant to be used
    assert "set train_data.n_candidates=3 to keep the best one per job" in capsys.readouterr().err
    best_of_candidates(g.filter(pl.col("candidate_idx") == 0), P(n_candidates=1))
    assert capsys.readouterr().err == ""
    # kept rows stay in input order: jobs of one candidate each come out as they went in
    ones = g.filter(pl.col("candidate_idx") == 0).reverse()
    assert best_of_candidates(ones, P(n_candidates=2)).kept.equals(ones)
    assert best_of_candidates(g.reverse(), P(n_candidates=2)).kept.equals(kept.reverse())


def test_best_of_n_keeps_the_best_candidate_that_can_train() -> None:
    """The best-scoring candidate had no negatives: it was picked, then dropped as no_negatives, and
    its job lost the usable candidate 1 with it (counted as not_best_candidate)."""
    g = _catalog(_grouped(n_docs=2, candidates=3, eval_every=100)).with_columns(split=pl.lit("train"))
    no_negs = (pl.col("doc_id") == pl.col("doc_id").first()) & (pl.col("candidate_idx") == 0)
    g = g.with_columns(neg=pl.when(no_negs).then(pl.lit([], dtype=pl.List(pl.String))).otherwise("neg"),
                       neg_scores=pl.when(no_negs).then(pl.lit([], dtype=pl.List(pl.Float64))).otherwise("neg_scores"))
    sel = select_training_groups(g, P(n_candidates=3))
    assert sorted(sel.grouped["candidate_idx"].to_list()) == [0, 1]  # the other job keeps its best, 0
    assert sel.drops == {"not_best_candidate": 4}
    # DPO still judges the queries by score alone: candidate 0 is the chosen one of both jobs
    assert sel.dpo.height == 2 and all(c.endswith("candidate 0") for c in sel.dpo["chosen"])
    # when no candidate of a job can train, the best one is dropped for its own reason
    none = g.with_columns(neg=pl.lit([], dtype=pl.List(pl.String)), neg_scores=pl.lit([], dtype=pl.List(pl.Float64)))
    assert select_training_groups(none, P(n_candidates=3)).drops == {"no_negatives": 2, "not_best_candidate": 4}


def _as_language(g: pl.DataFrame, lang: str, score_shift: float) -> pl.DataFrame:
    """The same generation jobs in another language: new qids and queries, lower scores."""
    return g.with_columns(language=pl.lit(lang), qid=pl.col("qid") + f"-{lang}",
                          query=pl.lit(f"{lang}: ") + pl.col("query"),
                          pos_scores=pl.col("pos_scores").list.eval(pl.element() - score_shift))


def test_candidates_compete_only_within_language() -> None:
    # the tryout: every train row repeated as language=zh with new qids and lower scores
    en = _catalog(_grouped(n_docs=4, eval_every=100))
    both = pl.concat([en, _as_language(en, "zh", 0.3)])
    c = best_of_candidates(both, P(n_candidates=2))
    assert sorted(c.kept["language"].to_list()) == ["en"] * 4 + ["zh"] * 4
    assert c.drops == {} and c.dpo.height == 0  # one candidate per job: nothing to compare
    # two candidates per language: one kept per language, DPO pairs never mix languages
    en2 = _catalog(_grouped(n_docs=4, candidates=2, eval_every=100))
    c2 = best_of_candidates(pl.concat([en2, _as_language(en2, "zh", 0.3)]), P(n_candidates=2))
    assert sorted(c2.kept["language"].to_list()) == ["en"] * 4 + ["zh"] * 4
    assert c2.drops == {"not_best_candidate": 8} and c2.dpo.height == 8
    for lang, chosen, rejected in c2.dpo.select("language", "chosen", "rejected").rows():
        assert chosen.startswith("zh: ") == rejected.startswith("zh: ") == (lang == "zh")


def test_candidates_of_other_code_languages_and_targets_do_not_compete() -> None:
    one = _catalog(_grouped(n_docs=2, eval_every=100), "code_translation_retrieval")
    java = one.with_columns(qid=pl.col("qid") + "-j", pos_scores=pl.col("pos_scores").list.eval(pl.element() - 0.5))
    tgt = pl.concat([one.with_columns(tgt_code_language=pl.lit("ruby")),
                     java.with_columns(tgt_code_language=pl.lit("java"))])
    assert best_of_candidates(tgt, P(n_candidates=2)).kept.height == 4
    same = pl.concat([one.with_columns(tgt_code_language=pl.lit("ruby")),
                      java.with_columns(tgt_code_language=pl.lit("ruby"))])
    assert best_of_candidates(same, P(n_candidates=2)).kept.height == 2  # one target: they compete
    code = pl.concat([one, java.with_columns(code_language=pl.lit("java"))])
    assert best_of_candidates(code, P(n_candidates=2)).kept.height == 4


def test_dpo_only_for_llm_written_queries_with_the_document_as_input() -> None:
    g = _grouped(n_docs=2, candidates=2, eval_every=100)
    t2c = _catalog(g, T2C)
    # code2text: the query is the document, the candidates differ by the LLM-written positive
    c2t = _catalog(g, C2T).with_columns(
        query=pl.col("pos").list.first(),
        pos=pl.concat_list(pl.lit("summary ") + pl.col("candidate_idx").cast(pl.String)))
    res = best_of_candidates(pl.concat([t2c, c2t, _catalog(g, BUG), _catalog(g, "text2code")]), P(n_candidates=2))
    assert set(res.dpo["task"]) == {T2C} and res.dpo.height == 2
    docs = t2c.filter(pl.col("candidate_idx") == 0)["pos"].list.first().to_list()
    assert sorted(res.dpo["prompt"].to_list()) == sorted(
        f"Write a {T2C} query for this python document.\n\n{d}" for d in docs)
    assert res.dpo_skipped == {"query_not_llm_written": 2, "query_input_not_in_triplets": 2, "not_a_catalog_task": 2}
    # best-of-n still picks by score where the LLM wrote the positive: the best summary is kept
    assert res.kept.filter(pl.col("task") == C2T)["pos"].to_list() == [["summary 0"]] * 2


def test_rule_based_candidates_keep_the_first_not_the_easiest() -> None:
    # code_context_retrieval: candidates are seeded cuts, not generations; a higher score only
    # means an easier continuation, so candidate 0 is kept whatever the scores
    g = _catalog(_grouped(n_docs=2, candidates=2, eval_every=100), CONTEXT)
    easier = g.with_columns(pos_scores=pl.concat_list(pl.col("candidate_idx").cast(pl.Float64)))
    res = best_of_candidates(easier, P(n_candidates=2))
    assert res.kept["candidate_idx"].to_list() == [0, 0] and res.dpo.height == 0
    assert res.dpo_skipped == {"query_not_llm_written": 2}


def test_instructions_per_task() -> None:
    g = _grouped(n_docs=4)
    out = apply_instructions(g, {"text2code": InstructionTemplate(query="Find code: ", passage="passage: "),
                                 "*": InstructionTemplate(passage="doc: ")})
    t2c = out.filter(pl.col("task") == "text2code")
    assert set(t2c["prompt"]) == {"Find code:"}  # stripped: consumers join it to the query with one space
    assert all(x.startswith("passage: ") for x in t2c["pos"].explode().to_list() + t2c["neg"].explode().to_list())
    c2c = out.filter(pl.col("task") == "code2code")
    assert c2c["prompt"].to_list() == g.filter(pl.col("task") == "code2code")["prompt"].to_list()
    assert all(x.startswith("doc: ") for x in c2c["pos"].explode().to_list())


def test_max_samples_per_task_is_seeded_and_capped() -> None:
    g = _grouped(n_docs=8, eval_every=100)
    a, dropped = sample_per_task(g, 2, seed=1)
    assert dropped == 4 and a.group_by("task").len()["len"].to_list() == [2, 2]
    assert a.equals(sample_per_task(g, 2, seed=1)[0])
    assert a["qid"].to_list() != sample_per_task(g, 2, seed=7)[0]["qid"].to_list()


def test_max_samples_per_task_caps_the_rows_the_filters_keep() -> None:
    # the tryout: the cap sampled before rows without negatives were dropped, so a task ended
    # with fewer than N rows (often none) and the no-negative rows were counted as capped
    g = _grouped(n_docs=12, eval_every=100).with_columns(task=pl.lit("t"))  # 11 train rows
    empty = pl.col("qid").is_in(sorted(g["qid"].to_list())[:9])
    g = g.with_columns(neg=pl.when(empty).then(pl.lit([], pl.List(pl.String))).otherwise("neg"),
                       neg_scores=pl.when(empty).then(pl.lit([], pl.List(pl.Float64))).otherwise("neg_scores"))
    usable = g.filter(pl.col("split") == "train", pl.col("neg").list.len() > 0)["qid"].to_list()
    assert len(usable) == 3
    for seed in range(4):
        sel = select_training_groups(g, P(max_samples_per_task=2, seed=seed))
        assert sel.grouped.height == 2 and set(sel.grouped["qid"]) <= set(usable)
        assert sel.drops == {"not_train_split": 1, "no_negatives": 8, "max_samples_per_task": 1}
        again = select_training_groups(g, P(max_samples_per_task=2, seed=seed))
        assert again.grouped.equals(sel.grouped)  # deterministic
    assert select_training_groups(g, P(max_samples_per_task=3)).drops == {"not_train_split": 1, "no_negatives": 8}


def test_select_training_groups_excludes_eval_and_counts() -> None:
    g = _grouped(n_docs=8, n_neg=2)
    sel = select_training_groups(g, P())
    assert sel.grouped.height == 6 and set(sel.grouped["split"]) == {"train"}
    assert sel.drops == {"not_train_split": 2}
    assert all(len(n) == 2 for n in sel.grouped["neg"].to_list())


def test_embedder_records_never_null_prompt_or_empty_neg() -> None:
    sel = select_training_groups(_grouped(n_docs=4, eval_every=100), P()).grouped
    mixed = sel.with_columns(prompt=pl.when(pl.col("qid") == sel["qid"][0]).then(None).otherwise("prompt"))
    recs = embedder_records(mixed, keep_scores=True)
    assert all(r["neg"] and isinstance(r["prompt"], str) for r in recs)
    assert recs[0]["prompt"] == "" and "type" not in recs[0]  # no row has a type: no column
    no_prompt = embedder_records(sel.with_columns(prompt=pl.lit(None, pl.String)), keep_scores=False)
    assert set(no_prompt[0]) == {"query", "pos", "neg"}  # all-null column dropped, scores off
    partial = sel.with_columns(pos_scores=pl.when(pl.col("qid") == sel["qid"][0]).then(None).otherwise("pos_scores"))
    assert "pos_scores" not in embedder_records(partial, keep_scores=True)[0]  # scores all or nothing per file


def test_params_reject_unknown_values() -> None:
    from tripleforge.errors import UserError
    from tripleforge.params import validate_params

    with pytest.raises(UserError, match="train_data.select_negative"):
        validate_params(TrainDataParams, "train_data", {"select_negative": "hardest"})
    with pytest.raises(UserError, match="train_data.batch.mode"):
        validate_params(TrainDataParams, "train_data", {"batch": {"mode": "static"}})


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"train_group_size": 1}, "train_data.train_group_size"),
        ({"train_group_size": -3}, "train_data.train_group_size"),
        ({"max_samples_per_task": -1}, "train_data.max_samples_per_task"),
        ({"max_samples_per_task": 0}, "train_data.max_samples_per_task"),
        ({"n_candidates": 0}, "train_data.n_candidates"),
        ({"st_ntuple_negatives": 0}, "train_data.st_ntuple_negatives"),
        ({"seed": -1}, "train_data.seed"),
        ({"batch": {"batch_size": 0}}, "train_data.batch.batch_size"),
        ({"batch": {"epochs": 0}}, "train_data.batch.epochs"),
        ({"tokenizer": {"shard_rows": 0}}, "train_data.tokenizer.shard_rows"),
        ({"tokenizer": {"query_max_len": 0}}, "train_data.tokenizer.query_max_len"),
        ({"tokenizer": {"passage_max_len": -1}}, "train_data.tokenizer.passage_max_len"),
        ({"dpo_prompt_template": "{foo} {document}"}, "train_data.dpo_prompt_template.*unknown placeholder {foo}"),
        ({"dpo_prompt_template": "{task"}, "train_data.dpo_prompt_template.*unpaired brace"),
        ({"dpo_prompt_template": "{} {document}"}, "train_data.dpo_prompt_template.*positional placeholder"),
        ({"dpo_prompt_template": "{task.x}"}, "train_data.dpo_prompt_template.*not a valid template"),
        ({"instructions": {"t": {"query": "Find {task} code"}}}, "train_data.instructions.t.query.*verbatim"),
        ({"instructions": {"*": {"passage": "{}"}}}, r"train_data.instructions.\*.passage.*verbatim"),
        ({"instructions": {"nosuch_task": {"query": "Find: "}}},
         r"train_data.instructions.*unknown task 'nosuch_task'; known: '\*' .* web_code_retrieval code_contest_retrieval"),
        ({"instructions": {"default": {"query": "Find: "}}}, r"train_data.instructions.*unknown task 'default'"),
        ({"teacher_scores_margin": -0.1}, "train_data.teacher_scores_margin"),
    ],
)
def test_params_reject_values_without_meaning(raw: dict[str, Any], key: str) -> None:
    from tripleforge.errors import UserError
    from tripleforge.params import validate_params

    with pytest.raises(UserError, match=key) as err:
        validate_params(TrainDataParams, "train_data", raw)
    assert "\n" not in str(err.value)


def test_params_accept_the_documented_edge_values() -> None:
    p = TrainDataParams(train_group_size=2, max_samples_per_task=None, n_candidates=1, st_ntuple_negatives=1,
                        dpo_prompt_template="{{literal}} {language} {document!r:>5}",
                        teacher_scores_margin=0.0,
                        instructions={"web_code_retrieval": InstructionTemplate(query="Find code {", passage="a } b"),
                                      "*": InstructionTemplate(passage="doc: ")})
    assert p.dpo_prompt_template.format(task="", code_language="", language="en", document="d") == "{literal} en   'd'"
    out, _ = select_group(ROW, TrainDataParams(train_group_size=2, select_negative="first"))
    assert out is not None and out["neg"] == ["n0"]


def test_train_input_must_be_the_convert_formats_triplets() -> None:
    g = convert_all(mined_frame(n_docs=2), "m.parquet", ConvertFormatsParams()).grouped
    assert check_train_input(g, "t.parquet").equals(g)
    with pytest.raises(UserError, match=r"^m.parquet: missing column\(s\) qid, type, source_format, source \(expected"):
        check_train_input(mined_frame(n_docs=2), "m.parquet")  # the mined triplets, one stage too early
    with pytest.raises(UserError, match=r"^t.parquet: column 'pos' has type String, expected List\(String\)$"):
        check_train_input(g.with_columns(pos=pl.lit("x")), "t.parquet")
    nulls = g.with_columns(prompt=pl.lit(None), type=pl.lit(None))  # all-null columns are fine
    assert check_train_input(nulls, "t.parquet").schema == g.schema


@pytest.mark.parametrize("edit,reason", [
    ({"query": pl.lit(None, pl.String)}, "missing query"),
    ({"pos_scores": pl.col("pos_scores").list.eval(pl.element() * float("nan"))}, "nan or infinite value"),
    ({"pos_scores": pl.col("pos_scores").list.concat(pl.lit([0.5]))}, "pos scores length differs from pos"),
    ({"neg": pl.col("neg").list.concat(pl.lit([None], pl.List(pl.String)))}, "empty text in neg"),
])
def test_a_hand_edited_train_input_is_refused_at_its_row(edit: dict, reason: str) -> None:
    """A null query once went into the embedder JSONL as `"query": null`, a NaN score as `NaN`
    (not JSON), both with exit 0."""
    g = convert_all(mined_frame(n_docs=3), "m.parquet", ConvertFormatsParams()).grouped
    bad = g.with_columns(**{k: pl.when(pl.int_range(pl.len()) == 1).then(v).otherwise(pl.col(k)) for k, v in edit.items()})
    with pytest.raises(UserError, match=rf"^t.parquet:2: {reason}.*\(qid {g['qid'][1]}; 1 such rows; re-run convert-formats"):
        check_train_input(bad, "t.parquet")


def test_exact_copies_of_a_train_row_are_dropped_and_counted() -> None:
    g = convert_all(mined_frame(n_docs=8, eval_every=100), "m.parquet", ConvertFormatsParams()).grouped
    twice = pl.concat([g, g.with_columns(qid=pl.col("qid") + "-copy")])  # the same records under other qids
    sel = select_training_groups(twice, TrainDataParams(train_group_size=2, select_negative="first"))
    one = select_training_groups(g, TrainDataParams(train_group_size=2, select_negative="first"))
    assert sel.drops["duplicate_record"] == g.filter(pl.col("split") == "train").height
    assert sel.grouped.equals(one.grouped)
