"""Claims on work shared through a cache file: which run is computing which key right now.

Two runs sharing a cache (`dvc queue start -j 2` over experiments with the same generate settings)
find the same answers missing and go through them in the same order. Asking the cache again
between slices never helps them: neither is ahead of the other, so both paid for every request.
A run therefore claims a slice's keys before paying for them, skips the keys another live run
holds, and comes back to those at the end, when they are answered (and served from the cache) or
their run has died (and they are taken over).

A run is live while it beats: a thread updates its row every BEAT_S seconds, so a slice that
takes minutes (vLLM's) keeps its claims. A run that stopped beating more than STALE_S ago (killed,
its machine gone) holds nothing. The tables live in the cache's own SQLite file, which every run
sharing the cache opens.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from tripleforge.cache_db import open_cache_db

BEAT_S = 5.0
STALE_S = 30.0
# while waiting for keys another run holds: how often to look again
POLL_S = 0.5
_CHUNK = 500  # SQLite's host parameters per statement stay well below its limit

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claim_owners (owner TEXT PRIMARY KEY, beat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL);
"""


class Claims:
    """This run's claims on the keys of the cache at `path` (`way_out`: what moves the cache, for
    the error on an unreadable file). Close it, or its claims last until it is stale."""

    def __init__(self, path: Path, way_out: str) -> None:
        self.path = path
        self.owner = uuid.uuid4().hex
        self._db = open_cache_db(path, _SCHEMA, way_out, isolation_level=None)
        self._lock = threading.Lock()  # the beat and the claims share the connection
        self._beat()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beating, name="claims-beat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        with self._lock:
            self._db.execute("INSERT INTO claim_owners VALUES (?, ?) ON CONFLICT(owner) DO UPDATE SET beat = excluded.beat",
                             (self.owner, time.time()))

    def _beating(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                self._beat()
            except sqlite3.Error:  # a busy file: the next beat comes well before the claims go stale
                pass

    def take(self, keys: Sequence[str]) -> tuple[list[str], list[str]]:
        """(the keys of `keys` this run now holds, those another live run holds), each in the order
        of `keys`. Claims of stale runs are dropped first."""
        if not keys:
            return [], []
        held: set[str] = set()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # one run at a time: a key gets one owner
            try:
                self._db.execute("DELETE FROM claim_owners WHERE beat < ?", (time.time() - STALE_S,))
                self._db.execute("DELETE FROM claims WHERE owner NOT IN (SELECT owner FROM claim_owners)")
                self._db.executemany("INSERT OR IGNORE INTO claims VALUES (?, ?)", [(k, self.owner) for k in keys])
                for i in range(0, len(keys), _CHUNK):
                    part = list(keys[i:i + _CHUNK])
                    marks = ",".join("?" * len(part))
                    held.update(k for (k,) in self._db.execute(
                        f"SELECT key FROM claims WHERE owner != ? AND key IN ({marks})", (self.owner, *part)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [k for k in keys if k not in held], [k for k in keys if k in held]

    def release(self, keys: Sequence[str]) -> None:
        """Give up this run's claims on `keys` (answered, or failed: another run may try again)."""
        with self._lock:
            for i in range(0, len(keys), _CHUNK):
                part = list(keys[i:i + _CHUNK])
                self._db.execute(f"DELETE FROM claims WHERE owner = ? AND key IN ({','.join('?' * len(part))})",
                                 (self.owner, *part))

    def close(self) -> None:
        """Stop beating and give up every claim of this run."""
        self._stop.set()
        self._thread.join()
        with self._lock:
            try:
                self._db.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))
                self._db.execute("DELETE FROM claim_owners WHERE owner = ?", (self.owner,))
            finally:
                self._db.close()


def claimed_slices(claims: Claims, items: Sequence[T], key: Callable[[T], str], step: int) -> Iterator[list[T]]:
    """`items` in slices of `step`, each cut to the items this run now holds the claims of; the
    items another live run held come back at the end, until they are free (that run answered
    them, failed or died) or the run holding them finishes (waiting `POLL_S` between looks). Each
    slice's claims are let go when the consumer asks for the next slice, stops or fails, so the
    consumer must store its results before: another run that then takes a key reads the cache
    first. The consumer should read the cache for a slice's items too: a run may have finished
    one between our reading the cache and our claim."""
    held: list[T] = []
    at = 0
    while at < len(items) or held:
        if at < len(items):
            part, at = list(items[at : at + step]), at + step
        else:
            part, held = held, []
        mine, theirs = claims.take([key(x) for x in part])
        taken = set(theirs)
        held += [x for x in part if key(x) in taken]
        try:
            part = [x for x in part if key(x) not in taken]
            if part:
                yield part
            elif held and at >= len(items):
                time.sleep(POLL_S)
        finally:
            claims.release(mine)
