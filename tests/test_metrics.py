"""IR metrics: hand-computed values, the one denominator convention, cross-check with ranx,
and paired significance tests on constructed data."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from tripleforge.errors import UserError
from tripleforge.metrics import (
    aggregate,
    compare_systems,
    evaluate_run,
    paired_ttest,
    randomization_test,
    rank_run,
)

QRELS = {"q1": {"d1": 1, "d2": 2}, "q2": {"d3": 1}, "q3": {"d5": 1}}
RUN = {"q1": {"d9": 0.9, "d1": 0.5, "d2": 0.1}, "q2": {"d4": 0.8, "d7": 0.7, "d3": 0.6}, "q3": {}}


def test_hand_computed_values() -> None:
    per_query, stats = evaluate_run(QRELS, RUN, [1, 3])
    rows = {r["query_id"]: r for r in per_query.iter_rows(named=True)}
    # q1: ranking d9 (0), d1 (1), d2 (2); relevant d1 (grade 1) at rank 2, d2 (grade 2) at rank 3
    q1 = rows["q1"]
    assert q1["mrr_at_1"] == 0.0 and q1["mrr_at_3"] == pytest.approx(0.5)
    assert q1["recall_at_3"] == 1.0 and q1["precision_at_3"] == pytest.approx(2 / 3)
    assert q1["map_at_3"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert q1["ndcg_at_3"] == pytest.approx(dcg / idcg)
    # q2: relevant d3 at rank 3
    assert rows["q2"]["mrr_at_3"] == pytest.approx(1 / 3) and rows["q2"]["recall_at_1"] == 0.0
    # q3 has qrels but an empty result list: 0 everywhere, still counted
    assert all(v == 0.0 for k, v in rows["q3"].items() if k != "query_id")
    assert stats.evaluated_queries == 3 and stats.queries_with_empty_run == 1


def test_same_denominator_for_every_metric() -> None:
    """Missing queries count as 0 in MRR *and* in the pytrec metrics (FlagEmbedding mixes them)."""
    run = {"q1": {"d1": 1.0}, "extra": {"d1": 1.0}}  # q2, q3 absent from the run
    per_query, stats = evaluate_run(QRELS, run, [10])
    means = aggregate(per_query)
    assert per_query.height == 3
    assert means["mrr_at_10"] == pytest.approx(1 / 3, abs=1e-5)
    assert means["precision_at_10"] == pytest.approx(0.1 / 3, abs=1e-5)
    assert means["recall_at_10"] == pytest.approx(0.5 / 3, abs=1e-5)
    assert stats.queries_with_empty_run == 2 and stats.run_queries_without_qrels == 1


def test_queries_without_relevant_docs_are_not_scored() -> None:
    qrels = {"q1": {"d1": 1}, "q0": {"d2": 0}}
    per_query, stats = evaluate_run(qrels, {"q1": {"d1": 1.0}, "q0": {"d2": 1.0}}, [1])
    assert per_query["query_id"].to_list() == ["q1"]
    assert stats.evaluated_queries == 1 and stats.run_queries_without_qrels == 1


def test_ties_break_by_doc_id_ascending() -> None:
    assert rank_run({"q": {"b": 1.0, "a": 1.0, "c": 2.0}}, 10) == {"q": ["c", "a", "b"]}
    # trec_eval alone would put "b" before "a"; our ranking decides, so MRR@1 is 1 for a, 0 for b
    a, _ = evaluate_run({"q": {"a": 1}}, {"q": {"a": 0.5, "b": 0.5}}, [1])
    b, _ = evaluate_run({"q": {"b": 1}}, {"q": {"a": 0.5, "b": 0.5}}, [1])
    assert a["mrr_at_1"][0] == 1.0 and b["mrr_at_1"][0] == 0.0


def test_bad_k_values() -> None:
    with pytest.raises(UserError, match="k_values"):
        evaluate_run(QRELS, RUN, [0, 5])


def _random_case(seed: int, nq: int = 60, ndocs: int = 80, depth: int = 40):
    rng = random.Random(seed)
    qrels, run = {}, {}
    for i in range(nq):
        q = f"q{i}"
        rel = rng.sample(range(ndocs), rng.randint(1, 5))
        qrels[q] = {f"d{d}": rng.choice([1, 1, 2, 3]) for d in rel}
        if rng.random() < 0.3:  # some judged non-relevant docs
            qrels[q].setdefault(f"d{rng.randrange(ndocs)}", 0)
        # distinct scores: ties are ordered differently by every tool
        docs = rng.sample(range(ndocs), depth)
        run[q] = {f"d{d}": 1.0 - j / depth for j, d in enumerate(docs)}
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_ranx(seed: int) -> None:
    ranx = pytest.importorskip("ranx")
    qrels, run = _random_case(seed)
    ks = [1, 3, 5, 10]
    per_query, _ = evaluate_run(qrels, run, ks)
    ours = aggregate(per_query, ndigits=12)
    names = {"ndcg": "ndcg", "recall": "recall", "mrr": "mrr", "map": "map", "precision": "precision"}
    wanted = [f"{names[m]}@{k}" for m in names for k in ks]
    ref = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), wanted)
    for m in names:
        for k in ks:
            assert ours[f"{m}_at_{k}"] == pytest.approx(ref[f"{names[m]}@{k}"], abs=1e-9), (m, k)


def test_significance_identical_systems() -> None:
    a = np.linspace(0, 1, 30)
    assert paired_ttest(a, a) == 1.0
    assert randomization_test(a, a, n_permutations=2000, seed=1) == 1.0


def test_significance_clearly_better_system() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.2, 0.6, 50)
    b = a + rng.uniform(0.1, 0.3, 50)
    assert paired_ttest(b, a) < 1e-6
    p = randomization_test(b, a, n_permutations=5000, seed=3)
    assert p == pytest.approx(1 / 5001)  # no sign flip reaches the observed mean


def test_significance_noise_is_not_significant() -> None:
    rng = np.random.default_rng(7)
    a = rng.uniform(0, 1, 40)
    b = a + rng.normal(0, 0.05, 40)
    b = b - (b - a).mean()  # exactly zero mean difference
    assert paired_ttest(b, a) > 0.9
    assert randomization_test(b, a, n_permutations=2000, seed=0) > 0.9


def test_tiny_differences_with_zero_mean_are_not_a_constant_difference() -> None:
    """±1e-9 passed np.allclose as "constant" and, as diff[0] != 0, gave p = 0.0 (scipy: ~1)."""
    from scipy import stats

    a, b = [0.5, 0.5, 0.5, 0.5], [0.5 - 1e-9, 0.5 + 1e-9, 0.5 - 1e-9, 0.5 + 1e-9]
    assert paired_ttest(a, b) == pytest.approx(float(stats.ttest_rel(a, b).pvalue)) and paired_ttest(a, b) > 0.99
    assert paired_ttest([0.6, 0.8], [0.5, 0.7]) < 0.05  # a steady +0.1 (float noise apart) is still significant


def test_randomization_is_seeded() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, 25)
    b = a + rng.normal(0.05, 0.2, 25)
    p1 = randomization_test(b, a, n_permutations=3000, seed=5)
    assert p1 == randomization_test(b, a, n_permutations=3000, seed=5)
    assert 0.0 < p1 < 1.0
    # close to the t-test on well-behaved data (Monte-Carlo error aside)
    from scipy import stats

    assert abs(p1 - stats.ttest_rel(b, a).pvalue) < 0.1


def test_compare_systems_matches_queries_by_id() -> None:
    qrels, run = _random_case(3, nq=30)
    base, _ = evaluate_run(qrels, run, [10])
    perfect = {q: {d: float(r) + 1 for d, r in docs.items()} for q, docs in qrels.items()}
    better, _ = evaluate_run(qrels, perfect, [10])
    out = compare_systems(base, better.reverse(), "ndcg_at_10", n_permutations=1000, seed=0)
    assert out["queries"] == 30 and out["delta"] > 0 and out["value"] == 1.0
    assert out["significant"] and out["p_randomization"] < 0.01
    with pytest.raises(UserError, match="main metric"):
        compare_systems(base, better, "ndcg_at_7")
    with pytest.raises(UserError, match="same queries"):
        compare_systems(base, better.head(5), "ndcg_at_10")
