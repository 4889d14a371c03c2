"""Where caches live: outside DVC outputs, shared by runs, experiments and stages."""

from __future__ import annotations

import os
from pathlib import Path

from tripleforge.errors import UserError
from tripleforge.params import PARAMS_LABEL
from tripleforge.progress import log

CACHE_ENV = "TRIPLEFORGE_CACHE_DIR"
_WARNED_RELATIVE: set[tuple[Path, str]] = set()  # once per process, not once per cache opened


def ensure_dir(path: Path, source: str) -> Path:
    """Create directory `path` (and its parents) unless it exists; returns `path`.

    A path that cannot be a writable directory (a file in the way, a parent that cannot hold
    directories, no write permission) raises a one-line UserError led by `source`: the params key
    with its `params.yaml: ` label (the stage replaces it with the file read, or `--set`), or the
    environment variable the path came from. Caches are opened before any model or LLM work, so
    this is the first thing to fail rather than a FileExistsError traceback."""
    if not path.is_absolute() and (path, source) not in _WARNED_RELATIVE:
        _WARNED_RELATIVE.add((path, source))
        log(f"warning: {source.removeprefix(PARAMS_LABEL)}: the cache directory '{path}' is relative, so it is "
            "looked up in the working directory: a `dvc exp run --queue` or `--temp` experiment runs in a "
            "temporary copy of the repository and gets an empty cache, deleted with the copy (every embedding "
            "and LLM answer paid again); give an absolute path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if path.exists() and not path.is_dir():
            why = "a file of that name is in the way"
        else:
            why = exc.strerror or type(exc).__name__
            if exc.filename and str(exc.filename) != str(path):
                why += f": {exc.filename}"
        raise UserError(f"{source}: '{path}' cannot be created as a cache directory ({why})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{source}: '{path}' is a directory this user cannot write to")
    return path


def locate_cache_root(override: str | None = None, key: str = "cache_dir") -> tuple[Path, str]:
    """(cache root, where it came from for errors), without creating it: `override` (the params
    value of `key`, e.g. `pair_similar.cache_dir`) > $TRIPLEFORGE_CACHE_DIR > ~/.cache/tripleforge."""
    if override:
        return Path(override).expanduser(), f"{PARAMS_LABEL}{key}"
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser(), f"${CACHE_ENV}"
    return Path.home() / ".cache" / "tripleforge", f"default cache root (set ${CACHE_ENV} or {key})"


def cache_root(override: str | None = None, key: str = "cache_dir") -> Path:
    """`override` (from params key `key`) > $TRIPLEFORGE_CACHE_DIR > ~/.cache/tripleforge, created
    if missing; one that cannot be is a UserError naming `key` or the variable (see `ensure_dir`)."""
    return ensure_dir(*locate_cache_root(override, key))
