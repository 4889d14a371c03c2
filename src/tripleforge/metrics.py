"""IR metrics (through pytrec_eval) with one denominator convention, and paired significance tests.

Convention (used for every metric and every k):
- The **evaluated queries** are the queries that have at least one judged-relevant document
  (qrels relevance >= 1). Each gets one value per metric; the reported metric is the plain mean
  over all of them.
- A query with qrels but no results (missing from the run, or an empty result list) scores 0 on
  every metric; it stays in the denominator. Nothing is silently dropped.
- Queries that are in the run but have no relevant qrels cannot be scored; they are counted
  (`run_queries_without_qrels`), never averaged in.
- The ranking of a query is its results by score descending, ties broken by document id
  ascending, cut at max(k). pytrec_eval receives that ranking as strictly decreasing scores, so
  trec_eval's own tie-break (document id descending) never applies and every metric (and any
  cross-check tool) sees the same order.
- MRR@k: reciprocal rank of the first relevant document within the top k, 0 if none.
  (FlagEmbedding divides its MRR sum by len(qrels) while its pytrec_eval metrics average over
  the queries pytrec_eval scored; here every metric has the same denominator.)
- Recall@k = relevant in top k / all relevant; Precision@k = relevant in top k / k;
  MAP@k = trec_eval `map_cut` (sum of precision at each relevant rank <= k, divided by all
  relevant); NDCG@k = trec_eval `ndcg_cut` (linear gain = relevance grade, log2 discount).
  Relevant documents the corpus does not contain still count in recall's and MAP's
  denominators (the evaluation stage reports how many there are).

Per-query values are returned as a Polars frame (`query_id` + one column per metric), so
significance tests and per-task breakdowns use exactly the numbers that were averaged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from tripleforge.errors import UserError

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

METRICS: tuple[str, ...] = ("ndcg", "recall", "mrr", "map", "precision")
# our name -> trec_eval measure family (cut variants take ".k1,k2,...")
_TREC = {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P"}


def metric_key(metric: str, k: int) -> str:
    """`ndcg`, 10 -> `ndcg_at_10` (the key used in metrics files and per-query columns)."""
    return f"{metric}_at_{k}"


def metric_columns(k_values: Sequence[int], metrics: Sequence[str] = METRICS) -> list[str]:
    return [metric_key(m, k) for m in metrics for k in sorted(set(k_values))]


def check_k_values(k_values: Sequence[int]) -> list[int]:
    ks = sorted(set(int(k) for k in k_values))
    if not ks or ks[0] < 1:
        raise UserError(f"k_values must be a non-empty list of positive integers, got {list(k_values)}")
    return ks


def relevant_queries(qrels: Qrels, relevance_level: int = 1) -> list[str]:
    """Ids of queries with at least one document of relevance >= `relevance_level`, sorted."""
    return sorted(q for q, docs in qrels.items() if any(r >= relevance_level for r in docs.values()))


def rank_run(run: Run, depth: int) -> dict[str, list[str]]:
    """Each query's document ids by score descending, ties by doc id ascending, cut at `depth`."""
    ranked: dict[str, list[str]] = {}
    for q, docs in run.items():
        # tuples compare in C: (-score, doc_id) ascending = score desc, then doc id asc
        order = sorted(zip([-float(v) for v in docs.values()], docs.keys()))
        ranked[q] = [d for _, d in order[:depth]]
    return ranked


def _as_trec_run(ranked: Mapping[str, list[str]]) -> dict[str, dict[str, float]]:
    # Strictly decreasing integer scores encode our ranking exactly; trec_eval re-sorts by score.
    return {q: dict(zip(docs, map(float, range(len(docs), 0, -1)))) for q, docs in ranked.items() if docs}


@dataclass(frozen=True)
class RunStats:
    """Counts that explain the denominator of one evaluation."""

    evaluated_queries: int  # queries with >= 1 relevant doc: the denominator of every metric
    queries_with_empty_run: int  # evaluated queries with no results (scored 0)
    run_queries_without_qrels: int  # queries in the run that have no relevant qrels (not scored)

    def as_dict(self) -> dict[str, int]:
        return {
            "evaluated_queries": self.evaluated_queries,
            "queries_with_empty_run": self.queries_with_empty_run,
            "run_queries_without_qrels": self.run_queries_without_qrels,
        }


