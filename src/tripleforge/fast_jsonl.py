"""The compiled one-pass JSONL reader (`_jsonl.c`) as Polars frames.

`read_schema_records(body, schema)` reads a JSONL buffer whose records all fit the schema's types,
one record per line, into the values Arrow's JSON reader gives with that schema, and returns
None for any other buffer, which `formats` then reads the slow, explaining way. A large buffer is
read in ranges of whole lines, one thread per CPU (the reader releases the GIL), and the ranges
are joined in order, so the frame does not depend on the split; the join copies no text (each
range's string views name its own data buffer).

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


# The parts of one column, one per range (None: a range where no record names the key), and
# each part's length. Each joiner below makes one array of them: the views, offsets, values and
# bitmaps are copied one after another, the strings' data buffers stay where the reader put them
# (range k's views name data buffer k, see _jsonl.c), so joining costs no copy of a text.
Parts = list[Any]


def _zeros(size: int) -> pa.Buffer:
    import numpy as np
    import pyarrow as pa

    return pa.py_buffer(np.zeros(size, dtype=np.uint8))


def _joined(buffers: list[pa.Buffer]) -> pa.Buffer:
    if len(buffers) == 1:
        return buffers[0]
    assert _jsonl is not None
    return arrow_buffer(_jsonl.join(tuple(buffers)))  # the GIL released: columns join side by side


def _joined_bits(parts: Parts, rows: list[int]) -> pa.Buffer:
    """The validity bitmaps (item 0 of each part) of `rows` bits each, as one bitmap."""
    import numpy as np
    import pyarrow as pa

    if len(parts) == 1:
        return arrow_buffer(parts[0][0]) if parts[0] else _zeros((rows[0] + 7) // 8)
    bits = [np.unpackbits(np.frombuffer(arrow_buffer(p[0]), dtype=np.uint8), count=n, bitorder="little") if p
            else np.zeros(n, dtype=np.uint8) for p, n in zip(parts, rows, strict=True)]
    return pa.py_buffer(np.packbits(np.concatenate(bits), bitorder="little"))


def _strings(parts: Parts, rows: list[int]) -> pa.Array:
    import pyarrow as pa

    views = _joined([arrow_buffer(p[1]) if p else _zeros(16 * n) for p, n in zip(parts, rows, strict=True)])
    data = [arrow_buffer(p[2]) if p else pa.py_buffer(b"") for p in parts]
    return pa.Array.from_buffers(pa.string_view(), sum(rows), [_joined_bits(parts, rows), views, *data])


def _numbers(parts: Parts, rows: list[int], dtype: pa.DataType) -> pa.Array:
    import pyarrow as pa

    values = _joined([arrow_buffer(p[1]) if p else _zeros(8 * n) for p, n in zip(parts, rows, strict=True)])
    return pa.Array.from_buffers(dtype, sum(rows), [_joined_bits(parts, rows), values])


def _list(parts: Parts, rows: list[int], items: Any) -> pa.Array:
    """A large_list of each part's (validity, offsets, ...) whose items `items(parts, rows)` makes
    of the parts' children."""
    import numpy as np
    import pyarrow as pa

    offsets = [np.frombuffer(arrow_buffer(p[1]), dtype=np.int64) if p else np.zeros(n + 1, dtype=np.int64)
               for p, n in zip(parts, rows, strict=True)]
    counts = [int(o[-1]) for o in offsets]
    if len(parts) == 1:
        joined = pa.py_buffer(offsets[0])
    else:
        starts = np.cumsum([0, *counts[:-1]])
        shifted = (o[1:] + k for o, k in zip(offsets[1:], starts[1:], strict=True))
        joined = pa.py_buffer(np.concatenate([offsets[0], *shifted]))
    child = items(parts, counts)
    buffers = [_joined_bits(parts, rows), joined]
    return pa.Array.from_buffers(pa.large_list(child.type), sum(rows), buffers, children=[child])


