"""Opening the SQLite files of the embedding and LLM caches (WAL mode, shared by processes)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tripleforge.errors import UserError


def unreadable_database(exc: sqlite3.DatabaseError) -> bool:
    """Whether `exc` says a SQLite file is not a database or a damaged one, the cases where deleting
    a cache file is the way out (not busy, locked or read-only, where it would be the wrong advice)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)


def open_cache_db(path: Path, schema: str, way_out: str, **connect: Any) -> sqlite3.Connection:
    """A connection to the cache at `path` (created with its parents when missing), in WAL mode with
    `schema` applied. A file SQLite cannot read as a database (random bytes, a truncated or damaged
    one) is a one-line UserError naming it and `way_out` (the params key or environment variable
    that moves the cache); the file is left as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=60, check_same_thread=False, **connect)
    # connect() does not read the file: a bad one only fails at the first statement
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(schema)
        conn.commit()
    except sqlite3.DatabaseError as exc:
        conn.close()
        if not unreadable_database(exc):
            raise
        raise UserError(f"{path}: not a readable SQLite cache ({exc}); delete it (the cache only saves work) "
                        f"or point {way_out} elsewhere") from None
    return conn
