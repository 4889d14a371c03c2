"""Cache roots: where they are, and what is said about them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripleforge.paths import cache_root


def test_a_relative_cache_dir_is_warned_about_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A relative cache lives in the working copy: queued and --temp experiments got an empty one
    and deleted it, paying every embedding again, without a word."""
    monkeypatch.chdir(tmp_path)
    assert cache_root("rel-cache", "pair_similar.cache_dir") == Path("rel-cache")
    cache_root("rel-cache", "pair_similar.cache_dir")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: pair_similar.cache_dir: the cache directory 'rel-cache' is "
                                               "relative") and "give an absolute path" in err[0]
    cache_root(str(tmp_path / "abs"), "pair_similar.cache_dir")
    assert capsys.readouterr().err == ""
