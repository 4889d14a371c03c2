"""A cache file that SQLite cannot read: a one-line error naming it, never a traceback."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from test_stage import _error, _inputs

from tripleforge.embed_cache import EmbeddingCache
from tripleforge.errors import UserError

# random bytes, and a file cut off after the 16-byte SQLite header (the real one, or one written by echo)
BAD_FILES = {"random": random.Random(0).randbytes(100_000), "header_only": b"SQLite format 3\x00",
             "header_echoed": b"SQLite format 3\n"}


@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_unreadable_cache_file_is_a_user_error_naming_it(tmp_path: Path, content: bytes) -> None:
    """Was `sqlite3.DatabaseError: file is not a database` from the first PRAGMA (a traceback, exit 1)."""
    db = tmp_path / "embeddings.sqlite"
    db.write_bytes(content)
    start = re.escape(f"{db}: not a readable SQLite cache (file is not a database); delete it "
                      "(the cache only saves work)")
    with pytest.raises(UserError, match=rf"^{start} or point pair_similar.cache_dir or "
                                        r"\$TRIPLEFORGE_CACHE_DIR elsewhere$"):
        EmbeddingCache(db, "pair_similar.cache_dir")
    assert db.read_bytes() == content  # the user's file is left alone
    with pytest.raises(UserError, match=r"^\S+embeddings.sqlite: not a readable SQLite cache .* mine_negatives"):
        EmbeddingCache.open_default(str(tmp_path), "mine_negatives.cache_dir")


def test_damaged_cache_file_is_a_user_error(tmp_path: Path) -> None:
    db = tmp_path / "embeddings.sqlite"
    EmbeddingCache(db).close()
    data = bytearray(db.read_bytes())
    data[100:400] = b"\xff" * 300  # the schema page, just after the file header
    db.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"not a readable SQLite cache \(database disk image is malformed\)"):
        EmbeddingCache(db)


def test_stage_with_unreadable_cache_exits_2_with_one_line(tmp_path: Path) -> None:
    _inputs(tmp_path)
    db = tmp_path / "cache" / "embeddings.sqlite"
    db.parent.mkdir()
    db.write_bytes(BAD_FILES["header_only"])
    assert _error(tmp_path, "mine_negatives") == (
        f"{db}: not a readable SQLite cache (file is not a database); delete it (the cache only saves work) or "
        "point mine_negatives.cache_dir or $TRIPLEFORGE_CACHE_DIR elsewhere")
