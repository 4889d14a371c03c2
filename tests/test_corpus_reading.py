"""Reading corpora: source trees, the CodeR layout, external files, python-stdlib, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tripleforge.corpus import SampleParams, resolve_corpus, sample_corpus
from tripleforge.errors import UserError

FUNC = "def {name}(items):\n    total = 0\n    for item in items:\n        total += item * {k}\n    return total\n"


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def params(corpus: Path | str, **kw: object) -> SampleParams:
    return SampleParams(corpus=str(corpus), min_chars=20, **kw)  # type: ignore[arg-type]


def mixed_tree(root: Path) -> Path:
    write(root / "good.py", FUNC.format(name="a", k=1) + "\n" + FUNC.format(name="b", k=2))
    write(root / "pkg" / "dup.py", FUNC.format(name="a", k=1))               # duplicate unit of good.py
    write(root / "bin.py", b"def f():\n    return 1\x00\x01\x02")            # binary
    write(root / "latin.py", "def caf\xe9():\n    return '\xe9t\xe9'\n".encode("latin-1"))  # non-UTF-8
    write(root / "bom.py", "\ufeff" + FUNC.format(name="c", k=3))            # UTF-8 with BOM is read
    write(root / "empty.py", "")                                             # empty
    write(root / "big.py", "x = 1\n" * 400)                                  # over max_file_bytes
    write(root / "Main.java", "class Main {\n  int twice(int x) { return x * 2 + 0; }\n}\n")
    write(root / "notes.txt", "not code")                                    # unknown extension: ignored
    write(root / ".git" / "x.py", FUNC.format(name="hidden", k=9))          # hidden dir: not entered
    write(root / "data.jsonl", '{"text": "x"}\n')
    return root


def test_mixed_tree_counts_every_skip_reason(tmp_path: Path) -> None:
    root = mixed_tree(tmp_path / "src")
    ext = write(tmp_path / "ext.jsonl",
                json.dumps({"text": FUNC.format(name="e", k=5), "code_language": "python", "origin": "x"}) + "\n"
                + '{"text": "def broken(\n'                                 # malformed JSONL line 2
                + json.dumps({"title": "no text"}) + "\n"
                + json.dumps({"text": "SELECT * FROM users WHERE id = 42"}) + "\n"  # no language
                + "\n")
    res = sample_corpus(params(root, max_file_bytes=1000, external=[str(ext)], external_code_language=""))
    s = res.metrics["skipped"]
    assert (s["binary"], s["non_utf8"], s["empty"], s["too_large"]) == (1, 1, 1, 1)
    assert (s["malformed_jsonl"], s["no_text"], s["unknown_code_language"]) == (1, 1, 1)
    assert res.metrics["duplicates_removed"] == 1
    assert res.metrics["files_read"] == 7 + 1  # the over-size file is not read; plus the JSONL file
    assert res.metrics["per_language"] == {
        "java": {"candidates": 1, "docs": 1, "pool": 1},
        "python": {"candidates": 4, "docs": 4, "pool": 4}}
    assert any(w.startswith(f"{ext.as_posix()}:2") and "malformed_jsonl" in w for w in res.warnings)
    assert any(w.startswith("latin.py") and "non_utf8" in w for w in res.warnings)
    docs = res.docs
    assert sorted(docs["source"].to_list()) == sorted(
        ["Main.java:1-3", "bom.py:1-5", "good.py:1-5", "good.py:7-11", f"{ext.as_posix()}:1"])
    assert "hidden" not in "".join(docs["text"].to_list())
    ext_row = docs.filter(pl.col("source").str.ends_with(":1") & pl.col("source").str.contains("ext"))
    assert json.loads(ext_row["meta"][0]) == {"origin": "x"}
    assert not docs["text"].str.starts_with("\ufeff").any()


def test_coder_layout_reads_every_matching_file_and_filters_buckets(tmp_path: Path) -> None:
    root = tmp_path / "coder"
    for i, bucket in enumerate(["0-500", "500-1000", "16000-inf"]):
        rows = [{"text": FUNC.format(name=f"f{i}_{j}", k=j), "id": f"{i}-{j}"} for j in range(3)]
        write(root / "python" / f"part{i}_len-{bucket}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write(root / "python" / "README.md", "ignored")
    write(root / "go" / "a_len-0-500.jsonl", json.dumps({"text": "func A() int {\n\treturn 1 + 2 + 3\n}"}) + "\n")
    kind, _ = resolve_corpus(params(root))
    assert kind == "coder"
    res = sample_corpus(params(root))
    assert res.metrics["files_read"] == 4 and res.metrics["files_ignored"] == 1
    assert res.metrics["per_language"]["python"]["candidates"] == 9  # all three files, not only the first
    assert set(res.docs["source"].str.extract(r"^(python/part\d)", 1).drop_nulls()) == {
        "python/part0", "python/part1", "python/part2"}
    only = sample_corpus(params(root, length_buckets=["len_16000_32000"], code_languages=["python"]))
    assert only.metrics["files_read"] == 1 and only.docs.height == 3
    assert set(only.docs["code_language"]) == {"python"}


def test_language_names_are_read_as_people_write_them(tmp_path: Path) -> None:
    """"Python" in a record, or a CodeR folder named `Python/`, was skipped or ignored without a count."""
    cpp = "int twice(int x) {\n    int y = x * 2;\n    return y + 0;\n}\n"
    rows = [(FUNC.format(name="e0", k=0), "Python"), (FUNC.format(name="e1", k=1), " py"), (cpp, "C++"),
            (FUNC.format(name="e3", k=3), "klingon")]
    ext = write(tmp_path / "ext.jsonl", "".join(json.dumps({"text": t, "code_language": lang}) + "\n" for t, lang in rows))
    tree = tmp_path / "tree"
    write(tree / "Main.java", "class Main {\n  int twice(int x) { return x * 2 + 0; }\n}\n")
    res = sample_corpus(params(tree, external=[str(ext)], external_code_language=""))
    assert res.metrics["skipped"]["unknown_code_language"] == 1  # klingon
    assert {k: v["candidates"] for k, v in res.metrics["per_language"].items()} == {
        "cplusplus": 1, "java": 1, "python": 2}
    root = tmp_path / "coder"
    write(root / "Python" / "a_len-0-500.jsonl", json.dumps({"text": FUNC.format(name="f", k=1)}) + "\n")
    write(root / "Klingon" / "b_len-0-500.jsonl", json.dumps({"text": "x"}) + "\n")
    res = sample_corpus(params(root))
    assert res.metrics["files_read"] == 1 and res.metrics["files_ignored"] == 1
    assert res.metrics["per_language"]["python"]["candidates"] == 1


def test_a_pos_record_keeps_its_text_once(tmp_path: Path) -> None:
    one, two = FUNC.format(name="p1", k=1), FUNC.format(name="p2", k=2)
    ext = write(tmp_path / "ext.jsonl", json.dumps({"query": "q", "pos": [one], "neg": ["n"]}) + "\n"
                + json.dumps({"query": "r", "pos": [two, "other"]}) + "\n")
    tree = write(tmp_path / "tree" / "Main.java", "class Main {\n  int twice(int x) { return x * 2 + 0; }\n}\n").parent
    res = sample_corpus(params(tree, external=[str(ext)], external_code_language="python"))
    rows = pl.concat([res.docs, res.pool]).filter(pl.col("code_language") == "python").unique("text").sort("text")
    assert rows["text"].to_list() == [one.strip(), two.strip()]
    assert [json.loads(m) for m in rows["meta"]] == [{"query": "q", "neg": ["n"]}, {"query": "r", "pos": ["other"]}]


def test_external_parquet(tmp_path: Path) -> None:
    root = write(tmp_path / "tree" / "a.go", "package a\n\nfunc A(x int) int {\n\treturn x * 2\n}\n").parent
    pq = tmp_path / "ext.parquet"
    pl.DataFrame({"text": ["SELECT * FROM orders WHERE total > 100", "fn main() { let x = 1; }"],
                  "code_language": ["sql", "rust"]}).write_parquet(pq)
    res = sample_corpus(params(root, external=[str(pq)]))
    assert sorted(res.docs["code_language"].to_list()) == ["go", "rust", "sql"]


def test_sources_hold_paths_as_written_and_valid_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`~/x.jsonl` once became each user's home path in `source` (different bytes per user), and a
    file name with a Latin-1 byte crashed the Parquet write with a traceback."""
    import os

    root = tmp_path / "tree"
    root.mkdir()
    (Path(os.fsdecode(bytes(root) + b"/caf\xe9.py"))).write_text(FUNC.format(name="a", k=1), encoding="utf-8")
    home = tmp_path / "home"
    write(home / "x.jsonl", json.dumps({"text": FUNC.format(name="e", k=5), "code_language": "python"}) + "\n")
    pl.DataFrame({"text": [FUNC.format(name="f", k=6)], "code_language": ["python"]}).write_parquet(home / "y.parquet")
    monkeypatch.setenv("HOME", str(home))
    res = sample_corpus(params(root, external=["~/x.jsonl", "~/y.parquet"], num_samples=3))
    assert sorted(res.docs["source"].to_list()) == ["caf\\xe9.py:1-5", "~/x.jsonl:1", "~/y.parquet:1"]
    res.docs.write_parquet(tmp_path / "d.parquet")


