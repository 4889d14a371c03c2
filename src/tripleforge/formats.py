"""The four record formats of the BGE data-format spec: detect, validate, convert.

Formats (detected per line from the keys present, or forced with an override):

- ``triplets``   ``query``, ``pos`` + ``neg`` (optional ``pos_scores``, ``neg_scores``, ``prompt``, ``type``)
- ``pairs``      ``query``, ``passage``, ``label`` (0/1; optional ``score``, ``qid``, ``pid``)
- ``candidates`` ``query``, ``candidates: [{text, score?, pid?}]`` (score >= threshold -> label 1)
- ``legacy_nested`` ``query``, ``pos`` without ``neg`` (the nested reranker format; the spec's name)

Two canonical frames come out of every input, whatever its format:

- *grouped* (``GROUPED_SCHEMA``): one row per query with ``pos``/``neg`` lists — embedder triplets;
- *pairs* (``PAIRS_SCHEMA``): one row per (query, passage) with a 0/1 ``label`` — reranker pairs.

Both carry ``source_format`` (the format the row was read in) and ``source`` (``file:line``).

Reading is two-tier so that clean files are fast and dirty files get exact diagnostics: Arrow's
JSON reader parses the whole file against a strict schema (it rejects a number where a string is
expected, where Polars would coerce); only if that fails does a Python pass walk the lines to name
``file:line: reason`` (strict) or to drop and count the bad lines (not strict).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from tripleforge.errors import UserError
from tripleforge.fast_jsonl import arrow_buffer, cpus, line_sources, read_schema_records
from tripleforge.io import PARQUET_READ_ERRORS, is_blank, utf8_problem

Format = Literal["triplets", "pairs", "candidates", "legacy_nested"]
FORMATS: tuple[str, ...] = ("triplets", "pairs", "candidates", "legacy_nested")

STR_LIST = pl.List(pl.String)
F64_LIST = pl.List(pl.Float64)
CANDIDATE = pl.Struct({"text": pl.String, "score": pl.Float64, "pid": pl.String})

# Every field any format may carry; unknown keys are ignored.
READ_SCHEMA: dict[str, pl.DataType] = {
    "query": pl.String(),
    "pos": STR_LIST,
    "neg": STR_LIST,
    "pos_scores": F64_LIST,
    "neg_scores": F64_LIST,
    "prompt": pl.String(),
    "type": pl.String(),
    "task": pl.String(),
    "passage": pl.String(),
    "label": pl.Int64(),
    "score": pl.Float64(),
    "qid": pl.String(),
    "pid": pl.String(),
    "candidates": pl.List(CANDIDATE),
}

# Metadata that travels with every row of both canonical frames.
META_SCHEMA: dict[str, pl.DataType] = {
    "qid": pl.String(),
    "query": pl.String(),
    "prompt": pl.String(),
    "type": pl.String(),
    "task": pl.String(),
    "language": pl.String(),
    "code_language": pl.String(),
    "tgt_code_language": pl.String(),  # code_translation_retrieval's target; null otherwise
    "doc_id": pl.String(),
    "pair_id": pl.String(),
    "candidate_idx": pl.Int64(),
    "split": pl.String(),
    "source_format": pl.String(),
    "source": pl.String(),
}
GROUPED_SCHEMA: dict[str, pl.DataType] = {
    **META_SCHEMA,
    "pos": STR_LIST,
    "neg": STR_LIST,
    "pos_scores": F64_LIST,
    "neg_scores": F64_LIST,
}
PAIRS_SCHEMA: dict[str, pl.DataType] = {
    **META_SCHEMA,
    "passage": pl.String(),
    "pid": pl.String(),
    "label": pl.Int64(),
    "score": pl.Float64(),
}
META = list(META_SCHEMA)
# the columns one generation job's rows share: generate numbers their `candidate_idx` per these
CANDIDATE_KEY = ["doc_id", "task", "language", "code_language", "tgt_code_language"]


# Reasons counted with the drops that remove no record: the rows stay, their score lists go.
SCORES_REMOVED = frozenset({"partial_scores"})


def drop_metrics(drops: Counter[str] | dict[str, int]) -> dict[str, dict[str, int]]:
    """A reason counter as metrics: ``dropped`` (records removed, by reason) and
    ``scores_removed`` (records kept without their score lists, by reason)."""
    items = sorted((k, n) for k, n in drops.items() if n)
    return {"dropped": {k: n for k, n in items if k not in SCORES_REMOVED},
            "scores_removed": {k: n for k, n in items if k in SCORES_REMOVED}}


@dataclass
class ReadResult:
    """Validated records of one file, all in one format, plus why any lines were dropped."""

    path: str
    format: str | None  # None when the file had no usable rows
    frame: pl.DataFrame  # READ_SCHEMA columns + `line` (1-based) + `source_format`
    drops: Counter[str] = field(default_factory=Counter)
    rows_read: int = 0  # records in the file, valid or not (blank lines are not records)


class _UnreadableLine(UserError):
    """Strict mode's first line that cannot be read, with the records above it (``before``):
    a value problem on one of those is the file's first problem and is reported instead."""

    def __init__(self, message: str, before: pl.DataFrame) -> None:
        super().__init__(message)
        self.before = before


def _arrow_schema(names: Collection[str] | None = None) -> Any:
    """READ_SCHEMA as an Arrow schema, restricted to `names` (in READ_SCHEMA order) when given."""
    import pyarrow as pa

    cand = pa.struct([("text", pa.string()), ("score", pa.float64()), ("pid", pa.string())])
    fields = [
        ("query", pa.string()), ("pos", pa.list_(pa.string())), ("neg", pa.list_(pa.string())),
        ("pos_scores", pa.list_(pa.float64())), ("neg_scores", pa.list_(pa.float64())),
        ("prompt", pa.string()), ("type", pa.string()), ("task", pa.string()),
        ("passage", pa.string()), ("label", pa.int64()), ("score", pa.float64()),
        ("qid", pa.string()), ("pid", pa.string()), ("candidates", pa.list_(cand)),
    ]
    return pa.schema([f for f in fields if names is None or f[0] in names])


# ----------------------------------------------------------------------------------------------
# Python-side type checks: only run when Arrow rejected the file, to name the line and the reason.

_TYPES: dict[str, str] = {
    "query": "str", "prompt": "str", "type": "str", "task": "str", "passage": "str", "qid": "str",
    "pid": "str", "pos": "list[str]", "neg": "list[str]", "pos_scores": "list[num]",
    "neg_scores": "list[num]", "label": "int", "score": "num", "candidates": "list[candidate]",
}


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _type_error(key: str, value: Any) -> str | None:
    kind = _TYPES[key]
    if value is None:
        return None
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "num":
        ok = _is_num(value)
    # A null inside a list is of the right type here: Arrow reads it, and validation then names it
    # ("null text in 'pos'/'neg'", "a candidate has no 'text'"), so a line gets the same reason
    # whether or not another line of its file sends the file down this slow path.
    elif kind == "list[str]":
        ok = isinstance(value, list) and all(x is None or isinstance(x, str) for x in value)
    elif kind == "list[num]":
        ok = isinstance(value, list) and all(x is None or _is_num(x) for x in value)
    else:  # candidates
        ok = isinstance(value, list) and all(
            c is None
            or (isinstance(c, dict)
                and (c.get("text") is None or isinstance(c.get("text"), str))
                and (c.get("score") is None or _is_num(c.get("score")))
                and (c.get("pid") is None or isinstance(c.get("pid"), str)))
            for c in value
        )
        if not ok:
            return "'candidates' must be a list of objects with a string 'text' (and numeric 'score', string 'pid')"
    if not ok:
        hint = f' (write ids as strings: "{key}": "{value}")' if key in ("qid", "pid") and _is_num(value) else ""
        element = kind.startswith("list") and isinstance(value, list)
        return f"'{key}' must be {kind}, got {type(value).__name__}" + (
            " with an element of another type" if element else "") + hint
    return None


_TOO_DEEP = "invalid JSON: nested too deeply"


def _python_line_error(raw: bytes) -> str | None:
    """Why one JSONL line cannot be read with READ_SCHEMA (None when it can)."""
    if problem := utf8_problem(raw):
        return problem
    try:
        obj = json.loads(raw)
    except RecursionError:
        return _TOO_DEEP
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of 4300+ digits
        return f"invalid JSON: {exc.msg if hasattr(exc, 'msg') else exc}"
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for key in _TYPES:
        err = _type_error(key, obj.get(key))
        if err:
            return err
    return None


# ----------------------------------------------------------------------------------------------
# Reading


# Keys are sampled from the head of a file only to pick the Arrow schema; a key the sample misses
# sends the parse back to the full schema, so the sample size is a speed knob, not a correctness one.
_KEY_SAMPLE_BYTES = 64 << 10


def _sample_keys(head: bytes) -> tuple[set[str], bool]:
    """(READ_SCHEMA keys of the records in `head`, the first bytes of a JSONL file; whether a
    record there has another key too). A line cut off at the end of `head` is not valid JSON and
    is skipped like any bad line."""
    keys: set[str] = set()
    unknown = False
    for raw in head.split(b"\n"):
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):  # a blank, bad or cut-off line: the parse reports the bad ones
            continue
        if isinstance(obj, dict):
            keys.update(k for k in obj if k in READ_SCHEMA)
            unknown = unknown or any(k not in READ_SCHEMA for k in obj)
    return keys, unknown


def _arrow_read(body: Any, schema: Any, unexpected: str) -> Any:
    import pyarrow as pa
    import pyarrow.json as pj

    opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior=unexpected)
    return pj.read_json(pa.BufferReader(body), parse_options=opts, read_options=pj.ReadOptions(block_size=4 << 20))


