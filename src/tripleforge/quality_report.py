"""Data-quality report of mined triplets: how hard are the generated pairs for the base model?

Input (`data/mined/triplets.parquet`): `pos_rank` (i64, null when the positive was not within
the searched depth), `pos_scores` and `neg_scores` (list[f64]) under the mining model;
`split` optional. When mining re-scored with a teacher, its base-model scores are in
`dense_pos_scores` / `dense_neg_scores` and those are used, so every number here is "under the
base model".

Output: a small dict for the metrics file, and a histogram frame for a DVC bar plot.
- `pos_rank`: counts per rank bucket (1-based ranks: `1`, `2-5`, `6-10`, `11-20`, `21-50`,
  `51-100`, `>100`, `not_found`), the mean and median 1-based rank of the found ones;
- `too_easy_share`: share of pairs whose positive is already the top-1 hit (little to learn);
- `not_found_share`: share whose positive is not within the searched depth (suspect pairs);
- `margins`: distribution of best-positive score minus negative score over every (pair,
  negative): mean, min, p10, p50, p90, and `negative_share`, the share of negatives scored at or
  above the best positive (likely false negatives, or queries the base model gets wrong).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from tripleforge.io import require_columns

# (label, lowest 0-based rank, highest 0-based rank exclusive or None)
RANK_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1", 0, 1),
    ("2-5", 1, 5),
    ("6-10", 5, 10),
    ("11-20", 10, 20),
    ("21-50", 20, 50),
    ("51-100", 50, 100),
    (">100", 100, None),
)
REQUIRED = ("pos_rank", "pos_scores", "neg_scores")


def _pick(frame: pl.DataFrame, name: str) -> str:
    dense = f"dense_{name}"
    return dense if dense in frame.columns else name


def check_columns(frame: pl.DataFrame, source: str) -> None:
    require_columns(frame, REQUIRED, source, "mined triplets")


def rank_histogram(triplets: pl.DataFrame) -> pl.DataFrame:
    """Columns `bucket` (str, in RANK_BUCKETS order then `not_found`), `pairs` (i64), `share` (f64)."""
    ranks = triplets.get_column("pos_rank")
    total = triplets.height
    rows = []
    for label, lo, hi in RANK_BUCKETS:
        mask = ranks >= lo if hi is None else (ranks >= lo) & (ranks < hi)
        rows.append((label, int(mask.sum() or 0)))
    rows.append(("not_found", int(ranks.null_count())))
    return pl.DataFrame(
        {
            "bucket": [r[0] for r in rows],
            "pairs": [r[1] for r in rows],
            "share": [round(r[1] / total, 5) if total else 0.0 for r in rows],
        },
        schema={"bucket": pl.String, "pairs": pl.Int64, "share": pl.Float64},
    )


def margins(triplets: pl.DataFrame) -> pl.Series:
    """Best-positive score minus each negative's score, one value per (pair, negative), in row order."""
    pos_col, neg_col = _pick(triplets, "pos_scores"), _pick(triplets, "neg_scores")
    frame = triplets.select(
        pl.col(pos_col).list.drop_nulls().list.max().alias("best_pos"),
        pl.col(neg_col).list.drop_nulls().alias("neg"),
    )
    exploded = frame.explode("neg").drop_nulls(["best_pos", "neg"])
    return (exploded["best_pos"] - exploded["neg"]).alias("margin")


def _r(x: Any) -> float | None:
    return None if x is None else round(float(x), 5)


def quality_report(triplets: pl.DataFrame, source: str = "triplets") -> dict[str, Any]:
    """The report dict described in the module docstring (small: goes into metrics JSON)."""
    check_columns(triplets, source)
    n = triplets.height
    hist = rank_histogram(triplets)
    found = triplets.get_column("pos_rank").drop_nulls() + 1  # 1-based
    m = margins(triplets)
    counts = dict(zip(hist["bucket"].to_list(), hist["pairs"].to_list()))
    report: dict[str, Any] = {
        "pairs": n,
        "pos_rank": {
            "counts": counts,
            "mean": _r(found.mean()) if found.len() else None,
            "median": _r(found.median()) if found.len() else None,
        },
        "too_easy_share": round(counts["1"] / n, 5) if n else 0.0,
        "not_found_share": round(counts["not_found"] / n, 5) if n else 0.0,
        "margins": {
            "negatives": m.len(),
            "mean": _r(m.mean()) if m.len() else None,
            "min": _r(m.min()) if m.len() else None,
            "p10": _r(m.quantile(0.1, "linear")) if m.len() else None,
            "p50": _r(m.quantile(0.5, "linear")) if m.len() else None,
            "p90": _r(m.quantile(0.9, "linear")) if m.len() else None,
            "negative_share": round(float((m <= 0).sum()) / m.len(), 5) if m.len() else 0.0,
        },
    }
    if "split" in triplets.columns:
        report["splits"] = {
            s: int(c) for s, c in triplets.group_by("split", maintain_order=True).len().sort("split").iter_rows()
        }
    return report