def test_a_bom_starting_any_jsonl_line_is_dropped(tmp_path: Path) -> None:
    """Two BOM files joined with `cat`: sample once skipped line 2 as malformed (convert-formats read it)."""
    one = json.dumps({"text": FUNC.format(name="e", k=5), "code_language": "python"}).encode()
    two = json.dumps({"text": FUNC.format(name="f", k=6), "code_language": "python"}).encode()
    ext = write(tmp_path / "cat.jsonl", b"\xef\xbb\xbf" + one + b"\n\xef\xbb\xbf" + two + b"\n")
    (tmp_path / "tree").mkdir()
    res = sample_corpus(params(tmp_path / "tree", external=[str(ext)], num_samples=2))
    assert res.metrics["skipped"].get("malformed_jsonl", 0) == 0
    assert sorted(res.docs["source"].to_list()) == [f"{ext}:1", f"{ext}:2"]


def test_python_stdlib_default_reads_real_code() -> None:
    res = sample_corpus(SampleParams(code_languages=["python"], num_samples=3, max_pool=5))
    assert res.metrics["files_read"] > 100
    assert res.docs.height == 3 and res.pool.height == 5
    assert not res.docs["source"].str.contains("site-packages|/test/").any()
    assert res.docs["text"].str.contains(r"(?m)^(async def|def|class|@)").all()


