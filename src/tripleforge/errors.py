"""The one exception type that reaches users as a clean one-line message."""

import sqlite3


class UserError(Exception):
    """Bad input or bad params: printed as one line (no traceback) and the stage exits non-zero.

    The message must name what is wrong and where: a file and line, or a params key.
    """

    exit_code = 2


def unreadable_database(exc: sqlite3.DatabaseError) -> bool:
    """Whether `exc` says a SQLite file is not a database or a damaged one, the cases where deleting
    a cache file is the way out (not busy, locked or read-only, where it would be the wrong advice)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)
