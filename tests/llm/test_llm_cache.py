"""SQLite WAL response cache: durable answers, failures recorded but never served."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tripleforge.errors import UserError
from tripleforge.llm.base import ChatResult
from tripleforge.llm.cache import LLM_CACHE_ENV, ResponseCache, default_cache_path


def test_put_get_roundtrip_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    c = ResponseCache(path)
    assert c.get("k") is None
    c.put("k", ChatResult(["héllo"], ["stop"], 12, 3))
    # a second connection (another process would behave the same) sees the committed row at once
    other = ResponseCache(path)
    got = other.get("k")
    assert got is not None and got.texts == ["héllo"] and got.finish_reasons == ["stop"]
    assert (got.tokens_in, got.tokens_out) == (12, 3)
    assert other.count() == 1
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    c.close()
    other.close()


def test_failures_are_recorded_not_served_and_cleared_on_success(tmp_path: Path) -> None:
    c = ResponseCache(tmp_path / "c.sqlite")
    c.put("k", ChatResult(error="HTTP 503"))
    c.put("k", ChatResult(error="HTTP 503"))
    assert c.get("k") is None and c.failure_count() == 1 and c.count() == 0
    attempts = c._db.execute("SELECT attempts FROM failures").fetchone()[0]
    assert attempts == 2
    c.put("k", ChatResult(["ok"], ["stop"], 1, 1))
    assert c.get("k") is not None and c.failure_count() == 0


def test_cache_location_precedence(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(LLM_CACHE_ENV, str(tmp_path / "env"))
    assert default_cache_path() == tmp_path / "env" / "responses.sqlite"
    assert default_cache_path(str(tmp_path / "p")) == tmp_path / "p" / "responses.sqlite"
    monkeypatch.delenv(LLM_CACHE_ENV)
    monkeypatch.setenv("TRIPLEFORGE_CACHE_DIR", str(tmp_path / "root"))
    assert default_cache_path() == tmp_path / "root" / "llm" / "responses.sqlite"


def test_cache_dir_that_cannot_be_created_names_its_key_or_variable(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A file where the cache directory should be was a FileExistsError traceback."""
    afile = tmp_path / "afile.jsonl"
    afile.write_text("{}\n")
    with pytest.raises(UserError, match=r"^params.yaml: generate.cache_dir: '.*afile.jsonl' cannot be created as a "
                                        r"cache directory \(a file of that name is in the way\)$"):
        default_cache_path(str(afile))
    with pytest.raises(UserError, match=r"^params.yaml: generate.cache_dir: .*\(Not a directory"):
        default_cache_path(str(afile / "sub"))
    monkeypatch.setenv(LLM_CACHE_ENV, str(afile))
    with pytest.raises(UserError, match=r"^\$TRIPLEFORGE_LLM_CACHE: '.*afile.jsonl' cannot be created"):
        default_cache_path()
    monkeypatch.delenv(LLM_CACHE_ENV)
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "llm").write_text("")
    monkeypatch.setenv("TRIPLEFORGE_CACHE_DIR", str(tmp_path / "root"))
    with pytest.raises(UserError, match=r"^\$TRIPLEFORGE_CACHE_DIR: '.*root/llm' cannot be created"):
        default_cache_path()


def test_the_first_answer_stored_wins(tmp_path: Path) -> None:
    """Two runs sharing the cache may ask the same question; the later answer once replaced the
    first, so the run that finished first had outputs no later run could reproduce."""
    first, second = ResponseCache(tmp_path / "c.sqlite"), ResponseCache(tmp_path / "c.sqlite")  # two processes
    a, b = ChatResult(["first"], ["stop"], 1, 1), ChatResult(["second"], ["stop"], 2, 2)
    assert first.put("k", a) == a
    assert second.put("k", b) == a and first.get("k") == a
    # an empty reply stored by an older version is no answer: replaced
    first._db.execute("INSERT INTO responses VALUES ('old', '[]', '[]', 0, 0, 0)")
    assert first.put("old", b) == b and second.put("old", a) == b
    assert first.put("bad", ChatResult(error="HTTP 500")) is None

