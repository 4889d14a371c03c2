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


def test_the_error_after_an_interrupt_is_the_last_line_even_with_a_generator_bar_open() -> None:
    """A Ctrl-C landing in the consumer of a generator that holds a bar left the bar open; it was
    closed when the generator was collected at exit, and its line came after `error: interrupted`
    (a flaky end-to-end test showed it)."""
    code = ("import sys, typer\n"
            "from tripleforge.progress import track\n"
            "from tripleforge.stage import user_errors\n"
            "@user_errors\n"
            "def main():\n"
            "    rows = track(range(10), 'work', unit='doc')  # held: as a reader's generator is\n"
            "    for i in rows:\n"
            "        if i == 3: raise KeyboardInterrupt\n"
            "try:\n"
            "    main()\n"
            "except typer.Exit as exc:\n"
            "    sys.exit(exc.exit_code)\n")
    env = {**os.environ, "TRIPLEFORGE_NO_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 130, proc.stderr
    lines = proc.stderr.strip().split("\n")
    assert lines[-1] == "error: interrupted" and any(line.startswith("work:") for line in lines[:-1]), proc.stderr
