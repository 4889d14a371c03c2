"""Shared fixtures for the generation tests: tiny document frames and a real llama.cpp server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import polars as pl

from tripleforge.hashing import text_id
from tripleforge.llm.llama_cpp import bundled_model_path

# A recognisable API key: tests grep every written file for it.
SECRET = "sk-tf-test-9f8e7d6c5b4a3210"

PY_DOCS = [
    "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return a + b\n",
    "def read_lines(path):\n    with open(path) as fh:\n        return [line.rstrip('\\n') for line in fh]\n",
    "def is_prime(n):\n    if n < 2:\n        return False\n    for k in range(2, int(n ** 0.5) + 1):\n"
    "        if n % k == 0:\n            return False\n    return True\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n"
    "        self.items.append(x)\n\n    def pop(self):\n        return self.items.pop()\n",
    "def word_count(text):\n    counts = {}\n    for word in text.split():\n        counts[word] = counts.get(word, 0) + 1\n"
    "    return counts\n",
    "def clamp(x, lo, hi):\n    return max(lo, min(hi, x))\n",
    "def flatten(items):\n    out = []\n    for item in items:\n        if isinstance(item, list):\n"
    "            out.extend(flatten(item))\n        else:\n            out.append(item)\n    return out\n",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
]


def docs_frame(texts: list[str] | None = None, code_language: str = "python", similar: bool = True) -> pl.DataFrame:
    """A `data/paired/docs.parquet`-shaped frame (with `similar_*` unless `similar=False`)."""
    texts = texts if texts is not None else PY_DOCS
    df = pl.DataFrame({
        "doc_id": [text_id(t) for t in texts],
        "text": texts,
        "code_language": [code_language] * len(texts),
        "length_bucket": ["len_0_500"] * len(texts),
        "source": [f"fixture.py:{i + 1}" for i in range(len(texts))],
    })
    if similar:
        n = len(texts)
        df = df.with_columns(
            similar_doc_id=pl.Series([text_id(texts[(i + 1) % n]) for i in range(n)]),
            similar_text=pl.Series([texts[(i + 1) % n] for i in range(n)]),
            similar_score=pl.Series([0.5] * n),
        )
    return df.sort(["code_language", "doc_id"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """`python -m llama_cpp.server` with the bundled SmolLM2 on 127.0.0.1 (killed by `stop`)."""

    def __init__(self, log_path: Path, api_key: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
               "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", "2048"]
        if api_key:
            cmd += ["--api_key", api_key]
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.api_key = api_key

    def wait(self, timeout: float = 120) -> LlamaServer:
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", headers=headers, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("llama server did not start")

    def chat_posts(self) -> int:
        return self.log_path.read_text().count("POST /v1/chat/completions")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# body of a chat request -> None (forward it) or (status, body[, headers]) to answer instead
Fault = Callable[[bytes], tuple[int, bytes] | tuple[int, bytes, dict[str, str]] | None]


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of a real OpenAI-compatible server (`upstream`, its
    /v1 URL). `fault` may answer a chat request (POST) itself, to give the errors a healthy server
    never gives; `posts` counts the POSTs that reached the proxy. Use as a context manager."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.fault, self.posts = upstream, None, 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in {"content-type": "application/json", **(headers or {})}.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0)) if method == "POST" else None
                if method == "POST":
                    with proxy.lock:  # handler threads run at once
                        proxy.posts += 1
                    injected = proxy.fault(body or b"") if proxy.fault else None
                    if injected is not None:
                        self._send(*injected)
                        return
                keep = ("authorization", "content-type")
                resp = httpx.request(method, proxy.upstream + self.path.removeprefix("/v1"), content=body,
                                     headers={k: v for k, v in self.headers.items() if k.lower() in keep}, timeout=60)
                self._send(resp.status_code, resp.content)

            def do_GET(self) -> None:  # noqa: N802
                self._forward("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._forward("POST")

        self._srv = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._srv.server_address[1]}/v1"

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._srv.shutdown()
        self._srv.server_close()
