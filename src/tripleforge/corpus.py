"""Read a code corpus, split it into units, clean, validate, bucket, dedup, and sample.

Corpus kinds (`sample.corpus_kind`, auto-detected from `sample.corpus`):
- `coder`: the CodeR layout `<root>/<code_language>/*_len-<L>-<R>.jsonl` (field `text`; other
  fields are kept as a JSON object in `meta`). Every matching file is read, in sorted order.
- `tree`: a plain source tree; language by file extension, function/class units by tree-sitter.
- `python-stdlib`: the running interpreter's standard library, read as a tree (no download).
Plus `sample.external`: JSONL/Parquet files with a `text` field (optional `code_language`).

Output frames (docs and pool) have the columns `doc_id`, `text`, `code_language`,
`length_bucket`, `source`, `n_chars`, `unit`, `unit_type`, `meta`, sorted by
(`code_language`, `doc_id`).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sysconfig
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import Field, ValidationInfo, field_validator

from tripleforge.cleaning import LENGTH_BUCKETS, clean_text, has_real_code, length_bucket
from tripleforge.code_units import Unit, split_units
from tripleforge.credentials import holds_credential
from tripleforge.generated_code import looks_generated
from tripleforge.errors import UserError
from tripleforge.hashing import sha256_hex, stable_json, text_id
from tripleforge.languages import (
    CODE_LANGUAGES,
    catalog_language,
    language_of_path,
    language_of_shebang,
    language_of_source,
    possible_languages,
)
from tripleforge.params import CrossFieldError, StageParams, require_known
from tripleforge.inputs import check_input_path
from tripleforge.io import PARQUET_READ_ERRORS
from tripleforge.progress import bar

# Every reason a file, record or unit can be skipped for; all appear in metrics (0 if none), so
# `dvc exp show` has the same columns for every experiment.
SKIP_REASONS: tuple[str, ...] = (
    "unreadable", "binary", "non_utf8", "empty", "too_large", "malformed_jsonl", "no_text",
    "unknown_code_language", "not_in_code_languages", "empty_after_cleaning", "too_short", "too_long",
    "long_line", "credential", "no_code", "not_in_length_buckets", "generated", "parse_error",
)
# Directories never entered in a source tree: VCS/tool metadata, caches, vendored installs.
SKIP_DIRS = frozenset({"__pycache__", "node_modules", ".git", ".hg", ".svn", ".dvc", ".venv", ".tox"})
# Extra exclusions for `python-stdlib`: installed packages are not the stdlib, and the test
# suites hold deliberately broken/odd-encoding files and thousands of near-identical asserts.
STDLIB_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test"})
CODER_FILE = re.compile(r"_len-(\d+)-(\d+|inf)\.jsonl$")
MAX_WARNINGS = 5
# Reasons that point at broken input (reported as `file:line` warnings); the others (empty
# `__init__.py`, too short, ...) are ordinary filtering and only counted.
WARN_REASONS = frozenset({"unreadable", "binary", "non_utf8", "too_large", "malformed_jsonl", "no_text",
                          "unknown_code_language", "credential"})
# What `sample.corpus` must name for an explicit `corpus_kind` (for error messages).
KIND_EXPECTS = {"coder": "a directory in the CodeR layout <dir>/<code_language>/*_len-<L>-<R>.jsonl",
                "tree": "a source-tree directory"}
OUTPUT_COLUMNS = ("doc_id", "text", "code_language", "length_bucket", "source", "n_chars", "unit",
                  "unit_type", "meta")


class SampleParams(StageParams):
    """The `sample` section of params.yaml."""

    corpus: str = "python-stdlib"
    corpus_kind: Literal["auto", "coder", "tree", "python-stdlib"] = "auto"
    code_languages: list[str] = []
    length_buckets: list[str] = []
    external: list[str] = []
    external_code_language: str = ""
    num_samples: int = Field(default=24, ge=0)
    quotas: dict[str, int] = {}
    max_pool: int = Field(default=600, ge=0)
    seed: int = 42
    min_chars: int = Field(default=200, ge=1)
    max_chars: int = Field(default=4000, ge=1, le=32000)
    max_file_bytes: int = Field(default=1_000_000, ge=1)
    max_line_chars: int | None = Field(default=1000, ge=1)  # a longer line: a blob or minified code (long_line)
    drop_credentials: bool = True  # skip units holding an API key, token or private key (credential)
    drop_generated: bool = True  # skip files (records) whose head carries a code generator's marker (generated)
    # skip source-tree units the grammar could not parse (parse_error). Off by default: a macro
    # before a C function (`local void f(...)`, `EXPORT_API int f(...)`) is a parse error too, and
    # zlib's examples lost 58 of 94 sound functions to it; on, spliced SQL statements go.
    drop_parse_errors: bool = False
    workers: int = Field(default=1, ge=0)

    @field_validator("max_chars")
    @classmethod
    def _max_not_below_min(cls, v: int, info: ValidationInfo) -> int:
        lo = info.data.get("min_chars")  # absent when min_chars itself failed validation
        if lo is not None and v < lo:
            raise CrossFieldError(("min_chars",), f"max_chars {v} is below min_chars {lo}: no unit could be kept")
        return v

    @field_validator("max_file_bytes")
    @classmethod
    def _files_can_hold_min_chars(cls, v: int, info: ValidationInfo) -> int:
        # A character takes at least one UTF-8 byte, so no unit of a file (or JSONL line) that is
        # read can reach min_chars: every document would be skipped.
        lo = info.data.get("min_chars")
        if lo is not None and v < lo:
            raise CrossFieldError(("min_chars",),
                                  f"max_file_bytes {v} is below min_chars {lo}: no unit of a file read could be that long")
        return v

    @field_validator("code_languages")
    @classmethod
    def _known_languages(cls, v: list[str]) -> list[str]:
        require_known(v, CODE_LANGUAGES, "code language")
        return v

    @field_validator("external_code_language")
    @classmethod
    def _known_language_or_empty(cls, v: str) -> str:
        require_known([v] if v else [], CODE_LANGUAGES, "code language")
        return v

    @field_validator("quotas")
    @classmethod
    def _known_quotas(cls, v: dict[str, int]) -> dict[str, int]:
        require_known(v, CODE_LANGUAGES, "code language")
        for lang, n in v.items():
            if n < 0:
                raise ValueError(f"quota for {lang!r} must be >= 0")
        return v

    @field_validator("length_buckets")
    @classmethod
    def _known_buckets(cls, v: list[str]) -> list[str]:
        require_known(v, LENGTH_BUCKETS, "length bucket")
        return v

    def quota(self, code_language: str) -> int:
        return self.quotas.get(code_language, self.num_samples)


@dataclass
class ReadStats:
    """Counters filled while reading; they become `metrics/sample.json`."""

    skipped: Counter[str] = field(default_factory=Counter)
    files_read: int = 0
    files_ignored: int = 0
    bytes_read: int = 0
    units_found: int = 0
    warnings: list[str] = field(default_factory=list)

    def skip(self, reason: str, where: str | None = None, n: int = 1) -> None:
        self.skipped[reason] += n
        if where is not None and reason in WARN_REASONS and len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(f"{where}: skipped ({reason})")


@dataclass
class Candidate:
    text: str          # raw text, cleaned later (records) or already cleaned (tree units)
    code_language: str
    source: str
    unit: str = ""
    unit_type: str = "record"
    meta: str = "{}"
    cleaned: bool = False
    longest_source_line: int = 0  # a tree unit's longest source line (see code_units.Unit.longest_line)


@dataclass(frozen=True)
class SampleResult:
    docs: pl.DataFrame
    pool: pl.DataFrame
    metrics: dict[str, Any]
    warnings: list[str]


# ---------------------------------------------------------------------------------------------
# Resolving the corpus


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def reads_stdlib(params: SampleParams) -> bool:
    return params.corpus_kind == "python-stdlib" or (params.corpus_kind == "auto" and params.corpus == "python-stdlib")


def input_files(params: SampleParams) -> list[str]:
    """The user-named paths the stage reads: the corpus folder (unless the stdlib) and `external`."""
    return ([] if reads_stdlib(params) else [params.corpus]) + list(params.external)


def resolve_corpus(params: SampleParams) -> tuple[str, Path]:
    """(kind, root). A missing path, or one that does not fit an explicit `corpus_kind`, is a
    UserError naming the params key, raised before any work."""
    if params.corpus_kind == "python-stdlib" and params.corpus != "python-stdlib":
        # the two keys contradict each other: reading the stdlib would silently ignore the folder
        raise UserError(f"params.yaml: sample.corpus_kind: 'python-stdlib' reads the built-in corpus, but "
                        f"sample.corpus names {params.corpus!r}; set corpus_kind to auto (or tree/coder) to read "
                        f"it, or corpus to python-stdlib")
    if reads_stdlib(params):
        return "python-stdlib", stdlib_root()
    root = Path(params.corpus).expanduser()
    if not root.exists() and params.corpus == "python-stdlib":
        # `python-stdlib` is a corpus name, not a folder: only kinds auto/python-stdlib read it.
        raise UserError(f"params.yaml: sample.corpus_kind: '{params.corpus_kind}' needs sample.corpus to be "
                        f"{KIND_EXPECTS[params.corpus_kind]}, but it is 'python-stdlib', the built-in corpus that "
                        f"only corpus_kind auto or python-stdlib reads")
    if not root.exists():
        raise UserError(f"params.yaml: sample.corpus: path not found: {params.corpus}")
    if not root.is_dir():
        raise UserError(f"params.yaml: sample.corpus: not a directory: {params.corpus}")
    if params.corpus_kind == "coder" and not _looks_like_coder(root):
        # Otherwise every file is ignored and the stage ends with 0 docs and a warning only.
        raise UserError(f"params.yaml: sample.corpus_kind: 'coder' needs sample.corpus to be {KIND_EXPECTS['coder']}, "
                        f"but {params.corpus} has no such file (a source tree is corpus_kind tree or auto)")
    if params.corpus_kind != "auto":
        return params.corpus_kind, root
    return ("coder" if _looks_like_coder(root) else "tree"), root


def _looks_like_coder(root: Path) -> bool:
    return any(d.is_dir() and catalog_language(d.name) and any(CODER_FILE.search(p.name) for p in d.iterdir())
               for d in root.iterdir())


def check_external(params: SampleParams) -> list[tuple[Path, str]]:
    """(path to read, name for `source`) per external file. The name is the path as written in
    params (`~/x.jsonl` stays so): expanded, it put each user's home folder into the data."""
    paths = []
    for i, item in enumerate(params.external):
        p = Path(item).expanduser()
        check_input_path(item, f"sample.external.{i}")
        if p.suffix.lower() not in (".jsonl", ".json", ".parquet"):
            raise UserError(f"params.yaml: sample.external.{i}: expected .jsonl (or .json) or .parquet: {item}")
        paths.append((p, Path(item).as_posix()))
    return paths


