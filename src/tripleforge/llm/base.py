"""One interface for every backend: a batch of chat requests in, texts + token usage out.

Backends call `on_result` as each request completes, so the caller can commit the answer to the
response cache immediately (a run killed mid-batch loses at most the requests in flight). When
`on_result` returns True the caller has seen enough (too many failures): the backend starts no
further request, lets the ones already started finish (reporting each), and returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    n: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChatRequest:
    key: str                              # cache key (see `cache.request_key`)
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs; hashable
    sampling: Sampling

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass
class ChatResult:
    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    error: str | None = None               # set when the request failed (not cached as an answer)

    @property
    def ok(self) -> bool:
        return self.error is None


# Called once per finished request; returns True to ask the backend to start no further request.
OnResult = Callable[[ChatRequest, ChatResult], bool | None]


class Backend(Protocol):
    name: str

    def fingerprint(self) -> str:
        """Identifies the model and engine (part of every cache key). Never contains secrets."""

    def generate(self, requests: list[ChatRequest], on_result: OnResult) -> None:
        """Answer every request, calling `on_result` once per request as it completes. Once
        `on_result` has returned True, start no new request: those already started finish and are
        reported, the rest get no `on_result` call (the caller counts them as not sent)."""

    def close(self) -> None: ...
