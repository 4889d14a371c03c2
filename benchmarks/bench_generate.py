"""Benchmark: LLM generation cost and throughput, all in one run.

    .venv/bin/python benchmarks/bench_generate.py [--docs 20] [--prompts 16] [--max-tokens 32] [--servers 4]
                                                  [--rounds 2] [--skip-cache] [--out FILE]

(a) Response cache: a first run over N stdlib functions, an identical re-run, and a run over a corpus
    grown by 10% -> LLM calls of each (goal: 0, then only the new documents).
(b) `openai` backend against `--servers` llama.cpp server processes on 127.0.0.1 (bundled SmolLM2):
    - concurrent (one slot per server, base_urls spread) vs one-at-a-time on one server, same requests;
    - the whole pipeline (`generate_pairs`: prompts, cache commits, filters) vs the raw backend on
      the same requests (throughput ratio; goal >= 0.9).
The peer for (b) is the original's way of calling: one request at a time against one server.
Before each timed run every server answers an unrelated one-token request: llama.cpp reuses the
evaluated prompt of a server's last request, so a run that repeats it would start warm (with 2
prompts on 2 servers the pipeline came out 3.3x faster than the raw backend doing the same work).
Writes benchmarks/results/generate.json (or --out) and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "generate.json"
sys.path.insert(0, str(ROOT / "tests"))  # gen_fixtures.LlamaServer starts/stops the real servers

os.environ.setdefault("TRIPLEFORGE_NO_PROGRESS", "1")

import polars as pl  # noqa: E402

from tripleforge.generate import GenerateParams, generate_pairs  # noqa: E402
from tripleforge.hashing import text_id  # noqa: E402
from tripleforge.llm.base import ChatRequest, ChatResult, OnResult  # noqa: E402
from tripleforge.llm.cache import ResponseCache  # noqa: E402
from tripleforge.llm.llama_cpp import LlamaCppBackend  # noqa: E402

from python_functions import python_functions  # noqa: E402  (benchmarks/ is sys.path[0])
from run_info import run_info  # noqa: E402
from tripleforge.llm.openai_compat import OpenAICompatBackend  # noqa: E402


def stdlib_docs(limit: int) -> pl.DataFrame:
    """Python stdlib functions of 150-900 chars, deterministic order."""
    texts = [code for _, code in python_functions(limit, 150, 900, with_docstring=False, include_async=False)]
    return pl.DataFrame({"doc_id": [text_id(t) for t in texts], "text": texts,
                         "code_language": ["python"] * len(texts)})


class Recorder:
    """Delegates to a real backend and keeps the requests it was asked for."""

    def __init__(self, inner: OpenAICompatBackend):
        self.inner, self.name, self.requests = inner, inner.name, []  # type: ignore[var-annotated]

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def generate(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        self.requests.extend(requests)
        self.inner.generate(requests, on_result)

    def close(self) -> None:
        pass


def flush_prompt_caches(urls: list[str]) -> None:
    """One unrelated one-token request per server, so no timed run finds its first prompt evaluated."""
    import httpx

    for i, url in enumerate(urls):
        httpx.post(f"{url}/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": f"Say a number. ({i}, {time.perf_counter()})"}], "max_tokens": 1})


def timed_raw(backend: OpenAICompatBackend, reqs: list[ChatRequest]) -> tuple[float, int]:
    out: list[ChatResult] = []
    t0 = time.perf_counter()
    backend.generate(reqs, lambda r, res: out.append(res))
    dt = time.perf_counter() - t0
    assert all(r.ok for r in out), [r.error for r in out if not r.ok]
    return dt, sum(r.tokens_out for r in out)


def part_cache(n_docs: int, max_tokens: int, tmp: Path) -> dict:
    docs = stdlib_docs(n_docs + max(1, n_docs // 10))
    base, grown = docs.head(n_docs), docs
    p = GenerateParams(tasks=["code_summary_retrieval"], max_tokens=max_tokens)
    backend = LlamaCppBackend("smollm2", n_threads=2)
    cache = ResponseCache(tmp / "cache-a.sqlite")
    res = {}
    for label, frame in (("first_run", base), ("identical_rerun", base), ("grown_10pct", grown)):
        t0 = time.perf_counter()
        _, m = generate_pairs(frame, p, backend, cache)
        dt = time.perf_counter() - t0
        # the metrics hold counts only (timings would break byte-identical re-runs): the rate is
        # this run's new tokens over its whole wall time, None when it made no LLM call
        res[label] = {"docs": frame.height, "llm_calls": m["cache_misses"], "cache_hits": m["cache_hits"],
                      "seconds": round(dt, 3), "new_tokens_out": m["new_tokens_out"],
                      "tokens_per_s": round(m["new_tokens_out"] / dt, 2) if m["cache_misses"] else None}
    backend.close()
    res["new_docs"] = grown.height - base.height
    res["ok"] = res["identical_rerun"]["llm_calls"] == 0 and res["grown_10pct"]["llm_calls"] == res["new_docs"]
    return res


def part_openai(n_prompts: int, max_tokens: int, n_servers: int, rounds: int, tmp: Path) -> dict:
    from gen_fixtures import LlamaServer

    servers = [LlamaServer(tmp / f"server{i}.log") for i in range(n_servers)]
    try:
        for s in servers:
            s.wait()
        urls = [s.url for s in servers]
        docs = stdlib_docs(n_prompts)
        p = GenerateParams(tasks=["code_summary_retrieval"], max_tokens=max_tokens, backend="openai",
                           base_urls=urls, concurrency=n_servers)
        conc = OpenAICompatBackend(urls, concurrency=n_servers)
        seq = OpenAICompatBackend(urls[:1], concurrency=1)
        # the first pipeline run (fresh cache) records the exact requests; raw runs replay them.
        rec = Recorder(conc)
        generate_pairs(docs, p, rec, ResponseCache(tmp / "cache-rec.sqlite"))
        reqs = rec.requests
        # The machine is shared: interleave the three measurements and keep each one's best round.
        times: dict[str, list[float]] = {"seq": [], "conc": [], "pipe": []}
        seq_tok = raw_tok = 0
        for i in range(rounds):
            flush_prompt_caches(urls)
            dt, seq_tok = timed_raw(seq, reqs)
            times["seq"].append(dt)
            flush_prompt_caches(urls)
            dt, raw_tok = timed_raw(conc, reqs)
            times["conc"].append(dt)
            flush_prompt_caches(urls)
            t0 = time.perf_counter()
            _, m2 = generate_pairs(docs, p, conc, ResponseCache(tmp / f"cache-{i}.sqlite"))  # fresh cache
            times["pipe"].append(time.perf_counter() - t0)
        seq_s, raw_s, pipe_s = min(times["seq"]), min(times["conc"]), min(times["pipe"])
        return {
            "servers": n_servers, "requests": len(reqs), "max_tokens": max_tokens,
            "concurrent_s": round(raw_s, 3), "concurrent_tokens_out": raw_tok,
            "one_at_a_time_s": round(seq_s, 3), "one_at_a_time_tokens_out": seq_tok,
            "concurrent_speedup": round(seq_s / raw_s, 3),
            "pipeline_s": round(pipe_s, 3), "pipeline_llm_calls": m2["cache_misses"],
            "pipeline_vs_raw_throughput": round(raw_s / pipe_s, 3),
            "cpu_cores": os.cpu_count(), "rounds": rounds,
            "all_times_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        }
    finally:
        for s in servers:
            s.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--servers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-cache", action="store_true", help="only part (b)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results file")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        old = json.loads(a.out.read_text()) if a.out.is_file() else {}
        kept = a.skip_cache and "cache" in old
        # part (a) of an earlier run is kept as it was, with that run's own record, and said so
        cache = ({**old["cache"], "from_earlier_run": old.get("run", "a run that recorded no command")}
                 if kept else part_cache(a.docs, a.max_tokens, tmp))
        http = part_openai(a.prompts, a.max_tokens, a.servers, a.rounds, tmp)
    result = {"cache": cache, "openai_backend": http, "run": run_info()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    c = cache
    print("(a) kept from the earlier results file (--skip-cache): " if kept else "(a) ", end="")
    print(f"first run {c['first_run']['llm_calls']} calls, identical re-run {c['identical_rerun']['llm_calls']} "
          f"calls, +{c['new_docs']} docs -> {c['grown_10pct']['llm_calls']} calls (ok={c['ok']})")
    print(f"(b) {http['servers']} servers: concurrent {http['concurrent_s']}s vs one-at-a-time "
          f"{http['one_at_a_time_s']}s -> x{http['concurrent_speedup']}; pipeline/raw throughput "
          f"{http['pipeline_vs_raw_throughput']} (goal >= 0.9)")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
