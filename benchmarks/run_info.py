"""What a results file needs to say about the run that wrote it: the command as typed (so a rerun
can repeat it), the date, and the CPU, since every ratio depends on the kind of machine (AVX2 or
AVX-512, native bf16 or not). Written by each benchmark, never by hand."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Any


def _cpu() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:  # not Linux: the model from platform, no flags
        pass
    return {"model": model, "cpus": os.cpu_count(), "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "native_bf16": bool({"avx512_bf16", "amx_bf16"} & flags)}


def run_info() -> dict[str, Any]:
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        shown = str(script)
    return {"command": " ".join([shown, *sys.argv[1:]]), "date": datetime.date.today().isoformat(),
            "cpu": _cpu(), "python": platform.python_version()}
