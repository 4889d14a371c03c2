"""Work items run side by side on CPU threads (streams), each with few threads of its own.

On 2 cores, one small forward pass does not split well across cores: running two at once, each on
one thread, was faster (MiniLM on 400 stdlib functions, AVX2, four alternating runs in one
process: int8 in ONNX Runtime 34-36 -> 46-52 docs/s; torch fp32 batches 28-31 -> 32-34). An item's
result depends on the item and its stream's thread count only, not on what runs beside it
(tested). It is not always the bits one item on all threads gives: on an AMD EPYC it was, on an
Intel Xeon (AVX-512) fp32 vectors from one thread and from two differ in the last bit, so the
embedding cache keys vectors by the threads a stream runs on (`stream_layout`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def run_side_by_side(work: Callable[[T], None], items: Iterable[T], threads: int) -> None:
    """`work(item)` for every item, `threads` at a time (in order when 1). The first error raised
    by an item (or a Ctrl-C) is raised here once the items already started have finished; the
    items not started yet are dropped, so a Ctrl-C does not wait for the whole list."""
    if threads <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="tripleforge-run") as pool:
        # consumed so that an item's error is raised here; leaving `map`'s iterator early cancels
        # the items not started yet
        for _ in pool.map(work, items):
            pass


# Measured on 2 cores only. Each stream holds a batch's activations, and torch's Python-side
# module calls share the GIL, so many-core machines get a few streams of several threads each.
MAX_TORCH_STREAMS = 4


def stream_layout(threads: int) -> tuple[int, int]:
    """(streams, threads each) for `threads` torch threads: the most threads in use, then the most
    streams: 6 threads are 3 streams of 2 (not 4 of 1), 7 are one stream of 7."""
    streams = max(range(1, min(threads, MAX_TORCH_STREAMS) + 1), key=lambda s: (s * (threads // s), s), default=1)
    return streams, max(1, threads // streams)


@contextlib.contextmanager
def torch_streams() -> Iterator[int]:
    """For the block, torch's intra-op threads split evenly among streams run side by side; yields
    how many streams (at most `MAX_TORCH_STREAMS`, 1 when torch has one thread). The thread count
    is restored after; torch's setting is global to the process, so no other torch work may run
    meanwhile."""
    import torch

    before = torch.get_num_threads()
    streams, each = stream_layout(before)
    torch.set_num_threads(each)
    try:
        yield streams
    finally:
        torch.set_num_threads(before)