def _arrow_parse(body: Any, names: Collection[str] | None = None, infer: bool = False) -> pl.DataFrame:
    """Arrow-parse JSONL (bytes or an Arrow buffer) against READ_SCHEMA; raises on any record of
    a wrong type.

    With `names` (the READ_SCHEMA keys the file is expected to use), the file is first parsed
    with only those fields: Arrow parses a file about 30% faster when its schema does not carry
    the other formats' fields. Any other key is then type-inferred (`infer`: the caller knows
    no record can nest deep enough to crash the inference, see `LineLayout.infer_is_safe`) or refused, so
    a READ_SCHEMA key that shows up only past the sample (a new column), or an unknown key inside
    a candidate (a changed struct type), is caught here, and the file is parsed again with the
    full schema, which ignores unknown keys, as is a file whose unknown keys Arrow cannot infer.
    Strictness is the same either way: every READ_SCHEMA value that ends up in the frame was
    parsed against its type.
    """
    table = None
    if names and set(names) < set(READ_SCHEMA):
        expected = _arrow_schema(names)
        try:
            table = _arrow_read(body, expected, "infer" if infer else "error")
        except Exception:  # noqa: BLE001 - an unknown key (refused, or of mixed types); the full schema ignores it
            table = None
        if table is not None and (
            any(c in READ_SCHEMA and c not in names for c in table.column_names)
            or any(table.schema.field(f.name).type != f.type for f in expected)
        ):
            table = None
    if table is None:
        table = _arrow_read(body, _arrow_schema(), "ignore")
    df = pl.from_arrow(table.select([c for c in READ_SCHEMA if c in table.column_names]))
    assert isinstance(df, pl.DataFrame)
    missing = {c: pl.lit(None, dtype) for c, dtype in READ_SCHEMA.items() if c not in df.columns}
    return df.with_columns(**missing).select(list(READ_SCHEMA)) if missing else df


def _parse_lines(lines: list[tuple[int, bytes]], names: Collection[str] | None = None) -> pl.DataFrame:
    """Arrow-parse the given (line number, bytes) records; raises on any bad record."""
    df = _arrow_parse(b"\n".join(raw for _, raw in lines) + b"\n", names)
    return df.with_columns(line=pl.Series([n for n, _ in lines], dtype=pl.Int64))


def _newlines(view: Any) -> Any:
    """Offsets of the newline bytes of a uint8 view, located in slices so the temporary stays
    small (8 bytes per line, not one per byte)."""
    import numpy as np

    step = 8 << 20
    return np.concatenate(
        [np.flatnonzero(view[i : i + step] == 10) + i for i in range(0, view.size, step)] or [np.zeros(0, np.int64)]
    )


def _line_bounds(view: Any, nl: Any) -> tuple[Any, Any]:
    """(start, exclusive end) offsets of every line of `view`, its newline offsets `nl`."""
    import numpy as np

    return np.concatenate(([0], nl + 1)), np.append(nl, view.size)


# Arrow infers the type of a key outside the schema recursively, and a value nested some 30000
# deep overflows its stack: the process dies (SIGSEGV) without a word. Inference is only used on
# files whose records cannot nest deep (see `LineLayout.infer_is_safe`); a line this short nests
# at most 2048 deep.
_INFER_MAX_LINE_BYTES = 4096
_BOM = b"\xef\xbb\xbf"


@dataclass
class LineLayout:
    """What a JSONL buffer's lines say before any parse (see `_line_layout`)."""

    record_lines: Any  # 1-based numbers of the lines that are not blank
    one_object_per_line: bool  # each of them starts with `{` and ends with `}` (edge whitespace aside)
    longest: int  # bytes of the longest line

    @property
    def infer_is_safe(self) -> bool:
        """Whether no record can nest deep enough to crash Arrow's type inference: every record is
        one short line (see `_line_layout`); Arrow's reader does accept a record spread over
        lines, so short lines alone would bound nothing."""
        return self.one_object_per_line and self.longest < _INFER_MAX_LINE_BYTES


def _line_layout(view: Any, nl: Any) -> LineLayout:
    """The layout of `view` (uint8), its newline offsets `nl`. Blank lines (empty or whitespace
    only) are skipped by Arrow's reader and by the slow path below alike. When every other line
    starts with ``{`` and ends with ``}``, every record lies on one line: inside an object a value
    is followed by ``,`` or ``}``, so a record continued on the next line makes that line start
    with neither ``{`` nor whitespace, and a string cannot run on (Arrow refuses a raw newline in
    one). Arrow does read a record over several lines, and two on one line, so only then does
    its record count, equal to the count of such lines, prove record i sits on line i. Lines
    whose edge bytes are whitespace (or a BOM) are looked at one by one; a CR before the newline
    is allowed for all."""
    import numpy as np

    starts, ends = _line_bounds(view, nl)
    keep = ends > starts
    if not view.size:
        return LineLayout(np.zeros(0, np.int64), True, 0)
    first_at = np.minimum(starts, view.size - 1)
    last_at = np.maximum(ends - 1, 0)
    odd = keep & ((view[first_at] != 123) | (view[last_at] != 125))
    # A few whitespace bytes at either edge (a CR, an indent, trailing spaces) are stepped over
    # in bulk, on those lines only; only lines with more go through the loop below.
    if odd.any():
        at = np.flatnonzero(odd)
        first_at, last_at = first_at[at], last_at[at]
        space = np.zeros(256, dtype=bool)
        space[[9, 10, 13, 32]] = True
        for _ in range(4):
            first_at = first_at + (space[view[first_at]] & (first_at < last_at))
            last_at = last_at - (space[view[last_at]] & (last_at > first_at))
        odd[at] = (view[first_at] != 123) | (view[last_at] != 125)
    whole = True
    for i in np.flatnonzero(odd):
        text = view[starts[i] : ends[i]].tobytes().strip()
        if not text:
            keep[i] = False  # blank
            continue
        text = text.removeprefix(_BOM).strip()
        whole = whole and text.startswith(b"{") and text.endswith(b"}")
    lengths = (ends - starts)[keep]
    return LineLayout(np.flatnonzero(keep) + 1, whole, int(lengths.max()) if lengths.size else 0)


def _is_utf8(body: Any) -> bool:
    """Whether an Arrow buffer is valid UTF-8. Arrow's JSON reader does not check: an invalid
    byte would pass into the strings and make the Parquet written from them unreadable. A file of
    ASCII bytes only (the common case) is settled by a byte scan; others are decoded."""
    import codecs

    import numpy as np

    view = np.frombuffer(body, dtype=np.uint8)
    step = 8 << 20
    if all(int(view[i : i + step].max(initial=0)) < 0x80 for i in range(0, view.size, step)):
        return True
    try:
        codecs.utf_8_decode(memoryview(body), "strict", True)
    except UnicodeDecodeError:
        return False
    return True


# A candidate's `"score": null`. A missing score means 1.0 (the spec's default), but an explicit
# null usually means "not judged": turning it into a positive would be the worst reading of it.
# A key spelled with \u escapes (`"sc\u006fre"`) is the same key to a JSON reader, so any key
# holding one is looked at too; `json.loads` of the line decides.
_NULL_SCORE = re.compile(rb'"(?:score|[^"\\]*(?:\\u[0-9a-fA-F]{4}[^"\\]*)+)"\s*:\s*null')


def _explicit_null_score_lines(body: Any, df: pl.DataFrame) -> list[int]:
    """Lines (1-based, `df.line`) of candidates records with a candidate whose ``score`` is an
    explicit JSON null. Only files with a null candidate score pay for the scan, and only lines
    the byte pattern finds are parsed again."""
    if "candidates" not in df.columns or df["candidates"].dtype == pl.Null:
        return []
    if not any_item(df["candidates"], pl.Series.is_null, "score").any():
        return []
    data = body.to_pybytes()
    starts = [m.start() for m in _NULL_SCORE.finditer(data)]
    if not starts:
        return []
    import numpy as np

    newlines = _newlines(np.frombuffer(data, dtype=np.uint8))
    found: list[int] = []
    for line_no in sorted({int(n) + 1 for n in np.searchsorted(newlines, starts)}):
        begin = int(newlines[line_no - 2]) + 1 if line_no > 1 else 0
        end = int(newlines[line_no - 1]) if line_no - 1 < newlines.size else len(data)
        try:
            obj = json.loads(data[begin:end])
        except (ValueError, RecursionError):
            continue
        cands = obj.get("candidates") if isinstance(obj, dict) else None
        if isinstance(cands, list) and any(isinstance(c, dict) and "score" in c and c["score"] is None for c in cands):
            found.append(line_no)
    return found


def _read_jsonl(path: Path, strict: bool, drops: Counter[str], name: Path) -> pl.DataFrame:
    """READ_SCHEMA columns + ``line`` + ``_null_score`` (a candidate's score is an explicit null);
    `name` is the file in messages (the path as written in params)."""
    import pyarrow as pa

    # Memory-mapped, not read: Arrow parses the mapped pages in place and the line scan runs
    # on them too, where a read copy plus bytes.count cost ~20% of a clean file's parse.
    try:
        with pa.memory_map(str(path)) as mapped:
            body = mapped.read_buffer()  # the buffer keeps the mapping alive after close
    except OSError:  # a file system without mmap
        body = pa.py_buffer(path.read_bytes())
    if body.slice(0, min(3, body.size)).to_pybytes() == b"\xef\xbb\xbf":
        body = body.slice(3)
    try:
        df = _parse_jsonl(name, body, strict, drops)
    except _UnreadableLine as bad:
        bad.before = bad.before.with_columns(
            _null_score=pl.col("line").is_in(_explicit_null_score_lines(body, bad.before)))
        raise
    return df.with_columns(_null_score=pl.col("line").is_in(_explicit_null_score_lines(body, df)))


