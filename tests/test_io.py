"""Atomic writers never leave a partial target, and equal frames give equal bytes."""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

import polars as pl
import pytest

from tripleforge.hashing import key_of, normalize_text, text_id
from tripleforge.errors import UserError
from tripleforge.io import atomic_dir, atomic_text, check_output_paths, write_json, write_jsonl, write_parquet


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_text(target) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_parquet_bytes_are_deterministic(tmp_path: Path) -> None:
    df = pl.DataFrame({"a": ["x", "y"], "b": [[1.0], [2.0, 3.0]]})
    write_parquet(df, tmp_path / "a.parquet")
    write_parquet(df.clone(), tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert pl.read_parquet(tmp_path / "a.parquet").equals(df)


def test_json_and_jsonl(tmp_path: Path) -> None:
    write_json({"b": 1, "a": {"z": 2}}, tmp_path / "m.json")
    assert (tmp_path / "m.json").read_text().index('"a"') < (tmp_path / "m.json").read_text().index('"b"')
    n = write_jsonl([{"q": "Ünï"}, {"q": "x"}], tmp_path / "d" / "r.jsonl")
    lines = (tmp_path / "d" / "r.jsonl").read_text(encoding="utf-8").splitlines()
    assert n == 2 and json.loads(lines[0]) == {"q": "Ünï"} and "Ünï" in lines[0]


def test_text_id_ignores_whitespace_only() -> None:
    assert text_id("def f():\n    return 1") == text_id("def f():  \n  return 1 ")
    assert text_id("a b") != text_id("a c")
    assert normalize_text("  a\n\tb ") == "a b"
    assert key_of({"b": 1, "a": 2}) == key_of({"a": 2, "b": 1})


def test_outputs_get_the_umask_modes_not_mkstemps_0600(tmp_path: Path) -> None:
    """A trainer running as another user must be able to read what a stage wrote."""
    import os

    old = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "m.json")
        with atomic_dir(tmp_path / "d") as d:
            (d / "x.txt").write_text("x")
        os.umask(0o077)
        write_json({"a": 1}, tmp_path / "private.json")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600


def test_read_parquet_names_a_missing_file_and_a_directory(tmp_path: Path) -> None:
    from tripleforge.errors import UserError
    from tripleforge.io import read_parquet

    with pytest.raises(UserError, match=r"^triplets file not found: .*nope\.parquet$"):
        read_parquet(tmp_path / "nope.parquet", "triplets file")
    with pytest.raises(UserError, match=r"^triplets file is a directory, not a parquet file: "):
        read_parquet(tmp_path, "triplets file")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n{"b": "\xff"}\n', r":2: not valid UTF-8 \(byte 0xff at byte 8 of the line; save the file as UTF-8\)$"),
        (b'{"a": 1}\n\n{"id": ' + b"1" * 5000 + b"}\n",
         r":3: invalid JSON \(Exceeds the limit \(4300 digits\) for integer string conversion\)$"),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", r":1: invalid JSON \(nested too deeply\)$"),
        (b'{"a": 1}\n{"a": \n', r":2: invalid JSON \(Expecting value\)$"),
        (b"[1]\n", r":1: expected a JSON object$"),
    ],
)
def test_iter_jsonl_names_file_and_line_for_every_bad_line(tmp_path: Path, content: bytes, message: str) -> None:
    """Not UTF-8, an integer past Python's 4300-digit limit, deep nesting: once tracebacks."""
    from tripleforge.errors import UserError
    from tripleforge.io import iter_jsonl

    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}{message}"):
        list(iter_jsonl(path))


def test_iter_jsonl_skips_blank_lines_and_a_leading_bom(tmp_path: Path) -> None:
    from tripleforge.io import iter_jsonl

    path = tmp_path / "x.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n  \n{"b": "\xc3\xa9"}')
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (4, {"b": "é"})]
    # two BOM files joined with `cat`: the second BOM starts a line (sample once skipped it)
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\xef\xbb\xbf{"b": 2}\n')
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (2, {"b": 2})]


def test_a_killed_writers_temps_are_swept_by_the_next_write(tmp_path: Path) -> None:
    """A writer killed hard (SIGKILL) ran no cleanup: its half-written `.train.<random>` folder stayed
    in data/ (and `.evaluate_curves.*` in the git-tracked metrics/), one more per kill."""
    import subprocess
    import sys

    from tripleforge.io import atomic_dir, atomic_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    live = str(os.getppid())
    stale_file = tmp_path / f".out.json.{dead}.k3j2.tmp"
    stale_dir = tmp_path / f".train.{dead}.a8d1.tmp"
    other_file = tmp_path / f".out.json.{live}.zz.tmp"  # a running writer's: left alone
    stale_file.write_text("{")
    stale_dir.mkdir()
    (stale_dir / "part.jsonl").write_text('{"q"')
    other_file.write_text("")
    with atomic_path(tmp_path / "out.json") as tmp:
        assert tmp.name.startswith(f".out.json.{os.getpid()}.") and tmp.name.endswith(".tmp")
        tmp.write_text("{}")
    assert not stale_file.exists() and other_file.exists() and stale_dir.exists()
    with atomic_dir(tmp_path / "train") as d:
        (d / "a.jsonl").write_text("{}\n")
    assert not stale_dir.exists() and (tmp_path / "train" / "a.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other_file.name, "out.json", "train"])


def test_check_output_paths_names_an_output_that_cannot_be_written(tmp_path):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir").mkdir()
    check_output_paths([tmp_path / "new" / "deeper" / "out.parquet", tmp_path / "a_file"], [tmp_path / "a_dir"])
    cases = [
        (([tmp_path / "a_file" / "m.json"], []), "'.*a_file' is a file"),
        (([tmp_path / "a_dir"], []), "it is a folder"),
        (([], [tmp_path / "a_file"]), "it is a file, and a folder goes here"),
    ]
    for (files, folders), why in cases:
        with pytest.raises(UserError, match=f"cannot write this output: {why}"):
            check_output_paths(files, folders)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="is a broken link"):
        check_output_paths([tmp_path / "dangling" / "out.json"])
    with pytest.raises(UserError, match="dangling: cannot write this output: it is a broken link"):
        check_output_paths([tmp_path / "dangling"])
    (tmp_path / "dir_link").symlink_to(tmp_path / "a_dir")  # a folder output is replaced whole: not through a link
    with pytest.raises(UserError, match="it is a symbolic link; give the folder itself"):
        check_output_paths([], [tmp_path / "dir_link"])
    (tmp_path / "file_link").symlink_to(tmp_path / "a_file")
    check_output_paths([tmp_path / "file_link"])  # a file output through a link is replaced, as any file
    with pytest.raises(UserError, match="its name is too long"):
        check_output_paths([tmp_path / ("a" * 240 + ".parquet")])