def path_name(path: Path) -> str:
    """`path` as text that is always valid UTF-8: a file name's undecodable bytes (a Latin-1 name
    from an old archive) as `\\xNN`. Python keeps them as surrogates, which no Parquet writer or
    terminal takes."""
    return os.fsencode(path.as_posix()).decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------------------------
# Reading bytes safely


def decode_file(path: Path, max_bytes: int) -> tuple[str | None, str | None, int]:
    """(text, skip reason, bytes read) of a source file; exactly one of text/reason is None.
    Decodes UTF-8 (with or without BOM) only: anything else (latin-1, UTF-16, ...) is `non_utf8`;
    NUL bytes are `binary`. Over-size files are not read (0 bytes)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device: reading would block or never end
            return None, "unreadable", 0
        if info.st_size > max_bytes:
            return None, "too_large", 0
        data = path.read_bytes()
    except OSError:
        return None, "unreadable", 0
    if not data.strip():
        return None, "empty", len(data)
    if b"\x00" in data:
        return None, "binary", len(data)
    try:
        return data.decode("utf-8-sig"), None, len(data)
    except UnicodeDecodeError:
        return None, "non_utf8", len(data)


def read_source(job: tuple[str, str, int, int, bool, bool]) -> tuple[str | None, int, list[Unit], str]:
    """(skip reason, bytes read, units, code language) of one source file; the language is the
    extension's except for a `.h` file of C++ (`language_of_source`). Picklable for a process pool."""
    path, lang, max_file_bytes, max_chars, drop_generated, drop_parse_errors = job
    text, reason, nbytes = decode_file(Path(path), max_file_bytes)
    if text is None:
        return reason, nbytes, [], lang
    lang = language_of_source(Path(path).name, text) or lang
    if drop_generated and looks_generated(text):  # the marker is a comment: looked for before cleaning
        return "generated", nbytes, [], lang
    if text.startswith("#!") and not text.startswith("#!["):  # `#![...]` opens a Rust file: an attribute
        # A script's interpreter line is no code, but the JavaScript, PHP and Lua grammars keep it
        # in a whole-file unit, where two copies of a script differing only in it would not dedup.
        # Its newline stays, so line numbers stay.
        text = text[text.find("\n"):] if "\n" in text else ""
    return None, nbytes, split_units(text, lang, Path(path).name, max_chars, drop_parse_errors), lang


