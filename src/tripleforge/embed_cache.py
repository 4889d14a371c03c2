"""Crash-safe embedding cache: one SQLite file (WAL mode) under the tripleforge cache root.

Rows are keyed by (`config_key`, `text_key`): the config key covers the model fingerprint,
pooling, max length, dtype and quantization; the text key is the sha256 of the exact string fed
to the model (instruction included). So a text is never encoded twice by the same configuration,
whichever stage or run asks. Each write batch is one transaction, so an interrupted run keeps
every finished batch and never leaves a torn row. Vectors are float32 blobs with their dimension;
a row whose dimension or byte length disagrees with the configuration's dimension, or which holds
NaN, is treated as a miss (re-encoded and overwritten) and counted (`CacheStats.rejected`, said on
stderr; not in the stage metrics, which must not depend on what the cache held).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tripleforge.cache_db import open_cache_db
from tripleforge.paths import CACHE_ENV, cache_root

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    config_key TEXT NOT NULL,
    text_key   TEXT NOT NULL,
    dim        INTEGER NOT NULL,
    vec        BLOB NOT NULL,
    PRIMARY KEY (config_key, text_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS configs (
    config_key  TEXT PRIMARY KEY,
    dim         INTEGER NOT NULL,
    description TEXT NOT NULL
);
"""

# SQLite's default limit on bound parameters is 999 on old builds; stay under it.
_IN_CHUNK = 900


@dataclass
class CacheStats:
    """Counters for one lookup: hits, misses, and rows rejected as corrupt (wrong dim / NaN)."""

    hits: int = 0
    misses: int = 0
    rejected: int = 0
    rejected_keys: list[str] = field(default_factory=list)


# |v|^2 of a stored vector may differ from 1 by float32 rounding (about 1e-6 at 4k dimensions)
_UNIT_TOLERANCE = 1e-3


class EmbeddingCache:
    """`get_many` / `put_many` over a SQLite file; safe for several processes (WAL + busy timeout)."""

    def __init__(self, path: str | Path, key: str = "cache_dir") -> None:
        """Open (or create) the cache at `path`. A file there that SQLite cannot read as a database
        (random bytes, a truncated or damaged one) is a one-line UserError naming the file and, as
        the way out, params key `key` and $TRIPLEFORGE_CACHE_DIR; the file is left as it is."""
        self.path = Path(path)
        self._lock = threading.Lock()
        self.way_out = f"{key} or ${CACHE_ENV}"  # what moves the cache, for errors on its file
        self._conn = open_cache_db(self.path, _SCHEMA, self.way_out)

    @classmethod
    def open_default(cls, cache_dir: str | None = None, key: str = "cache_dir") -> EmbeddingCache:
        """The cache in `cache_dir` (the value of params key `key`, e.g. `pair_similar.cache_dir`),
        else in the default root (see `paths.cache_root`); a root that cannot be created, or a cache
        file there that is not a database, is a UserError naming `key` and/or the environment variable."""
        return cls(cache_root(cache_dir, key) / "embeddings.sqlite", key)

    def close(self) -> None:
        self._conn.close()

    def config_dim(self, config_key: str) -> int | None:
        row = self._conn.execute("SELECT dim FROM configs WHERE config_key=?", (config_key,)).fetchone()
        return None if row is None else int(row[0])

    def set_config_dim(self, config_key: str, dim: int, description: str) -> None:
        """Record the dimension of a configuration; a changed dimension wins (old rows get rejected)."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO configs(config_key, dim, description) VALUES (?,?,?) "
                "ON CONFLICT(config_key) DO UPDATE SET dim=excluded.dim, description=excluded.description",
                (config_key, int(dim), description),
            )

    def get_many(self, config_key: str, text_keys: Sequence[str], dim: int | None) -> tuple[dict[str, np.ndarray], CacheStats]:
        """Vectors found for `text_keys`. Rejected (re-encoded by the caller): with `dim` given, rows
        of another dimension; rows with a NaN or infinity; rows not of unit length, since every
        vector the encoders store is L2-normalized (an all-zero row would score 0 against every
        query and hand out wrong neighbours without a word)."""
        found: dict[str, np.ndarray] = {}
        stats = CacheStats()
        unique = list(dict.fromkeys(text_keys))
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT text_key, dim, vec FROM embeddings WHERE config_key=? AND text_key IN ({marks})",
                (config_key, *chunk),
            ).fetchall()
            for key, row_dim, blob in rows:
                ok = (dim is None or row_dim == dim) and len(blob) == 4 * row_dim
                vec = np.frombuffer(blob, dtype=np.float32) if ok else None
                if vec is None or not np.isfinite(vec).all() or abs(float(vec @ vec) - 1.0) > _UNIT_TOLERANCE:
                    stats.rejected += 1
                    stats.rejected_keys.append(key)
                    continue
                found[key] = vec
        stats.hits = len(found)
        stats.misses = len(unique) - len(found)
        return found, stats

    def put_many(self, config_key: str, items: Iterable[tuple[str, np.ndarray]]) -> int:
        """Insert or replace vectors in one transaction; returns the number written."""
        rows = []
        for key, vec in items:
            v = np.ascontiguousarray(vec, dtype=np.float32)
            rows.append((config_key, key, int(v.shape[0]), v.tobytes()))
        if not rows:
            return 0
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO embeddings(config_key, text_key, dim, vec) VALUES (?,?,?,?)", rows
            )
        return len(rows)

    def count(self, config_key: str | None = None) -> int:
        if config_key is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
        return int(
            self._conn.execute("SELECT COUNT(*) FROM embeddings WHERE config_key=?", (config_key,)).fetchone()[0]
        )
