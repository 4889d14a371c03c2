"""`backend: vllm` is a GPU-only engine, not installed here: these tests put a stand-in `vllm`
module (the `LLM.chat` / `SamplingParams` surface the backend calls) on the path, the one boundary
where DESIGN.md allows a fake. What they check is ours: how the runner feeds the engine and caches
its answers."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tripleforge.generate import RunStats, Runner
from tripleforge.llm.base import ChatRequest, Sampling
from tripleforge.llm.cache import ResponseCache
from tripleforge.llm.vllm_backend import VllmBackend

STAND_IN = '''
calls = []
crash_on_call = None


class SamplingParams:
    def __init__(self, **kw):
        self.kw = kw


class _Out:
    def __init__(self, text):
        self.text, self.finish_reason, self.token_ids = text, "stop", [1, 2]


class _Result:
    def __init__(self, text):
        self.outputs, self.prompt_token_ids = [_Out(text)], [1, 2, 3]


class LLM:
    def __init__(self, model, seed, **kw):
        self.model = model

    def chat(self, messages, sampling_params, use_tqdm):
        calls.append(len(messages))
        if crash_on_call == len(calls):
            raise KeyboardInterrupt
        return [_Result("answer to " + m[-1]["content"]) for m in messages]
'''


@pytest.fixture
def vllm_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text(textwrap.dedent(STAND_IN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    import vllm

    yield vllm
    sys.modules.pop("vllm", None)


def _reqs(n: int) -> list[ChatRequest]:
    return [ChatRequest(key=f"k{i}", messages=(("user", f"q{i}"),), sampling=Sampling(0.7, 0.9, 8, seed=i))
            for i in range(n)]


def test_a_run_killed_mid_round_keeps_the_slices_already_answered(tmp_path: Path, vllm_stand_in: Any) -> None:
    """The whole round went to the engine in one call, and answers were cached only after it
    returned: a run killed at 99 % of a round paid for all of it again."""
    cache = ResponseCache(tmp_path / "c.sqlite")
    backend = VllmBackend(model="some/model")
    backend.recheck_every = 3
    vllm_stand_in.crash_on_call = 3  # killed while the engine runs the third slice
    with pytest.raises(KeyboardInterrupt):
        Runner(backend, cache, RunStats()).run(_reqs(8), "test")
    assert vllm_stand_in.calls == [3, 3, 2] and cache.count() == 6

    vllm_stand_in.crash_on_call = None
    stats = RunStats()
    out = Runner(VllmBackend(model="some/model"), cache, stats).run(_reqs(8), "test")
    assert vllm_stand_in.calls[3:] == [2]  # only the unanswered slice is paid again
    assert (stats.cache_hits, stats.cache_misses) == (6, 2)
    assert [out[f"k{i}"].texts for i in range(8)] == [[f"answer to q{i}"] for i in range(8)]


def test_slices_are_large_enough_to_keep_the_engine_batch_full() -> None:
    # vLLM schedules 256 sequences at a time by default; a slice of thousands leaves only its tail
    # under-filled, while a crash loses at most one slice
    assert VllmBackend.recheck_every >= 16 * 256