def walk_tree(root: Path, skip_dirs: frozenset[str]) -> Iterator[Path]:
    """Files under `root` in sorted order (independent of the filesystem's listing order)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and not d.startswith("."))
        for name in sorted(filenames):
            yield Path(dirpath) / name


# ---------------------------------------------------------------------------------------------
# Corpus readers: each yields Candidates and counts what it skipped


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pool_size(requested: int, n_jobs: int) -> int:
    """Processes for `n_jobs` files: `requested` (0 = all usable CPUs), never more than the usable
    CPUs (a process beyond them adds memory, not speed: `workers: 1000` once started 1000
    interpreters and exhausted memory) nor than the chunks of 8 files there are to hand out."""
    cpus = usable_cpus()
    return max(1, min(requested or cpus, cpus, -(-n_jobs // 8)))


def _map_files(jobs: list[tuple[str, str, int, int, bool, bool]], workers: int) -> Iterator[tuple[str | None, int, list[Unit], str]]:
    """`read_source` over the files, in order. With workers > 1 a process pool parses in parallel;
    `imap` returns results in input order, so the output does not depend on scheduling."""
    if workers <= 1 or len(jobs) < 64:
        yield from map(read_source, jobs)
        return
    with sigint_free_pool(workers) as pool:
        yield from pool.imap(read_source, jobs, chunksize=8)


def sigint_free_pool(workers: int) -> Any:
    """A spawn-context process pool whose workers never receive SIGINT.

    A Ctrl-C reaches the whole process group, and a worker killed mid-reply left the pool's
    result thread reading a broken pipe while the stage spun forever; so the parent alone gets
    KeyboardInterrupt, and leaving the pool's `with` terminates the workers. SIGINT is ignored
    while the pool starts its workers: an ignored signal stays ignored through exec and Python
    then installs no KeyboardInterrupt handler, so a Ctrl-C while a worker imports no longer
    prints its traceback (a blocked mask does not help: the spawn start resets it). The parent's
    handler is back once the processes are started, a few milliseconds; the initializer keeps
    the workers ignoring it. A Ctrl-C inside that window is lost (the next one stops the stage):
    blocking it instead would not help, as the threads Polars and Arrow have started take it."""
    import multiprocessing as mp
    import signal

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return mp.get_context("spawn").Pool(workers, initializer=_ignore_sigint)
    finally:
        signal.signal(signal.SIGINT, old)


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def script_language(path: Path) -> str | None:
    """The language a file without an extension is a script of, by its `#!` line; None for any
    other file (LICENSE, Makefile) and for one that cannot be read: both are counted in
    `files_ignored`."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO: opening it would block
            return None
        with open(path, "rb") as fh:
            return language_of_shebang(fh.read(256))
    except OSError:
        return None


