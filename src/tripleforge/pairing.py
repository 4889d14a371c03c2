"""Similar-document pairing for code_modification / code_comparison retrieval.

For every sampled document, the most similar pool document of the same code language that is
"related but clearly different": the raw top `skip_top` ranks of its search (itself included)
are skipped, then the first hit that is not itself and whose whitespace-token Jaccard similarity
with the document is at most `jaccard_max` wins. Documents without such a hit keep nulls and are
counted (the original dropped them silently). Docs and pool rows with null or blank text are
dropped and counted (`docs_empty_text`, `pool_empty_text`).

Input: docs (`doc_id`, `text`, `code_language`: str, ...), pool (same columns); `doc_id` unique in each.
Output: the docs plus `similar_doc_id` (str), `similar_text` (str), `similar_score` (f64), nullable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from pydantic import Field

from tripleforge.embed import EmbedderConfig, encode_documents
from tripleforge.errors import UserError
from tripleforge.io import check_dtypes, drop_blank_text, require_columns
from tripleforge.params import StageParams
from tripleforge.search import exact_search

SIMILAR_SCHEMA = {"similar_doc_id": pl.String, "similar_text": pl.String, "similar_score": pl.Float64}
DOC_DTYPES: dict[str, pl.DataType] = {"doc_id": pl.String(), "text": pl.String(), "code_language": pl.String()}


class PairSimilarParams(StageParams):
    """Params section `pair_similar` (defaults equal params.yaml)."""

    enabled: bool = True
    embedder: EmbedderConfig = EmbedderConfig()
    skip_top: int = Field(20, ge=0)
    # hits inspected after the skipped ones, so it need not exceed skip_top
    search_depth: int = Field(100, ge=1)
    # token Jaccard is at most 1 (same token set), so 1 = never skip and more would pass as a filter
    jaccard_max: float = Field(0.95, ge=0.0, le=1.0)
    # a hit scoring below this is not "similar": in a pool barely larger than skip_top, the first
    # hit past the skipped ranks can be among the least similar documents; null = no floor
    min_score: float | None = None
    same_code_language: bool = True
    cache_dir: str = ""  # "" = $TRIPLEFORGE_CACHE_DIR or ~/.cache/tripleforge


def token_jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the whitespace-token sets of two texts."""
    ta, tb = set(a.split()), set(b.split())
    if not ta and not tb:
        return 1.0
    return len(ta & tb) / len(ta | tb)


def check_unique_ids(df: pl.DataFrame, name: str) -> None:
    """A `doc_id` on two rows of `df` is a UserError led by `name` (the stage puts the file there).
    The sample stage writes each id once, so a repeat means a hand-edited file; it would be paired
    and written twice, and in the pool take two of the `skip_top` ranks."""
    ids = df.get_column("doc_id")
    dup = ids.filter(ids.is_duplicated() & ids.is_not_null())
    if dup.len():
        first = dup[0]
        raise UserError(f"{name}: doc_id {first!r} is on {int((ids == first).sum())} rows ({dup.n_unique()} ids "
                        f"repeated); doc ids must be unique, as the sample stage writes them")


def with_null_similar(docs: pl.DataFrame) -> pl.DataFrame:
    return docs.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in SIMILAR_SCHEMA.items()])


def pair_similar(docs: pl.DataFrame, pool: pl.DataFrame, params: PairSimilarParams) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Add the similar columns to `docs`; returns (frame in the input order, counts)."""
    for name, df in (("docs", docs), ("pool", pool)):
        require_columns(df, DOC_DTYPES, name)
    docs = check_dtypes(docs, DOC_DTYPES, "docs")
    pool = check_dtypes(pool, DOC_DTYPES, "pool")
    for name, df in (("docs", docs), ("pool", pool)):
        check_unique_ids(df, name)
    docs, docs_blank = drop_blank_text(docs)
    pool, pool_blank = drop_blank_text(pool)
    counts = {"docs": docs.height, "paired": 0, "no_candidate": 0, "skipped_self": 0, "skipped_near_duplicate": 0,
              "below_min_score": 0, "docs_empty_text": docs_blank, "pool_empty_text": pool_blank}
    if not params.enabled:
        counts["no_candidate"] = docs.height
        return with_null_similar(docs), {**counts, "enabled": False}
    if docs.height and pool.height == 0:
        # the docs are drawn from the pool: an empty one is a wrong file, not "nothing similar"
        why = f"all {pool_blank} rows have null or blank text" if pool_blank else "the pool file is empty"
        raise UserError(f"pool: no documents to pair {docs.height} docs with ({why})")

    pool_ids = pool.get_column("doc_id").to_list()
    pool_texts = pool.get_column("text").to_list()
    pool_langs = pool.get_column("code_language").to_list()
    # docs are a subset of the pool by contract; encode the union once (the cache shares it
    # with mine-negatives, which encodes the same pool with the same document settings)
    doc_texts = docs.get_column("text").to_list()
    p_emb = encode_documents(pool_texts, params.embedder, params.cache_dir)
    d_emb = encode_documents(doc_texts, params.embedder, params.cache_dir)

    doc_ids = docs.get_column("doc_id").to_list()
    langs = docs.get_column("code_language").to_list()
    groups: dict[Any, list[int]] = {}
    for i, lang in enumerate(langs):
        groups.setdefault(lang if params.same_code_language else "*", []).append(i)
    pool_groups: dict[Any, list[int]] = {}
    for j, lang in enumerate(pool_langs):
        pool_groups.setdefault(lang if params.same_code_language else "*", []).append(j)

    sim_id: list[str | None] = [None] * docs.height
    sim_text: list[str | None] = [None] * docs.height
    sim_score: list[float | None] = [None] * docs.height
    k = params.skip_top + params.search_depth
    for key in sorted(groups, key=str):
        rows = groups[key]
        cand = pool_groups.get(key, [])
        if not cand:
            continue
        scores, idx = exact_search(d_emb[rows], p_emb[cand], k)
        for r, i in enumerate(rows):
            for rank in range(params.skip_top, idx.shape[1]):
                if params.min_score is not None and scores[r, rank] < params.min_score:
                    counts["below_min_score"] += 1  # hits come best first: none further can pass
                    break
                j = cand[int(idx[r, rank])]
                if pool_ids[j] == doc_ids[i]:
                    counts["skipped_self"] += 1
                    continue
                if token_jaccard(doc_texts[i], pool_texts[j]) > params.jaccard_max:
                    counts["skipped_near_duplicate"] += 1
                    continue
                sim_id[i], sim_text[i], sim_score[i] = pool_ids[j], pool_texts[j], float(scores[r, rank])
                break
    counts["paired"] = sum(1 for s in sim_id if s is not None)
    counts["no_candidate"] = docs.height - counts["paired"]
    scores_found = [s for s in sim_score if s is not None]
    counts["similar_score_mean"] = round(float(np.mean(scores_found)), 6) if scores_found else None
    out = docs.with_columns(
        pl.Series("similar_doc_id", sim_id, dtype=pl.String),
        pl.Series("similar_text", sim_text, dtype=pl.String),
        pl.Series("similar_score", sim_score, dtype=pl.Float64),
    )
    return out, {**counts, "enabled": True}