def _parse_jsonl(path: Path, body: Any, strict: bool, drops: Counter[str]) -> pl.DataFrame:
    """The records of `path`'s JSONL buffer: READ_SCHEMA columns + ``line``; bad lines raise (strict) or
    are dropped and counted as ``malformed``."""
    empty = pl.DataFrame(schema={**READ_SCHEMA, "line": pl.Int64})
    if body.size == 0:
        return empty
    # The compiled reader takes the common file in one pass and gives up on anything else.
    fast = read_schema_records(body, READ_SCHEMA)
    if fast is not None:
        return fast
    names, unknown = _sample_keys(body.slice(0, min(_KEY_SAMPLE_BYTES, body.size)).to_pybytes())
    # Fast path: parse the whole file at once. When the records match the non-empty lines one to
    # one, record i sits on the i-th of them and no per-line Python work is needed. Arrow also
    # reads two objects on one line as two records; the count then differs and the slow path
    # reports that line.
    utf8 = _is_utf8(body)
    one_per_line = False
    if utf8:
        import numpy as np

        view = np.frombuffer(body, dtype=np.uint8)
        layout = _line_layout(view, _newlines(view))
        one_per_line = layout.one_object_per_line
        # Unknown keys are inferred where that is safe (as fast as refusing them); else they are
        # refused, unless the head already shows some, on which the narrow parse would only fail.
        infer = layout.infer_is_safe
        try:
            df = _arrow_parse(body, None if unknown and not infer else names, infer=infer)
            if one_per_line and df.height == layout.record_lines.size:
                return df.with_columns(line=pl.Series(layout.record_lines, dtype=pl.Int64))
        except Exception:  # noqa: BLE001 - Arrow's messages lack a line number; find it below
            names = None  # a bad record, most likely: no use trying the narrow schema again
    data = body.to_pybytes()
    lines = [(i + 1, ln) for i, ln in enumerate(data.split(b"\n")) if ln.strip()]
    if not lines:
        return empty
    # else every line goes through the Python check, which names the bad bytes, or the line a
    # record runs over (Arrow would read on, and a line holding two records could make up the count)
    if utf8 and one_per_line:
        try:
            return _parse_lines(lines, names)
        except Exception:  # noqa: BLE001
            pass
    good: list[tuple[int, bytes]] = []
    problems: list[tuple[int, str]] = []
    deep: set[int] = set()
    for n, raw in lines:
        err = _python_line_error(raw)
        if err is None or err == _TOO_DEEP:
            # Python's json gives up at about 1000 levels where Arrow reads on (a deep value under
            # an unknown key is ignored): Arrow decides, as it does when the fast path reads the file
            good.append((n, raw))
            if err:
                deep.add(n)
        else:
            problems.append((n, err))
            if strict:
                break  # only a line above this one can still be the first problem
    # Some lines pass Python's json but not Arrow's reader (a duplicate key, 1e400, an integer
    # beyond int64, a lone surrogate); they are looked for only among the lines Python accepted.
    frames, rejected = _parse_or_bisect(good, names, first_only=strict)
    rejected = [(n, _TOO_DEEP if n in deep else why) for n, why in rejected]
    problems = sorted(problems + rejected)
    if problems:
        if strict:
            n, err = problems[0]
            if n == lines[0][0] and lines[0][1].lstrip().startswith(b"["):
                err = f"{err} (a JSON array: JSONL takes one JSON object per line, e.g. jq -c '.[]')"
            raise _UnreadableLine(f"{path}:{n}: {err}", pl.concat(frames) if frames else empty)
        drops["malformed"] += len(problems)
    if not frames:
        return empty
    return pl.concat(frames) if len(frames) > 1 else frames[0]


def _parse_or_bisect(
    lines: list[tuple[int, bytes]], names: Collection[str] | None, first_only: bool = False
) -> tuple[list[pl.DataFrame], list[tuple[int, str]]]:
    """(frames of the lines Arrow parses, in order; (line, reason) of those it rejects, only the
    first with `first_only`).

    Arrow names neither the line nor, across blocks, the record it failed on, so a failing chunk
    is split in halves until the bad lines stand alone: a few parses per bad line, and a clean
    chunk is parsed once and kept."""
    if not lines:
        return [], []
    try:
        return [_parse_lines(lines, names)], []
    except Exception as exc:  # noqa: BLE001 - pyarrow.ArrowInvalid and kin; reported per line below
        if len(lines) == 1:
            return [], [(lines[0][0], _arrow_reason(exc))]
    mid = len(lines) // 2
    head, head_bad = _parse_or_bisect(lines[:mid], names, first_only)
    if head_bad and first_only:
        return head, head_bad
    tail, tail_bad = _parse_or_bisect(lines[mid:], names, first_only)
    return head + tail, head_bad + tail_bad


def _arrow_reason(exc: Exception) -> str:
    """A one-line reason for a line Arrow's JSON reader rejected (Python's json accepted it)."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    msg = re.sub(r"\s+in row \d+\.?$", "", msg.removeprefix("JSON parse error: ")).rstrip(".")
    if m := re.search(r"Column\(/?(.*?)\) was specified twice", msg):
        return f"invalid JSON: key '{m.group(1)}' appears twice in one object"
    if "Number too big" in msg:
        return "invalid JSON: a number beyond the float range (it would be infinite; scores must be finite)"
    if m := re.search(r"Failed to convert JSON to int64, couldn't parse:\s*(\S+)", msg):
        return f"invalid JSON: integer {m.group(1)} is out of the 64-bit range"
    if "surrogate" in msg:
        return "invalid JSON: a string holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)"
    return f"invalid JSON: {msg}"


def _read_parquet(path: Path, shown: Path) -> pl.DataFrame:
    try:
        df = pl.read_parquet(path)
    except PARQUET_READ_ERRORS as exc:
        raise UserError(f"{shown}: not a readable Parquet file ({type(exc).__name__})") from None
    cols = {}
    for name, dtype in READ_SCHEMA.items():
        if name not in df.columns:
            cols[name] = pl.lit(None, dtype=dtype)
            continue
        have = df.schema[name]
        if have == dtype or have == pl.Null or (isinstance(dtype, pl.List) and have == pl.List(pl.Null)):
            # pandas and polars write a column of empty lists only (e.g. `neg: []` everywhere) as
            # list<null>; it reads as the same empty lists JSONL gives
            cols[name] = pl.col(name).cast(dtype)
        elif (dtype == pl.Float64() and have.is_numeric()) or (
            dtype == F64_LIST and isinstance(have, pl.List) and have.inner.is_numeric()
        ):
            cols[name] = pl.col(name).cast(dtype)  # integer scores are fine
        elif dtype == pl.Int64() and have.is_integer():
            cols[name] = pl.col(name).cast(dtype)
        elif dtype == pl.String() and (isinstance(have, pl.Categorical | pl.Enum)
                                       or (name in ("qid", "pid") and have.is_integer())):
            # lossless: pandas writes text columns as categories, and many datasets number their ids
            cols[name] = pl.col(name).cast(dtype)
        elif name == "candidates" and (expr := _parquet_candidates(have)) is not None:
            cols[name] = expr
        else:
            raise UserError(f"{shown}: column '{name}' has type {have}, expected {dtype}")
    # A Parquet struct has no "missing key": a file whose candidates have no `score` field means
    # 1.0 for all; where the field exists, a null in it is an explicit null.
    have = df.schema.get("candidates")
    scored = isinstance(have, pl.List) and isinstance(have.inner, pl.Struct) and any(
        f.name == "score" for f in have.inner.fields)
    null_score = pl.lit(any_item(df["candidates"], pl.Series.is_null, "score") if scored else False)
    try:
        out = df.select(**cols)
    except pl.exceptions.PolarsError:  # e.g. a UInt64 label beyond the Int64 range: name the column
        for name, expr in cols.items():
            try:
                df.select(expr)
            except pl.exceptions.PolarsError:
                raise UserError(f"{shown}: column '{name}' has values that do not fit {READ_SCHEMA[name]} "
                                f"(type {df.schema[name]})") from None
        raise
    return out.with_columns(line=pl.int_range(1, pl.len() + 1, dtype=pl.Int64), _null_score=null_score)


def _parquet_candidates(have: pl.DataType) -> pl.Expr | None:
    """The ``candidates`` column rebuilt as ``List(CANDIDATE)`` when its struct type differs only
    in ways JSONL allows (None when a field has a wrong type): a writer infers the struct from the
    keys present, so files without the optional ``pid``/``score`` lack the field, while a JSONL
    record may simply leave the key out. A missing ``text`` becomes null and is reported per row;
    unknown fields are ignored, and integer scores are widened, as in the other columns."""
    if not isinstance(have, pl.List) or not isinstance(have.inner, pl.Struct):
        return None
    fields = {f.name: f.dtype for f in have.inner.fields}
    parts = {}
    for name, want in CANDIDATE.to_schema().items():
        got = fields.get(name)
        if got is None:
            parts[name] = pl.lit(None, want)
        elif got == want or got == pl.Null or (want == pl.Float64() and got.is_numeric()):
            parts[name] = pl.element().struct.field(name).cast(want)
        else:
            return None
    return pl.col("candidates").list.eval(pl.struct(**parts))


def detect_expr() -> pl.Expr:
    """The format a row's keys say it is (null when none fits)."""
    return (
        pl.when(pl.col("candidates").is_not_null()).then(pl.lit("candidates"))
        .when(pl.col("passage").is_not_null()).then(pl.lit("pairs"))
        .when(pl.col("pos").is_not_null() & pl.col("neg").is_not_null()).then(pl.lit("triplets"))
        .when(pl.col("pos").is_not_null()).then(pl.lit("legacy_nested"))
        .otherwise(pl.lit(None, pl.String))
    )


def grouped_row_problem(g: pl.DataFrame) -> pl.Expr:
    """Per row of a grouped frame `g` (GROUPED_SCHEMA), the first reason it cannot train, or
    null: a missing or blank query, no positive, a null or blank text, a score list whose length
    differs from its texts', a NaN or infinite score. Evaluated on `g` (the list checks are
    `_in_lists`' values for its rows)."""
    return (
        pl.when(pl.col("query").is_null()).then(pl.lit("missing_query"))
        .when(is_blank(pl.col("query"))).then(pl.lit("empty_query"))
        .when(pl.col("pos").list.len().fill_null(0) == 0).then(pl.lit("empty_pos"))
        .when(_in_lists(g, _null_or_blank, "pos")).then(pl.lit("empty_text_in_pos"))
        .when(_in_lists(g, _null_or_blank, "neg")).then(pl.lit("empty_text_in_neg"))
        .when(pl.col("pos_scores").is_not_null() & (pl.col("pos_scores").list.len() != pl.col("pos").list.len()))
        .then(pl.lit("pos_scores_length_differs_from_pos"))
        .when(pl.col("neg_scores").is_not_null()
              & (pl.col("neg_scores").list.len() != pl.col("neg").list.len().fill_null(0)))
        .then(pl.lit("neg_scores_length_differs_from_neg"))
        # JSON readers accept NaN and Infinity; a NaN score would make every teacher comparison false
        .when(_in_lists(g, _non_finite, "pos_scores", "neg_scores"))
        .then(pl.lit("nan_or_infinite_value_in_a_score_list"))
        .otherwise(pl.lit(None, pl.String))
    )


