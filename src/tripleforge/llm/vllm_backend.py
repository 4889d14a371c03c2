"""In-process vLLM engine for GPU machines (extra `gpu`). Imported lazily: the rest of tripleforge
works without vllm, and choosing this backend without it is a one-line error."""

from __future__ import annotations

import importlib.util
from typing import Any

from tripleforge.errors import UserError
from tripleforge.llm.base import ChatRequest, ChatResult, OnResult


class VllmBackend:
    name = "vllm"
    # The runner hands requests over in slices of this size and caches each slice's answers before
    # sending the next: the engine answers a slice as one batch, so a run killed mid-round loses at
    # most one slice, not the round (hours of GPU time at 100k requests). Several thousand requests
    # keep the engine's batch full (256 sequences by default) for all but the slice's tail.
    recheck_every = 4096

    def __init__(self, model: str, max_model_len: int = 8192, gpu_memory_utilization: float = 0.85,
                 tensor_parallel_size: int = 1):
        if importlib.util.find_spec("vllm") is None:
            raise UserError("backend 'vllm' needs the vllm package (pip install 'tripleforge[gpu]'); "
                            "or use backend 'openai' against a running `vllm serve`")
        if not model:
            raise UserError("params.yaml: generate.model: backend 'vllm' needs a model name or local path")
        self.model = model
        self._kw = dict(max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
                        tensor_parallel_size=tensor_parallel_size)
        self._llm: Any = None

    def fingerprint(self) -> str:
        return f"vllm:{self.model}"

    def generate(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        if not requests:
            return
        from vllm import LLM, SamplingParams

        if self._llm is None:
            self._llm = LLM(model=self.model, seed=0, **self._kw)
        # Per-request seeds keep each answer independent of batch composition.
        params = [
            SamplingParams(temperature=r.sampling.temperature, top_p=r.sampling.top_p,
                           max_tokens=r.sampling.max_tokens, seed=r.sampling.seed, n=r.sampling.n)
            for r in requests
        ]
        outputs = self._llm.chat([r.message_dicts() for r in requests], sampling_params=params, use_tqdm=True)
        # The engine runs the whole slice in one call, so every request of it has been answered
        # before the first `on_result`: a request to stop spares the slices after this one, and
        # every answer is still reported (the caller caches it).
        for req, out in zip(requests, outputs, strict=True):
            on_result(req, ChatResult(
                texts=[o.text for o in out.outputs],
                finish_reasons=[o.finish_reason or "stop" for o in out.outputs],
                tokens_in=len(out.prompt_token_ids or []),
                tokens_out=sum(len(o.token_ids) for o in out.outputs),
            ))

    def close(self) -> None:
        self._llm = None
