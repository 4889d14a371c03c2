"""Stage scripts run the code of the checkout they are in, not the installed tripleforge."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from helpers import PROJECT


def test_a_stage_imports_its_own_checkouts_src(tmp_path: Path) -> None:
    """`dvc exp run --queue/--temp` runs the stages in a copy of the repo; with `pip install -e .`
    they imported the workspace's src/, so an experiment ran other code than it committed."""
    copy = tmp_path / "copy"
    shutil.copytree(PROJECT / "stages", copy / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    init = copy / "src" / "tripleforge" / "__init__.py"
    init.write_text(init.read_text() + "\nimport sys as _sys\nprint('COPY-OF-SRC', file=_sys.stderr)\n")
    for script in sorted((copy / "stages").glob("[a-z]*.py")):
        proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=False,
                              cwd=tmp_path)
        assert proc.returncode == 0 and "COPY-OF-SRC" in proc.stderr, script.name
