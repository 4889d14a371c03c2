"""Progress bars on stderr with throughput and ETA; stdout stays clean for data."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

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


def bar(total: int | None, desc: str, unit: str = "it") -> tqdm:
    """A bar showing `n/total [elapsed<eta, rate unit/s]`; write to it with `.update(k)`."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        # k/M prefixes only where counts get long: below that they print as "9.00/18.0"
        unit_scale=total is not None and total >= 100_000,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=_disabled(),
        mininterval=0.5,
        smoothing=0.1,
    )


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with bar(total, desc, unit) as b:
        for item in items:
            yield item
            b.update(1)


def log(message: str) -> None:
    """Human message on stderr (one line)."""
    print(message, file=sys.stderr, flush=True)
