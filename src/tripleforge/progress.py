"""Progress bars on stderr with throughput and ETA; stdout stays clean for data."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def _disabled() -> bool:
    return os.environ.get("TRIPLEFORGE_NO_PROGRESS", "") not in ("", "0")


def quiet_library_bars() -> None:
    """With TRIPLEFORGE_NO_PROGRESS set, the bars of the libraries we call go too (transformers'
    "Loading weights", huggingface_hub's); call before loading a model."""
    if not _disabled():
        return
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class _Lines:
    """stderr for a bar when it is no terminal (a DVC or queue log, a file, a pipe): each refresh
    becomes one whole line. tqdm's carriage returns would pile every refresh onto one line, print
    the last state twice, and leave it without a newline for the next message to land on."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.last = stream, ""
        self.encoding = getattr(stream, "encoding", "utf-8")

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def bar(total: int | None, desc: str, unit: str = "it") -> tqdm:
    """A bar showing `n/total [elapsed<eta, rate unit/s]`; write to it with `.update(k)`. On a
    terminal it redraws in place; elsewhere it writes a line every 10 s (see `_Lines`)."""
    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        # k/M prefixes only where counts get long: below that they print as "9.00/18.0"
        unit_scale=total is not None and total >= 100_000,
        dynamic_ncols=tty,
        file=sys.stderr if tty else _Lines(sys.stderr),
        disable=_disabled(),
        mininterval=0.5 if tty else 10.0,
        smoothing=0.1,
    )


def close_open_bars() -> None:
    """Close every bar still open, so its last line comes before a closing error message. A bar
    inside a generator (`track`, a reader yielding rows) that is suspended when the interrupt or
    error lands in its consumer stays open until the generator is collected at exit, and its
    last line then followed `error: interrupted`."""
    with tqdm.get_lock():
        bars = list(getattr(tqdm, "_instances", ()))
    for b in bars:
        b.close()


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with bar(total, desc, unit) as b:
        for item in items:
            yield item
            b.update(1)


# Set by a running stage (`stage.user_errors`): names where a params value in a message came from,
# the params file the stage read or `--set`, as its errors do.
_relabel: Callable[[str], str] | None = None


def set_relabel(fn: Callable[[str], str] | None) -> None:
    global _relabel
    _relabel = fn


def log(message: str) -> None:
    """Human message on stderr (one line); a params key in it is labelled as the stage's errors are."""
    if _relabel is not None:
        message = _relabel(message)
    print(message, file=sys.stderr, flush=True)
