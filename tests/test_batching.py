"""Same-dataset batch plans."""

from __future__ import annotations

import pytest

from tripleforge.batching import (
    RowTexts,
    batch_plan,
    can_keep_apart,
    clash_free_batches,
    clashing_rows,
    flagembedding_rows_per_epoch,
    left_out_reason,
    small_datasets,
)

SIZES = {"en/a": 10, "en/b": 7, "zh/c": 2}


@pytest.mark.parametrize("mode", ["random", "epoch", "epoch-random"])
def test_every_batch_comes_from_one_dataset_and_is_seeded(mode: str) -> None:
    plan = batch_plan(SIZES, 3, mode, seed=1, epochs=2)
    assert plan.equals(batch_plan(SIZES, 3, mode, seed=1, epochs=2))
    assert not plan.equals(batch_plan(SIZES, 3, mode, seed=2, epochs=2))
    assert plan["step"].to_list() == list(range(plan.height))
    for ds, idx in plan.select("dataset", "indices").iter_rows():
        assert len(idx) == 3 and len(set(idx)) == 3 and all(0 <= i < SIZES[ds] for i in idx)
    assert "zh/c" not in set(plan["dataset"])  # smaller than one batch


@pytest.mark.parametrize("mode", ["epoch", "epoch-random"])
def test_epoch_modes_use_each_row_at_most_once_per_epoch(mode: str) -> None:
    plan = batch_plan(SIZES, 3, mode, seed=0, epochs=2)
    for epoch in (0, 1):
        part = plan.filter(plan["epoch"] == epoch)
        assert part.height == 10 // 3 + 7 // 3
        for ds in ("en/a", "en/b"):
            seen = [i for idx in part.filter(part["dataset"] == ds)["indices"] for i in idx]
            assert len(seen) == len(set(seen))


@pytest.mark.parametrize("mode", ["epoch", "epoch-random"])
def test_without_drop_last_every_row_is_in_each_epoch(mode: str) -> None:
    plan = batch_plan(SIZES, 3, mode, seed=0, epochs=2, drop_last=False)
    assert plan.equals(batch_plan(SIZES, 3, mode, seed=0, epochs=2, drop_last=False))
    for epoch in (0, 1):
        part = plan.filter(plan["epoch"] == epoch)
        assert part.height == 4 + 3 + 1  # 10 = 3+3+3+1, 7 = 3+3+1, zh/c's 2 rows are one short batch
        for ds, n in SIZES.items():
            seen = sorted(i for idx in part.filter(part["dataset"] == ds)["indices"] for i in idx)
            assert seen == list(range(n)), ds
        assert all(1 <= len(idx) <= 3 for idx in part["indices"])
    # random mode draws full batches whatever drop_last says
    assert batch_plan(SIZES, 3, "random", seed=0, drop_last=False).equals(batch_plan(SIZES, 3, "random", seed=0))


def test_random_mode_step_count_and_small_datasets() -> None:
    # an epoch's worth of steps over the datasets that fill a batch (zh/c's 2 rows never do)
    assert batch_plan(SIZES, 3, "random", seed=0).height == 17 // 3
    # every dataset smaller than a batch: no short batches, an empty plan, as in the epoch modes
    assert batch_plan({"a": 2, "b": 2}, 3, "random").height == 0
    assert small_datasets(SIZES, 3) == ["zh/c"]


def test_left_out_reason_names_the_mode_and_only_the_causes_present() -> None:
    # the tryout: random mode blamed small datasets and partial batches that did not exist
    even = {"en/a": 4, "en/b": 6}
    rnd = left_out_reason(even, 2, "random")
    assert rnd.startswith("random mode draws each step's 2 rows at random") and "in none" in rnd
    assert "smaller than" not in rnd and "partial batch" not in rnd
    assert left_out_reason(SIZES, 3, "random").endswith(
        "1 dataset smaller than train_data.batch.batch_size=3 (batch_plan.datasets_smaller_than_batch) is never picked")
    assert left_out_reason(SIZES, 3, "epoch") == (
        "epoch mode cuts each shuffled dataset into full batches of 3, leaving out 1 dataset smaller than "
        "train_data.batch.batch_size=3 (batch_plan.datasets_smaller_than_batch) and the last partial batch of "
        "each dataset whose size is not a multiple of 3 (train_data.batch.drop_last: false keeps them as shorter "
        "batches)")
    assert left_out_reason({"en/a": 5}, 2, "epoch-random") == (
        "epoch-random mode takes batches of 2 from each shuffled dataset until fewer remain, leaving out the "
        "last partial batch of each dataset whose size is not a multiple of 2 (train_data.batch.drop_last: false "
        "keeps them as shorter batches)")
    assert left_out_reason({"en/a": 4, "zh/c": 1}, 2, "epoch").endswith(
        "leaving out 1 dataset smaller than train_data.batch.batch_size=2 (batch_plan.datasets_smaller_than_batch) "
        "(train_data.batch.drop_last: false keeps them as shorter batches)")


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="unknown batch plan mode"):
        batch_plan(SIZES, 2, "static")


