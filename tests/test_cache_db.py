"""A cache file that SQLite cannot read (tripleforge.cache_db): a one-line error naming it and the
way to move the cache, never a traceback; the file itself is left alone."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from test_generate_stage import setup, stage
from test_stage import _error, _inputs

from tripleforge.embed_cache import EmbeddingCache
from tripleforge.errors import UserError
from tripleforge.llm.cache import ResponseCache

# random bytes, and a file cut off after the 16-byte SQLite header (the real one, or one written by echo)
BAD_FILES = {"random": random.Random(0).randbytes(100_000), "header_only": b"SQLite format 3\x00",
             "header_echoed": b"SQLite format 3\n"}
# each cache, opened at a path, with the way out its message names
CACHES = {
    "embeddings": (lambda p: EmbeddingCache(p, "pair_similar.cache_dir"),
                   "pair_similar.cache_dir or $TRIPLEFORGE_CACHE_DIR"),
    "llm": (ResponseCache, "generate.cache_dir, $TRIPLEFORGE_LLM_CACHE or $TRIPLEFORGE_CACHE_DIR"),
}


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_unreadable_cache_file_is_a_user_error_naming_it(tmp_path: Path, cache: str, content: bytes) -> None:
    """Was `sqlite3.DatabaseError: file is not a database` from the first PRAGMA (a traceback, exit 1)."""
    open_cache, way_out = CACHES[cache]
    db = tmp_path / "cache.sqlite"
    db.write_bytes(content)
    with pytest.raises(UserError, match="^" + re.escape(
            f"{db}: not a readable SQLite cache (file is not a database); delete it (the cache only saves work) "
            f"or point {way_out} elsewhere") + "$"):
        open_cache(db)
    assert db.read_bytes() == content


@pytest.mark.parametrize("cache", CACHES)
def test_damaged_cache_file_is_a_user_error(tmp_path: Path, cache: str) -> None:
    open_cache, _ = CACHES[cache]
    db = tmp_path / "cache.sqlite"
    open_cache(db).close()
    data = bytearray(db.read_bytes())
    data[100:400] = b"\xff" * 300  # the schema page, just after the file header
    db.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"not a readable SQLite cache \(database disk image is malformed\)"):
        open_cache(db)


def test_default_embedding_cache_names_the_stage_key(tmp_path: Path) -> None:
    (tmp_path / "embeddings.sqlite").write_bytes(BAD_FILES["random"])
    with pytest.raises(UserError, match=r"^\S+embeddings.sqlite: not a readable SQLite cache .* mine_negatives"):
        EmbeddingCache.open_default(str(tmp_path), "mine_negatives.cache_dir")


def test_mine_negatives_with_unreadable_cache_exits_2_with_one_line(tmp_path: Path) -> None:
    _inputs(tmp_path)
    db = tmp_path / "cache" / "embeddings.sqlite"
    db.parent.mkdir()
    db.write_bytes(BAD_FILES["header_only"])
    assert _error(tmp_path, "mine_negatives") == (
        f"{db}: not a readable SQLite cache (file is not a database); delete it (the cache only saves work) or "
        "point mine_negatives.cache_dir or $TRIPLEFORGE_CACHE_DIR elsewhere")


def test_generate_with_unreadable_cache_exits_2_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "llm-cache" / "responses.sqlite"
    db.parent.mkdir()
    db.write_bytes(BAD_FILES["random"])
    setup(tmp_path, tasks=["code_context_retrieval"], cache_dir=str(db.parent))  # no LLM: fast
    proc = stage(tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: {db}: not a readable SQLite cache (file is not a database); delete it (the cache only saves work) "
        "or point generate.cache_dir, $TRIPLEFORGE_LLM_CACHE or $TRIPLEFORGE_CACHE_DIR elsewhere"), proc.stderr
    assert not (tmp_path / "data" / "generated").exists() and not (tmp_path / "metrics").exists()