# Whitespace that `hashing.normalize_text` rewrites: a run of two or more characters, or one that
# is not a plain space. Python's `\s` also matches \x1c-\x1f and Rust's does not, hence the range.
# Rewriting only these is 4x faster than rewriting every `\s+` run, most of which are one space.
_WS_TO_REWRITE = r"[\s\x1c-\x1f]{2,}|[[\s\x1c-\x1f]&&[^ ]]"


def normalized(e: pl.Expr) -> pl.Expr:
    """`hashing.normalize_text` as an expression (whitespace runs become one space, ends are
    stripped): the form in which texts are compared for masking, dedup and eval overlap."""
    return e.str.replace_all(_WS_TO_REWRITE, " ").str.strip_chars()


# Whitespace other than the plain space that is ASCII; any other whitespace `normalized` rewrites
# is not ASCII.
_ASCII_WS_NOT_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f]"


def _compiled_whitespace() -> Any:
    """The compiled text module (`_whitespace.c`), or None in a copy of the repository without
    the build (see fast_jsonl), where each caller computes the same values with Polars."""
    import importlib

    try:  # (not `from tripleforge import`: that would take the package's attribute once imported)
        return importlib.import_module("tripleforge._whitespace")
    except ImportError:
        return None


def _string_views(texts: pl.Series) -> tuple[Any, Any, Any, list[Any]] | None:
    """(array, validity, views, data buffers) of a String Series as one Arrow string_view array,
    without a copy of its texts; None when it holds no text (all null)."""
    import pyarrow as pa

    arr = texts.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
    if arr.type != pa.string_view():
        return None
    validity, views, *data = arr.buffers()
    return arr, validity, views, data


def normalized_series(texts: pl.Series) -> pl.Series:
    """`normalized` over a String Series, same values, in one compiled pass (`_whitespace.c`):
    a text it leaves as it is keeps its bytes where they are, so a Series without a text to
    change costs one scan and comes back as it is. Several times the regex rewrite on code texts,
    whose newlines and indents make nearly every text change."""
    if (_whitespace := _compiled_whitespace()) is None:
        return _normalized_series_polars(texts)
    import pyarrow as pa

    if (parts := _string_views(texts)) is None:  # all null: nothing to normalize
        return texts
    arr, validity, views, data = parts
    out = _whitespace.normalize(views, tuple(data), arr.offset, len(arr), validity or b"", cpus())
    if out is None:
        return texts
    _, new_views, new_data = out
    buffers = [validity, arrow_buffer(new_views), *data, *map(arrow_buffer, new_data)]
    series = pl.from_arrow(pa.Array.from_buffers(pa.string_view(), len(arr), buffers, offset=arr.offset))
    assert isinstance(series, pl.Series)
    return series.alias(texts.name)


def blank_series(texts: pl.Series) -> pl.Series:
    """`is_blank` over a String Series (null for a null), in one compiled pass that settles most
    texts at their first character, where the regex costs a match per text."""
    if (_whitespace := _compiled_whitespace()) is None:
        return texts.to_frame("t").select(is_blank(pl.col("t"))).to_series().alias(texts.name)
    import numpy as np

    if (parts := _string_views(texts)) is None:  # all null
        return pl.Series(texts.name, [None] * len(texts), dtype=pl.Boolean)
    arr, validity, views, data = parts
    mask = np.frombuffer(_whitespace.blank(views, tuple(data), arr.offset, len(arr), validity or b""), dtype=np.bool_)
    blank = pl.Series(texts.name, mask)
    if not texts.null_count():
        return blank
    return pl.select(pl.when(texts.is_null()).then(None).otherwise(blank).alias(texts.name)).to_series()


def normalized_hash_series(texts: pl.Series, seed: int) -> pl.Series:
    """A UInt64 per text of a String Series: a hash of its `normalized` form, so equal normalized
    texts get equal hashes (nulls an arbitrary one). Masking and dedup compare these first and
    normalize only the texts whose hashes agree; the compiled pass (`_whitespace.c`) hashes
    each text as it normalizes it, without writing the normalized texts out."""
    if (_whitespace := _compiled_whitespace()) is None:  # another hash, the same use
        return normalized_series(texts).hash(seed)
    import numpy as np

    if (parts := _string_views(texts)) is None:  # all null
        return pl.repeat(seed, len(texts), dtype=pl.UInt64, eager=True).alias(texts.name)
    arr, validity, views, data = parts
    block = _whitespace.normalized_hash(views, tuple(data), arr.offset, len(arr), validity or b"", seed, cpus())
    return pl.Series(texts.name, np.frombuffer(arrow_buffer(block), dtype=np.uint64))


def any_item(lists: pl.Series, test: Callable[[pl.Series], pl.Series], field: str | None = None) -> pl.Series:
    """For each row of a list column (of structs: their string or number `field`), whether
    `test` (a Boolean per item, null counting as False) holds for one of its items; False for a
    null or empty list. `test` runs once over all the items (taken from the lists without a
    copy), not per list as `list.eval` would, and a column where no item passes costs just that."""
    import numpy as np
    import pyarrow.compute as pc

    items = _list_items(lists)
    if field is not None:
        items = pc.struct_field(items, field)
    hit = test(pl.Series(items)).fill_null(False).to_numpy()
    if not hit.any():
        return pl.repeat(False, len(lists), eager=True).alias(lists.name)
    lengths = lists.list.len().fill_null(0).to_numpy()
    rows = np.zeros(len(lists), dtype=np.bool_)
    rows[np.repeat(np.arange(len(lists)), lengths)[hit]] = True
    return pl.Series(lists.name, rows)


def _list_items(lists: pl.Series) -> Any:
    """The items of the non-null lists of a list column, in order, as one Arrow array taken
    without a copy (nulls and offsets applied)."""
    return lists.rechunk().to_arrow(compat_level=pl.CompatLevel.newest()).flatten()


def _in_lists(df: pl.DataFrame, test: Callable[[pl.Series], pl.Series], *cols: str, field: str | None = None) -> pl.Expr:
    """Rows of `df` where a list of one of `cols` holds an item (its `field`) that passes `test`
    (`any_item`)."""
    return pl.any_horizontal(pl.lit(any_item(df[c], test, field)) for c in cols)


def _non_finite(values: pl.Series) -> pl.Series:
    return ~values.is_finite()


def _null_or_blank(texts: pl.Series) -> pl.Series:
    return texts.is_null() | blank_series(texts)


def _normalized_series_polars(texts: pl.Series) -> pl.Series:
    """`normalized_series` by Polars expressions: the regex rewrite runs only on the texts that
    are not ASCII, hold two spaces in a row or whitespace other than the space, or start or end
    with a space (literal and byte-class scans, where the rewrite's regex stops at every space)."""
    t = pl.col("t")
    maybe = texts.to_frame("t").select(
        t.str.contains("  ", literal=True) | t.str.contains(_ASCII_WS_NOT_SPACE)
        | t.str.starts_with(" ") | t.str.ends_with(" ")
        | (t.str.len_bytes() != t.str.len_chars())
    ).to_series()
    idx = maybe.arg_true()
    if idx.len() == 0:
        return texts
    fixed = texts.gather(idx).to_frame("t").select(normalized(t)).to_series()
    return texts.clone().scatter(idx, fixed)


_NULL_SCORE_MSG = "a candidate 'score' is null"


def _problem_expr(fmt: str, df: pl.DataFrame) -> pl.Expr:
    """First validation problem of a row of `df` read as `fmt` (null when valid)."""
    checks: list[tuple[pl.Expr, str]] = [
        (pl.col("query").is_null(), "missing 'query'"),
        (pl.lit(blank_series(df["query"])), "empty 'query'"),
    ]
    if fmt in ("triplets", "legacy_nested"):
        checks += [
            (pl.col("pos").is_null(), "missing 'pos'"),
            (pl.col("pos").list.len() == 0, "empty 'pos'"),
            (_in_lists(df, pl.Series.is_null, "pos", "neg"), "null text in 'pos'/'neg'"),
            (_in_lists(df, blank_series, "pos"), "empty text in 'pos'"),
            (_in_lists(df, blank_series, "neg"), "empty text in 'neg'"),
            (pl.col("pos_scores").is_not_null() & (pl.col("pos_scores").list.len() != pl.col("pos").list.len()),
             "'pos_scores' length differs from 'pos'"),
            (pl.col("neg_scores").is_not_null()
             & (pl.col("neg_scores").list.len() != pl.col("neg").list.len().fill_null(0)),
             "'neg_scores' length differs from 'neg'"),
            (_in_lists(df, pl.Series.is_null, "pos_scores", "neg_scores"), "null in a score list"),
            (_in_lists(df, _non_finite, "pos_scores", "neg_scores"), "NaN or infinite value in a score list"),
        ]
    elif fmt == "pairs":
        checks += [
            (pl.col("passage").is_null(), "missing 'passage'"),
            (pl.lit(blank_series(df["passage"])), "empty 'passage'"),
            (pl.col("label").is_null(), "missing 'label'"),
            (~pl.col("label").is_in([0, 1]).fill_null(True), "'label' must be 0 or 1"),
            (~pl.col("score").is_finite(), "'score' is NaN or infinite"),
        ]
    else:
        checks += [
            (pl.col("candidates").is_null(), "missing 'candidates'"),
            (pl.col("candidates").list.len() == 0, "empty 'candidates'"),
            (_in_lists(df, pl.Series.is_null, "candidates", field="text"), "a candidate has no 'text'"),
            (_in_lists(df, blank_series, "candidates", field="text"), "a candidate has an empty 'text'"),
            (_in_lists(df, _non_finite, "candidates", field="score"), "a candidate 'score' is NaN or infinite"),
        ]
    if fmt == "candidates":
        checks.append((pl.col("_null_score"), _NULL_SCORE_MSG))
    checks.append((pl.col("_qid_clash").is_not_null(), _QID_REUSED))
    expr = pl.lit(None, pl.String)
    for cond, reason in reversed(checks):
        expr = pl.when(cond.fill_null(False)).then(pl.lit(reason)).otherwise(expr)
    return expr


