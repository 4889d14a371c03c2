"""Atomic, deterministic writers. A reader never sees a half-written output: write a temp file
in the same directory, fsync, then rename over the target."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import polars as pl

from tripleforge.errors import UserError


def _umask() -> int:
    """The process umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_prefix(target: Path) -> str:
    """`.<name>.<pid>.`: temps of `target` name their writer, so a later run can tell a dead
    writer's leftovers from a live one's."""
    return f".{target.name}.{os.getpid()}."


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_dead_temps(target: Path) -> int:
    """Remove the temp files and folders of `target` (`.<name>.<pid>.<random>.tmp` siblings) whose
    writer no longer runs; returns how many. A writer killed hard (SIGKILL, OOM, power) runs no
    cleanup, and its half-written temp stayed in the worktree, visible to `git status` and
    `git add -A`, one more per kill."""
    removed = 0
    start = len(target.name) + 2
    for p in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        pid = p.name[start:].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _running(int(pid)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed


# A file name's limit on common file systems, and what mkstemp/mkdtemp add after the prefix
# (8 random characters and ".tmp")
_NAME_MAX = 255
_TEMP_SUFFIX_BYTES = 12


def _why_not_writable(path: Path, is_dir: bool) -> str | None:
    """Why an output cannot be written at `path` (None when it can, as far as can be told
    without writing): the path is a folder where a file goes or the reverse, a link where a
    folder goes or a broken one, a name too long for the temp file written beside it, a parent
    on the way is a file or a broken link, or the nearest existing parent is not writable."""
    if path.is_symlink() and (is_dir or not path.exists()):
        # a folder output is replaced whole (`atomic_dir`), which a link would not survive
        return "it is a symbolic link; give the folder itself" if path.exists() else "it is a broken link"
    if path.is_dir() and not is_dir:
        return "it is a folder"
    if path.exists() and is_dir and not path.is_dir():
        return "it is a file, and a folder goes here"
    if len(_temp_prefix(path).encode()) + _TEMP_SUFFIX_BYTES > _NAME_MAX:
        return f"its name is too long ({len(path.name.encode())} bytes; the temporary file next to it needs " \
               f"{len(_temp_prefix(path).encode()) + _TEMP_SUFFIX_BYTES - len(path.name.encode())} more, of {_NAME_MAX})"
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():  # a link to nowhere: mkdir would fail on it
            return f"'{parent}' is a broken link"
        parent = parent.parent
    if not parent.is_dir():
        return f"'{parent}' is a file"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"no permission to write in '{parent}'"
    return None


def check_output_paths(files: Iterable[str | os.PathLike[str]] = (),
                       folders: Iterable[str | os.PathLike[str]] = ()) -> None:
    """A `UserError` naming the first output that cannot be written. Stages call it before any
    work: a write failing after the first output was replaced would leave a mixed output set
    (and minutes of work lost)."""
    for path, is_dir in [*((Path(f), False) for f in files), *((Path(d), True) for d in folders)]:
        why = _why_not_writable(path, is_dir)
        if why is not None:
            raise UserError(f"{path}: cannot write this output: {why}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success rename it over `path`, on error remove it
    (and remove what writers killed before cleanup left, `sweep_dead_temps`)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_dead_temps(target)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are read by trainers as other users
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temp directory next to `path`; on success it replaces `path` whole (no stale
    files from an earlier run survive), on error it is removed and `path` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_dead_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())
    old = target.with_name(f".{target.name}.old")
    try:
        yield tmp
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextlib.contextmanager
def atomic_text(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        yield fh


def write_parquet(df: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Parquet with fixed settings so equal frames give equal bytes (no statistics timestamps)."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd", compression_level=3, statistics=True)


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Pretty, key-sorted JSON (metrics files are diffed by `dvc metrics diff` and by humans)."""
    with atomic_text(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
        fh.write("\n")


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    """One compact JSON object per line, UTF-8 unescaped; returns the number of rows."""
    n = 0
    with atomic_text(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")
            n += 1
    return n


# What reading a Parquet file may raise on a bad or unsupported file: Polars panics (pyo3's
# PanicException, a BaseException, not an Exception) on some valid files, e.g. a list_view column.
PARQUET_READ_ERRORS: tuple[type[BaseException], ...] = (Exception, pl.exceptions.PanicException)


def read_parquet(path: str | os.PathLike[str], what: str = "input", hint: str = "") -> pl.DataFrame:
    """Read a stage input, or fail with one line naming the file (missing, truncated or foreign)."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} is a directory, not a parquet file: {p}")
    if not p.is_file():
        raise UserError(f"{what} not found: {p}{f' ({hint})' if hint else ''}")
    try:
        return pl.read_parquet(p)
    except PARQUET_READ_ERRORS as exc:  # any reader failure is a bad input file
        raise UserError(f"{p}: not a readable parquet file ({type(exc).__name__})") from None


def require_columns(df: pl.DataFrame, needed: Iterable[str], name: str, expected: str = "") -> None:
    """A UserError naming `name` and every column of `needed` that `df` lacks (`expected`: what
    the input should have been, for the message)."""
    missing = [c for c in needed if c not in df.columns]
    if missing:
        what = f" (expected {expected})" if expected else f" (has: {', '.join(df.columns)})"
        raise UserError(f"{name}: missing column(s) {', '.join(missing)}{what}")


def check_dtypes(df: pl.DataFrame, expected: dict[str, pl.DataType], name: str) -> pl.DataFrame:
    """`df` with the `expected` columns it has; an all-null column (dtype Null, or List(Null) for
    lists) is cast to the expected type, any other mismatch is a UserError naming `name` and the column."""
    casts = []
    for col, want in expected.items():
        if col not in df.columns or df.schema[col] == want:
            continue
        got = df.schema[col]
        if got == pl.Null or (isinstance(want, pl.List) and got == pl.List(pl.Null)):
            casts.append(pl.col(col).cast(want))
            continue
        raise UserError(f"{name}: column '{col}' has type {got}, expected {want}")
    return df.with_columns(casts) if casts else df


def is_blank(e: pl.Expr) -> pl.Expr:
    """An empty or whitespace-only string, by Python's whitespace, as `hashing.normalize_text`
    has it (Rust's, which ``str.strip_chars`` uses, leaves out the separators U+001C-U+001F, so a
    text of those would pass as not blank and normalize to ""). The anchored regex stops at the
    first other character and allocates nothing, where ``str.strip_chars() == ""`` copies every text."""
    return e.str.contains(r"^[\s\x1c-\x1f]*$")


def drop_blank_text(df: pl.DataFrame, column: str = "text") -> tuple[pl.DataFrame, int]:
    """(`df` without rows whose `column` is null or only whitespace, how many were dropped)."""
    kept = df.filter(pl.col(column).is_not_null() & ~is_blank(pl.col(column)))
    return kept, df.height - kept.height


def utf8_problem(raw: bytes) -> str | None:
    """Why one line of bytes is not UTF-8 (which byte, where), or None when it is."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line; save the file "
                f"as UTF-8)")
    return None


def text_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 text file, line ends kept; a UTF-8 BOM at the
    start of a line is dropped (it is no part of a header or record; past line 1 it comes from
    files joined with `cat`); a line that is not UTF-8 stops the read with `file:line: reason`
    (read as bytes, so it is named, not a traceback)."""
    with open(path, "rb") as fh:
        for no, raw in enumerate(fh, 1):
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            problem = utf8_problem(raw)
            if problem:
                raise UserError(f"{path}:{no}: {problem}")
            yield no, raw.decode("utf-8")


def parse_json(text: str, where: str) -> Any:
    """`json.loads(text)`, or a UserError `where: invalid JSON (reason)`. Besides JSONDecodeError,
    json.loads raises a plain ValueError for an integer of more than 4300 digits (Python's
    int-conversion limit) and RecursionError for deeply nested arrays/objects."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: invalid JSON ({exc.msg})") from None
    except ValueError as exc:  # the int-conversion limit; its text ends with a hint for Python code
        raise UserError(f"{where}: invalid JSON ({str(exc).split(':')[0]})") from None
    except RecursionError:
        raise UserError(f"{where}: invalid JSON (nested too deeply)") from None


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not UTF-8 or not a JSON
    object stops the read with `file:line: reason`. Lines end at `\\n` (JSON Lines); a UTF-8 BOM
    at the start of a line is ignored (`text_lines`)."""
    for no, line in text_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{no}"
        obj = parse_json(line, where)
        if not isinstance(obj, dict):
            raise UserError(f"{where}: expected a JSON object")
        yield no, obj
