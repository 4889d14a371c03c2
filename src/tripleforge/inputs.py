"""Input files that params name: which of them `dvc repro` can see change.

dvc.yaml cannot take a dependency list from params (DVC interpolates no lists into `deps`,
treeverse/dvc#8171), so the stages that read user-named files (`sample.corpus`,
`sample.external`, `convert_formats.external`, `evaluate.external`) declare one folder instead:
`data/external/`. A file there that changes re-runs them; a file elsewhere does not, so the
stage says so on stderr and counts it in its metrics rather than let a later run go stale quietly.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tripleforge.progress import log

EXTERNAL_DIR = Path("data/external")


def outside_external_dir(paths: Iterable[str | Path], cwd: Path | None = None) -> list[str]:
    """The paths (relative to `cwd`, the repo root when DVC runs a stage) not under
    `data/external/`, in the order given; links are resolved, so a link into the folder whose
    target lies outside it counts as outside (DVC hashes the link, not what it points to)."""
    base = (cwd or Path.cwd()).resolve()
    root = (base / EXTERNAL_DIR).resolve()
    return [str(p) for p in paths if not (base / Path(p).expanduser()).resolve().is_relative_to(root)]


def warn_untracked(key: str, paths: Iterable[str | Path]) -> list[str]:
    """Log one warning per input of params key `key` that `dvc repro` does not track; return them."""
    outside = outside_external_dir(paths)
    for p in outside:
        log(f"warning: {key}: {p} is outside {EXTERNAL_DIR}/, so `dvc repro` will not notice when it changes "
            f"(move it there, or re-run this stage with -f after editing it)")
    return outside