def read_records(path: str | Path, override: str | None = None, strict: bool = True) -> ReadResult:
    """Read one JSONL/Parquet file in any of the four formats.

    Output frame: READ_SCHEMA columns plus ``line`` (1-based line or row) and ``source_format``.
    The format is detected per line; a file mixing formats, a row fitting no format or failing
    validation is an error ``file:line: reason`` when ``strict``, else a counted drop.
    """
    p = Path(path)  # as written: names the file in messages and `source`
    drops: Counter[str] = Counter()
    readable = p.expanduser()
    if not readable.is_file():
        raise UserError(f"{p}: file not found")
    if override is not None and override not in FORMATS:
        raise UserError(f"{p}: unknown format override '{override}' (use one of {', '.join(FORMATS)})")
    suffix = "".join(p.suffixes[-1:]).lower()
    if suffix == ".parquet":
        df = _read_parquet(readable, p)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        try:
            df = _read_jsonl(readable, strict, drops, p)
        except _UnreadableLine as bad:
            if bad.before.height:  # raises for an earlier line's problem, if any
                _raise_first_problem(p, _with_detected(bad.before, override), override)
            raise UserError(str(bad)) from None
    else:
        raise UserError(f"{p}: unsupported file type '{suffix}' (use .jsonl or .parquet)")
    rows_read = df.height + drops["malformed"]
    if df.height == 0:
        if rows_read == 0:  # every line dropped as malformed is counted as that, not as an empty file too
            if strict:
                raise UserError(f"{p}: empty file (no records)")
            drops["empty_file"] += 1
        return ReadResult(str(p), None, df.drop(_CHECK_COLUMNS, strict=False).with_columns(
            source_format=pl.lit(None, pl.String)), drops, rows_read)

    df = _with_detected(df, override)
    if strict:  # every row is valid and of one format once this returns: nothing to filter
        fmt = _raise_first_problem(p, df, override)
        return ReadResult(str(p), fmt, df.drop("_detected", *_CHECK_COLUMNS).with_columns(source_format=pl.lit(fmt)),
                          drops, rows_read)
    if override is None:
        unknown = df.filter(pl.col("_detected").is_null())
        if unknown.height:
            drops["unknown_format"] += unknown.height
            df = df.filter(pl.col("_detected").is_not_null())
        if df.height == 0:
            return ReadResult(str(p), None, df.drop("_detected", *_CHECK_COLUMNS).with_columns(
                source_format=pl.lit(None, pl.String)), drops, rows_read)
        fmt = str(df["_detected"][0])
        other = df.filter(pl.col("_detected") != fmt)
        if other.height:
            drops["mixed_format"] += other.height
            df = df.filter(pl.col("_detected") == fmt)
    else:
        fmt = override
    df = df.drop("_detected")
    # Two passes: a dropped line claims no qid, so qid clashes are looked for among the rows the
    # other checks keep (a bad first line of q1 took every valid q1 line with it as clashes).
    for clashes in (False, True):
        df = df.with_columns(_qid_clash=_qid_clash(df) if clashes else pl.lit(None, pl.Int64))
        df = df.with_columns(_problem=_problem_expr(fmt, df))
        bad = df.filter(pl.col("_problem").is_not_null())
        if bad.height:  # strict mode raised above
            for reason, n in bad.group_by("_problem").len().iter_rows():
                drops[_reason_key(reason)] += n
            df = df.filter(pl.col("_problem").is_null())
    df = df.drop("_problem", *_CHECK_COLUMNS).with_columns(source_format=pl.lit(fmt))
    return ReadResult(str(p), fmt, df, drops, rows_read)


def _with_detected(df: pl.DataFrame, override: str | None) -> pl.DataFrame:
    """`df` (READ_SCHEMA + ``line``, ``_null_score``) plus ``_detected`` (each row's format by its
    keys) and ``_qid_clash`` (see `_qid_clash`)."""
    df = df.with_columns(_detected=detect_expr(), _qid_clash=_qid_clash(df))
    if override is None and (df["_detected"] == "triplets").any():
        # the spec makes `neg` optional in triplets: beside lines with a `neg` list, a line with
        # `pos` alone (or a null `neg`) is a triplet without negatives, not a line of another format
        df = df.with_columns(_detected=pl.col("_detected").replace("legacy_nested", "triplets"))
    return df


# Per-row facts the readers and `_qid_clash` add for validation, dropped before the frame is returned.
_CHECK_COLUMNS = ("_null_score", "_qid_clash")
_QID_REUSED = "'qid' already names another query"


def _qid_clash(df: pl.DataFrame) -> pl.Series:
    """For each row whose ``qid`` an earlier row gave to another query (whitespace-normalized), the
    line of the first row with that qid; null elsewhere. Grouping by such a qid would file one
    query's passages under another (pairs and candidates are grouped by qid) and give pids twice."""
    none = pl.repeat(None, df.height, dtype=pl.Int64, eager=True)
    if df["qid"].null_count() == df.height:
        return none
    # Common case, settled by hashes: each qid comes with one exact query text (distinct hashes of
    # (qid, query) as many as of qid). Only otherwise are queries normalized and compared.
    # (two column hashes xor-ed cost half a struct's hash)
    named = df.filter(pl.col("qid").is_not_null()) if df["qid"].null_count() else df
    qids = named["qid"].hash(1)
    distinct = qids.n_unique()
    if distinct == named.height or (qids ^ named["query"].hash(2)).n_unique() == distinct:
        return none  # (the first: no qid twice, as in a candidates file with a line per query)
    keyed = df.select("qid", "line", _nq=normalized_series(df["query"]))
    first = keyed.filter(pl.col("qid").is_not_null() & pl.col("_nq").is_not_null()).group_by(
        "qid", maintain_order=True).agg(_fq=pl.col("_nq").first(), _fl=pl.col("line").first())
    joined = keyed.join(first, on="qid", how="left", maintain_order="left")
    clash = pl.col("_nq").is_not_null() & pl.col("_fq").is_not_null() & (pl.col("_nq") != pl.col("_fq"))
    return joined.select(pl.when(clash).then(pl.col("_fl")).otherwise(None)).to_series()


# A key set to null reads as a missing one (Arrow gives both as null), hence "with a value".
_UNKNOWN_FORMAT = ("unknown format: no 'candidates', 'passage' or 'pos' key with a non-null value "
                   "(set convert_formats.format_override to force one)")


def _raise_first_problem(p: Path, df: pl.DataFrame, override: str | None) -> str:
    """Strict mode: raise `file:line: reason` for the first line with any problem, whether its
    format is unknown, differs from the file's (the first detected line's), or its values fail
    validation; checking these one kind after another would name a later line first. Returns
    the file's format when every line is fine."""
    if override is None:
        detected = df.filter(pl.col("_detected").is_not_null())
        if detected.height == 0:
            raise UserError(f"{p}:{df['line'][0]}: {_UNKNOWN_FORMAT}")
        fmt, first = str(detected["_detected"][0]), int(detected["line"][0])
        problem = (
            pl.when(pl.col("_detected").is_null()).then(pl.lit(_UNKNOWN_FORMAT))
            .when(pl.col("_detected") != fmt)
            .then(pl.lit("mixed formats: this line is ") + pl.col("_detected")
                  + pl.lit(f", line {first} is {fmt} (one format per file)"))
            .otherwise(_problem_expr(fmt, df))
        )
    else:
        fmt, problem = override, _problem_expr(override, df)
    bad = df.select("line", "qid", "_qid_clash", _problem=problem).filter(pl.col("_problem").is_not_null())
    if bad.height:
        reason = bad["_problem"][0]
        if reason == _QID_REUSED:
            reason = f"'qid' {json.dumps(bad['qid'][0])} already names another query (line {bad['_qid_clash'][0]})"
        elif reason == _NULL_SCORE_MSG:
            reason += " (leave the key out to label it by the default 1.0, or give a number)"
        raise UserError(f"{p}:{bad['line'][0]}: {reason}")
    return fmt


def _reason_key(reason: str) -> str:
    """A metrics-friendly key for a validation message."""
    keep = "".join(ch if ch.isalnum() else "_" for ch in reason.lower())
    return "_".join(part for part in keep.split("_") if part)


# ----------------------------------------------------------------------------------------------
# Conversions (pure Polars expressions; no Python per row)


def _meta_exprs(source: pl.Expr, qid: pl.Expr) -> dict[str, pl.Expr]:
    """The META columns of records read from a file: `source` is `_line_source`'s."""
    return {
        "qid": qid,
        "query": pl.col("query"),
        "prompt": pl.col("prompt"),
        "type": pl.col("type"),
        "task": pl.col("task"),
        "language": pl.lit(None, pl.String),
        "code_language": pl.lit(None, pl.String),
        "tgt_code_language": pl.lit(None, pl.String),
        "doc_id": pl.lit(None, pl.String),
        "pair_id": pl.lit(None, pl.String),
        "candidate_idx": pl.lit(None, pl.Int64),
        "split": pl.lit("train"),
        "source_format": pl.col("source_format"),
        "source": source,
    }


def _fill_nulls(df: pl.DataFrame, col: str, default: pl.Expr) -> pl.Expr:
    """`col` with its nulls replaced by `default`. Polars evaluates `default` for every row even
    where `col` is set, and a default here is a string built per row; so it is left out when
    `col` has no nulls, which is the common case (files that carry their own qids and pids)."""
    return pl.coalesce(pl.col(col), default) if df[col].null_count() else pl.col(col)


def _qids_by_query(df: pl.DataFrame, source: str) -> pl.Expr:
    """Pairs/candidates ``qid``, a missing one being ``<file>:<line>`` of the first line without a
    qid that has the same (whitespace-normalized) query: the spec groups pairs by query, and a
    pairs file without qids is common; numbering each line apart made every label-0 line a
    query without a positive."""
    if not df["qid"].null_count():
        return pl.col("qid")
    keyed = df.select("line", _none=pl.col("qid").is_null(), _nq=normalized_series(df["query"]))
    first = keyed.select(pl.col("line").min().over("_nq", "_none")).to_series()
    return pl.coalesce(pl.col("qid"), _line_source(source, first))


def _line_source(source: str, lines: pl.Series) -> pl.Expr:
    """``<source>:<line>`` for each of `lines` (a frame's rows): the compiled texts where built."""
    if (texts := line_sources(source + ":", lines)) is not None:
        return pl.lit(texts)
    return pl.lit(source + ":") + pl.lit(lines).cast(pl.String)


