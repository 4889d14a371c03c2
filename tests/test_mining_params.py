"""Params of mine-negatives, its search and pair-similar: values with no meaning fail before any work."""

from __future__ import annotations

import pytest

from tripleforge.errors import UserError
from tripleforge.mining import MineParams
from tripleforge.pairing import PairSimilarParams
from tripleforge.params import parse_overrides, validate_params


def mine(*overrides: str) -> MineParams:
    return validate_params(MineParams, "mine_negatives", parse_overrides(list(overrides)), source="params.yaml")


@pytest.mark.parametrize(
    "override,key",
    [
        ("search.chunk_size=0", "search.chunk_size"),
        ("search.chunk_size=-4", "search.chunk_size"),
        ("search.hnsw_m=1", "search.hnsw_m"),
        ("search.hnsw_ef_search=0", "search.hnsw_ef_search"),
        ("search.ivf_nlist=-1", "search.ivf_nlist"),
        ("search.ivf_nprobe=0", "search.ivf_nprobe"),
        ("search.recall_sample=-1", "search.recall_sample"),
        ("search.seed=-1", "search.seed"),
        ("search.device=banana", "search.device"),
        ("search.device=cuda:x", "search.device"),
        ("num_negatives=0", "num_negatives"),
        ("num_negatives=-2", "num_negatives"),
        ("eval_fraction=1.0", "eval_fraction"),
        ("eval_fraction=-0.1", "eval_fraction"),
        ("range_min=-1", "range_min"),
        ("filter_rank=-1", "filter_rank"),
        ("rescore_batch_size=0", "rescore_batch_size"),
        ("rescore_device=gpu", "rescore_device"),
        ("rescore_max_length=0", "rescore_max_length"),
        ("seed=-1", "seed"),
        ("query_chunk=0", "query_chunk"),
        ("histogram_bins=0", "histogram_bins"),
        ("histogram_bins=-5", "histogram_bins"),
        ("relative_margin=1.5", "relative_margin"),  # a negative could outscore the positive
        ("relative_margin=-0.5", "relative_margin"),
        ("relative_margin=0", "relative_margin"),
        ("margin=-0.1", "margin"),  # likewise
        ("search.seed=2147483648", "search.seed"),  # FAISS takes a C int
    ],
)
def test_meaningless_values_name_the_key(override, key):
    with pytest.raises(UserError) as err:
        mine(override)
    msg = str(err.value)
    assert f"params.yaml: params key 'mine_negatives.{key}'" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "overrides,message",
    [
        (("range_max=0",), "params keys 'mine_negatives.range_min' and 'mine_negatives.range_max': Value error, "
                           "must be greater than range_min (0) (got range_max=0)"),
        (("range_min=30", "range_max=30"), "params keys 'mine_negatives.range_min' and 'mine_negatives.range_max': "
                                           "Value error, must be greater than range_min (30) (got range_max=30)"),
        (("fallback_range_min=50", "fallback_range_max=10"),
         "params keys 'mine_negatives.fallback_range_min' and 'mine_negatives.fallback_range_max': Value error, must "
         "be greater than fallback_range_min (50), or 0 for no fallback (got fallback_range_max=10)"),
        (("max_score=0.2", "min_score=0.5"),
         "params keys 'mine_negatives.max_score' and 'mine_negatives.min_score': Value error, must not exceed "
         "max_score (0.2): no score could pass both (got min_score=0.5)"),
    ],
)
def test_cross_field_rules_name_both_keys(overrides, message):
    with pytest.raises(UserError) as err:
        mine(*overrides)
    assert str(err.value) == f"params.yaml: {message}"


def test_cross_field_rules_say_set_when_either_key_was_set():
    """`--set range_min=700` once blamed params.yaml and range_max, the key the user did not touch."""
    for given in (frozenset({"range_min"}), frozenset({"range_max"})):
        with pytest.raises(UserError, match=r"^--set: params keys 'mine_negatives.range_min' and 'mine_negatives.range_max'"):
            validate_params(MineParams, "mine_negatives", {"range_min": 700, "range_max": 100}, source="params.yaml",
                            overridden=given)
    with pytest.raises(UserError, match=r"^params.yaml: params keys 'mine_negatives.range_min' and "):
        validate_params(MineParams, "mine_negatives", {"range_min": 700, "range_max": 100}, source="params.yaml",
                        overridden=frozenset({"seed"}))


@pytest.mark.parametrize(
    "overrides",
    [
        ("fallback_range_min=50", "fallback_range_max=0"),  # 0 = no fallback: its min is unused
        ("filter_rank=null",),
        ("filter_rank=0",),
        ("eval_fraction=0.0",),
        ("search.recall_sample=0",),  # 0 = recall not measured
        ("search.device=cuda:1",),  # whether the machine has it is checked when mining starts
        ("search.device=auto",),
        ("min_score=0.5", "max_score=0.5"),
        ("relative_margin=1",),
        ("relative_margin=null",),  # off
    ],
)
def test_documented_values_stay_valid(overrides):
    mine(*overrides)


@pytest.mark.parametrize("override,key", [("skip_top=-1", "skip_top"), ("search_depth=0", "search_depth"),
                                          ("search_depth=-5", "search_depth"), ("jaccard_max=-0.1", "jaccard_max")])
def test_pair_similar_rejects_negative_ranks(override, key):
    with pytest.raises(UserError, match=f"'pair_similar.{key}'"):
        validate_params(PairSimilarParams, "pair_similar", parse_overrides([override]), source="params.yaml")


def test_pair_similar_depth_is_counted_after_skip_top():
    """search_depth counts hits after the skipped ones, so a depth below skip_top is meaningful."""
    validate_params(PairSimilarParams, "pair_similar", {"skip_top": 50, "search_depth": 10})


def test_embedder_query_format_is_checked_with_the_params():
    """`mine_negatives.embedder.query_instruction_format` without {query} embedded every query as the
    same string, and every mined negative was the same few documents."""
    with pytest.raises(UserError, match=r"^params.yaml: params key 'mine_negatives.embedder.query_instruction_format':"
                                        r" Value error, no \{query\} placeholder"):
        mine("embedder.query_instruction_format=Represent this query")
    assert mine("embedder.query_instruction_format='Instruct: {instruction}\\nQuery: {query}'")
