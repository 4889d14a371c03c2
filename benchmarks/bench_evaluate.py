"""Benchmark: metric computation for N queries x 100 results, tripleforge vs ranx vs plain pytrec_eval.

Same qrels and run for all three, same metrics (NDCG, Recall, MRR, MAP, P at k in {1,3,5,10,100}).
- tripleforge: `metrics.evaluate_run` (our tie-break ranking + pytrec_eval + MRR@k + zero-filling)
  and `aggregate` to the means;
- pytrec_eval: one `RelevanceEvaluator.evaluate` call with the same measures, then means in Python;
- ranx: `Qrels`/`Run` construction + `evaluate` (Numba); timed cold (first call, JIT compile in
  this process) and warm (best of the repeats).
Agreement: max |ours - ranx| per metric over several random runs with distinct scores (tools
order ties differently, so tied scores are a separate, reported case).

    .venv/bin/python benchmarks/bench_evaluate.py [--queries 10000] [--depth 100] [--repeats 3]

Writes benchmarks/results/evaluate.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

from run_info import run_info  # benchmarks/ is sys.path[0]

KS = [1, 3, 5, 10, 100]
OURS = ["ndcg", "recall", "mrr", "map", "precision"]


def make_case(n_queries: int, depth: int, n_docs: int, seed: int, ties: bool = False):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for i in range(n_queries):
        q = f"q{i}"
        rel = rng.sample(range(n_docs), rng.randint(1, 4))
        qrels[q] = {f"d{d}": rng.choice([1, 1, 2]) for d in rel}
        cand = set(rng.sample(range(n_docs), depth - 2)) | set(rel[:2])  # some hits, not all
        docs = list(cand)[:depth]
        rng.shuffle(docs)
        if ties:
            run[q] = {f"d{d}": float(rng.randint(0, 20)) for d in docs}
        else:
            run[q] = {f"d{d}": 1.0 - j / (depth + 1) for j, d in enumerate(docs)}
    return qrels, run


def time_ours(qrels, run):  # type: ignore[no-untyped-def]
    from tripleforge.metrics import aggregate, evaluate_run

    t = time.perf_counter()
    pq, _ = evaluate_run(qrels, run, KS)
    means = aggregate(pq, ndigits=12)
    return time.perf_counter() - t, means


def time_pytrec(qrels, run):  # type: ignore[no-untyped-def]
    import pytrec_eval

    t = time.perf_counter()
    kk = ",".join(map(str, KS))
    ev = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{kk}", f"recall.{kk}", f"map_cut.{kk}", f"P.{kk}", "recip_rank"})
    res = ev.evaluate(run)
    keys = next(iter(res.values())).keys()
    means = {k: sum(r[k] for r in res.values()) / len(res) for k in keys}
    return time.perf_counter() - t, means


def time_ranx(qrels, run):  # type: ignore[no-untyped-def]
    import ranx

    t = time.perf_counter()
    res = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), [f"{m}@{k}" for m in OURS for k in KS])
    return time.perf_counter() - t, {k: float(v) for k, v in res.items()}


def agreement(ours: dict[str, float], ref: dict[str, float]) -> dict[str, float]:
    out = {}
    for m in OURS:
        out[m] = max(abs(ours[f"{m}_at_{k}"] - ref[f"{m}@{k}"]) for k in KS)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--agreement-runs", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "evaluate.json"))
    a = ap.parse_args()

    qrels, run = make_case(a.queries, a.depth, a.docs, seed=0)
    cold_ranx, _ = time_ranx(qrels, run)  # includes Numba JIT compilation
    timings: dict[str, list[float]] = {"tripleforge": [], "pytrec_eval": [], "ranx": []}
    for _ in range(a.repeats):
        timings["tripleforge"].append(time_ours(qrels, run)[0])
        timings["pytrec_eval"].append(time_pytrec(qrels, run)[0])
        timings["ranx"].append(time_ranx(qrels, run)[0])
    best = {k: min(v) for k, v in timings.items()}

    worst: dict[str, float] = {m: 0.0 for m in OURS}
    for seed in range(1, a.agreement_runs + 1):
        q, r = make_case(2000, a.depth, 20_000, seed=seed)
        diff = agreement(time_ours(q, r)[1], time_ranx(q, r)[1])
        worst = {m: max(worst[m], diff[m]) for m in OURS}
    q, r = make_case(2000, a.depth, 20_000, seed=99, ties=True)
    ties = agreement(time_ours(q, r)[1], time_ranx(q, r)[1])

    result = {
        "setup": {"queries": a.queries, "depth": a.depth, "docs": a.docs, "k_values": KS, "repeats": a.repeats,
                  "cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
        "seconds_best": {k: round(v, 4) for k, v in best.items()},
        "seconds_all": {k: [round(x, 4) for x in v] for k, v in timings.items()},
        "ranx_cold_seconds": round(cold_ranx, 4),
        "ratio_tripleforge_over_pytrec_eval": round(best["tripleforge"] / best["pytrec_eval"], 3),
        "ratio_tripleforge_over_ranx_warm": round(best["tripleforge"] / best["ranx"], 3),
        "ratio_tripleforge_over_ranx_cold": round(best["tripleforge"] / cold_ranx, 3),
        "agreement_max_abs_diff_vs_ranx": {"distinct_scores": worst, "runs": a.agreement_runs, "queries_per_run": 2000,
                                           "tied_scores": ties},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    result["run"] = run_info()
    Path(a.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    print(f"tripleforge / pytrec_eval: {result['ratio_tripleforge_over_pytrec_eval']}x time; "
          f"tripleforge / ranx (warm): {result['ratio_tripleforge_over_ranx_warm']}x; "
          f"(cold, incl. JIT): {result['ratio_tripleforge_over_ranx_cold']}x")


if __name__ == "__main__":
    main()
