"""Seeded same-dataset batch plans: every batch draws all its rows from one dataset (one
language/task file), as LLM-Embedder's and FlagEmbedding's same-dataset modes do, so in-batch
negatives are of the same kind as the query.

Modes (the plan is a table of ``step, epoch, dataset, indices``; indices are row numbers in the
dataset's JSONL file):

- ``random``: each step picks a dataset with probability proportional to its size and draws
  ``batch_size`` rows without replacement; ``total // batch_size`` steps per epoch.
- ``epoch``: each epoch shuffles every dataset, cuts it into full batches (the remainder is
  dropped), and shuffles all batches together.
- ``epoch-random``: each dataset is shuffled once per epoch; each step picks a dataset with
  probability proportional to its *remaining* rows and takes its next batch.

A dataset smaller than one batch contributes no batch in the epoch modes (counted by the caller).
"""

from __future__ import annotations

import numpy as np
import polars as pl

PLAN_SCHEMA = {"step": pl.Int64, "epoch": pl.Int64, "dataset": pl.String, "indices": pl.List(pl.Int64)}


def batch_plan(sizes: dict[str, int], batch_size: int, mode: str = "epoch", seed: int = 42,
               epochs: int = 1) -> pl.DataFrame:
    """Dataset sizes -> plan (PLAN_SCHEMA), deterministic for equal inputs."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    names = sorted(n for n, s in sizes.items() if s > 0)
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, int, str, list[int]]] = []
    for epoch in range(epochs):
        if mode == "random":
            total = sum(sizes[n] for n in names)
            eligible = [n for n in names if sizes[n] >= batch_size] or names
            weights = np.array([sizes[n] for n in eligible], dtype=np.float64)
            for _ in range(total // batch_size):
                name = eligible[int(rng.choice(len(eligible), p=weights / weights.sum()))]
                k = min(batch_size, sizes[name])
                rows.append((len(rows), epoch, name, sorted(int(i) for i in rng.choice(sizes[name], size=k, replace=False))))
        elif mode == "epoch":
            batches = []
            for name in names:
                perm = rng.permutation(sizes[name])
                full = len(perm) // batch_size * batch_size
                batches += [(name, perm[i:i + batch_size].tolist()) for i in range(0, full, batch_size)]
            for j in rng.permutation(len(batches)):
                name, idx = batches[int(j)]
                rows.append((len(rows), epoch, name, [int(i) for i in idx]))
        elif mode == "epoch-random":
            queues = {n: rng.permutation(sizes[n]).tolist() for n in names}
            heads = {n: 0 for n in names}
            while True:
                remaining = {n: len(q) - heads[n] for n, q in queues.items() if len(q) - heads[n] >= batch_size}
                if not remaining:
                    break
                live = sorted(remaining)
                w = np.array([remaining[n] for n in live], dtype=np.float64)
                name = live[int(rng.choice(len(live), p=w / w.sum()))]
                idx = queues[name][heads[name]:heads[name] + batch_size]
                heads[name] += batch_size
                rows.append((len(rows), epoch, name, [int(i) for i in idx]))
        else:
            raise ValueError(f"unknown batch plan mode '{mode}'")
    return pl.DataFrame(rows, schema=PLAN_SCHEMA, orient="row")


def small_datasets(sizes: dict[str, int], batch_size: int) -> list[str]:
    """Datasets too small for one full batch (they never appear in the epoch modes)."""
    return sorted(n for n, s in sizes.items() if 0 < s < batch_size)


def rows_in_first_epoch(plan: pl.DataFrame) -> int:
    """Distinct (dataset, row) pairs the plan's first epoch trains on."""
    first = plan.filter(pl.col("epoch") == 0).select("dataset", "indices").explode("indices")
    return first.unique().height if first.height else 0
