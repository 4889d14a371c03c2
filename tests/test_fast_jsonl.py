"""The compiled JSONL reader: the frame Arrow's path gives, or a give-up (None), never another value."""

from __future__ import annotations

import json
import random
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from tripleforge import _jsonl, fast_jsonl
from tripleforge import formats as F


def arrow_path(data: bytes) -> pl.DataFrame:
    """The frame formats reads from `data` without the compiled reader (raises where it does)."""
    saved = F.read_schema_records
    F.read_schema_records = lambda *_: None  # type: ignore[assignment]
    try:
        return F._parse_jsonl("f.jsonl", pa.py_buffer(data), True, Counter())  # type: ignore[arg-type]
    finally:
        F.read_schema_records = saved  # type: ignore[assignment]


def fast(data: bytes) -> pl.DataFrame | None:
    return fast_jsonl.read_schema_records(pa.py_buffer(data), F.READ_SCHEMA)


def same_values(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Equal schemas and values, floats to the bit (repr tells -0.0 from 0.0)."""
    return a.schema == b.schema and repr(a.rows()) == repr(b.rows())


def test_a_copy_without_the_build_reads_the_slow_way(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # dvc exp run --queue/--temp copies hold no compiled modules (see stages/_src.py)
    data = b'{"query": "q", "pos": ["p"]}\n'
    assert fast(data) is not None
    monkeypatch.setattr(fast_jsonl, "_jsonl", None)
    assert fast(data) is None
    (tmp_path / "x.jsonl").write_bytes(data)
    rec = F.read_records(tmp_path / "x.jsonl")
    assert rec.format == "legacy_nested" and rec.frame["query"].to_list() == ["q"]


def test_reads_the_keys_of_read_schema_in_order() -> None:
    assert list(_jsonl.KEYS) == list(F.READ_SCHEMA)


VALID = [
    # the four formats, with nulls, unknown keys (nested too), escapes and non-ASCII text
    '{"query": "q1", "passage": "a \\"quoted\\" \\\\ path\\/x", "label": 1, "score": 0.25, "qid": "1", "pid": "p"}',
    '{"query":"é 中文 😀 \\u00e9\\ud83d\\ude00\\u0000","pos":["a",null],"neg":[],"pos_scores":[1,-0,2.5e-3],'
    '"neg_scores":null,"prompt":null,"type":"t","extra":{"deep":[[{"x":[1e300,true,false,null]}]]}}',
    '{"query": "q", "candidates": [{"text": "t", "score": 0.7, "pid": "c1", "note": [1]}, null, {}, '
    '{"score": -0.0}], "qid": null}',
    '  {"query": "q", "pos": ["p"]} \r',
    "{}",
    '{"query": "\\b\\f\\n\\r\\t", "label": -0, "score": 12345678901234567890, "task": "s"}',
    '{"query": "q", "score": 0.1, "score2": "x", "x": 1, "x": 2}',  # an unknown key twice: ignored
]


@pytest.mark.parametrize("line", VALID)
def test_a_valid_line_reads_as_arrow_reads_it(line: str) -> None:
    data = (line + "\n").encode()
    got = fast(data)
    assert got is not None
    assert same_values(got, arrow_path(data))


def test_blank_lines_are_skipped_and_lines_numbered_in_the_file() -> None:
    data = b'\n{"query": "a", "pos": ["x"]}\r\n  \t\n\n{"query": "b", "pos": ["y"]}'
    got = fast(data)
    assert got is not None and got["line"].to_list() == [2, 5] and got["query"].to_list() == ["a", "b"]
    assert same_values(got, arrow_path(data))


GIVE_UP = [
    '{"query": 5, "pos": ["x"]}',  # a number for a string: Arrow refuses, formats names the line
    '{"query": "a", "pos": "x"}',
    '{"query": "a", "label": 1.0, "passage": "p"}',
    '{"query": "a", "label": true, "passage": "p"}',
    '{"query": "a", "query": "b", "pos": ["x"]}',  # a key twice
    '{"qu\\u0065ry": "a", "pos": ["x"]}',  # an escaped key
    '{"query": "a", "pos": ["x"]} {"query": "b", "pos": ["y"]}',  # two records on a line
    '{"query": "a",\n "pos": ["x"]}',  # one record over two lines
    '{"query": "a\tb", "pos": ["x"]}',  # a raw control character
    '{"query": "\\ud800", "pos": ["x"]}',  # an unpaired surrogate
    '{"query": "\\x", "pos": ["x"]}',
    '{"query": "a", "pos": ["x"], "pos_scores": [NaN]}',
    '{"query": "a", "pos": ["x"], "other": [1e400]}',  # Arrow refuses it under an unknown key too
    '{"query": "a", "passage": "p", "label": 1, "score": 0e309}',  # Arrow refuses any exponent past 308
    '{"query": "a", "pos": ["x"],\r"neg": []}',  # Arrow's blocks may end at a CR
    '{"query": "a", "passage": "p", "label": 1, "score": 1e400}',
    '{"query": "a", "passage": "p", "label": 12345678901234567890}',
    '{"query": "a", "passage": "p", "label": 01}',
    '{"query": "a", "pos": ["x"],}',
    '[{"query": "a", "pos": ["x"]}]',
    '{"query": "a", "candidates": [{"text": "t", "text": "u"}]}',
    '{"query": "a", "x": ' + "[" * 70 + "]" * 70 + ', "pos": ["x"]}',  # nested past the reader's depth
    "\x0c",  # Python strips it as blank, JSON does not: formats decides
]


@pytest.mark.parametrize("line", GIVE_UP)
def test_gives_up_on_what_it_cannot_vouch_for(line: str) -> None:
    assert fast((line + "\n").encode()) is None


@pytest.mark.parametrize("data", [b'{"query": "\xff", "pos": ["x"]}', b'{"query": "\xed\xa0\x80", "pos": ["x"]}',
                                  b'{"query": "\xc0\xaf", "pos": ["x"]}', b'{"query": "a"\xc3\xa9, "pos": ["x"]}'])
def test_gives_up_on_bytes_that_are_not_utf8_text(data: bytes) -> None:
    assert fast(data) is None


def test_a_cr_inside_a_line_longer_than_an_arrow_block_is_given_up_on() -> None:
    # Arrow splits its 4 MiB blocks at a CR too, and cannot read a record cut there
    data = b'{"pos": [],\r"query": "' + b"a" * (4 << 20) + b'"}\n'
    assert fast(data) is None
    with pytest.raises(Exception, match="Missing a name"):
        arrow_path(data)


def test_numbers_are_the_correctly_rounded_doubles() -> None:
    rng = random.Random(3)
    tokens = ["0.1", "-0.0", "5e-324", "2.2250738585072014e-308", "1.7976931348623157e308", "0.30000000000000004",
              "123456789012345678901", "3.141592653589793238462643383279", "1E+2", "9007199254740993"]
    tokens += [f"{rng.randint(0, 10**rng.randint(1, 15))}.{rng.randint(0, 10**rng.randint(1, 8))}" for _ in range(2000)]
    data = "".join(f'{{"score": {t}}}\n' for t in tokens).encode()
    got = fast(data)
    assert got is not None
    assert [struct.pack("<d", v) for v in got["score"]] == [struct.pack("<d", float(t)) for t in tokens]


def test_ranges_are_whole_lines_one_per_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_jsonl, "_SPLIT_BYTES", 10)
    body = pa.py_buffer(b"0123456789\n" * 10 + b"x" * 30)  # 140 bytes, the last line unterminated
    assert fast_jsonl._split_points(body, 1) == [0, 140]
    assert fast_jsonl._split_points(body, 2) == [0, 77, 140]
    assert fast_jsonl._split_points(body, 64) == [0, 11, 22, 33, 44, 55, 66, 77, 88, 99, 110, 140]
    monkeypatch.setattr(fast_jsonl, "_MAX_RANGE_BYTES", 50)
    assert fast_jsonl._split_points(body, 1) == [0, 55, 99, 140]  # 3 ranges, each ending at a line's end
    assert fast_jsonl._split_points(pa.py_buffer(b""), 4) == [0, 0]


def test_two_halves_give_the_frame_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # texts past 12 bytes live in each range's data buffer; keys named in one half only
    lines = [json.dumps({"query": f"q{i}" * (i % 9), "pos": [f"passage number {i}"] * (i % 3), "neg": None if i % 4 else ["n"],
                         "candidates": [{"text": f"candidate text {i}", "score": i / 7}] if i % 5 == 0 else None,
                         **({"prompt": f"a prompt for the query {i}"} if i == 150 else {}),
                         **({"pid": f"the pid of line {i}", "score": 0.5} if i < 100 and i % 2 else {})})
             for i in range(200)]
    data = ("\n".join(lines[:100]) + "\n\n" + "\n".join(lines[100:]) + "\n").encode()
    whole = fast(data)
    monkeypatch.setattr(fast_jsonl, "_SPLIT_BYTES", 64)
    monkeypatch.setattr(fast_jsonl, "cpus", lambda: 2)
    assert fast_jsonl._split_points(pa.py_buffer(data), 2)[1:-1]  # really split
    halves = fast(data)
    assert whole is not None and halves is not None
    assert same_values(whole, halves) and halves["line"].to_list() == [*range(1, 101), *range(102, 202)]
    assert same_values(halves, arrow_path(data))
    assert halves["prompt"].drop_nulls().to_list() == ["a prompt for the query 150"]
    assert halves["candidates"].list.eval(pl.element().struct.field("text")).explode().drop_nulls()[-1] == "candidate text 195"
    assert halves["query"].n_chunks() == 1


# --- seeded differential check against the Arrow path ----------------------------------------------

_TEXT = ["a", " ", "x y", "é", "中", "😀", '"', "\\", "/", "\n", "\t", "\u2028", "\x00", "{", ":", "\ud800"]
_NUMBERS = ["0", "1", "-1", "-0", "0.5", "1.0", "1e2", "-0.0", "1e400", "12345678901234567890", "01", "1.",
            "NaN", "0.1234", "4.9e-324", "1e-400", "17976931348623157e292", "true", '"1"']


def _text(rng: random.Random) -> str:
    s = "".join(rng.choice(_TEXT) for _ in range(rng.randint(0, 5)))
    out = json.dumps(s, ensure_ascii=rng.random() < 0.5)
    return out.replace("a", "\\u0061") if rng.random() < 0.05 else out


def _number(rng: random.Random) -> str:
    return rng.choice(_NUMBERS) if rng.random() < 0.3 else repr(rng.uniform(-1e3, 1e3))


def _value(rng: random.Random, kind: str | None) -> str:
    r = rng.random()
    if r < 0.08:
        return "null"
    if r < 0.1 or kind is None:
        return rng.choice(["[1, {\"k\": [null]}]", "true", _number(rng), _text(rng), "{}"])
    if kind == "str":
        return _text(rng)
    if kind in ("int", "num"):
        return rng.choice(["0", "1", "2"]) if kind == "int" and r < 0.8 else _number(rng)
    items = [_text(rng) if kind == "list[str]" else _number(rng) if kind == "list[num]"
             else "{" + ", ".join(f'"{k}": {_value(rng, t)}' for k, t in
                                  rng.sample([("text", "str"), ("score", "num"), ("pid", "str"), ("z", None)], 2)) + "}"
             for _ in range(rng.randint(0, 3))]
    return "[" + ", ".join(items) + "]"


def _line(rng: random.Random, keys: list[str]) -> str:
    chosen = [k for k in keys if rng.random() < 0.9] + (["other"] if rng.random() < 0.1 else [])
    if rng.random() < 0.03 and chosen:
        chosen.append(chosen[0])
    line = "{" + ", ".join(f'"{k}": {_value(rng, F._TYPES.get(k))}' for k in chosen) + "}"
    r = rng.random()
    return " " + line + "\r" if r < 0.03 else line + line if r < 0.05 else "" if r < 0.08 else line


@pytest.mark.parametrize("seed", range(4))
def test_random_files_read_as_arrow_reads_them(seed: int) -> None:
    rng = random.Random(seed)
    shapes = [["query", "passage", "label", "score", "qid", "pid"], ["query", "pos", "neg", "pos_scores", "neg_scores"],
              ["query", "candidates", "qid"]]
    outcome: Counter[str] = Counter()
    for _ in range(150):
        keys = rng.choice(shapes)
        data = "\n".join(_line(rng, keys) for _ in range(rng.randint(1, 4))).encode("utf-8", "surrogatepass")
        got = fast(data)
        with pytest.MonkeyPatch.context() as split:  # ranges as short as a line: joins at every seam
            split.setattr(fast_jsonl, "_SPLIT_BYTES", 1)
            split.setattr(fast_jsonl, "cpus", lambda: 4)
            in_ranges = fast(data)
        assert (got is None) == (in_ranges is None), data
        assert got is None or in_ranges is None or same_values(got, in_ranges), data
        try:
            want: Any = arrow_path(data)
        except Exception:  # noqa: BLE001 - a file formats refuses: the reader must have given up
            want = None
        if got is None:
            outcome["gave up"] += 1
            continue
        assert want is not None, data
        assert same_values(got, want), data
        outcome["same"] += 1
    assert outcome["same"] > 20  # the check compared real frames, not only give-ups


@pytest.mark.parametrize("prefix", ["", "a:", "data/external/pairs.jsonl:", "é/ü.jsonl:", "twelve bytes"])
def test_line_sources_are_the_prefix_and_the_number(prefix: str) -> None:
    # texts of up to 12 bytes sit in their views, longer ones in the data buffer
    lines = pl.Series("line", [1, 9, 10, 99, 100, 123456789, 0, 2**63 - 1], dtype=pl.Int64)
    got = fast_jsonl.line_sources(prefix, lines)
    assert got is not None and got.dtype == pl.String and got.name == "line"
    assert got.to_list() == [f"{prefix}{n}" for n in lines]
    assert fast_jsonl.line_sources(prefix, lines.slice(2, 3)).to_list() == got.to_list()[2:5]  # type: ignore[union-attr]
    assert fast_jsonl.line_sources(prefix, lines.clear()).to_list() == []  # type: ignore[union-attr]


def test_line_sources_give_up_where_polars_builds_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert fast_jsonl.line_sources("f:", pl.Series([3, -1])) is None
    path = tmp_path / "p.jsonl"
    path.write_text('{"query": "q", "passage": "p", "label": 1}\n\n{"query": "q", "passage": "n", "label": 0}\n')
    want = F.read_external(path)[1]["source"].to_list()
    assert want == [f"{path}:1", f"{path}:3"]
    monkeypatch.setattr(fast_jsonl, "_jsonl", None)
    assert fast_jsonl.line_sources("f:", pl.Series([3])) is None
    assert F.read_external(path)[1]["source"].to_list() == want