def records_to_grouped(rec: ReadResult | pl.DataFrame, source: str | None = None) -> pl.DataFrame:
    """Triplets/legacy_nested records -> GROUPED_SCHEMA (``neg`` defaults to [], ``qid`` to ``file:line``)."""
    df, src = (rec.frame, rec.path) if isinstance(rec, ReadResult) else (rec, source or "")
    lines = _line_source(src, df["line"])
    meta = _meta_exprs(lines, _fill_nulls(df, "qid", lines))
    return df.select(
        **meta,
        pos=pl.col("pos"),
        neg=pl.col("neg").fill_null(pl.lit([], dtype=STR_LIST)),
        pos_scores=pl.col("pos_scores"),
        # a row without negatives needs no neg_scores to be scored
        neg_scores=pl.when((pl.col("neg").list.len().fill_null(0) == 0) & pl.col("pos_scores").is_not_null())
        .then(pl.coalesce(pl.col("neg_scores"), pl.lit([], dtype=F64_LIST)))
        .otherwise(pl.col("neg_scores")),
    ).select(list(GROUPED_SCHEMA))


def records_to_pairs(rec: ReadResult, threshold: float = 0.5) -> pl.DataFrame:
    """Pairs/candidates records -> PAIRS_SCHEMA; triplets/legacy_nested go through the grouped frame."""
    return _records_to_pairs(rec, threshold)[0]


def _records_to_pairs(rec: ReadResult, threshold: float) -> tuple[pl.DataFrame, pl.Series | None]:
    """`records_to_pairs`, and the first row of each qid's pairs when they are known to come in
    runs (`_candidate_pairs`), else None."""
    if rec.format in ("triplets", "legacy_nested"):
        return grouped_to_pairs(records_to_grouped(rec)), None
    df = rec.frame
    qid = _qids_by_query(df, rec.path)
    if rec.format == "pairs":
        out = df.select(
            **_meta_exprs(_line_source(rec.path, df["line"]), qid), passage=pl.col("passage"), pid=pl.col("pid"),
            label=pl.col("label"), score=pl.col("score"),
        )
        return _with_pair_pids(out).select(list(PAIRS_SCHEMA)), None
    if rec.format == "candidates":
        # Only the columns that vary go through the explode, which would write out a constant
        # column's value for every candidate: the rest are set after it, as constants.
        meta = _meta_exprs(_line_source(rec.path, df["line"]), qid)
        constant = _null_columns(df, ["prompt", "type", "task"])
        varying = {c: meta[c] for c in ("qid", "query", "prompt", "type", "task", "source") if c not in constant}
        pairs, runs = _candidate_pairs(df.select(**varying, candidates=pl.col("candidates")), threshold)
        return pairs.with_columns(split=meta["split"], source_format=pl.lit(rec.format)), runs
    return pl.DataFrame(schema=PAIRS_SCHEMA), None


def _with_pair_pids(out: pl.DataFrame) -> pl.DataFrame:
    """Missing pids become ``<qid>:p<i>`` for a positive, ``<qid>:n<i>`` for a negative, i
    counting the query's positives (negatives) in file order: the pid the same passage gets at
    position i of the grouped ``pos`` (``neg``) list, so pairs -> triplets -> pairs keeps it.
    Pairs with a given pid count too, so giving one line a pid does not renumber the others."""
    if not out["pid"].null_count():
        return out
    # Numbered per group and scattered back: a `int_range().over("qid", "label")` window gives
    # the same numbers at three times the cost (0.43 s vs 0.14 s for 1M pairs).
    i = (
        out.select("qid", "label").with_row_index("_o").group_by("qid", "label").agg("_o")
        .with_columns(_i=pl.int_ranges(pl.col("_o").list.len())).explode("_o", "_i").sort("_o")["_i"]
    )
    tag = pl.when(pl.col("label") == 1).then(pl.lit(":p")).otherwise(pl.lit(":n"))
    return out.with_columns(pid=pl.coalesce(pl.col("pid"), pl.col("qid") + tag + i.cast(pl.String)))


def candidates_to_pairs(df: pl.DataFrame, threshold: float = 0.5) -> pl.DataFrame:
    """``qid``, other META columns (those missing come out null) + ``candidates``
    list[{text, score, pid}] -> PAIRS_SCHEMA, one row per candidate.

    A missing score counts as 1.0 (the spec's default) for the label only, ``label = score >=
    threshold``; ``score`` stays null, since 1.0 is no teacher's judgment (a partly scored query
    then loses its score lists, as pairs input does: ``partial_scores``); a missing
    pid becomes ``<qid>:c<i>``, i counting the query's candidates over all its records in file
    order (records sharing a qid continue the count). Candidate order is kept."""
    return _candidate_pairs(df, threshold)[0]


def _candidate_pairs(df: pl.DataFrame, threshold: float) -> tuple[pl.DataFrame, pl.Series | None]:
    """`candidates_to_pairs`, and the first row of each record's pairs when no two records share
    a qid (else None): the qid runs of the pairs, which `grouped_with_positive` then need not
    look for."""
    distinct = not df.height or _all_distinct(df["qid"])
    if not distinct:
        n = pl.col("candidates").list.drop_nulls().list.len()
        df = df.with_columns(_before=(n.cum_sum() - n).over("qid"))
    rows = _explode_numbered(df, "candidates")
    if not distinct:
        rows = rows.with_columns(_i=pl.col("_i") + pl.col("_before"))
    rows = rows.with_columns(
        passage=pl.col("candidates").struct.field("text"),
        score=pl.col("candidates").struct.field("score"),
        pid=pl.col("candidates").struct.field("pid"),
    )
    rows = rows.with_columns(
        pid=_fill_nulls(rows, "pid", pl.col("qid") + ":c" + pl.col("_i").cast(pl.String)),
        label=(pl.col("score").fill_null(1.0) >= threshold).cast(pl.Int64),
        *[pl.lit(None, META_SCHEMA[c]).alias(c) for c in META if c not in df.columns],
    )
    runs = rows.select((pl.col("_i") == 0).arg_true()).to_series() if distinct else None
    return rows.select(list(PAIRS_SCHEMA)), runs


def _explode_numbered(df: pl.DataFrame, col: str) -> pl.DataFrame:
    """One row per non-null element of list column `col`, in order, with ``_i`` = the element's
    position among its row's non-null elements (the ``<i>`` of generated pids, the index into
    score lists). Numbering the lists before exploding avoids a window over the exploded rows
    (``int_range(pl.len()).over(row)``), which cost more than the rest of the conversion."""
    if _list_items(df[col]).null_count:
        df = df.with_columns(pl.col(col).list.drop_nulls())  # rare; keeps the numbering of non-null elements
    return (
        df.with_columns(_i=pl.int_ranges(pl.col(col).list.len()))
        .explode(col, "_i")
        .filter(pl.col(col).is_not_null())
    )


def grouped_to_pairs(g: pl.DataFrame) -> pl.DataFrame:
    """GROUPED_SCHEMA -> PAIRS_SCHEMA: every ``pos`` with label 1 then every ``neg`` with label 0,
    each with its score (null when the row has no score list). Order: input row, pos before neg,
    list position. The pid is ``<qid>:p<i>`` / ``<qid>:n<i>``, i counting the qid's positives
    (negatives) over its rows in order: two rows sharing a qid (records of one query) would
    otherwise give two passages one pid; it is the list position when the qid has one row."""
    base = g.with_row_index("_row")
    shared = bool(g.height) and not g["qid"].is_unique().all()

    def side(texts: str, scores: str, label: int, tag: str) -> pl.DataFrame:
        n = pl.col(texts).list.drop_nulls().list.len().fill_null(0)
        before = (n.cum_sum() - n).over("qid") if shared else pl.lit(0, pl.Int64)
        rows = base.select(*META, "_row", passage=pl.col(texts), _scores=pl.col(scores), _before=before)
        return (
            _explode_numbered(rows, "passage")
            .with_columns(
                score=pl.col("_scores").list.get(pl.col("_i"), null_on_oob=True),
                label=pl.lit(label, pl.Int64),
                pid=pl.col("qid") + f":{tag}" + (pl.col("_i") + pl.col("_before")).cast(pl.String),
                _side=pl.lit(1 - label, pl.Int8),
            )
        )

    both = pl.concat([side("pos", "pos_scores", 1, "p"), side("neg", "neg_scores", 0, "n")])
    return both.sort(["_row", "_side", "_i"], maintain_order=True).select(list(PAIRS_SCHEMA))


def _all_distinct(values: pl.Series) -> bool:
    """Whether no two values are equal (nulls count as one value): distinct hashes settle it, a
    third of the cost of counting distinct strings; only a repeated hash is counted exactly."""
    return values.hash().n_unique() == values.len() or values.n_unique() == values.len()


def _run_starts(p: pl.DataFrame) -> pl.Series | None:
    """The first row of each run of equal ``qid``s in `p`, when each qid fills one run, as in a
    file written query by query (else None): grouping is then cutting at these rows, with no
    hashing of qids."""
    if p.height == 0:
        return None
    qid = pl.col("qid")
    starts = p.select((qid.ne_missing(qid.shift()) | (pl.int_range(pl.len()) == 0)).arg_true()).to_series()
    return starts if _all_distinct(p["qid"].gather(starts)) else None  # row 0 starts a run, null or not


def _lists_by_runs(values: pl.Series, keep: Any, sizes: Any, null: Any = None) -> pl.Series:
    """The lists of `values` where `keep` (a numpy bool per value) holds, in order, list i
    holding the next sizes[i] kept values; null where `null` (a bool per list) holds. The lists
    are one filter of `values` and their offsets, not a group-by."""
    import numpy as np
    import pyarrow as pa

    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    items = values.filter(pl.Series(keep)).rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), items, mask=None if null is None else pa.array(null))
    return pl.Series(values.name, lists)


