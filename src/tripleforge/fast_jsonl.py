"""The compiled one-pass JSONL reader (`_jsonl.c`) as Polars frames.

`read_schema_records(body, schema)` reads a JSONL buffer whose records all fit the schema's types,
one record per line, into the values Arrow's JSON reader gives with that schema, and returns
None for any other buffer, which `formats` then reads the slow, explaining way. A large buffer is
read in ranges of whole lines, one thread per CPU (the reader releases the GIL), and the ranges
are joined in order, so the frame does not depend on the split.

The module is compiled by the editable install into `src/tripleforge/`; a copy of the repository
without that build (`dvc exp run --queue`/`--temp` run the stages in one, see stages/_src.py)
reads every file the slow way, to the same frame.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    import pyarrow as pa

try:
    from tripleforge import _jsonl
except ImportError:  # not built in this copy: formats reads the slow way
    _jsonl = None

# Below this per range, another thread costs more than it saves.
_SPLIT_BYTES = 4 << 20
# A range's strings must fit the 32-bit offsets of Arrow's string views.
_MAX_RANGE_BYTES = 1 << 30

Block = tuple[int, int, Any]  # (address, size, owner): memory a compiled module hands over


def cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _next_line_start(body: Any, at: int) -> int:
    """The offset just past the first newline at or after `at` (the buffer's size if none)."""
    view = memoryview(body)
    step = 1 << 20
    while at < body.size:
        nl = bytes(view[at : at + step]).find(b"\n")
        if nl >= 0:
            return at + nl + 1
        at += step
    return body.size


def _split_points(body: Any, cpus: int) -> list[int]:
    """Range bounds over `body`, each just after a newline (or at an end): one range per CPU,
    none under _SPLIT_BYTES, and enough that each is at most _MAX_RANGE_BYTES plus the rest of
    the line it ends in (the reader gives up on a range whose strings pass 2 GiB)."""
    size = body.size
    parts = max(min(cpus, size // _SPLIT_BYTES), -(-size // _MAX_RANGE_BYTES), 1)
    bounds = [0]
    for i in range(1, parts):
        at = max(_next_line_start(body, size * i // parts), bounds[-1])
        if at < size and at != bounds[-1]:
            bounds.append(at)
    return [*bounds, size]


def arrow_buffer(block: Block) -> pa.Buffer:
    """An Arrow buffer over memory a compiled module handed over; freed with the last user."""
    import pyarrow as pa

    address, size, owner = block
    return pa.foreign_buffer(address, size, base=owner)


def _strings(parts: tuple[Block, Block, Block]) -> pa.Array:
    import pyarrow as pa

    valid, views, data = parts
    return pa.Array.from_buffers(pa.string_view(), views[1] // 16, [arrow_buffer(b) for b in (valid, views, data)])


def _numbers(parts: tuple[Block, Block], dtype: pa.DataType) -> pa.Array:
    import pyarrow as pa

    valid, values = parts
    return pa.Array.from_buffers(dtype, values[1] // 8, [arrow_buffer(valid), arrow_buffer(values)])


def _list(valid: Block, offsets: Block, items: pa.Array) -> pa.Array:
    import pyarrow as pa

    return pa.Array.from_buffers(pa.large_list(items.type), offsets[1] // 8 - 1,
                                 [arrow_buffer(valid), arrow_buffer(offsets)], children=[items])


def _column(dtype: pl.DataType, parts: tuple[Any, ...]) -> pa.Array:
    """One READ_SCHEMA column from the reader's buffers for it."""
    import pyarrow as pa

    if dtype == pl.String:
        return _strings(parts)
    if dtype == pl.Int64:
        return _numbers(parts, pa.int64())
    if dtype == pl.Float64:
        return _numbers(parts, pa.float64())
    if dtype == pl.List(pl.String):
        return _list(parts[0], parts[1], _strings(parts[2]))
    if dtype == pl.List(pl.Float64):
        return _list(parts[0], parts[1], _numbers(parts[2], pa.float64()))
    valid, offsets, item_valid, text, score, pid = parts  # candidates
    fields = [_strings(text), _numbers(score, pa.float64()), _strings(pid)]
    candidate = pa.struct([("text", pa.string_view()), ("score", pa.float64()), ("pid", pa.string_view())])
    items = pa.Array.from_buffers(candidate, len(fields[0]), [arrow_buffer(item_valid)], children=fields)
    return _list(valid, offsets, items)


def _frame(columns: dict[str, Any], schema: dict[str, pl.DataType], first_line: int) -> pl.DataFrame:
    import numpy as np
    import pyarrow as pa

    table = pa.table({k: _column(dtype, columns[k]) for k, dtype in schema.items()})
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    lines = np.frombuffer(arrow_buffer(columns["line"]), dtype=np.int64) + first_line
    return df.cast(schema).with_columns(line=pl.Series(lines, dtype=pl.Int64))  # type: ignore[arg-type]


def read_schema_records(body: Any, schema: dict[str, pl.DataType]) -> pl.DataFrame | None:
    """`schema`'s columns + ``line`` (1-based) for every non-blank line of the JSONL Arrow buffer
    `body`, or None when the compiled reader cannot vouch for reading it as Arrow would (or is
    not built)."""
    if _jsonl is None:
        return None
    n_cpus = cpus()
    bounds = _split_points(body, n_cpus)
    ranges = list(zip(bounds, bounds[1:], strict=False))
    if len(ranges) == 1:
        parts = [_jsonl.parse(body, *ranges[0])]
    else:
        with ThreadPoolExecutor(min(n_cpus, len(ranges))) as pool:
            parts = list(pool.map(lambda r: _jsonl.parse(body, *r), ranges))
    if any(p is None for p in parts):
        return None
    frames, first_line = [], 0
    for lines, columns in parts:
        frames.append(_frame(columns, schema, first_line))
        first_line += lines
    return pl.concat(frames, rechunk=True) if len(frames) > 1 else frames[0]