def test_flagembedding_epoch_drops_partial_batches_and_merges_one_mode_only() -> None:
    sizes = {"en/a": 9, "en/b": 3, "en/c.symmetric_sts": 3, "en-no_in_batch_neg/d.symmetric_class-no_in_batch_neg": 5}
    modes = {"en/c.symmetric_sts": "symmetric_sts",
             "en-no_in_batch_neg/d.symmetric_class-no_in_batch_neg": "symmetric_class"}
    # batch 4, symmetric modes 2: 8 + 0 + 2 + 4
    assert flagembedding_rows_per_epoch(sizes, modes, 4) == (14, ["en/b"])
    # en/ would merge a normal and a symmetric file (3 + 3 rows): FlagEmbedding cannot train that
    assert flagembedding_rows_per_epoch(sizes, modes, 4, small_threshold=4) is None
    del sizes["en/c.symmetric_sts"]
    assert flagembedding_rows_per_epoch(sizes, modes, 4, small_threshold=4) == (8 + 4, ["en/b"])
    assert flagembedding_rows_per_epoch(sizes, modes, 2, small_threshold=4) == (8 + 2 + 5, [])  # symmetric: batch 1
    assert flagembedding_rows_per_epoch({"en/a": 0}, {}, 4) == (0, [])


def test_flagembedding_epoch_at_batch_size_one_with_a_symmetric_dataset_trains_nothing() -> None:
    # its batch is 1 // 2 = 0: FlagEmbedding stops before any step ("range() arg 3 must not be zero")
    sizes, modes = {"en/a": 2, "en/c.symmetric_sts": 3}, {"en/c.symmetric_sts": "symmetric_sts"}
    assert flagembedding_rows_per_epoch(sizes, modes, 1) == (0, ["en/a", "en/c.symmetric_sts"])
    assert flagembedding_rows_per_epoch(sizes, modes, 1, small_threshold=1) == (0, ["en/a", "en/c.symmetric_sts"])
    assert flagembedding_rows_per_epoch({"en/a": 2}, {}, 1) == (2, [])


def _texts(n: int, negatives: dict[int, list[int]]) -> list[RowTexts]:
    """n rows: row i answers q<i> with p<i>, and lists p<j> for j in negatives[i] as negatives."""
    return [RowTexts(f"q{i}", frozenset({f"p{i}"}), frozenset({f"p{i}", *(f"p{j}" for j in negatives.get(i, []))}))
            for i in range(n)]


def test_clashing_rows_never_share_a_batch_and_clean_data_gets_plain_slices() -> None:
    order = list(range(8))
    assert list(clash_free_batches(order, 3, _texts(8, {}))) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    # row 1 lists row 0's positive, row 3 row 2's: they wait for the next batch, which stays full
    texts = _texts(8, {1: [0], 3: [2]})
    batches = list(clash_free_batches(order, 3, texts))
    assert batches == [[0, 2, 4], [1, 3, 5], [6, 7]]
    assert sorted(i for b in batches for i in b) == order and not any(clashing_rows(b, texts) for b in batches)
    # every row lists every other's positive: one row per batch, every row still once
    dense = _texts(4, {i: [j for j in range(4) if j != i] for i in range(4)})
    assert list(clash_free_batches([2, 0, 3, 1], 3, dense)) == [[2], [0], [3], [1]]
    # a repeated query clashes too
    same_query = [RowTexts("q", frozenset({"a"}), frozenset({"a"})), RowTexts("q", frozenset({"b"}), frozenset({"b"}))]
    assert clashing_rows([0, 1], same_query) == 2  # each meets the other's positive under its own query
    # the rows that meet their own positive again, in any order: rows 0-2 each have a positive row 3
    # lists as a negative; row 3 does not (the count once depended on which came first)
    hub = _texts(4, {3: [0, 1, 2]})
    assert {clashing_rows(b, hub) for b in ([2, 0, 1, 3], [3, 2, 0, 1], [0, 3, 1, 2])} == {3}
    assert clashing_rows([0, 1, 2], hub) == 0


@pytest.mark.parametrize("mode", ["random", "epoch", "epoch-random"])
def test_plans_keep_clashing_rows_apart_in_every_mode(mode: str) -> None:
    sizes = {"en/a": 12}
    texts = {"en/a": _texts(12, {i: [(i + 1) % 12] for i in range(12)})}  # each row lists the next one's positive
    kept = batch_plan(sizes, 4, mode, seed=3, epochs=2, drop_last=False, texts=texts)
    assert not any(clashing_rows(b, texts["en/a"]) for b in kept["indices"].to_list())
    assert kept.equals(batch_plan(sizes, 4, mode, seed=3, epochs=2, drop_last=False, texts=texts))
    if mode != "random":
        for epoch in (0, 1):
            rows = [i for b in kept.filter(kept["epoch"] == epoch)["indices"].to_list() for i in b]
            assert sorted(rows) == list(range(12))
    else:
        assert {len(b) for b in kept["indices"].to_list()} == {4}
    plain = batch_plan(sizes, 4, mode, seed=3, epochs=2, drop_last=False)
    assert any(clashing_rows(b, texts["en/a"]) for b in plain["indices"].to_list())  # what it avoids
    assert plain.equals(batch_plan(sizes, 4, mode, seed=3, epochs=2, drop_last=False, texts={"en/a": _texts(12, {})}))


def test_rows_sharing_one_positive_beyond_the_batches_are_not_parted() -> None:
    # 5 of 8 rows answer with one positive: parting them needs 5 batches where 8 rows make 2
    shared = [RowTexts(f"q{i}", frozenset({"p" if i < 5 else f"p{i}"}), frozenset({"p" if i < 5 else f"p{i}"}))
              for i in range(8)]
    assert not can_keep_apart(shared, 4) and can_keep_apart(shared[3:], 1)
    assert can_keep_apart(_texts(8, {i: [(i + 1) % 8] for i in range(8)}), 4)