def _grouped_by_runs(p: pl.DataFrame, starts: pl.Series, absent: list[str], positive_only: bool) -> pl.DataFrame:
    """`pairs_to_grouped` of pairs whose qids come in runs (`_run_starts`); with `positive_only`,
    only the groups with a label-1 pair: the lists of the others are never built, which costs
    less than building and filtering them."""
    import numpy as np

    # Sums per run rather than running sums over the rows: a fresh 1M-row int64 array costs
    # more in page faults than the sum itself.
    at = starts.to_numpy().astype(np.int64)
    sizes = np.diff(np.append(at, p.height))
    label = p["label"].to_numpy()  # 0 or 1 (validated)
    pos, neg = label == 1, label == 0
    n_pos = np.add.reduceat(label, at) if len(at) else sizes
    n_neg = sizes - n_pos
    unscored = None
    if p["score"].null_count():  # partial scores would misalign: see pairs_to_grouped
        unscored = np.add.reduceat(p["score"].is_null().to_numpy(), at, dtype=np.int64) > 0
    first = starts
    if positive_only:
        picked = n_pos > 0
        neg = neg & np.repeat(picked, sizes)
        n_pos, n_neg, first = n_pos[picked], n_neg[picked], starts.filter(pl.Series(picked))
        unscored = None if unscored is None else unscored[picked]
    return p.select(c for c in META if c not in absent).gather(first).with_columns(
        _lists_by_runs(p["passage"], pos, n_pos).alias("pos"),
        _lists_by_runs(p["passage"], neg, n_neg).alias("neg"),
        _lists_by_runs(p["score"], pos, n_pos, unscored).alias("pos_scores"),
        _lists_by_runs(p["score"], neg, n_neg, unscored).alias("neg_scores"),
        *[pl.lit(None, META_SCHEMA[c]).alias(c) for c in absent],
    )


def _null_columns(df: pl.DataFrame, cols: list[str]) -> list[str]:
    """Those of `cols` that are null in every row of `df`. Counted in one select: taking a column
    as a Series writes out a constant one (``pl.lit``, as ``split`` and ``source_format`` are),
    9 ms per 1M-row string column, for a count a select reads off the constant."""
    counts = df.select(pl.col(cols).null_count()).row(0, named=True)
    return [c for c in cols if counts[c] == df.height]


def pairs_to_grouped(p: pl.DataFrame) -> pl.DataFrame:
    """PAIRS_SCHEMA -> GROUPED_SCHEMA, grouped by ``qid`` in first-seen order (stable).

    Score lists are null unless every pair of that side has a score. Groups may have an empty
    ``pos`` (a query with only label-0 pairs); callers drop them where a positive is required."""
    return _pairs_grouped(p, positive_only=False)[0]


def grouped_with_positive(p: pl.DataFrame, runs: pl.Series | None = None) -> tuple[pl.DataFrame, int]:
    """The rows of `pairs_to_grouped(p)` with a non-empty ``pos``, and how many rows have none.
    `runs`, when the caller knows it: the first row of each qid's pairs, all of which follow it."""
    return _pairs_grouped(p, positive_only=True, runs=runs)


def _pairs_grouped(p: pl.DataFrame, positive_only: bool, runs: pl.Series | None = None) -> tuple[pl.DataFrame, int]:
    pos = pl.col("label") == 1
    neg = pl.col("label") == 0
    # Columns null throughout (most metadata of an external file) are added back after the
    # grouping: taking their first value per group cost as much as the rest of the aggregation.
    absent = _null_columns(p, [c for c in META if c != "qid"])
    starts = _run_starts(p) if runs is None else runs
    if starts is not None:
        g = _grouped_by_runs(p, starts, absent, positive_only)
        return g.select(list(GROUPED_SCHEMA)), starts.len() - g.height
    g = p.group_by("qid", maintain_order=True).agg(
        *[pl.col(c).first() for c in META if c != "qid" and c not in absent],
        pos=pl.col("passage").filter(pos),
        neg=pl.col("passage").filter(neg),
        pos_scores=pl.col("score").filter(pos),
        neg_scores=pl.col("score").filter(neg),
        _any_null=pl.col("score").is_null().any(),
    )
    groups = g.height
    if positive_only:
        g = g.filter(pl.col("pos").list.len() > 0)
    # A query either has scores for all its pairs or none: partial scores would misalign.
    unscored = pl.col("_any_null")
    g = g.with_columns(
        *[pl.lit(None, META_SCHEMA[c]).alias(c) for c in absent],
        pos_scores=pl.when(unscored).then(pl.lit(None, F64_LIST)).otherwise("pos_scores"),
        neg_scores=pl.when(unscored).then(pl.lit(None, F64_LIST)).otherwise("neg_scores"),
    )
    return g.select(list(GROUPED_SCHEMA)), groups - g.height


# exact(side, rows) -> ``_g, _nq, _nt`` (group, normalized query and text) of the given rows
# (``_r``) of the negatives (side "neg") or the positives ("pos"): what the hashes stand for.
Exact = Callable[[str, pl.Series], pl.DataFrame]


def _negatives_to_remove(negs: pl.DataFrame, positives: pl.DataFrame, exact: Exact, drops: Counter[str]) -> pl.Series:
    """``_r`` of the negatives in `negs` (``_r, _gh, _hq, _ht``: row, and UInt64 hashes of the
    group (row or qid, which has one query) and of the normalized query and text,
    `normalized_hash_series`; in order) that equal a positive of their query (`positives`:
    ``_r, _hq, _ht``), counted as ``negative_is_positive``, or repeat an earlier negative of
    their group, counted as ``duplicate_negative`` (the first is kept); queries and texts
    compared whitespace-normalized.

    Hashes settle the common case, a file where neither happens: a negative whose (query, text)
    hash no positive has, and a set of (group, text) hashes as large as the negatives, are
    settled without a text being looked at. Only the rows whose hashes agree (equal texts, or a
    collision) are compared exactly, through `exact`."""
    pair_key = pl.col("_hq") ^ pl.col("_ht")
    positive_keys = positives.select(pair_key).to_series()
    # A group has one query, so (query, text) hashes all distinct, positives' and negatives',
    # rule out both at once: one distinct count, the common case's only cost.
    if positive_keys.append(negs.select(pair_key).to_series()).n_unique() == positives.height + negs.height:
        return negs["_r"].clear()
    maybe = negs.filter(pair_key.is_in(positive_keys.implode()))
    as_pos = maybe["_r"].clear()
    if maybe.height:
        same = positives.filter(pair_key.is_in(maybe.select(pair_key).to_series().implode()))
        candidates = exact("neg", maybe["_r"]).with_columns(_r=maybe["_r"])
        as_pos = candidates.join(exact("pos", same["_r"]), on=["_nq", "_nt"], how="semi")["_r"]
    rest = negs.filter(~pl.col("_r").is_in(as_pos.implode())) if as_pos.len() else negs
    group_keys = rest.select(pl.col("_gh") ^ pl.col("_ht")).to_series()
    if group_keys.n_unique() == group_keys.len():
        dup = as_pos.clear()
    else:  # every copy of a repeated negative repeats its hash: the exact pass needs only those
        repeats = rest["_r"].filter(group_keys.is_duplicated())
        repeats = exact("neg", repeats).with_columns(_r=repeats)
        dup = repeats.filter(~pl.struct("_g", "_nt").is_first_distinct())["_r"]
    drops.update({k: n for k, n in (("negative_is_positive", as_pos.len()), ("duplicate_negative", dup.len())) if n})
    return pl.concat([as_pos, dup])


def whole_score_lists(g: pl.DataFrame, drops: Counter[str]) -> pl.DataFrame:
    """GROUPED rows scored on one side only (``pos_scores`` without ``neg_scores`` for a
    non-empty ``neg``, or the reverse) without either list, counted as ``partial_scores`` (rows
    kept), as pairs input with partial scores is: a teacher that judged only the positives gives
    nothing to distil, and a half-scored row would pass as scored wherever one list is looked at.
    (A row without negatives has ``neg_scores`` ``[]`` from `records_to_grouped`.)"""
    half = pl.col("pos_scores").is_null() != pl.col("neg_scores").is_null()
    n = int(g.select(half.sum()).item())
    if not n:
        return g
    drops["partial_scores"] += n
    return g.with_columns(pos_scores=pl.when(half).then(pl.lit(None, F64_LIST)).otherwise(pl.col("pos_scores")),
                          neg_scores=pl.when(half).then(pl.lit(None, F64_LIST)).otherwise(pl.col("neg_scores")))


def mask_negatives(g: pl.DataFrame, drops: Counter[str]) -> pl.DataFrame:
    """GROUPED rows without the negatives that contradict a positive, the guarantee mining gives
    its own rows: a negative equal to a positive of any row with the same query (counted, one per
    negative, as ``negative_is_positive``), and a repeat of an earlier negative of its row
    (``duplicate_negative``); texts and queries compared whitespace-normalized. ``neg_scores``
    stay aligned with ``neg``; row and list order are kept. Lists must hold no nulls (validated)."""
    if g.height == 0 or not g.select(pl.col("neg").list.len().sum()).item():
        return g
    rows = g.select("pos", "neg", _hq=normalized_hash_series(g["query"], 1)).with_row_index("_g")
    positives = rows.select("_g", "_hq", _t="pos").explode("_t").with_row_index("_r")
    positives = positives.with_columns(_ht=normalized_hash_series(positives["_t"], 2))
    negs = _explode_numbered(rows.select("_g", "_hq", "neg"), "neg").rename({"neg": "_t"})
    negs = negs.with_columns(_gh=pl.col("_g").cast(pl.UInt64), _ht=normalized_hash_series(negs["_t"], 2))
    negs = negs.with_row_index("_r")

    def exact(side: str, at: pl.Series) -> pl.DataFrame:
        picked = (negs if side == "neg" else positives).select("_g", "_t")[at]
        return picked.select("_g", _nq=normalized_series(g["query"].gather(picked["_g"])),
                             _nt=normalized_series(picked["_t"]))

    remove = _negatives_to_remove(negs, positives, exact, drops)
    if remove.len() == 0:
        return g  # the common case: nothing to rebuild
    keep = negs.filter(~pl.col("_r").is_in(remove.implode())).group_by("_g").agg(_keep=pl.col("_i"))
    out = g.with_row_index("_g").join(keep, on="_g", how="left", maintain_order="left")
    idx = pl.col("_keep").fill_null(pl.lit([], dtype=pl.List(pl.Int64)))
    return out.with_columns(neg=pl.col("neg").list.gather(idx), neg_scores=pl.col("neg_scores").list.gather(idx)
                            ).select(list(GROUPED_SCHEMA))