def test_missing_paths_fail_before_work(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"sample\.corpus: path not found: .*nope"):
        sample_corpus(params(tmp_path / "nope"))
    with pytest.raises(UserError, match=r"sample\.external\.0: file not found"):
        sample_corpus(params(tmp_path, external=[str(tmp_path / "x.jsonl")]))


def test_corpus_kind_that_does_not_fit_the_corpus_says_so(tmp_path: Path) -> None:
    # `python-stdlib` is a corpus name, not a folder; an explicit kind needs a directory
    with pytest.raises(UserError, match=r"^params.yaml: sample.corpus_kind: 'coder' needs sample.corpus to be a "
                                        r"directory in the CodeR layout .*, but it is 'python-stdlib'") as err:
        sample_corpus(SampleParams(corpus_kind="coder"))
    assert "path not found" not in str(err.value)
    with pytest.raises(UserError, match=r"sample.corpus_kind: 'tree' needs sample.corpus to be a source-tree "
                                        r"directory, but it is 'python-stdlib'"):
        resolve_corpus(SampleParams(corpus_kind="tree"))
    # a source tree read as CodeR would ignore every file and end with 0 docs
    root = write(tmp_path / "tree" / "a.py", FUNC.format(name="a", k=1)).parent
    with pytest.raises(UserError, match=rf"sample.corpus_kind: 'coder' needs .*, but {root} has no such file"):
        resolve_corpus(params(root, corpus_kind="coder"))
    # kind python-stdlib with a folder read the stdlib and ignored the folder without a word
    with pytest.raises(UserError, match=r"^params.yaml: sample.corpus_kind: 'python-stdlib' reads the built-in "
                                        r"corpus, but sample.corpus names '.*tree'; set corpus_kind to auto"):
        resolve_corpus(params(root, corpus_kind="python-stdlib"))
    assert resolve_corpus(SampleParams(corpus_kind="python-stdlib"))[0] == "python-stdlib"


