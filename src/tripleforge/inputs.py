"""Input files that params name: which of them `dvc repro` can see change.

dvc.yaml cannot take a dependency list from params (DVC interpolates no lists into `deps`,
treeverse/dvc#8171), so the stages that read user-named files (`sample.corpus`,
`sample.external`, `convert_formats.external`, `evaluate.external`, and the model folders of the
embedding stages) declare one folder instead: `data/external/`. A file there that changes re-runs
them; a file elsewhere does not, so the stage says so on stderr and counts it in its metrics
rather than let a later run go stale quietly.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from tripleforge.errors import UserError
from tripleforge.params import PARAMS_LABEL
from tripleforge.progress import log

EXTERNAL_DIR = Path("data/external")


def outside_external_dir(paths: Iterable[str | Path], cwd: Path | None = None) -> list[str]:
    """The paths (relative to `cwd`, the repo root when DVC runs a stage) not under
    `data/external/`, in the order given; links are resolved, so a link into the folder whose
    target lies outside it counts as outside (DVC hashes the link, not what it points to)."""
    base = (cwd or Path.cwd()).resolve()
    root = (base / EXTERNAL_DIR).resolve()
    return [str(p) for p in paths if not _resolved(base / Path(p).expanduser()).is_relative_to(root)]


def _resolved(path: Path) -> Path:
    """`path.resolve()`, or `path` itself when it is a symlink loop (Python 3.11's resolve raises
    RuntimeError there; a loop is outside every folder as far as DVC is concerned)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def path_problem(path: str | Path, kind: Literal["file", "folder"] = "file") -> str | None:
    """Why `path` cannot be read as a `kind` (a regular file, or a folder), naming it, or None when it
    can. Said precisely, since "not found" for a path that exists sends a user looking in the wrong
    place: `file not found: x`, `x is a directory, not a file`, `x is a symlink loop`, `x is a broken
    symlink`, `x: permission denied`. (`Path.exists()` is False for a symlink loop, and
    `Path.is_file()` raises PermissionError in an unreadable folder.)"""
    p = Path(path).expanduser()
    try:
        mode = os.stat(p).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path} is a symlink loop"
        if exc.errno == errno.EACCES:
            return f"{path}: permission denied"
        if exc.errno == errno.ENOENT and p.is_symlink():
            return f"{path} is a broken symlink (its target {os.readlink(p)} does not exist)"
        return f"{kind} not found: {path}"
    if kind == "file" and stat.S_ISDIR(mode):
        return f"{path} is a directory, not a file"
    if kind == "file" and not stat.S_ISREG(mode):
        return f"{path} is not a regular file"
    if kind == "folder" and not stat.S_ISDIR(mode):
        return f"{path} is a file, not a folder"
    return None


def check_input_path(path: str | Path, key: str, kind: Literal["file", "folder"] = "file") -> None:
    """A UserError `params.yaml: <key>: <problem>` (see `path_problem`) when the params key `key`
    names a path that cannot be read as a `kind`; the stage puts in the params file it read."""
    problem = path_problem(path, kind)
    if problem:
        raise UserError(f"{PARAMS_LABEL}{key}: {problem}")


def warn_untracked(key: str, paths: Iterable[str | Path]) -> list[str]:
    """Log one warning per input of params key `key` that `dvc repro` does not track; return them."""
    outside = outside_external_dir(paths)
    for p in outside:
        log(f"warning: {key}: {p} is outside {EXTERNAL_DIR}/, so `dvc repro` will not notice when it changes "
            f"(move it there, or re-run this stage with -f after editing it)")
    return outside


def model_folders(models: Iterable[str | None]) -> list[str]:
    """The model params values that are folders (not the bundled `minilm`, not unset), in order."""
    return [m for m in models if m is not None and m != "minilm"]
