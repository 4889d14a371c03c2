"""Negative selection over synthetic embeddings: equals a brute-force reference; never a positive."""

from __future__ import annotations

import numpy as np
import pytest

from tripleforge.mining import MineReport, Rules, hash_uniform, row_seeds, select_chunk
from tripleforge.search import exact_search


def unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(q, c, masked, pos_ref, n, rmin, rmax, rel):
    """Direct reference: full score row, stable descending sort, walk the window, apply the rule."""
    out = []
    for r in range(len(q)):
        sc = c @ q[r]
        order = np.argsort(-sc, kind="stable")
        picked = []
        for rank in range(rmin, min(rmax, len(c))):
            cid = int(order[rank])
            if cid in masked[r]:
                continue
            if rel is not None and sc[cid] > pos_ref[r] - abs(pos_ref[r]) * (1 - rel):
                continue
            picked.append(cid)
            if len(picked) == n:
                break
        out.append(picked)
    return out


def padded(masks):
    width = max(len(m) for m in masks)
    arr = np.full((len(masks), width), -2, dtype=np.int64)
    for r, m in enumerate(masks):
        arr[r, : len(m)] = sorted(m)
    return arr


@pytest.mark.parametrize("rmin,rmax,rel,n", [(0, 30, None, 5), (3, 40, 0.95, 4), (10, 200, 0.8, 15), (0, 10, 0.99, 20)])
def test_selection_equals_reference(rmin, rmax, rel, n):
    rng = np.random.default_rng(rmin * 1000 + rmax)
    q, c = unit(rng, 25), unit(rng, 150)
    pos = rng.integers(0, 150, size=25)
    masks = [{int(p), int(rng.integers(0, 150))} for p in pos]
    pos_ref = np.array([float(c[p] @ q[r]) for r, p in enumerate(pos)])
    s, i = exact_search(q, c, rmax)
    chosen = select_chunk(s, i, np.ones(i.shape, bool), padded(masks), pos_ref, n,
                          Rules(rmin, rmax, rel, None, None, None), (0, 0), None)
    got = [i[r, chosen[r]].tolist() for r in range(len(q))]
    assert got == brute_force(q, c, masks, pos_ref, n, rmin, rmax, rel)


def test_property_never_masked_never_duplicate_with_fallback_and_random():
    rng = np.random.default_rng(7)
    for trial in range(20):
        nq, nc = int(rng.integers(1, 30)), int(rng.integers(1, 80))
        q, c = unit(rng, nq), unit(rng, nc)
        masks = [set(rng.integers(0, nc, size=int(rng.integers(1, 5))).tolist()) for _ in range(nq)]
        pos_ref = rng.uniform(-1, 1, nq)
        s, i = exact_search(q, c, 60)
        valid = np.ones(i.shape, bool)
        valid[:, i.shape[1] // 2 :] = rng.random((nq, i.shape[1] - i.shape[1] // 2)) > 0.3  # approx-like holes
        keys = hash_uniform(row_seeds([str(x) for x in range(nq)], trial), i)
        rep = MineReport()
        chosen = select_chunk(s, i, valid, padded(masks), pos_ref, 10,
                              Rules(2, 20, 0.9, 0.01, 0.99, -0.9), (0, 60), keys if trial % 2 else None, rep)
        for r in range(nq):
            ids = i[r, chosen[r]].tolist()
            assert not set(ids) & masks[r]
            assert len(ids) == len(set(ids)) <= 10
            assert valid[r, chosen[r]].all()  # an invalid (-1) slot is never chosen
            sc = s[r, chosen[r]]
            assert (sc <= pos_ref[r] - 0.01 + 1e-7).all() and (sc <= 0.99).all() and (sc >= -0.9).all()


def test_random_sampling_is_seeded_and_chunk_independent():
    rng = np.random.default_rng(3)
    q, c = unit(rng, 12), unit(rng, 100)
    s, i = exact_search(q, c, 50)
    seeds = row_seeds([f"p{r}" for r in range(12)], 42)
    rules = Rules(0, 50, None, None, None, None)
    nomask = np.full((12, 1), -2)
    full = select_chunk(s, i, np.ones(i.shape, bool), nomask, np.ones(12), 5, rules, (0, 0), hash_uniform(seeds, i))
    part = np.vstack([
        select_chunk(s[a:b], i[a:b], np.ones((b - a, 50), bool), nomask[a:b], np.ones(b - a), 5, rules, (0, 0),
                     hash_uniform(seeds[a:b], i[a:b]))
        for a, b in [(0, 5), (5, 12)]
    ])
    np.testing.assert_array_equal(full, part)
    assert (full.sum(axis=1) == 5).all()
    assert not (full[:, :5].all(axis=1)).all()  # not simply the top 5
