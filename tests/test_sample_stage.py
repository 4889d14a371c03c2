"""The `sample` stage CLI (stages/sample.py) as DVC and users run it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import yaml
from helpers import PROJECT, run

SCRIPT = str(PROJECT / "stages" / "sample.py")


def setup(tmp_path: Path, **sample: object) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"m{i}.py").write_text(
            f"def f{i}(xs):\n    out = []\n    for x in xs:\n        out.append(x * {i})\n    return out\n")
    (src / "blob.py").write_bytes(b"\x00\x01binary")
    (src / "old.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    cfg = {"sample": {"corpus": str(src), "num_samples": 2, "max_pool": 4, "min_chars": 20, **sample}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def stage(cwd: Path, *args: str, check: bool = True):  # noqa: ANN201
    return run([sys.executable, SCRIPT, *args], cwd, check=check)


def test_writes_outputs_and_metrics_byte_identically(tmp_path: Path) -> None:
    cwd = setup(tmp_path)
    stage(cwd)
    docs = cwd / "data/sample/docs.parquet"
    pool = cwd / "data/sample/pool.parquet"
    first = (docs.read_bytes(), pool.read_bytes())
    frame = pl.read_parquet(docs)
    assert frame.height == 2
    assert {"doc_id", "text", "code_language", "length_bucket", "source"} <= set(frame.columns)
    assert pl.read_parquet(pool).height == 4
    m = json.loads((cwd / "metrics/sample.json").read_text())
    assert (m["docs"], m["pool"], m["skipped"]["binary"], m["skipped"]["non_utf8"]) == (2, 4, 1, 1)
    proc = stage(cwd)
    assert (docs.read_bytes(), pool.read_bytes()) == first
    assert proc.stdout == ""  # stdout stays clean; messages go to stderr
    assert "old.py: skipped (non_utf8)" in proc.stderr


def test_set_override_and_custom_output_paths(tmp_path: Path) -> None:
    cwd = setup(tmp_path)
    stage(cwd, "--set", "num_samples=3", "--docs", "out/d.parquet", "--pool", "out/p.parquet",
          "--metrics", "out/m.json")
    assert pl.read_parquet(cwd / "out/d.parquet").height == 3
    assert json.loads((cwd / "out/m.json").read_text())["docs"] == 3
    # none asked for is not "no documents found"
    proc = stage(cwd, "--set", "num_samples=0", "--docs", "out/d.parquet", "--pool", "out/p.parquet",
                 "--metrics", "out/m.json")
    assert "warning: sample: no documents sampled of 6 candidates (sample.num_samples is 0)" in proc.stderr
    assert "no usable code unit" not in proc.stderr
    # a quota for a language the corpus lacks sampled nothing without a word
    proc = stage(cwd, "--set", "quotas={sql: 5, python: 1}", "--docs", "out/d.parquet", "--pool", "out/p.parquet",
                 "--metrics", "out/m.json")
    assert "warning: sample.quotas.sql: 5 asked for, but the corpus has no sql code unit" in proc.stderr
    assert "quotas.python" not in proc.stderr and pl.read_parquet(cwd / "out/d.parquet").height == 1
    proc = stage(cwd, "--set", "quotas={sql: 5}", "--set", "code_languages=[python]", "--docs", "out/d.parquet",
                 "--pool", "out/p.parquet", "--metrics", "out/m.json")
    assert "warning: sample.quotas.sql: 5 asked for, but sample.code_languages leaves sql out" in proc.stderr


def test_a_corpus_without_a_usable_unit_fails_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    # the tryout: a corpus of one binary and one Latin-1 file gave 0 docs, exit 0, and the first
    # error came two stages later, naming data/sample/pool.parquet
    src = tmp_path / "bad"
    src.mkdir()
    (src / "blob.py").write_bytes(b"\x00\x01binary")
    (src / "old.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"sample": {"corpus": str(src)}}))
    proc = stage(tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: params.yaml: sample.corpus: no usable code unit in '{src}' (2 files read, 0 units found; "
        "skipped: binary=1, non_utf8=1)")
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()


def test_unknown_key_fails_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    cwd = setup(tmp_path, num_sample=3)
    proc = stage(cwd, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: params.yaml: unknown params key 'sample.num_sample'"
    assert not (cwd / "data").exists() and not (cwd / "metrics").exists()


def test_ill_typed_key_and_missing_corpus(tmp_path: Path) -> None:
    cwd = setup(tmp_path)
    proc = stage(cwd, "--set", "num_samples=many", check=False)
    assert proc.returncode == 2 and "sample.num_samples" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = stage(cwd, "--set", f"corpus={tmp_path / 'missing'}", check=False)
    assert proc.returncode == 2
    # the corpus came from --set, so the message says so (stage.relabel_params_error)
    assert proc.stderr.strip().splitlines() == [f"error: --set: sample.corpus: path not found: {tmp_path / 'missing'}"]
    assert not (cwd / "data").exists()


def test_contradictory_length_bounds_fail_before_any_work(tmp_path: Path) -> None:
    cwd = setup(tmp_path)
    proc = stage(cwd, "--set", "min_chars=5000", "--set", "max_chars=100", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: --set: params keys 'sample.min_chars' and 'sample.max_chars': Value error, "
                                   "max_chars 100 is below min_chars 5000: no unit could be kept (got max_chars=100)")
    assert not (cwd / "data").exists() and not (cwd / "metrics").exists()