def read_tree(root: Path, params: SampleParams, stats: ReadStats, skip_dirs: frozenset[str]) -> Iterator[Candidate]:
    wanted = set(params.code_languages) or set(CODE_LANGUAGES)
    files: list[tuple[Path, str]] = []
    for path in walk_tree(root, skip_dirs):
        lang = language_of_path(path.name)
        if lang is None and "." not in path.name:
            lang = script_language(path)
            possible = frozenset({lang} if lang else ())
        else:
            possible = possible_languages(path.name)  # a `.h` file: C or C++
        if lang is None or not possible & wanted:
            stats.files_ignored += 1
            continue
        files.append((path, lang))
    jobs = [(str(p), lang, params.max_file_bytes, params.max_chars, params.drop_generated, params.drop_parse_errors)
            for p, lang in files]
    workers = pool_size(params.workers, len(jobs))
    with bar(len(files), "sample: files", unit="file") as progress:
        for (path, _), (reason, nbytes, units, lang) in zip(files, _map_files(jobs, workers), strict=True):
            progress.update(1)
            if lang not in wanted:  # a `.h` file read for the language it turned out not to be
                stats.files_ignored += 1
                continue
            rel = path_name(path.relative_to(root))
            stats.bytes_read += nbytes
            if reason not in ("too_large", "unreadable"):
                stats.files_read += 1
            if reason is not None:
                stats.skip(reason, rel)
                continue
            for u in units:
                stats.units_found += 1
                if u.parse_error and params.drop_parse_errors:
                    # error recovery may have drawn its bounds: three SQL statements as one
                    stats.skip("parse_error")
                    continue
                where = f"{rel}:{u.start_line}-{u.end_line}"
                yield Candidate(u.text, lang, where, u.name, u.kind, cleaned=True, longest_source_line=u.longest_line)