def _text_pair_hashes(p: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """``_hq``, ``_ht``: `normalized_hash_series` of the PAIRS rows' queries and passages."""
    return normalized_hash_series(p["query"], 1).alias("_hq"), normalized_hash_series(p["passage"], 2).alias("_ht")


def _text_pairs_distinct(p: pl.DataFrame, hashes: tuple[pl.Series, pl.Series] | None = None) -> bool:
    """Whether no two PAIRS rows have the same query and passage, whitespace-normalized, by one
    distinct count of hashes (`_text_pair_hashes`, made unless given): then no label-0 pair
    repeats another of its qid or equals a positive of its query (a qid has one query,
    validated), and no row is a copy of another (copies have equal texts)."""
    hq, ht = hashes or _text_pair_hashes(p)
    return (hq ^ ht).n_unique() == p.height


def mask_negative_pairs(p: pl.DataFrame, drops: Counter[str]) -> pl.DataFrame:
    """PAIRS rows without the label-0 pairs that contradict a positive, as `mask_negatives` does
    for grouped rows: a label-0 passage equal to a label-1 passage of a pair with the same query
    (``negative_is_positive``, e.g. a candidate listed twice, above and below the threshold), or
    repeating an earlier label-0 passage of the same ``qid`` (``duplicate_negative``); texts and
    queries compared whitespace-normalized, one count per removed pair. Order is kept."""
    if p.height == 0 or not (p["label"] == 0).any():
        return p
    # hashes only: the texts are looked at (by `exact`) where hashes agree
    hq, ht = _text_pair_hashes(p)
    if _text_pairs_distinct(p, (hq, ht)):
        return p
    keyed = pl.DataFrame([p["label"], p["qid"].hash(3).alias("_gh"), hq, ht]).with_row_index("_r")

    def exact(side: str, at: pl.Series) -> pl.DataFrame:
        picked = p.select("qid", "query", "passage")[at]
        return picked.select(_g="qid", _nq=normalized_series(picked["query"]), _nt=normalized_series(picked["passage"]))

    positives = keyed.filter(pl.col("label") == 1)
    remove = _negatives_to_remove(keyed.filter(pl.col("label") == 0), positives, exact, drops)
    if remove.len() == 0:
        return p
    return p.filter(~pl.int_range(pl.len(), dtype=pl.UInt32).is_in(remove.implode()))


RECORD_CONTENT = ["query", "prompt", "type", "pos", "neg", "pos_scores", "neg_scores"]
PAIR_CONTENT = ["qid", "query", "passage", "label", "score"]


def record_probe() -> pl.Expr:
    """A hash that copies of a grouped record (equal on RECORD_CONTENT) share, for `first_copies`:
    the query's, with the sizes of its lists, of its first positive and negative, and their
    scores, so that two records of one query with other passages (a query asked twice, common
    in real files) seldom need the full comparison. Sizes, not texts: a text's size sits in its
    string view, while hashing the passages themselves reads them from all over memory (5x the
    query's hash)."""
    facts = [pl.col("pos").list.len(), pl.col("neg").list.len(),
             pl.col("pos").list.first().str.len_bytes(), pl.col("neg").list.first().str.len_bytes(),
             pl.col("pos_scores").list.first(), pl.col("neg_scores").list.first()]
    probe = pl.col("query").hash(4)
    for seed, fact in enumerate(facts, 5):
        probe = probe ^ fact.hash(seed)
    return probe


def first_copies(df: pl.DataFrame, cols: list[str], probe: pl.Expr) -> pl.Series | None:
    """A mask keeping the first of the rows equal on `cols` (file order), or None when no two
    rows are equal. `probe` is a cheap hash that equal rows share: only rows whose probe repeats
    are compared in full (a hash collision only widens that comparison), so a file without
    copies costs one hash pass."""
    hashes = df.select(probe).to_series()
    if hashes.n_unique() == hashes.len():  # the common case; a distinct count costs half of is_duplicated
        return None
    maybe = hashes.is_duplicated()
    rows = df.with_row_index("_r").filter(maybe)
    later = rows.filter(~pl.struct(cols).is_first_distinct()).get_column("_r")
    if later.len() == 0:
        return None
    return ~pl.int_range(df.height, dtype=pl.UInt32, eager=True).is_in(later.implode())


def drop_copies(df: pl.DataFrame, cols: list[str], probe: pl.Expr, drops: Counter[str]) -> pl.DataFrame:
    """`df` without exact copies of an earlier row (on `cols`), counted as ``duplicate_record``:
    two copies of a record in one batch make each one's positive an in-batch negative of the other."""
    keep = first_copies(df, cols, probe)
    if keep is None:
        return df
    drops["duplicate_record"] += int((~keep).sum())
    return df.filter(keep)


def read_external(path: str | Path, override: str | None = None, strict: bool = True,
                  threshold: float = 0.5) -> tuple[pl.DataFrame, pl.DataFrame, ReadResult]:
    """One external file -> (grouped, pairs, read result). Negatives that equal a positive of the
    same query, or repeat one of the row's negatives, are removed (`mask_negatives`,
    `mask_negative_pairs`) before the other frame is derived, so both frames agree. Grouped rows
    without a positive (possible from pairs/candidates input) are removed and counted as
    ``no_positive``, in strict mode too: their lines are valid pairs (reranker negatives) and stay
    in the pairs frame; they only cannot form a triplet. Exact copies of an earlier record of the
    file (a pairs line, or a query whose lines equal an earlier query's) are removed from both
    frames and counted as ``duplicate_record``. These removals are data-level, counted in both
    modes, never a strict-mode error."""
    rec = read_records(path, override=override, strict=strict)
    if rec.format is None:
        return pl.DataFrame(schema=GROUPED_SCHEMA), pl.DataFrame(schema=PAIRS_SCHEMA), rec
    if rec.format in ("triplets", "legacy_nested"):
        grouped = mask_negatives(whole_score_lists(records_to_grouped(rec), rec.drops), rec.drops)
        grouped = drop_copies(grouped, RECORD_CONTENT, record_probe(), rec.drops)
        pairs = grouped_to_pairs(grouped)
    else:
        pairs, runs = _records_to_pairs(rec, threshold)
        if _text_pairs_distinct(pairs):
            # Nothing to mask or drop; nor a query whose lines copy an earlier query's: they would
            # repeat its (query, passage) pairs. So the groups without a positive are only counted.
            grouped, empty = grouped_with_positive(pairs, runs)
        else:
            pairs = mask_negative_pairs(pairs, rec.drops)
            pairs = drop_copies(pairs, PAIR_CONTENT, pl.col("qid").hash() ^ pl.col("passage").hash(), rec.drops)
            grouped = pairs_to_grouped(pairs)
            # queries (qids) with the same lines as an earlier one: their pairs go too
            keep = first_copies(grouped, RECORD_CONTENT, record_probe())
            if keep is not None:
                rec.drops["duplicate_record"] += int((~keep).sum())
                pairs = pairs.filter(~pl.col("qid").is_in(grouped.filter(~keep).get_column("qid").implode()))
                grouped = grouped.filter(keep)
            has_positive = grouped["pos"].list.len() > 0
            empty = int((~has_positive).sum())
            grouped = grouped.filter(has_positive) if empty else grouped
        if 0 < pairs["score"].null_count() < pairs.height:
            partly = pairs.group_by("qid").agg(n=pl.col("score").null_count(), of=pl.len())
            if n := partly.filter((pl.col("n") > 0) & (pl.col("n") < pl.col("of"))).height:
                rec.drops["partial_scores"] += n  # rows kept, score lists dropped: see pairs_to_grouped
        if empty:
            rec.drops["no_positive"] += empty
    return grouped, pairs, rec


def to_record_dicts(g: pl.DataFrame, fmt: str) -> list[dict[str, Any]]:
    """Canonical frame -> plain dicts in the spec's key layout (for JSONL export and round trips).
    Null-valued optional keys are left out."""
    if fmt in ("triplets", "legacy_nested"):
        cols = ["query", "pos", "neg", "pos_scores", "neg_scores", "prompt", "type"]
        if fmt == "legacy_nested":
            cols = ["query", "pos", "neg", "pos_scores", "neg_scores"]
    elif fmt == "pairs":
        cols = ["query", "passage", "label", "score", "qid", "pid"]
    else:
        raise UserError(f"cannot write records as '{fmt}'")
    return [{k: v for k, v in row.items() if v is not None} for row in g.select(cols).iter_rows(named=True)]


# ----------------------------------------------------------------------------------------------
# sentence-transformers layouts (only the layout's columns: the trainer feeds every other column
# to the model as an input)


def st_triplet(g: pl.DataFrame) -> pl.DataFrame:
    """GROUPED -> ``anchor, positive, negative`` (first positive, first = hardest negative);
    rows without a negative are left out."""
    return g.filter(pl.col("neg").list.len() > 0).select(
        anchor=pl.col("query"), positive=pl.col("pos").list.first(), negative=pl.col("neg").list.first()
    )


def st_ntuple(g: pl.DataFrame, n: int) -> pl.DataFrame:
    """GROUPED -> ``anchor, positive, negative_1..negative_n``; rows with fewer than n negatives
    are left out (MultipleNegativesRankingLoss needs equal-width rows)."""
    return g.filter(pl.col("neg").list.len() >= n).select(
        anchor=pl.col("query"),
        positive=pl.col("pos").list.first(),
        **{f"negative_{i + 1}": pl.col("neg").list.get(i) for i in range(n)},
    )


def st_labeled_pair(p: pl.DataFrame) -> pl.DataFrame:
    """PAIRS -> ``sentence1, sentence2, label`` (float label, as the labeled losses expect)."""
    return p.select(sentence1=pl.col("query"), sentence2=pl.col("passage"), label=pl.col("label").cast(pl.Float64))


def st_labeled_list(g: pl.DataFrame) -> pl.DataFrame:
    """GROUPED -> ``query, docs, labels`` (positives then negatives; float labels 1.0/0.0, as in
    ``st_labeled_pair`` and the learning-to-rank losses' graded relevance)."""
    return g.select(
        query=pl.col("query"),
        docs=pl.concat_list("pos", "neg"),
        labels=pl.concat_list(
            pl.col("pos").list.eval(pl.element().is_not_null().cast(pl.Float64)),
            pl.col("neg").list.eval(pl.element().is_null().cast(pl.Float64)),
        ),
    )
