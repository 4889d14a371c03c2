"""Seeded same-dataset batch plans: every batch draws all its rows from one dataset (one
language/task file), as LLM-Embedder's and FlagEmbedding's same-dataset modes do, so in-batch
negatives are of the same kind as the query.

Modes (the plan is a table of ``step, epoch, dataset, indices``; indices are row numbers in the
dataset's JSONL file):

- ``random``: each step picks a dataset with probability proportional to its size and draws
  ``batch_size`` rows without replacement; ``total // batch_size`` steps per epoch.
- ``epoch``: each epoch shuffles every dataset, cuts it into batches, and shuffles all batches
  together.
- ``epoch-random``: each dataset is shuffled once per epoch; each step picks a dataset with
  probability proportional to its *remaining* rows and takes its next batch.

In the epoch modes a dataset's last batch is shorter when its size is not a multiple of
``batch_size`` (a dataset smaller than one batch is one short batch), so every row is trained on
once per epoch; ``drop_last`` drops those short batches instead, as LLM-Embedder does, for a
constant number of in-batch negatives. ``random`` always draws full batches, from the datasets
that fill one: an epoch's worth. Rows left out are counted by the caller; ``left_out_reason``
words why for the warning.

Given the rows' texts, every mode keeps clashing rows apart: a row whose positive another row
lists as a passage, or two rows of one query, would give a query its own positive as an in-batch
negative (``clash_free_batches``). ``flagembedding_rows_per_epoch`` models the batches
FlagEmbedding's own same-dataset sampler cuts, for the stage's figures on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

PLAN_SCHEMA = {"step": pl.Int64, "epoch": pl.Int64, "dataset": pl.String, "indices": pl.List(pl.Int64)}


@dataclass(frozen=True)
class RowTexts:
    """A row's texts as in-batch negatives see them: hashes of the whitespace-normalized texts
    (only compared for equality)."""

    query: int
    positives: frozenset[int]
    passages: frozenset[int]  # the positives and the negatives


def can_keep_apart(texts: list[RowTexts], batch_size: int) -> bool:
    """Whether a dataset's clashing rows can be kept apart without more batches than rows allow:
    rows sharing a query or a positive must each have a batch of their own, so no more of them
    than the dataset's full batches (at least one). Where more share one (a boilerplate positive
    in thousands of rows), parting them would take more batches than the rows fill, most of them
    short; such a dataset is cut as it falls, and its clashes are counted. (Just below that
    bound, parting still leaves a few short batches at the end.)"""
    queries: Counter[int] = Counter(t.query for t in texts)
    positives: Counter[int] = Counter(h for t in texts for h in t.positives)
    most = max(max(queries.values(), default=0), max(positives.values(), default=0))
    return most <= max(len(texts) // batch_size, 1)


class _Batch:
    """Rows gathered for one batch, and whether another row clashes with them: in one batch, a row
    whose positive is another row's passage (its mined negative, most often) gets its own positive
    as an in-batch negative, and so does a row that repeats another's query."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.queries: set[int] = set()
        self.positives: set[int] = set()
        self.passages: set[int] = set()

    def clashes(self, t: RowTexts) -> bool:
        return (t.query in self.queries or not self.passages.isdisjoint(t.positives)
                or not self.positives.isdisjoint(t.passages))

    def add(self, row: int, t: RowTexts | None) -> None:
        self.rows.append(row)
        if t is not None:
            self.queries.add(t.query)
            self.positives |= t.positives
            self.passages |= t.passages


# Rows set aside for a later batch (each new batch looks at them first); past this many the rest
# go into batches as they come, so a dataset of mostly clashing rows (one positive shared by
# thousands) costs no more than a bounded scan per batch.
_MAX_DEFERRED = 1024


def clash_free_batches(order: list[int], batch_size: int, texts: list[RowTexts] | None) -> Iterator[list[int]]:
    """`order` (a dataset's shuffled rows) cut into batches of `batch_size`, each row placed in the
    first batch, from the current one on, where it clashes with no row (see `_Batch`): without
    clashes these are consecutive slices of `order`. A row that cannot join the current batch waits
    for the next; so batches stay full but near the end, where the waiting rows clash with each
    other and make shorter ones. Without `texts`, plain slices."""
    deferred: list[int] = []
    head = 0
    while deferred or head < len(order):
        batch = _Batch()
        waiting: list[int] = []
        for r in deferred:
            t = texts[r] if texts is not None else None
            if len(batch.rows) < batch_size and (t is None or not batch.clashes(t)):
                batch.add(r, t)
            else:
                waiting.append(r)
        while len(batch.rows) < batch_size and head < len(order):
            r = order[head]
            head += 1
            t = texts[r] if texts is not None else None
            if t is not None and batch.clashes(t) and len(waiting) < _MAX_DEFERRED:
                waiting.append(r)
            else:
                batch.add(r, t)
        deferred = waiting
        yield batch.rows


