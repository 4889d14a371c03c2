"""A real llama.cpp OpenAI-compatible server (bundled SmolLM2) for the HTTP tests, once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gen_fixtures import SECRET, LlamaServer


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(tmp_path_factory.mktemp("llama") / "server.log", api_key=SECRET)
    try:
        yield server.wait()
    finally:
        server.stop()