def evaluate_run(
    qrels: Qrels, run: Run, k_values: Sequence[int], relevance_level: int = 1
) -> tuple[pl.DataFrame, RunStats]:
    """Per-query metrics of `run` against `qrels`.

    Output columns: `query_id` (str) then `<metric>_at_<k>` (f64) for metric in
    ndcg, recall, mrr, map, precision and every k; one row per evaluated query, sorted by
    `query_id`. See the module docstring for the convention.
    """
    import pytrec_eval

    ks = check_k_values(k_values)
    depth = ks[-1]
    queries = relevant_queries(qrels, relevance_level)
    qset = set(queries)
    ranked = rank_run({q: d for q, d in run.items() if q in qset}, depth)
    trec_qrels = {q: {d: int(r) for d, r in qrels[q].items()} for q in queries}
    kk = ",".join(str(k) for k in ks)
    measures = {f"{fam}.{kk}" for fam in _TREC.values()} | {"recip_rank"}
    results: dict[str, dict[str, float]] = {}
    trec_run = _as_trec_run(ranked)
    if queries and trec_run:
        evaluator = pytrec_eval.RelevanceEvaluator(trec_qrels, measures, relevance_level=relevance_level)
        results = evaluator.evaluate(trec_run)

    cols: dict[str, list[float]] = {c: [] for c in metric_columns(ks)}
    # (our column, trec_eval result key) pairs, computed once
    trec_keys = [(metric_key(m, k), f"{fam}_{k}") for k in ks for m, fam in _TREC.items()]
    mrr_cols = [(metric_key("mrr", k), k) for k in ks]
    zero_cols = list(cols.values())
    empty = 0
    for q in queries:
        res = results.get(q)
        if res is None or not ranked.get(q):
            empty += 1
            for col in zero_cols:
                col.append(0.0)
            continue
        for ours, theirs in trec_keys:
            cols[ours].append(float(res[theirs]))
        rr = float(res["recip_rank"])
        first_rank = round(1.0 / rr) if rr > 0 else depth + 1
        # the run is cut at max(k), so trec_eval's recip_rank is RR@max(k); RR@k follows
        for col, k in mrr_cols:
            cols[col].append(rr if first_rank <= k else 0.0)
    frame = pl.DataFrame(
        {"query_id": queries, **{c: pl.Series(c, v, dtype=pl.Float64) for c, v in cols.items()}},
        schema={"query_id": pl.String, **{c: pl.Float64 for c in cols}},
    )
    stats = RunStats(
        evaluated_queries=len(queries),
        queries_with_empty_run=empty,
        run_queries_without_qrels=sum(1 for q in run if q not in qset),
    )
    return frame, stats


def aggregate(per_query: pl.DataFrame, ndigits: int = 5) -> dict[str, float]:
    """Mean of every metric column over all rows (the evaluated queries); 0.0 for no rows."""
    cols = [c for c in per_query.columns if "_at_" in c]
    if per_query.height == 0:
        return {c: 0.0 for c in cols}
    means = per_query.select(pl.col(cols).mean()).row(0, named=True)
    return {c: round(float(v), ndigits) for c, v in means.items()}


# ---------------------------------------------------------------------------------------------
# paired significance tests


def paired_ttest(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided paired t-test p-value of mean(a - b) != 0. Identical systems -> 1.0."""
    x, y = _paired(a, b)
    diff = x - y
    if len(diff) < 2 or bool(np.all(diff == diff[0])):
        # zero variance: no evidence either way when the mean difference is 0; a constant
        # nonzero difference on >= 2 queries is as consistent as it gets. Exact equality: with a
        # tolerance, differences of +-1e-9 (mean 0) passed as constant and gave p = 0.
        return 1.0 if len(diff) < 2 or diff[0] == 0 else 0.0
    from scipy import stats

    return float(stats.ttest_rel(x, y).pvalue)


def randomization_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_permutations: int = 10_000,
    seed: int = 0,
) -> float:
    """Two-sided paired randomisation (Fisher) test: randomly swap each query's pair of scores
    (flip the sign of its difference) and count permuted |mean diff| >= observed.

    p = (count + 1) / (n_permutations + 1), so p > 0 and identical systems give exactly 1.0.
    Seeded: the same inputs, `n_permutations` and `seed` give the same p."""
    x, y = _paired(a, b)
    diff = x - y
    if len(diff) == 0:
        return 1.0
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed)
    # compare with a relative tolerance so float summation order cannot flip ">=" on exact ties
    tol = 1e-12 * max(1.0, float(np.abs(diff).sum()))
    hits = 0
    chunk = max(1, min(n_permutations, 4_000_000 // max(1, len(diff))))
    done = 0
    while done < n_permutations:
        m = min(chunk, n_permutations - done)
        signs = rng.integers(0, 2, size=(m, len(diff)), dtype=np.int8) * 2 - 1
        perm = np.abs(signs @ diff) / len(diff)
        hits += int((perm >= observed - tol).sum())
        done += m
    return (hits + 1) / (n_permutations + 1)


def _paired(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise UserError(f"paired test needs two equal-length 1-D score lists, got {x.shape} and {y.shape}")
    return x, y


def compare_systems(
    baseline: pl.DataFrame,
    other: pl.DataFrame,
    metric: str,
    n_permutations: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int | bool]:
    """Paired comparison of two per-query frames (from `evaluate_run` on the same qrels) on one
    metric column. Queries are matched by `query_id`; both frames must hold the same queries."""
    if metric not in baseline.columns or metric not in other.columns:
        raise UserError(f"main metric '{metric}' was not computed (check k_values)")
    joined = baseline.select("query_id", pl.col(metric).alias("a")).join(
        other.select("query_id", pl.col(metric).alias("b")), on="query_id", how="full", coalesce=True
    )
    if joined["a"].null_count() or joined["b"].null_count():
        raise UserError("systems were evaluated on different queries; a paired test needs the same queries")
    joined = joined.sort("query_id")
    a = joined["a"].to_numpy()
    b = joined["b"].to_numpy()
    p_t = paired_ttest(b, a)
    p_r = randomization_test(b, a, n_permutations=n_permutations, seed=seed)
    mean_a = float(a.mean()) if len(a) else 0.0
    mean_b = float(b.mean()) if len(b) else 0.0
    return {
        "queries": len(a),
        "baseline": round(mean_a, 5),
        "value": round(mean_b, 5),
        "delta": round(mean_b - mean_a, 5),
        "p_ttest": round(p_t, 6),
        "p_randomization": round(p_r, 6),
        "significant": bool(p_t < alpha and p_r < alpha),
        "wins": int((b > a).sum()),
        "losses": int((b < a).sum()),
        "ties": int((b == a).sum()),
    }