def clashing_rows(batch: list[int], texts: list[RowTexts] | None) -> int:
    """Rows of `batch` that meet their own positive again as an in-batch negative: another row
    of the batch repeats the row's query or holds one of its positives as a passage (see
    `_Batch`). The count does not depend on the order of the batch's rows."""
    if texts is None:
        return 0
    queries = Counter(texts[r].query for r in batch)
    holders: dict[int, int] = Counter(p for r in batch for p in texts[r].passages)
    # a row's positives are among its own passages: another row holds one when it is counted twice
    return sum(queries[texts[r].query] > 1 or any(holders[p] > 1 for p in texts[r].positives) for r in batch)


def _random_picks(rng: np.random.Generator, size: int, batch_size: int, texts: list[RowTexts] | None) -> list[int]:
    """`batch_size` distinct rows of a dataset of `size` drawn at random; a drawn row that clashes
    with the ones before it is swapped for another draw where one fits (a few tries), so the batch
    stays full either way."""
    picks = [int(i) for i in rng.choice(size, size=batch_size, replace=False)]
    if texts is None or not clashing_rows(picks, texts):
        return picks
    extra = [int(i) for i in rng.choice(size, size=min(size, 4 * batch_size), replace=False)]
    drawn = set(picks)
    batch, spare = _Batch(), []
    for r in picks + [r for r in extra if r not in drawn]:
        if len(batch.rows) == batch_size:
            break
        if batch.clashes(texts[r]):
            spare.append(r)
        else:
            batch.add(r, texts[r])
    return batch.rows + spare[: batch_size - len(batch.rows)]


def batch_plan(sizes: dict[str, int], batch_size: int, mode: str = "epoch", seed: int = 42,
               epochs: int = 1, drop_last: bool = True,
               texts: dict[str, list[RowTexts]] | None = None) -> pl.DataFrame:
    """Dataset sizes -> plan (PLAN_SCHEMA), deterministic for equal inputs. ``drop_last``: the
    epoch modes leave out each dataset's last, shorter batches. `texts` (dataset -> its rows'
    texts; datasets left out are not checked) keeps clashing rows apart (see `_Batch`,
    `clash_free_batches`, `_random_picks`)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    names = sorted(n for n, s in sizes.items() if s > 0)
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, int, str, list[int]]] = []
    texts = texts or {}
    for epoch in range(epochs):
        if mode == "random":
            # only datasets that fill a batch, as in the epoch modes: a short batch would change
            # the in-batch negatives' count and the loss scale from step to step
            eligible = [n for n in names if sizes[n] >= batch_size]
            weights = np.array([sizes[n] for n in eligible], dtype=np.float64)
            for _ in range(sum(sizes[n] for n in eligible) // batch_size):
                name = eligible[int(rng.choice(len(eligible), p=weights / weights.sum()))]
                picks = _random_picks(rng, sizes[name], batch_size, texts.get(name))
                rows.append((len(rows), epoch, name, sorted(picks)))
        elif mode == "epoch":
            batches = []
            for name in names:
                perm = rng.permutation(sizes[name]).tolist()
                batches += [(name, b) for b in clash_free_batches(perm, batch_size, texts.get(name))
                            if len(b) == batch_size or not drop_last]
            for j in rng.permutation(len(batches)):
                name, idx = batches[int(j)]
                rows.append((len(rows), epoch, name, [int(i) for i in idx]))
        elif mode == "epoch-random":
            queues = {n: rng.permutation(sizes[n]).tolist() for n in names}
            cutters = {n: clash_free_batches(q, batch_size, texts.get(n)) for n, q in queues.items()}
            left = {n: len(q) for n, q in queues.items()}
            least = batch_size if drop_last else 1
            while True:
                remaining = {n: k for n, k in left.items() if k >= least}
                if not remaining:
                    break
                live = sorted(remaining)
                w = np.array([remaining[n] for n in live], dtype=np.float64)
                name = live[int(rng.choice(len(live), p=w / w.sum()))]
                idx = next(cutters[name])
                left[name] -= len(idx)
                if len(idx) == batch_size or not drop_last:
                    rows.append((len(rows), epoch, name, [int(i) for i in idx]))
        else:
            raise ValueError(f"unknown batch plan mode '{mode}'")
    return pl.DataFrame(rows, schema=PLAN_SCHEMA, orient="row")


def small_datasets(sizes: dict[str, int], batch_size: int) -> list[str]:
    """Datasets too small for one full batch (with ``drop_last``, or in random mode, they never
    appear in the plan)."""
    return sorted(n for n, s in sizes.items() if 0 < s < batch_size)


def size_left_out(sizes: dict[str, int], batch_size: int) -> int:
    """Rows an epoch mode with ``drop_last`` leaves out for the sizes alone: each dataset's last
    partial batch (a dataset smaller than a batch whole)."""
    return sum(n % batch_size for n in sizes.values())


def left_out_reason(sizes: dict[str, int], batch_size: int, mode: str, clash_short: int = 0) -> str:
    """Why a plan of ``mode`` over datasets of ``sizes`` leaves rows out of an epoch, as a phrase
    for the stage's warning. Names only the causes these sizes have, so a user is not sent looking
    for small datasets that do not exist. `clash_short`: rows left out beyond those, in batches
    that keeping clashing rows apart cut short (epoch modes with ``drop_last``)."""
    small = small_datasets(sizes, batch_size)
    n_small = (f"{len(small)} dataset{'s' if len(small) > 1 else ''} smaller than "
               f"train_data.batch.batch_size={batch_size} (batch_plan.datasets_smaller_than_batch)")
    if mode == "random":
        # steps draw independently, so however the sizes divide, some rows repeat and others are
        # never drawn; small datasets are never picked
        why = (f"random mode draws each step's {batch_size} rows at random from a dataset picked by size, so some "
               "rows are drawn in several steps and others in none (batch.mode=epoch or epoch-random uses each "
               "row at most once per epoch)")
        if small:
            why += f"; {n_small} {'are' if len(small) > 1 else 'is'} never picked"
        return why
    causes = [n_small] if small else []
    if any(s >= batch_size and s % batch_size for s in sizes.values()):
        causes.append(f"the last partial batch of each dataset whose size is not a multiple of {batch_size}")
    if clash_short:
        causes.append(f"{clash_short} rows in batches cut short by keeping clashing rows apart "
                      "(train_data.batch.keep_clashing_rows_apart; see embedder.rows_with_positive_in_other_rows "
                      "and embedder.rows_repeating_a_query)")
    left = " and ".join(causes) or "no row"
    keep = " (train_data.batch.drop_last: false keeps them as shorter batches)" if causes else ""
    if mode == "epoch-random":
        return (f"epoch-random mode takes batches of {batch_size} from each shuffled dataset until fewer remain, "
                f"leaving out {left}{keep}")
    return f"{mode} mode cuts each shuffled dataset into full batches of {batch_size}, leaving out {left}{keep}"


def rows_in_first_epoch(plan: pl.DataFrame) -> int:
    """Distinct (dataset, row) pairs the plan's first epoch trains on."""
    first = plan.filter(pl.col("epoch") == 0).select("dataset", "indices").explode("indices")
    return first.unique().height if first.height else 0


