"""Groups of near-duplicate texts by token Jaccard, found with MinHash LSH and checked exactly.

Two documents that differ only in a name (the stdlib's codec modules, `bind`/`bind_partial`)
are one document to a model: split apart, the eval split would test on what training taught.
`near_duplicate_groups` gives each text the index of its group's first text, so a split keyed
on the group keeps them together.

MinHash signatures (`BANDS` x `ROWS` hashes of the whitespace-token set, the token set of
`pairing.token_jaccard`) propose pairs that share a band; each proposed pair is kept only if its
exact Jaccard reaches the threshold, so a false proposal costs a set comparison, never a wrong
group. With 32 bands of 4 rows a pair at Jaccard 0.6 is proposed with probability 0.99, at 0.7
with 0.9998. Token hashes are blake2b (stable across processes and library versions), the
permutations are fixed: the groups are a pure function of the texts.
"""

from __future__ import annotations

import hashlib

import numpy as np

BANDS, ROWS = 32, 4
_PRIME = np.uint64((1 << 61) - 1)
_rng = np.random.default_rng(20261124)
_A = _rng.integers(1, (1 << 61) - 1, size=BANDS * ROWS, dtype=np.uint64)
_B = _rng.integers(0, (1 << 61) - 1, size=BANDS * ROWS, dtype=np.uint64)


def _token_ids(tokens: set[str], memo: dict[str, int]) -> np.ndarray:
    out = np.empty(len(tokens), dtype=np.uint64)
    for i, t in enumerate(tokens):
        h = memo.get(t)
        if h is None:
            h = memo[t] = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") % ((1 << 61) - 1)
        out[i] = h
    return out


def minhash(ids: np.ndarray) -> np.ndarray:
    """BANDS*ROWS minimum hashes of a token-id set under (a*x + b) mod p; all-max when empty."""
    if ids.size == 0:
        return np.full(BANDS * ROWS, _PRIME, dtype=np.uint64)
    with np.errstate(over="ignore"):
        # products wrap mod 2^64 before the mod p: still a fixed hash family, and deterministic
        h = (_A[:, None] * ids[None, :] + _B[:, None]) % _PRIME
    return h.min(axis=1)


def near_duplicate_groups(texts: list[str], threshold: float) -> list[int]:
    """Per text, the index of the first text of its group: texts linked by a chain of token
    Jaccard >= `threshold` (exact, on whitespace tokens) share a group."""
    sets = [set(t.split()) for t in texts]
    memo: dict[str, int] = {}
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    buckets: dict[tuple[int, bytes], list[int]] = {}
    for i, s in enumerate(sets):
        if not s:
            continue
        sig = minhash(_token_ids(s, memo)).reshape(BANDS, ROWS)
        for b in range(BANDS):
            buckets.setdefault((b, sig[b].tobytes()), []).append(i)
    checked: set[tuple[int, int]] = set()
    for members in buckets.values():  # members ascending: texts were added in order
        for n, j in enumerate(members):
            for k in members[:n]:
                if find(k) == find(j) or (k, j) in checked:
                    continue
                checked.add((k, j))
                a, b = sets[k], sets[j]
                if len(a & b) >= threshold * len(a | b):
                    rk, rj = find(k), find(j)
                    parent[max(rk, rj)] = min(rk, rj)  # the root stays the group's first text
    return [find(i) for i in range(len(texts))]