def _record_text(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    text = obj.get("text")
    if isinstance(text, str):
        return text
    pos = obj.get("pos")  # FlagEmbedding-style records: the first positive is the document
    if isinstance(pos, list) and pos and isinstance(pos[0], str):
        return pos[0]
    return None


def read_jsonl(path: Path, label: str, params: SampleParams, stats: ReadStats,
               code_language: str | None) -> Iterator[Candidate]:
    """Records of one JSONL file. `code_language` None: take it from each record's field."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; lines are decoded one by one
    except OSError:
        stats.skip("unreadable", label)
        return
    stats.files_read += 1
    records = 0
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            stats.bytes_read += len(raw)
            where = f"{label}:{lineno}"
            if not raw.strip():
                continue
            records += 1
            if len(raw) > params.max_file_bytes:
                stats.skip("too_large", where)
                continue
            try:
                line = raw.decode("utf-8-sig")  # a BOM past line 1: files joined with `cat`
            except UnicodeDecodeError:
                stats.skip("non_utf8", where)
                continue
            try:
                obj = json.loads(line, parse_constant=_not_json)
            except RecursionError:
                stats.skip("malformed_jsonl", f"{where} (nested too deeply)")
                continue
            except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an integer of 4300+ digits
                stats.skip("malformed_jsonl", f"{where} ({getattr(exc, 'msg', str(exc))})")
                continue
            yield from _record_candidate(obj, where, params, stats, code_language)
    if not records:
        stats.skip("empty", label)


def _not_json(constant: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON lacks: the record's `meta` would carry
    them into a column no strict JSON reader can read back."""
    raise ValueError(f"{constant} is not JSON")


def _json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as null: a Parquet column can hold them, and `meta` must
    stay JSON that any strict reader takes (the JSONL path refuses them, `_not_json`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _record_candidate(obj: Any, where: str, params: SampleParams, stats: ReadStats,
                      code_language: str | None) -> Iterator[Candidate]:
    text = _record_text(obj)
    if text is None:
        stats.skip("no_text", where)
        return
    lang = code_language or catalog_language(obj.get("code_language")) or (
        None if obj.get("code_language") else params.external_code_language)
    if lang not in CODE_LANGUAGES:
        stats.skip("unknown_code_language", where)
        return
    if params.code_languages and lang not in params.code_languages:
        stats.skip("not_in_code_languages")
        return
    meta = {k: _json_safe(v) for k, v in obj.items() if k not in ("text", "code_language")}
    if not isinstance(obj.get("text"), str) and meta.get("pos"):  # the text is pos[0]: keep it once, as `text`
        meta["pos"] = meta["pos"][1:]
        if not meta["pos"]:
            del meta["pos"]
    stats.units_found += 1
    yield Candidate(text, lang, where, meta=stable_json(meta))


def read_coder(root: Path, params: SampleParams, stats: ReadStats) -> Iterator[Candidate]:
    wanted = set(params.code_languages or CODE_LANGUAGES)
    files: list[tuple[Path, str]] = []
    # folders named as people write languages ("Python", "cpp") count too; others are ignored and counted
    stats.files_ignored += sum(1 for x in root.iterdir() if x.is_file())  # files beside the language folders
    for d in sorted(x for x in root.iterdir() if x.is_dir() and x.name not in SKIP_DIRS):
        lang = catalog_language(d.name)
        if lang is None:
            stats.files_ignored += sum(1 for x in d.iterdir() if x.is_file())
            continue
        if lang not in wanted:  # counted, as a source tree counts the files of other languages
            stats.files_ignored += sum(1 for x in d.iterdir() if x.is_file())
            continue
        for p in sorted(d.iterdir()):
            m = CODER_FILE.search(p.name)
            if not m:
                stats.files_ignored += 1
                continue
            bucket = f"len_{m.group(1)}_{'32000' if m.group(2) == 'inf' else m.group(2)}"
            if params.length_buckets and bucket not in params.length_buckets:
                stats.files_ignored += 1
                continue
            files.append((p, lang))
    with bar(len(files), "sample: files", unit="file") as progress:
        for p, lang in files:
            yield from read_jsonl(p, path_name(p.relative_to(root)), params, stats, lang)
            progress.update(1)


def read_external(path: Path, name: str, params: SampleParams, stats: ReadStats) -> Iterator[Candidate]:
    """Records of one `external` file; `source` is `<name>:<line or row>`."""
    if path.suffix.lower() == ".json":
        with open(path, "rb") as fh:
            head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(b"["):  # every line would be skipped as malformed, and the stage would pass
            raise UserError(f"{name}: a JSON array; sample.external reads one JSON object per line (JSONL)")
    if path.suffix.lower() != ".parquet":
        yield from read_jsonl(path, name, params, stats, None)
        return
    try:
        frame = pl.read_parquet(path)
    except PARQUET_READ_ERRORS as exc:
        raise UserError(f"{path}: cannot read Parquet: {str(exc).splitlines()[0]}") from None
    if "text" not in frame.columns:
        raise UserError(f"{path}: external Parquet file has no 'text' column")
    stats.files_read += 1
    for i, row in enumerate(frame.iter_rows(named=True), start=1):
        yield from _record_candidate(row, f"{name}:{i}", params, stats, None)


# ---------------------------------------------------------------------------------------------
# Validation, dedup, sampling


def validate(cands: Iterator[Candidate], params: SampleParams, stats: ReadStats,
             bucket_filter: bool) -> dict[str, list[Any]]:
    """Clean (if not yet), check length and "has real code", compute `doc_id` and bucket.
    Returns the columns of the valid units (before dedup)."""
    cols: dict[str, list[Any]] = {c: [] for c in OUTPUT_COLUMNS}
    for c in cands:
        if not c.cleaned and params.drop_generated and looks_generated(c.text):  # a record's raw text
            stats.skip("generated")
            continue
        text = c.text if c.cleaned else clean_text(c.text, c.code_language)
        n = len(text)
        if not text.strip():
            stats.skip("empty_after_cleaning", c.source)
            continue
        if n < params.min_chars:
            stats.skip("too_short")
            continue
        if n > params.max_chars:
            stats.skip("too_long")
            continue
        if params.drop_credentials and holds_credential(text):
            stats.skip("credential", c.source)  # also warned: the user should know the corpus holds one
            continue
        # a data blob (base64, a lookup table) or minified code: no query describes such a line
        longest = max(c.longest_source_line, *map(len, text.split("\n")))
        if params.max_line_chars and longest > params.max_line_chars:
            stats.skip("long_line")
            continue
        if not has_real_code(text, c.code_language):
            stats.skip("no_code")
            continue
        bucket = length_bucket(n)
        if bucket_filter and params.length_buckets and bucket not in params.length_buckets:
            stats.skip("not_in_length_buckets")
            continue
        for k, v in (("doc_id", text_id(text)), ("text", text), ("code_language", c.code_language),
                     ("length_bucket", bucket), ("source", c.source), ("n_chars", n),
                     ("unit", c.unit), ("unit_type", c.unit_type), ("meta", c.meta)):
            cols[k].append(v)
    return cols


def to_frame(cols: dict[str, list[Any]]) -> pl.DataFrame:
    schema = {c: pl.String for c in OUTPUT_COLUMNS} | {"n_chars": pl.Int64}
    return pl.DataFrame(cols, schema=schema)


def dedup(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per `doc_id` (exact duplicate after whitespace normalization); the survivor is the
    first by (doc_id, code_language, source), so the choice does not depend on reading order."""
    return frame.sort(["doc_id", "code_language", "source"]).unique(
        subset=["doc_id"], keep="first", maintain_order=True
    )


def sample_frames(frame: pl.DataFrame, params: SampleParams) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Seeded per-language sampling. Each doc gets the key sha256(seed, doc_id); per language the
    `quota` smallest keys are the docs and the `max(max_pool, quota)` smallest the pool, so
    docs ⊆ pool, and adding documents to the corpus never reshuffles the existing choice."""
    keys = [sha256_hex(f"{params.seed}\x00{d}") for d in frame["doc_id"].to_list()]
    langs = sorted(set(frame["code_language"].to_list()))
    quota = pl.DataFrame(
        {"code_language": langs,
         "_quota": [params.quota(lg) for lg in langs],
         "_pool": [max(params.max_pool, params.quota(lg)) for lg in langs]},
        schema={"code_language": pl.String, "_quota": pl.Int64, "_pool": pl.Int64},
    )
    ranked = (
        frame.with_columns(pl.Series("_key", keys, dtype=pl.String))
        .sort(["code_language", "_key"])
        .with_columns(_rank=pl.int_range(pl.len(), dtype=pl.Int64).over("code_language"))
        .join(quota, on="code_language", how="left", maintain_order="left")
    )
    order = ["code_language", "doc_id"]
    docs = ranked.filter(pl.col("_rank") < pl.col("_quota")).select(OUTPUT_COLUMNS).sort(order)
    pool = ranked.filter(pl.col("_rank") < pl.col("_pool")).select(OUTPUT_COLUMNS).sort(order)
    return docs, pool


def _counts(frame: pl.DataFrame, col: str) -> dict[str, int]:
    return {k: int(v) for k, v in frame.group_by(col).len().sort(col).iter_rows()}


def sample_corpus(params: SampleParams) -> SampleResult:
    """The whole `sample` stage on validated params: read, clean, validate, dedup, sample."""
    kind, root = resolve_corpus(params)
    externals = check_external(params)
    stats = ReadStats()

    def candidates() -> Iterator[Candidate]:
        if kind == "coder":
            yield from read_coder(root, params, stats)
        else:
            skip = SKIP_DIRS | STDLIB_SKIP_DIRS if kind == "python-stdlib" else SKIP_DIRS
            yield from read_tree(root, params, stats, skip)
        for p, name in externals:
            yield from read_external(p, name, params, stats)

    valid = to_frame(validate(candidates(), params, stats, bucket_filter=kind != "coder"))
    if valid.height == 0:
        # Not a warning and empty outputs: the next stages would run on nothing and the first
        # error (an empty pool in mine-negatives) would name a file, not the corpus.
        skipped = ", ".join(f"{r}={n}" for r, n in sorted(stats.skipped.items()) if n) or "none"
        also = " nor in sample.external" if externals else ""
        raise UserError(f"params.yaml: sample.corpus: no usable code unit in '{params.corpus}'{also} "
                        f"({stats.files_read} files read, {stats.units_found} units found; skipped: {skipped})")
    unique = dedup(valid)
    docs, pool = sample_frames(unique, params)
    per_language = {
        lang: {"candidates": _counts(unique, "code_language").get(lang, 0),
               "docs": _counts(docs, "code_language").get(lang, 0),
               "pool": _counts(pool, "code_language").get(lang, 0)}
        for lang in sorted(set(unique["code_language"].to_list()))
    }
    metrics = {
        "docs": docs.height,
        "pool": pool.height,
        "candidates": unique.height,
        "units_found": stats.units_found,
        "files_read": stats.files_read,
        "files_ignored": stats.files_ignored,
        "bytes_read": stats.bytes_read,
        "duplicates_removed": valid.height - unique.height,
        "skipped": {r: stats.skipped.get(r, 0) for r in SKIP_REASONS},
        "per_language": per_language,
        "docs_per_bucket": _counts(docs, "length_bucket"),
    }
    return SampleResult(docs, pool, metrics, stats.warnings + quota_warnings(params, per_language))


def quota_warnings(params: SampleParams, per_language: dict[str, Any]) -> list[str]:
    """A line per `quotas` entry that can sample nothing: its language is left out by
    `code_languages`, or the corpus has no unit of it."""
    out = []
    for lang, n in sorted(params.quotas.items()):
        if n and params.code_languages and lang not in params.code_languages:
            out.append(f"sample.quotas.{lang}: {n} asked for, but sample.code_languages leaves {lang} out")
        elif n and lang not in per_language:
            out.append(f"sample.quotas.{lang}: {n} asked for, but the corpus has no {lang} code unit")
    return out