def flagembedding_batch_size(batch_size: int, mode: str) -> int:
    """The batch FlagEmbedding's same-dataset sampler cuts from a file whose rows are of FlagEmbedding
    `mode` (``type``): half the per-device batch size for the symmetric modes, the whole otherwise."""
    return batch_size // 2 if "symmetric" in mode else batch_size


def _folder(name: str) -> str:
    return name.rsplit("/", 1)[0]


def flagembedding_rows_per_epoch(sizes: dict[str, int], modes: dict[str, str], batch_size: int,
                                 small_threshold: int = 0) -> tuple[int, list[str]] | None:
    """(rows an epoch trains, datasets it never trains) when FlagEmbedding's same-dataset mode
    (``--same_dataset_within_batch True``, one process) is given every dataset's folder, as
    docs/formats.md does. `sizes`: dataset (``<folder>/<file stem>``) -> rows; `modes`: dataset
    -> its FlagEmbedding mode. Each epoch it cuts every dataset into batches and drops the last,
    shorter one (other rows each epoch, as it reshuffles), so a dataset smaller than its batch
    never trains. A symmetric dataset at batch size 1 has a batch of 0, and FlagEmbedding stops
    before any step ("range() arg 3 must not be zero"): then nothing trains. With
    ``--small_threshold``, a folder's datasets below it are merged into one, whose batch is the
    smallest of theirs; None when a folder would merge files of two modes, which FlagEmbedding
    cannot train (a batch mixing modes fails its type assertion)."""
    trained, never = 0, []
    small: dict[str, list[str]] = {}
    groups: list[tuple[list[str], int]] = []  # (datasets read as one, their batch size)
    for name, n in sorted(sizes.items()):
        if n == 0:
            continue
        if n < small_threshold:
            small.setdefault(_folder(name), []).append(name)
        else:
            groups.append(([name], flagembedding_batch_size(batch_size, modes.get(name, "normal"))))
    for names in small.values():
        if len({modes.get(x, "normal") for x in names}) > 1:
            return None
        groups.append((names, min(flagembedding_batch_size(batch_size, modes.get(x, "normal")) for x in names)))
    if any(b == 0 for _, b in groups):
        return 0, sorted(x for names, _ in groups for x in names)
    for names, b in groups:
        n = sum(sizes[x] for x in names)
        trained += n // b * b
        if n < b:
            never += names
    return trained, sorted(never)