def test_every_dropped_record_and_unit_is_counted(tmp_path: Path) -> None:
    root = write(tmp_path / "tree" / "a.go", "package a\n\nfunc A(x int) int {\n\treturn x * 2\n}\n").parent
    ext = write(tmp_path / "ext.jsonl", "".join(json.dumps(r) + "\n" for r in [
        {"text": FUNC.format(name="e", k=5), "code_language": "python"},
        {"text": "fn main() { let x = 1; }", "code_language": "rust"},   # not in code_languages
        {"text": "SELECT * FROM orders WHERE total > 100", "code_language": "sql"},  # not in code_languages
    ]))
    res = sample_corpus(params(root, external=[str(ext)], code_languages=["python", "go"]))
    assert res.metrics["skipped"]["not_in_code_languages"] == 2
    assert res.metrics["units_found"] == 2 and res.docs.height == 2
    # a tree unit outside the selected length buckets
    big = FUNC.format(name="b" * 600, k=1)
    write(root / "big.py", big)
    res = sample_corpus(params(root, max_chars=4000, length_buckets=["len_0_500"]))
    assert res.metrics["skipped"]["not_in_length_buckets"] == 1
    assert res.metrics["units_found"] == 2 and res.docs["source"].to_list() == ["a.go:3-5"]


