"""Where caches live: outside DVC outputs, shared by runs, experiments and stages."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TRIPLEFORGE_CACHE_DIR"


def cache_root(override: str | None = None) -> Path:
    """`override` (from params) > $TRIPLEFORGE_CACHE_DIR > ~/.cache/tripleforge."""
    if override:
        root = Path(override).expanduser()
    elif os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        root = Path.home() / ".cache" / "tripleforge"
    root.mkdir(parents=True, exist_ok=True)
    return root
