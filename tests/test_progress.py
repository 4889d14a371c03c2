"""Progress bars on stderr."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_bar_into_a_log_writes_whole_lines() -> None:
    """Into a file or DVC's queue log a bar once piled its refreshes onto one line with carriage
    returns, wrote its last state twice, and left the next message on the bar's line."""
    code = ("from tripleforge.progress import bar, log\n"
            "with bar(3, 'work', unit='doc') as b:\n"
            "    for _ in range(3): b.update(1)\n"
            "log('next message')\n")
    env = {**os.environ, "TRIPLEFORGE_NO_PROGRESS": "0"}
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stderr
    lines = err.split("\n")
    assert "\r" not in err and err.endswith("next message\n")
    assert lines[0].startswith("work:   0%") and sum(line.startswith("work: 100%") for line in lines) == 1
    assert lines[-2] == "next message"
