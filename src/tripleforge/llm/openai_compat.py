"""Client for any OpenAI-compatible chat server (`vllm serve`, llama.cpp server, hosted APIs).

Async httpx with a bounded number of requests in flight, a per-request timeout, and bounded
retries with exponential backoff + jitter that honour `Retry-After`. Requests take the base URLs
in turn (per request, not per worker), and a retry goes to the next URL after the one that
failed, so a replica that is down costs a request one attempt, not its answer; after such a
failure (no connection, HTTP 429/502/503/504) requests start at the other URLs for a while; one
that is down at the start is left out with a warning. The API key comes
from an environment variable *named* in params; the key itself never reaches params, logs,
metrics or cache keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from typing import Any

import httpx

from tripleforge.errors import UserError
from tripleforge.llm.base import ChatRequest, ChatResult, OnResult
from tripleforge.params import PARAMS_LABEL
from tripleforge.progress import log

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# a replica answering these (or not reachable) is rested: requests start elsewhere for a while
REST_STATUS = {429, 502, 503, 504}


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What variable names look like by convention; only such a name is repeated in a message.
CONVENTIONAL_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# Key formats that are valid variable names too (Hugging Face, Groq, Stripe-style, GitHub tokens).
KEY_PREFIXES = ("hf_", "gsk_", "sk_", "pk_", "rk_", "ghp_", "gho_", "ghs_", "github_pat_")


def looks_like_key(value: str) -> bool:
    """Whether a value is more likely an API key than a variable name: 30+ characters with a digit
    and either a known key prefix or a mix of lower and upper case, or 32+ hexadecimal digits. Keys
    are long random tokens (an HF token is `hf_` + 34 characters, a Groq key `gsk_` + 52); names
    are words, so `hf_token`, `sk_prod_key` or `MyCompanyOpenAIKey2024` stay names."""
    digit = any(c.isdigit() for c in value)
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value)
    return ((len(value) >= 30 and digit and (value.startswith(KEY_PREFIXES) or mixed))
            or re.fullmatch(r"[0-9a-fA-F]{32,}", value) is not None)


def check_api_key_env(api_key_env: str) -> None:
    """`api_key_env` must be a variable NAME. Anything else (or a name that looks like a key) is
    most likely the key itself pasted into params (where git, dvc.lock and `dvc exp show` would
    publish it), so the message must not repeat the value."""
    if api_key_env and (not ENV_NAME.fullmatch(api_key_env) or looks_like_key(api_key_env)):
        raise UserError(f"{PARAMS_LABEL}generate.api_key_env: not an environment-variable name (it looks like an "
                        "API key was pasted); remove it from params, put the key in a variable "
                        "(export OPENAI_API_KEY=...) and set generate.api_key_env to that variable's name")


def read_api_key(api_key_env: str) -> str | None:
    """The key from `$api_key_env`; '' means the server needs none."""
    check_api_key_env(api_key_env)
    if not api_key_env:
        return None
    value = os.environ.get(api_key_env)
    if not value:
        # a lower-case or mixed-case value is not repeated: it may be a key the check above let pass
        name = (api_key_env if CONVENTIONAL_NAME.fullmatch(api_key_env)
                else "named there (not repeated: not an upper-case name)")
        raise UserError(f"{PARAMS_LABEL}generate.api_key_env: environment variable {name} is not set")
    return value


def _error_detail(resp: httpx.Response, secret: str | None, limit: int = 200) -> str:
    """The server's own words for a refusal (`{"error": {"message": ...}}` or the body), on one
    line: "HTTP 400" alone does not tell a too-long prompt from a wrong model name. The API key
    (`secret`) is cut out before the text is shortened: a server may echo the request's
    Authorization header, and this text reaches stderr and the cache's failure log."""
    try:
        err = resp.json().get("error")
        text = err.get("message") if isinstance(err, dict) else err
    except (ValueError, AttributeError):
        text = None
    text = " ".join(str(text if text is not None else resp.text).split())
    if secret:
        text = text.replace(secret, "[API key]")
    return f": {text[:limit]}" if text else ""


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


