"""Imported first by every stage script: this checkout's `src/` goes ahead of an installed
tripleforge. `pip install -e .` points the venv at one workspace's `src/`, but `dvc exp run
--queue` / `--temp` run the stages in a copy of the repository, whose code (the code the
experiment commits and `dvc.lock` hashes) would otherwise not be the code that runs."""

import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parents[1] / "src")
if _SRC not in sys.path[:1]:
    sys.path.insert(0, _SRC)
