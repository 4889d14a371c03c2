"""Crash-safe, content-addressed LLM response cache in SQLite (WAL mode).

Key = sha256 of (model fingerprint, full messages, sampling params incl. seed and n, prompt
version). Each answer is committed as soon as it arrives, so a killed run loses only requests in
flight. Failures are recorded (for inspection) but never served: the next run retries them.
QC verdicts are ordinary chat answers and are cached the same way.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tripleforge.cache_db import open_cache_db
from tripleforge.claims import Claims
from tripleforge.hashing import key_of
from tripleforge.llm.base import ChatResult, Sampling
from tripleforge.params import PARAMS_LABEL
from tripleforge.paths import CACHE_ENV, ensure_dir, locate_cache_root

LLM_CACHE_ENV = "TRIPLEFORGE_LLM_CACHE"


def default_cache_path(override: str | None = None, key: str = "generate.cache_dir") -> Path:
    """params `cache_dir` > $TRIPLEFORGE_LLM_CACHE (dir) > `<cache_root()>/llm`; file `responses.sqlite`.

    The directory is created; one that cannot be is a UserError naming `key` (the params key of
    `override`; generate is the one stage with an LLM cache) or the environment variable it came from."""
    if override:
        return ensure_dir(Path(override).expanduser(), f"{PARAMS_LABEL}{key}") / "responses.sqlite"
    if os.environ.get(LLM_CACHE_ENV):
        return ensure_dir(Path(os.environ[LLM_CACHE_ENV]).expanduser(), f"${LLM_CACHE_ENV}") / "responses.sqlite"
    root, source = locate_cache_root(None, key)
    return ensure_dir(ensure_dir(root, source) / "llm", source) / "responses.sqlite"


def request_key(fingerprint: str, messages: list[dict[str, str]], sampling: Sampling, prompt_version: str) -> str:
    return key_of("llm-response-v1", fingerprint, messages, sampling.as_dict(), prompt_version)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    texts TEXT NOT NULL,
    finish TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    updated REAL NOT NULL
);
"""


class ResponseCache:
    def __init__(self, path: str | Path, key: str = "generate.cache_dir"):
        """Open (or create) the cache at `path`. A file there that SQLite cannot read as a database
        (random bytes, a truncated or damaged one) is a one-line UserError naming the file and, as
        the way out, params key `key` and the environment variables; the file is left as it is."""
        self.path = Path(path)
        self._way_out = f"{key}, ${LLM_CACHE_ENV} or ${CACHE_ENV}"
        # autocommit mode: every put is its own transaction, durable once it returns.
        self._db = open_cache_db(self.path, _SCHEMA, self._way_out, isolation_level=None)
        self._claims: Claims | None = None

    @property
    def claims(self) -> Claims:
        """This run's claims on the requests it is paying for (see `tripleforge.claims`), made
        on first use: only a run that sends requests beats."""
        if self._claims is None:
            self._claims = Claims(self.path, self._way_out)
        return self._claims

    def get(self, key: str) -> ChatResult | None:
        row = self._db.execute(
            "SELECT texts, finish, tokens_in, tokens_out FROM responses WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        texts = json.loads(row[0])
        if not texts:  # an empty reply stored by an older version: not an answer, ask again
            return None
        return ChatResult(texts, json.loads(row[1]), int(row[2]), int(row[3]))

    def put(self, key: str, result: ChatResult) -> ChatResult | None:
        """Store `result`; for an answer, return the answer the cache holds for `key` afterwards,
        which is the first one stored: two runs sharing the cache (`dvc queue start -j 2`) may
        both ask a question, and a later answer replacing the first would leave the run that
        finished first with outputs no later run reproduces. (An empty reply stored by an older
        version is no answer and is replaced.) None for a failure."""
        if result.ok:
            self._db.execute(
                "INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "texts = excluded.texts, finish = excluded.finish, tokens_in = excluded.tokens_in, "
                "tokens_out = excluded.tokens_out, created = excluded.created WHERE responses.texts = '[]'",
                (key, json.dumps(result.texts, ensure_ascii=False), json.dumps(result.finish_reasons),
                 result.tokens_in, result.tokens_out, time.time()),
            )
            self._db.execute("DELETE FROM failures WHERE key = ?", (key,))
            return self.get(key)
        else:
            self._db.execute(
                "INSERT INTO failures VALUES (?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET "
                "error = excluded.error, attempts = attempts + 1, updated = excluded.updated",
                (key, (result.error or "")[:500], time.time()),
            )
            return None

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def failure_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM failures").fetchone()[0])

    def close(self) -> None:
        if self._claims is not None:
            self._claims.close()
            self._claims = None
        self._db.close()