class OpenAICompatBackend:
    name = "openai"

    def __init__(self, base_urls: list[str], model: str = "", api_key_env: str = "", concurrency: int = 4,
                 timeout_s: float = 120.0, max_retries: int = 4, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 probe: bool = True):
        if not base_urls:
            raise UserError(f"{PARAMS_LABEL}generate.base_urls: backend 'openai' needs at least one base URL")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self._key = read_api_key(api_key_env)
        self.concurrency = max(1, concurrency)
        # the runner hands requests over in slices of this size and serves from the cache what
        # another run answered meanwhile; large enough that the pool rarely drains
        self.recheck_every = 16 * self.concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.retries = 0  # retried attempts, for metrics
        self._rest_until: dict[str, float] = {}  # base URL -> monotonic time it may start requests again
        self._api_key_env = api_key_env
        listed = self._probe() if probe else ""
        self.model = model or listed
        if not self.model:
            raise UserError(f"{PARAMS_LABEL}generate.model: the endpoint lists no model; set generate.model")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    def _probe(self) -> str:
        """GET /models on every base URL before any generation; returns the first model id. A
        replica that does not answer is left out of the rotation with a warning, as long as one
        answers (losing one of several replicas should not stop a run); with none, or a rejected
        API key, the run stops. The errors name the params key to fix (the stage puts the file it
        read, or `--set`, first)."""
        first = ""
        urls = f"{PARAMS_LABEL}generate.base_urls: "
        live, down = [], []
        for url in self.base_urls:
            problem, data = self._probe_one(url)
            if problem:
                down.append(f"{urls}{problem}")
                continue
            live.append(url)
            if not first and data and isinstance(data, list) and isinstance(data[0], dict):
                first = str(data[0].get("id", ""))
        if not live:
            raise UserError(down[0])
        for problem in down:
            log(f"warning: generate: {problem}; continuing with the other {len(live)} of {len(self.base_urls)} "
                "base URLs")
        self.base_urls = live
        return first

    def _probe_one(self, url: str) -> tuple[str, Any]:
        """(problem, the `data` list of GET {url}/models); problem is "" when the endpoint answered."""
        try:
            resp = httpx.get(f"{url}/models", headers=self._headers(), timeout=min(10.0, self.timeout_s))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: a URL httpx reads stricter than params do
            return f"cannot reach LLM endpoint {url}: {type(exc).__name__}", None
        if resp.status_code in (401, 403):
            key = f"the API key in ${self._api_key_env}" if self._api_key_env else "the request without an API key"
            raise UserError(f"{PARAMS_LABEL}generate.api_key_env: LLM endpoint {url} rejected {key} "
                            f"(HTTP {resp.status_code})")
        if resp.status_code != 200:
            return f"LLM endpoint {url}/models answered HTTP {resp.status_code}", None
        try:
            return "", resp.json().get("data") or []
        except (ValueError, AttributeError):
            return f"LLM endpoint {url}/models did not answer JSON", None

    def fingerprint(self) -> str:
        return f"openai:{self.model}"

    def _payload(self, req: ChatRequest) -> dict[str, Any]:
        s = req.sampling
        body: dict[str, Any] = {
            "model": self.model, "messages": req.message_dicts(), "temperature": s.temperature,
            "top_p": s.top_p, "max_tokens": s.max_tokens, "seed": s.seed,
        }
        if s.n != 1:
            body["n"] = s.n
        return body

    async def _call(self, client: httpx.AsyncClient, start: int, req: ChatRequest, stop: asyncio.Event) -> ChatResult:
        """One request with its retries. Attempt k goes to base URL `start + k` (mod their number):
        a retry goes to the next replica, at once while this request has not tried every URL in
        this turn yet, after the backoff (or the longest `Retry-After` of the turn, whichever is
        longer) once it has. With one URL that is a backoff before every retry. Once `stop` is
        set (the run has failed already), a failed attempt is not retried and a pending backoff
        ends at once: a retry could change nothing but the bill."""
        n_urls = len(self.base_urls)
        last = "no attempt"
        wait = 0.0  # the longest Retry-After of this turn over the URLs
        for attempt in range(self.max_retries + 1):
            url = self.base_urls[(start + attempt) % n_urls]
            try:
                resp = await client.post(f"{url}/chat/completions", json=self._payload(req), headers=self._headers())
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__} from {url}"
                if isinstance(exc, httpx.TransportError):
                    self._rest(url, 0.0)
            else:
                if resp.status_code == 200:
                    self._rest_until.pop(url, None)
                    return self._parse(resp, req.sampling.n)
                last = f"HTTP {resp.status_code} from {url}{_error_detail(resp, self._key)}"
                if resp.status_code not in RETRY_STATUS:
                    return ChatResult(error=last)
                wait = max(wait, _retry_after(resp) or 0.0)
                if resp.status_code in REST_STATUS:
                    self._rest(url, _retry_after(resp) or 0.0)
            if attempt == self.max_retries or stop.is_set():
                break
            if (attempt + 1) % n_urls == 0:  # every URL tried in this turn: back off before the next
                turn = attempt // n_urls
                backoff = min(self.max_backoff_s, self.backoff_s * 2**turn) * (0.5 + random.random())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(backoff, wait))
                if stop.is_set():
                    break
                wait = 0.0
            self.retries += 1
        tries = attempt + 1
        return ChatResult(error=f"gave up after {tries} attempt{'s' * (tries > 1)}: {last}"
                          + ("" if tries > self.max_retries else " (not retried: the run had already failed)"))

    def _rest(self, url: str, retry_after: float) -> None:
        """No request starts at `url` for `max_backoff_s` (or its Retry-After, if longer): a replica
        that is down or overloaded would otherwise cost every n-th request a failed first attempt.
        After the rest one request tries it again; a success ends the rest."""
        if len(self.base_urls) > 1:
            self._rest_until[url] = time.monotonic() + max(self.max_backoff_s, retry_after)

    def _first_url(self, turn: int) -> int:
        """The index of the base URL a new request starts at: `turn`, or the next one in turn
        order that is not resting (`turn` itself when all are)."""
        n, now = len(self.base_urls), time.monotonic()
        for k in range(n):
            i = (turn + k) % n
            if self._rest_until.get(self.base_urls[i], 0.0) <= now:
                return i
        return turn

    @staticmethod
    def _parse(resp: httpx.Response, n: int = 1) -> ChatResult:
        """A 200 reply is an answer only if it has `n` choices, each with string content; anything
        else (`"choices": []`, a null `content`) is a failure: the cache stores answers only, so a
        failure is asked again on the next run instead of being served as an empty reply forever.
        An empty string is an answer (the model chose to say nothing; rejected as `empty`)."""
        try:
            data = resp.json()
            choices = data["choices"]
            if len(choices) < n:
                return ChatResult(error=f"malformed response: {len(choices)} choices, expected {n}")
            texts = [(c.get("message") or {}).get("content") for c in choices]
            if not all(isinstance(t, str) for t in texts):
                return ChatResult(error="malformed response: a choice has no message content")
            finish = [c.get("finish_reason") or "stop" for c in choices]
            usage = data.get("usage") or {}
            # token counts are bookkeeping: a server that reports them as null still answered
            return ChatResult(texts, finish, int(usage.get("prompt_tokens") or 0),
                              int(usage.get("completion_tokens") or 0))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return ChatResult(error=f"malformed response: {type(exc).__name__}")

    async def _run(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        queue: asyncio.Queue[ChatRequest] = asyncio.Queue()
        for r in requests:
            queue.put_nowait(r)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        stop = asyncio.Event()  # set once on_result asks to stop: no request starts or retries after it
        turn = 0  # the base URL the next request starts at: they take the URLs in turn
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s), limits=limits) as client:

            async def worker() -> None:
                nonlocal turn
                while not stop.is_set():
                    try:
                        req = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    start = self._first_url(turn)
                    turn = (start + 1) % len(self.base_urls)
                    if on_result(req, await self._call(client, start, req, stop)):
                        stop.set()

            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(requests)))))

    def generate(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        if requests:
            asyncio.run(self._run(requests, on_result))

    def close(self) -> None:
        pass