def _candidates(parts: Parts, rows: list[int]) -> pa.Array:
    """list<struct<text, score, pid>> from parts (validity, offsets, item validity, text, score, pid)."""
    import pyarrow as pa

    def items(parts: Parts, counts: list[int]) -> pa.Array:
        fields = [_strings([p and p[3] for p in parts], counts),
                  _numbers([p and p[4] for p in parts], counts, pa.float64()),
                  _strings([p and p[5] for p in parts], counts)]
        candidate = pa.struct([("text", pa.string_view()), ("score", pa.float64()), ("pid", pa.string_view())])
        valid = _joined_bits([p and (p[2],) for p in parts], counts)
        return pa.Array.from_buffers(candidate, sum(counts), [valid], children=fields)

    return _list(parts, rows, items)


def _column(dtype: pl.DataType, parts: Parts, rows: list[int]) -> pa.Array:
    """One READ_SCHEMA column from the reader's buffers for it, range by range."""
    import pyarrow as pa

    if dtype == pl.String:
        return _strings(parts, rows)
    if dtype == pl.Int64:
        return _numbers(parts, rows, pa.int64())
    if dtype == pl.Float64:
        return _numbers(parts, rows, pa.float64())
    if dtype == pl.List(pl.String):
        return _list(parts, rows, lambda ps, n: _strings([p and p[2] for p in ps], n))
    if dtype == pl.List(pl.Float64):
        return _list(parts, rows, lambda ps, n: _numbers([p and p[2] for p in ps], n, pa.float64()))
    return _candidates(parts, rows)


def _frame(ranges: list[tuple[int, dict[str, Any]]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """One frame of the ranges' (lines, columns), in order: `schema`'s columns + ``line``."""
    import numpy as np
    import pyarrow as pa

    line_parts, first = [], 0
    for lines, columns in ranges:
        line_parts.append(np.frombuffer(arrow_buffer(columns["line"]), dtype=np.int64) + first)
        first += lines
    rows = [len(p) for p in line_parts]
    line = pl.Series("line", np.concatenate(line_parts) if len(line_parts) > 1 else line_parts[0])
    named = [k for k in schema if any(columns[k] is not None for _, columns in ranges)]

    def column(k: str) -> pa.Array:
        return _column(schema[k], [columns[k] for _, columns in ranges], rows)

    if len(ranges) == 1:
        present = {k: column(k) for k in named}
    else:  # the copies of the joins take the time, and each touches new memory: spread them
        with ThreadPoolExecutor(min(cpus(), len(named)) or 1) as pool:
            present = dict(zip(named, pool.map(column, named), strict=True))
    # a key no record names: a constant null column, which Polars writes out only if asked to
    absent = [pl.lit(None, dtype).alias(k) for k, dtype in schema.items() if k not in present]
    df = pl.from_arrow(pa.table({**present, "line": line.to_arrow()}))
    assert isinstance(df, pl.DataFrame)
    return df.cast({k: schema[k] for k in present}).with_columns(*absent).select(*schema, "line")


def line_sources(prefix: str, lines: pl.Series) -> pl.Series | None:
    """``prefix`` + each number of the Int64 Series `lines` (no nulls), as one String Series
    written by the compiled module; None when it is not built or cannot (a negative number,
    2 GiB of text), where the caller builds the same texts with Polars."""
    import pyarrow as pa

    if _jsonl is None:
        return None
    out = _jsonl.line_sources(prefix.encode(), lines.cast(pl.Int64).rechunk().to_numpy())
    if out is None:
        return None
    views, data = out
    texts = pa.Array.from_buffers(pa.string_view(), len(lines), [None, arrow_buffer(views), arrow_buffer(data)])
    return pl.Series(lines.name, texts, dtype=pl.String)


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
        parts = [_jsonl.parse(body, *ranges[0], 0)]
    else:
        with ThreadPoolExecutor(min(n_cpus, len(ranges))) as pool:
            parts = list(pool.map(lambda k: _jsonl.parse(body, *ranges[k], k), range(len(ranges))))
    if any(p is None for p in parts):
        return None
    return _frame(parts, schema)
