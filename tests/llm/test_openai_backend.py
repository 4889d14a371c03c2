"""OpenAI-compatible client against real llama.cpp servers on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from gen_fixtures import SECRET, FaultProxy, LlamaServer, free_port

from tripleforge.errors import UserError
from tripleforge.llm.base import ChatRequest, ChatResult, Sampling
from tripleforge.llm.openai_compat import OpenAICompatBackend

pytestmark = pytest.mark.llm


def _reqs(n: int, max_tokens: int = 8) -> list[ChatRequest]:
    return [ChatRequest(key=f"k{i}", messages=(("user", f"Say a word about the number {i}."),),
                        sampling=Sampling(0.7, 0.9, max_tokens, seed=i)) for i in range(n)]


def _collect(backend: OpenAICompatBackend, reqs: list[ChatRequest]) -> dict[str, ChatResult]:
    out: dict[str, ChatResult] = {}
    backend.generate(reqs, lambda r, res: out.__setitem__(r.key, res))
    return out


def test_generates_with_key_from_named_env_var(llama_server: LlamaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_TEST_KEY", SECRET)
    be = OpenAICompatBackend([llama_server.url], api_key_env="TF_TEST_KEY", concurrency=2, timeout_s=60)
    assert be.model and SECRET not in be.fingerprint()
    out = _collect(be, _reqs(3))
    assert sorted(out) == ["k0", "k1", "k2"]
    assert all(r.ok and r.texts[0] and r.tokens_out > 0 for r in out.values())


def test_wrong_or_missing_key_and_unreachable_endpoint_fail_early(llama_server: LlamaServer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_TEST_KEY", raising=False)
    with pytest.raises(UserError, match="environment variable TF_TEST_KEY is not set"):
        OpenAICompatBackend([llama_server.url], api_key_env="TF_TEST_KEY")
    monkeypatch.setenv("TF_TEST_KEY", "sk-wrong")
    with pytest.raises(UserError, match=r"^params\.yaml: generate\.api_key_env: LLM endpoint \S+ rejected the API "
                                        r"key in \$TF_TEST_KEY \(HTTP 401\)$") as err:
        OpenAICompatBackend([llama_server.url], api_key_env="TF_TEST_KEY")
    assert "sk-wrong" not in str(err.value)
    with pytest.raises(UserError, match=r"^params\.yaml: generate\.base_urls: cannot reach LLM endpoint "
                                        r"http://127\.0\.0\.1:\d+/v1: ConnectError$"):
        OpenAICompatBackend([f"http://127.0.0.1:{free_port()}/v1"], model="m")


@pytest.fixture
def flaky_proxy(llama_server: LlamaServer) -> Iterator[FaultProxy]:
    """Forwards to the real server, but answers the first chat request 429 with Retry-After."""
    with FaultProxy(llama_server.url) as p:
        p.fault = lambda req: (429, b"", {"Retry-After": "1"}) if p.posts == 1 else None
        yield p


def test_retry_after_is_honoured(flaky_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_TEST_KEY", SECRET)
    be = OpenAICompatBackend([flaky_proxy.url], api_key_env="TF_TEST_KEY", concurrency=1, backoff_s=0.01, max_retries=2)
    t0 = time.perf_counter()
    out = _collect(be, _reqs(1))
    assert out["k0"].ok and be.retries == 1 and flaky_proxy.posts == 2
    assert time.perf_counter() - t0 >= 1.0  # waited Retry-After, not the 10 ms backoff


def test_gives_up_after_bounded_retries() -> None:
    # nothing listens on the port: bounded retries, then a failure result (no hang, no exception)
    be = OpenAICompatBackend([f"http://127.0.0.1:{free_port()}/v1"], model="m", concurrency=1, timeout_s=5,
                             max_retries=2, backoff_s=0.01, max_backoff_s=0.05, probe=False)
    out = _collect(be, _reqs(1))
    assert not out["k0"].ok and "gave up after 3 attempts" in (out["k0"].error or "") and be.retries == 2


@pytest.fixture
def two_proxies(llama_server: LlamaServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    """Two "replicas": proxies in front of the one real server, each counting the POSTs it gets."""
    monkeypatch.setenv("TF_TEST_KEY", SECRET)
    with FaultProxy(llama_server.url) as a, FaultProxy(llama_server.url) as b:
        yield a, b


@pytest.mark.parametrize("concurrency,n,expected", [(1, 4, (2, 2)), (3, 6, (3, 3)), (3, 5, (3, 2))])
def test_requests_take_the_base_urls_in_turn(two_proxies: tuple[FaultProxy, FaultProxy], concurrency: int, n: int,
                                             expected: tuple[int, int]) -> None:
    # per request, not per worker: one request in flight still uses both, and 3 in flight over 2
    # URLs do not load the first twice as much
    a, b = two_proxies
    be = OpenAICompatBackend([a.url, b.url], api_key_env="TF_TEST_KEY", concurrency=concurrency)
    out = _collect(be, _reqs(n, max_tokens=4))
    assert len(out) == n and all(r.ok for r in out.values())
    assert (a.posts, b.posts) == expected and be.retries == 0


def test_a_dead_replica_costs_no_request_its_answer(two_proxies: tuple[FaultProxy, FaultProxy]) -> None:
    # replica a answers 503 to everything: each request that starts there is retried on b at once
    # (the 30 s backoff is for a request that has tried every URL), and every request gets its answer
    a, b = two_proxies
    a.fault = lambda req: (503, b'{"error": "down"}')
    be = OpenAICompatBackend([a.url, b.url], api_key_env="TF_TEST_KEY", concurrency=2, max_retries=1, backoff_s=30)
    t0 = time.perf_counter()
    out = _collect(be, _reqs(6, max_tokens=4))
    assert sorted(out) == [f"k{i}" for i in range(6)] and all(r.ok for r in out.values()), out
    # a rests after its 503: one request paid an attempt there, not every second one
    assert (a.posts, b.posts, be.retries) == (1, 6, 1)
    assert time.perf_counter() - t0 < 15  # no backoff (at least 15 s) was waited


def test_a_rested_replica_gets_requests_again_after_the_rest(two_proxies: tuple[FaultProxy, FaultProxy]) -> None:
    a, b = two_proxies
    a.fault = lambda req: (503, b"") if a.posts == 1 else None  # down for one request only
    be = OpenAICompatBackend([a.url, b.url], api_key_env="TF_TEST_KEY", concurrency=1, max_retries=1,
                             max_backoff_s=4)
    out = _collect(be, _reqs(3, max_tokens=4))
    assert all(r.ok for r in out.values()) and (a.posts, b.posts) == (1, 3)  # resting: all on b
    time.sleep(max(0.0, be._rest_until[a.url] - time.monotonic()) + 0.1)
    out = _collect(be, _reqs(4, max_tokens=4))
    assert all(r.ok for r in out.values()) and (a.posts, b.posts) == (3, 5)  # in turn again


def test_a_replica_down_at_the_start_is_left_out_with_a_warning(two_proxies: tuple[FaultProxy, FaultProxy],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # once, one dead URL of several stopped the run before any request; now only when all are dead
    a, _ = two_proxies
    dead = f"http://127.0.0.1:{free_port()}/v1"
    be = OpenAICompatBackend([dead, a.url], api_key_env="TF_TEST_KEY", concurrency=2)
    assert capsys.readouterr().err.splitlines() == [
        (f"warning: generate: params.yaml: generate.base_urls: cannot reach LLM endpoint {dead}: ConnectError; "
         "continuing with the other 1 of 2 base URLs")]
    out = _collect(be, _reqs(3, max_tokens=4))
    assert all(r.ok for r in out.values()) and (a.posts, be.retries) == (3, 0)
    with pytest.raises(UserError, match=rf"^params\.yaml: generate\.base_urls: cannot reach LLM endpoint {dead}"):
        OpenAICompatBackend([dead, dead + "x"], api_key_env="TF_TEST_KEY")


def test_a_request_backs_off_once_every_url_has_failed_it(two_proxies: tuple[FaultProxy, FaultProxy]) -> None:
    # both replicas refuse: attempt 1 on a, attempt 2 on b at once, then a's Retry-After (the longest
    # of the turn, b sends none), then attempt 3 on a
    a, b = two_proxies
    a.fault = lambda req: (503, b"", {"Retry-After": "1"})
    b.fault = lambda req: (503, b"")
    be = OpenAICompatBackend([a.url, b.url], api_key_env="TF_TEST_KEY", concurrency=1, max_retries=2, backoff_s=0.01)
    t0 = time.perf_counter()
    out = _collect(be, _reqs(1))
    assert time.perf_counter() - t0 >= 1.0
    assert (a.posts, b.posts, be.retries) == (2, 1, 2)
    assert out["k0"].error == f"gave up after 3 attempts: HTTP 503 from {a.url}"


def test_no_request_starts_once_on_result_asks_to_stop(llama_server: LlamaServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_TEST_KEY", SECRET)
    with FaultProxy(llama_server.url) as proxy:
        proxy.fault = lambda req: (500, b"")
        be = OpenAICompatBackend([proxy.url], api_key_env="TF_TEST_KEY", concurrency=2, max_retries=1, backoff_s=0.01)
        seen: list[ChatResult] = []
        be.generate(_reqs(6), lambda r, res: seen.append(res) or True)  # True: stop
        # the 2 requests started finish and are reported; none starts after
        assert len(seen) == 2 and not any(r.ok for r in seen) and 2 <= proxy.posts <= 2 * 2
        seen.clear()
        proxy.posts = 0
        be.generate(_reqs(3), lambda r, res: seen.append(res))  # None: go on
        assert len(seen) == 3 and proxy.posts == 3 * 2


def test_a_request_in_flight_is_not_retried_once_the_run_stops(llama_server: LlamaServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # k0 fails at once (400, not retryable) and stops the run; k1, in flight, is told to come back in
    # 30 s (503 + Retry-After). Its retry could change nothing: it ends without waiting or retrying.
    monkeypatch.setenv("TF_TEST_KEY", SECRET)
    with FaultProxy(llama_server.url) as proxy:
        proxy.fault = lambda req: (400, b'{"error": "bad"}') if b"number 0." in req else (503, b"", {"Retry-After": "30"})
        be = OpenAICompatBackend([proxy.url], api_key_env="TF_TEST_KEY", concurrency=2, max_retries=3, backoff_s=0.01)
        seen: dict[str, ChatResult] = {}
        t0 = time.perf_counter()
        be.generate(_reqs(4), lambda r, res: seen.setdefault(r.key, res) is None or True)
        assert time.perf_counter() - t0 < 15  # the 30 s Retry-After was cut short
        assert sorted(seen) == ["k0", "k1"] and proxy.posts == 2 and be.retries == 0
        assert seen["k1"].error == (f"gave up after 1 attempt: HTTP 503 from {proxy.url} "
                                    "(not retried: the run had already failed)")


def test_a_server_echoing_the_api_key_does_not_put_it_in_errors(two_proxies: tuple[FaultProxy, FaultProxy]) -> None:
    # a server whose error body repeats the Authorization header once put the key on stderr and
    # in the cache's failure log, both of which show this error text
    a, _ = two_proxies
    a.fault = lambda req: (500, f'{{"error": "boom, your key was Bearer {SECRET}"}}'.encode())
    be = OpenAICompatBackend([a.url], api_key_env="TF_TEST_KEY", max_retries=0)
    out = _collect(be, _reqs(1))
    assert out["k0"].error == f"gave up after 1 attempt: HTTP 500 from {a.url}: boom, your key was Bearer [API key]"
    assert SECRET not in out["k0"].error


def test_a_reply_with_null_token_counts_is_an_answer() -> None:
    import httpx

    reply = {"choices": [{"message": {"content": "a query"}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": None, "completion_tokens": None}}
    res = OpenAICompatBackend._parse(httpx.Response(200, json=reply))
    assert res.ok and res.texts == ["a query"] and (res.tokens_in, res.tokens_out) == (0, 0)
    reply["usage"] = {"prompt_tokens": "many", "completion_tokens": 3}
    assert not OpenAICompatBackend._parse(httpx.Response(200, json=reply)).ok  # a wrong type is still malformed


@pytest.mark.parametrize("value,is_key", [
    ("OPENAI_API_KEY", False), ("GROQ_API_KEY", False), ("AZURE_OPENAI_API_KEY_2024", False), ("my_key_var", False),
    ("TF_TEST_KEY", False), ("hf_token", False), ("HF_TOKEN", False), ("sk_prod_api_key_for_llm", False),
    ("MyServiceApiKey", False), ("MyCompanyOpenAIKey2024", False), ("Team3OpenAiApiKeyProd", False),
    ("hf_api_token", False), ("github_pat_token", False), ("gsk_key", False),
    ("gsk_8fJk2LmQ9xTz4VbN7pRw3YcH5sDe1AqU6", True), ("hf_abcdefghijklmnopqrstuvwxyz0", True),
    ("AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW", True), ("9f86d081884c7d659a2feaa0c55ad015", True),
])
def test_looks_like_key(value: str, is_key: bool) -> None:
    from tripleforge.llm.openai_compat import looks_like_key

    assert looks_like_key(value) is is_key