def test_process_pool_gives_identical_output(tmp_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(70):
        write(root / f"d{i % 7}" / f"m{i}.py", FUNC.format(name=f"f{i}", k=i) + FUNC.format(name=f"g{i}", k=i + 1))
    write(root / "d0" / "zz.py", b"\x00")
    one = sample_corpus(params(root, num_samples=10, max_pool=50))
    two = sample_corpus(params(root, num_samples=10, max_pool=50, workers=2))
    assert one.docs.equals(two.docs) and one.pool.equals(two.pool)
    assert one.metrics == two.metrics and one.metrics["skipped"]["binary"] == 1
    assert one.metrics["candidates"] == 140


def test_pool_size_never_exceeds_the_usable_cpus_or_the_work() -> None:
    """`workers: 1000` once started 1000 interpreters and exhausted the machine's memory."""
    from tripleforge.corpus import pool_size, usable_cpus

    cpus = usable_cpus()
    assert pool_size(1000, 10_000) == cpus and pool_size(0, 10_000) == cpus
    assert pool_size(1, 10_000) == 1 and pool_size(2, 10_000) == min(2, cpus)
    assert pool_size(1000, 64) == min(8, cpus) and pool_size(0, 8) == 1


@pytest.mark.parametrize("delay", [0.05, 1.0])
def test_ctrl_c_with_a_process_pool_stops_the_stage(tmp_path: Path, delay: float) -> None:
    """A Ctrl-C (SIGINT to the process group) during a workers=2 read once left the stage
    spinning forever on a broken pool, its workers orphaned (1 s: the workers are reading);
    one while the workers were still starting printed their tracebacks (0.05 s)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "tree"
    # about 3 s of parsing on 2 workers; 8 s for the early case, which outlasts its 5 s wait below
    n_files = 1000 if delay >= 1 else 2500
    for i in range(n_files):
        write(root / f"d{i % 30}" / f"m{i}.py", "".join(FUNC.format(name=f"f{i}_{j}", k=j) for j in range(200)))
    stage = Path(__file__).parents[1] / "stages" / "sample.py"
    (tmp_path / "params.yaml").write_text(f"sample:\n  corpus: {root}\n  workers: 2\n")
    proc = subprocess.Popen(
        [sys.executable, str(stage), "--params", "params.yaml", "--docs", "out/d.parquet", "--pool", "out/p.parquet",
         "--metrics", "out/m.json"], cwd=tmp_path, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "TRIPLEFORGE_NO_PROGRESS": "0"},
        # as from a terminal: a test run started in the background (`cmd &` in a script) ignores
        # SIGINT, every child inherits that, and the stage then reads on through the Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    seen = ""
    while f"0/{n_files}" not in seen and proc.poll() is None:  # files listed; the pool starts
        seen += proc.stderr.read(1)
    time.sleep(delay)  # the whole read takes about 3 s
    assert proc.poll() is None, "finished before the interrupt: the test needs more files"
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.monotonic()
    try:
        try:
            rest = proc.communicate(timeout=60 if delay >= 1 else 5)[1]
        except subprocess.TimeoutExpired:
            # 0.05 s can land in the few milliseconds the parent ignores SIGINT while it starts the
            # workers (on a loaded machine, longer; see corpus.sigint_free_pool): a user's second
            # Ctrl-C. What this case checks is that the workers' start prints no traceback.
            os.killpg(proc.pid, signal.SIGINT)
            rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert time.monotonic() - t0 < 65 and proc.returncode == 130, rest[-2000:]
    assert rest.rstrip().endswith("error: interrupted") and "Traceback" not in rest
    assert not (tmp_path / "out").exists()


def test_jsonl_records_python_reads_but_json_lacks_are_skipped_and_counted(tmp_path: Path) -> None:
    """NaN/Infinity (kept into `meta` as non-JSON), 4300+ digit integers and deep nesting (each a
    traceback from Python's json) are malformed records; a file without records is `empty`."""
    good = json.dumps({"text": FUNC.format(name="g", k=1), "code_language": "python"})
    lines = [good, '{"text": "def f(): pass", "code_language": "python", "score": Infinity}',
             '{"text": "def f(): pass", "id": ' + "9" * 5000 + "}",
             '{"text": "def f(): pass", "x": ' + "[" * 50_000 + "]" * 50_000 + "}"]
    ext = write(tmp_path / "ext.jsonl", "\n".join(lines) + "\n")
    blank = write(tmp_path / "blank.jsonl", "\n  \n")
    (tmp_path / "tree").mkdir()
    res = sample_corpus(params(tmp_path / "tree", external=[str(ext), str(blank)]))
    assert res.metrics["skipped"]["malformed_jsonl"] == 3 and res.metrics["skipped"]["empty"] == 1
    assert res.docs.height == 1


def test_a_fifo_in_a_source_tree_is_skipped_not_read(tmp_path: Path) -> None:
    """Reading a FIFO named like a source file blocked the stage forever."""
    import os

    root = write(tmp_path / "tree" / "a.py", FUNC.format(name="a", k=1)).parent
    os.mkfifo(root / "pipe.py")
    res = sample_corpus(params(root))
    assert res.metrics["skipped"]["unreadable"] == 1 and res.docs.height == 1


def test_units_with_credentials_or_blob_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    """Keys in string literals and base64 blobs became sampled docs: sent to the (possibly hosted)
    LLM and learned from, with no count or warning."""
    aws = ('def client():\n    return boto3.client("s3", aws_access_key_id="AKIAQ3EGRT4KZ7WJ2M5N",\n'
           '                        region="eu-west-1")\n')
    hf = 'def login():\n    token = "hf_' + "aB3" * 12 + '"\n    return connect(token)\n'
    blob = 'def icon():\n    return base64.b64decode("' + "QUJD" * 400 + '")\n'
    root = tmp_path / "tree"
    write(root / "keys.py", aws + "\n" + hf)
    write(root / "icon.py", blob)
    write(root / "ok.py", FUNC.format(name="fine", k=1) + "\ndef read(password):\n    return check(password, 'x')\n"
          # names that hold no credential, and documentation keys: kept
          + '\ndef form():\n    password_field = "password_confirmation"\n    api_key_env = "OPENAI_API_KEY_ENV"\n'
          + '    return render(password_field, os.environ[api_key_env], key="AKIAIOSFODNN7EXAMPLE")\n')
    res = sample_corpus(params(root))
    assert res.metrics["skipped"]["credential"] == 2 and res.metrics["skipped"]["long_line"] == 1
    assert any(w.endswith("skipped (credential)") and "keys.py" in w for w in res.warnings)
    texts = "\n".join(res.pool["text"].to_list())
    assert "AKIAQ" not in texts and "hf_" not in texts and "QUJD" not in texts
    assert "def fine" in texts and "password_confirmation" in texts
    kept = sample_corpus(params(root, drop_credentials=False, max_line_chars=None))
    assert kept.metrics["skipped"]["credential"] == kept.metrics["skipped"]["long_line"] == 0
    assert kept.pool.height == res.pool.height + 3


def test_external_parquet_nan_becomes_null_in_meta(tmp_path: Path) -> None:
    """`meta` held `{"score":NaN}`, which no strict JSON reader takes."""
    root = write(tmp_path / "tree" / "a.go", "package a\n\nfunc A(x int) int {\n\treturn x * 2\n}\n").parent
    pq = tmp_path / "ext.parquet"
    pl.DataFrame({"text": [FUNC.format(name="m", k=2)], "score": [float("nan")], "w": [[1.0, float("inf")]]}
                 ).write_parquet(pq)
    res = sample_corpus(params(root, external=[str(pq)], external_code_language="python"))
    meta = res.pool.filter(pl.col("code_language") == "python")["meta"].item()
    assert json.loads(meta) == {"score": None, "w": [1.0, None]}


def test_a_json_array_file_is_an_error_not_a_silent_empty_read(tmp_path: Path) -> None:
    root = write(tmp_path / "tree" / "a.go", "package a\n\nfunc A(x int) int {\n\treturn x * 2\n}\n").parent
    arr = write(tmp_path / "arr.json", json.dumps([{"text": FUNC.format(name=f"f{i}", k=i)} for i in range(3)],
                                                  indent=2))
    with pytest.raises(UserError, match=r"arr.json: a JSON array; sample.external reads one JSON object per line"):
        sample_corpus(params(root, external=[str(arr)], external_code_language="python"))
    # a JSONL file whose first line is an array: that line is skipped, the others read
    lines = write(tmp_path / "first.jsonl", '["not a record"]\n' + json.dumps({"text": FUNC.format(name="g", k=1)}) + "\n")
    res = sample_corpus(params(root, external=[str(lines)], external_code_language="python"))
    assert res.metrics["skipped"]["no_text"] == 1 and res.metrics["per_language"]["python"]["candidates"] == 1


def test_coder_files_of_other_languages_are_counted_as_ignored(tmp_path: Path) -> None:
    root = tmp_path / "coder"
    write(root / "python" / "a_len-0-500.jsonl", json.dumps({"text": FUNC.format(name="f", k=1)}) + "\n")
    write(root / "python" / "b_len-0-500.jsonl", json.dumps({"text": FUNC.format(name="g", k=2)}) + "\n")
    write(root / "java" / "a_len-0-500.jsonl", json.dumps({"text": "class A { int f() { return 1; } }"}) + "\n")
    write(root / "top_len-0-500.jsonl", "{}\n")  # beside the language folders
    write(root / ".git" / "HEAD", "ref: refs/heads/main\n")  # tool folders are not entered, as in a tree
    res = sample_corpus(params(root, code_languages=["java"]))
    assert res.metrics["files_read"] == 1 and res.metrics["files_ignored"] == 3


def test_generated_files_and_records_are_skipped_and_counted(tmp_path: Path) -> None:
    """Protobuf stubs, migrations and parser tables were sampled like hand-written code: no one
    writes a query for them, and a corpus with many repeats their boilerplate."""
    root = tmp_path / "tree"
    write(root / "api_pb2.py", "# Generated by the protocol buffer compiler.  DO NOT EDIT!\n"
          + FUNC.format(name="stub", k=1))
    write(root / "pkg" / "0001_initial.py", "# Generated by Django 4.2 on 2024-01-05\n" + FUNC.format(name="mig", k=2))
    write(root / "ok.py", '"""A tree can be generated by passing a flag."""\n' + FUNC.format(name="kept", k=3))
    ext = write(tmp_path / "ext.jsonl", json.dumps({"text": "// Code generated by stringer. DO NOT EDIT.\n"
                                                            + FUNC.format(name="rec", k=4)}) + "\n"
                + json.dumps({"text": FUNC.format(name="rec_ok", k=5)}) + "\n")
    res = sample_corpus(params(root, external=[str(ext)], external_code_language="python"))
    assert res.metrics["skipped"]["generated"] == 3  # two files, one record
    assert sorted(res.pool["unit"].to_list()) == ["", "kept"]  # the record has no unit name
    assert "rec_ok" in "".join(res.pool["text"].to_list())
    assert not res.warnings  # ordinary filtering, not broken input
    kept = sample_corpus(params(root, external=[str(ext)], external_code_language="python", drop_generated=False))
    assert kept.metrics["skipped"]["generated"] == 0 and kept.pool.height == 5


CPP_HEADER = """#pragma once
#include <vector>
namespace geom {
template <typename T>
class Vec3 {
 public:
  Vec3(T x, T y, T z) : x_(x), y_(y), z_(z) {}
  T dot(const Vec3<T>& o) const { return x_ * o.x_ + y_ * o.y_ + z_ * o.z_; }
 private:
  T x_, y_, z_;
};
template <typename T>
T sum_all(const std::vector<T>& xs) {
  T acc{}; for (const auto& x : xs) acc += x; return acc;
}
}  // namespace geom
"""
C_HEADER = """#ifdef __cplusplus
extern "C" {
#endif
static inline int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}
#ifdef __cplusplus
}
#endif
"""


def test_a_cplusplus_header_named_h_is_read_as_cplusplus(tmp_path: Path) -> None:
    """C++ projects name their headers `.h`: parsed as C, `namespace geom {` became one broken
    "function" named geom, labelled c, and the class and function in it were lost."""
    root = tmp_path / "tree"
    write(root / "vec.h", CPP_HEADER)
    write(root / "clamp.h", C_HEADER)
    res = sample_corpus(params(root))
    units = sorted(zip(res.pool["code_language"].to_list(), res.pool["unit"].to_list(), strict=True))
    assert units == [("c", "clamp_int"), ("cplusplus", "Vec3"), ("cplusplus", "sum_all")]
    only_cpp = sample_corpus(params(root, code_languages=["cplusplus"]))
    assert sorted(only_cpp.pool["unit"].to_list()) == ["Vec3", "sum_all"] and only_cpp.metrics["files_ignored"] == 1
    only_c = sample_corpus(params(root, code_languages=["c"]))
    assert only_c.pool["unit"].to_list() == ["clamp_int"] and only_c.metrics["files_ignored"] == 1


def test_scripts_without_an_extension_are_read_by_their_shebang(tmp_path: Path) -> None:
    import os

    from tripleforge.languages import language_of_shebang

    assert [language_of_shebang(h) for h in (
        b"#!/usr/bin/env python3.11\nx", b"#! /bin/bash -e\r\n", b"#!/usr/bin/env -S node --no-warnings\n",
        b"#!/usr/bin/env VAR=1 ruby", b"#!/usr/local/bin/pwsh", b"#!/usr/bin/awk -f\n", b"# not one\n", b"",
        b"#!/usr/bin/env\n", b"#!/usr/bin/env -u HOME bash", b"#!/usr/bin/env -S -u HOME python3",
        b"#!/usr/bin/env --split-string=python3 -u", b"#!/usr/bin/env -Sperl -w", b"#!/usr/bin/env -i -C /tmp lua")] == [
        "python", "shell", "javascript", "ruby", "powershell", None, None, None, None, "shell", "python", "python",
        "perl", "lua"]
    root = tmp_path / "tree"
    write(root / "bin" / "tool", "#!/usr/bin/env python3\n" + FUNC.format(name="main", k=1))
    write(root / "scripts" / "deploy", "#!/bin/bash\nset -e\n\nbuild_all() {\n  for d in */; do\n"
                                        "    make -C \"$d\" all || return 1\n  done\n}\n")
    write(root / "LICENSE", "MIT License\n\nPermission is hereby granted, free of charge\n")
    write(root / "notes.md", "#!/usr/bin/env python\n")  # has an extension: by that alone (ignored)
    os.mkfifo(root / "pipe")  # no extension, not a regular file: never opened (it would block)
    # a whole-file unit of a node script, twice under other interpreter paths: one document, no `#!`
    script = "const fs = require('fs');\nconst lines = fs.readFileSync(process.argv[2], 'utf8').split('\\n');\n" \
             "for (const line of lines) {\n  if (line.trim()) console.log(line.length, line);\n}\n"
    write(root / "bin" / "lens", "#!/usr/bin/env node\n" + script)
    write(root / "bin" / "lens2", "#!/usr/local/bin/node\n" + script)
    res = sample_corpus(params(root))
    units = sorted(zip(res.pool["code_language"].to_list(), res.pool["unit"].to_list(), strict=True))
    assert [u for u in units if u[0] != "javascript"] == [("python", "main"), ("shell", "build_all")]
    js = res.pool.filter(pl.col("code_language") == "javascript")
    assert js.height == 1 and js["text"][0].startswith("const fs")
    assert res.pool.filter(pl.col("unit") == "main")["source"].to_list() == ["bin/tool:2-6"]  # line numbers kept
    assert res.metrics["files_ignored"] == 3
    only_py = sample_corpus(params(root, code_languages=["python"]))
    assert only_py.pool["unit"].to_list() == ["main"] and only_py.metrics["files_ignored"] == 6


def test_units_the_grammar_could_not_parse_are_skipped_and_counted(tmp_path: Path) -> None:
    from test_corpus_units import SPLICED_SQL

    root = write(tmp_path / "tree" / "ext.sql", SPLICED_SQL).parent
    res = sample_corpus(params(root, drop_parse_errors=True))
    assert res.metrics["skipped"]["parse_error"] == 1 and res.pool["source"].to_list() == ["ext.sql:6-6"]
    kept = sample_corpus(params(root))  # the default keeps them: see SampleParams.drop_parse_errors
    assert kept.metrics["skipped"]["parse_error"] == 0 and kept.pool.height == 2


def test_functions_cut_out_of_a_minified_file_are_long_lines(tmp_path: Path) -> None:
    """`long_line` looked at a unit's own text: a function carved out of a one-line minified file
    is one line of a few hundred characters, so jquery.min.js passed as hand-written code."""
    body = "var r=0,i=e.length;for(;r<i;r++)if(t.call(e[r],r,e[r])===!1)break;return n?e.slice(r):e.concat([r,i,n])"
    minified = "!function(){" + "".join(f"function f{k}(e,t,n){{{body}.map(function(x){{return x*{k}}})}}" for k in range(12)) + "}();"
    root = tmp_path / "tree"
    write(root / "app.min.js", minified + "\n")
    write(root / "app.js", "\n".join(f"function g{k}(e, t) {{\n  return e.map((x) => x * t + {k}).filter(Boolean);\n}}"
                                        for k in range(3)) + "\n")
    res = sample_corpus(params(root))
    assert len(minified) > 1000 and res.metrics["skipped"]["long_line"] == 12
    assert sorted(res.pool["unit"].to_list()) == ["g0", "g1", "g2"]
