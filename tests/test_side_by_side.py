"""Work run side by side on threads, and torch's thread count around it."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest
import torch

from tripleforge import embed
from tripleforge.embed import EmbedderConfig
from tripleforge.side_by_side import MAX_TORCH_STREAMS, run_side_by_side, stream_layout, torch_streams


def test_every_item_runs_once_on_several_threads_and_errors_reach_the_caller():
    seen: list[int] = []
    names: set[str] = set()
    lock = threading.Lock()

    def work(i: int) -> None:
        with lock:
            seen.append(i)
            names.add(threading.current_thread().name)

    run_side_by_side(work, range(50), 3)
    assert sorted(seen) == list(range(50)) and all(n.startswith("tripleforge-run") for n in names)
    seen.clear()
    run_side_by_side(work, range(5), 1)
    assert seen == [0, 1, 2, 3, 4]  # one thread: in order, on the caller's thread

    def fails(i: int) -> None:
        if i == 7:
            raise ValueError("item 7")

    with pytest.raises(ValueError, match="item 7"):
        run_side_by_side(fails, range(20), 2)

    # the items after an error are not started: a Ctrl-C during a long list stops soon
    started: list[int] = []

    def slow_then_fail(i: int) -> None:
        with lock:
            started.append(i)
        if i == 1:
            raise KeyboardInterrupt
        time.sleep(0.05)

    with pytest.raises(KeyboardInterrupt):
        run_side_by_side(slow_then_fail, range(200), 2)
    assert len(started) < 10


def test_torch_streams_split_the_threads_and_restore_them():
    before = torch.get_num_threads()
    try:
        for total, streams, each in [(1, 1, 1), (2, 2, 1), (3, 3, 1), (6, 3, 2), (7, 1, 7),
                                     (16, MAX_TORCH_STREAMS, 16 // MAX_TORCH_STREAMS)]:
            torch.set_num_threads(total)
            with torch_streams() as got:
                assert (got, torch.get_num_threads()) == (streams, each)
            assert torch.get_num_threads() == total
        torch.set_num_threads(2)
        with pytest.raises(RuntimeError), torch_streams():
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2  # restored after an error too
    finally:
        torch.set_num_threads(before)


def test_fp32_batches_side_by_side_give_the_vectors_of_one_batch_at_a_time(monkeypatch):
    """Side-by-side batches give the bits of batches one after another on a stream's thread
    count: what runs beside a batch changes nothing. (Not always the bits of all threads: on an
    Intel Xeon fp32 on one thread and on two differ in the last bit; the cache key holds the
    count, see test_embed.)"""
    texts = [f"def f{i}(x):\n    return x * {i}" + "  # more" * (i % 7) for i in range(40)]
    enc = embed.get_encoder(EmbedderConfig(dtype="float32", batch_tokens=64))
    side = enc.encode(texts, 4)

    @contextlib.contextmanager
    def one_stream():
        yield 1

    monkeypatch.setattr(embed, "torch_streams", one_stream)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(stream_layout(before)[1])
        assert np.array_equal(side, enc.encode(texts, 4))
    finally:
        torch.set_num_threads(before)
