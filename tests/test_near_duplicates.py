"""near_duplicate_groups: MinHash LSH proposals, exact Jaccard decisions, first text as the key."""

from __future__ import annotations

import random

from tripleforge.near_duplicates import near_duplicate_groups
from tripleforge.pairing import token_jaccard


def _groups_by_brute_force(texts: list[str], threshold: float) -> list[int]:
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for j in range(len(texts)):
        for k in range(j):
            if token_jaccard(texts[k], texts[j]) >= threshold:
                rk, rj = find(k), find(j)
                parent[max(rk, rj)] = min(rk, rj)
    return [find(i) for i in range(len(texts))]


def test_groups_equal_the_exact_pairwise_answer() -> None:
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(60)]
    base = [[rng.choice(vocab) for _ in range(20)] for _ in range(30)]
    texts = []
    for words in base:  # each text plus variants with 1..6 of its 20 tokens replaced
        texts.append(" ".join(words))
        for n in (1, 3, 6):
            v = list(words)
            for i in rng.sample(range(20), n):
                v[i] = f"x{rng.randrange(1000)}"
            texts.append(" ".join(v))
    rng.shuffle(texts)
    for threshold in (0.6, 0.7, 0.9):
        got = near_duplicate_groups(texts, threshold)
        assert got == _groups_by_brute_force(texts, threshold)
        assert len(set(got)) < len(texts)  # the data has groups at every threshold


def test_chains_join_and_empty_texts_stay_alone() -> None:
    a = " ".join(f"t{i}" for i in range(10))
    b = " ".join(f"t{i}" for i in range(1, 11))  # a~b: 9/11
    c = " ".join(f"t{i}" for i in range(2, 12))  # b~c: 9/11, a~c: 8/12
    assert near_duplicate_groups(["", a, "", b, c, "unrelated words here"], 0.8) == [0, 1, 2, 1, 1, 5]
    assert near_duplicate_groups([], 0.7) == []
