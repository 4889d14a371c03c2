"""`stages/generate.py` as a user runs it: bad input fails early, real SmolLM2 runs are cached,
crash-safe and byte-reproducible."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from gen_fixtures import PY_DOCS, docs_frame, free_port
from helpers import PROJECT, run

STAGE = PROJECT / "stages" / "generate.py"


def setup(tmp: Path, similar: bool = True, docs: list[str] | None = None, **gen: object) -> Path:
    (tmp / "data" / "paired").mkdir(parents=True, exist_ok=True)
    docs_frame(docs, similar=similar).write_parquet(tmp / "data" / "paired" / "docs.parquet")
    base = {"tasks": ["code_summary_retrieval"], "max_tokens": 32, "n_threads": 1}
    (tmp / "params.yaml").write_text(yaml.safe_dump({"generate": {**base, **gen}}))
    return tmp


def stage(cwd: Path, *args: str, cache: Path | None = None, check: bool = True,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {"TRIPLEFORGE_CACHE_DIR": str(cache or cwd / "cache"), **(env or {})}
    return run([sys.executable, str(STAGE), *args], cwd, check=check, env=e)


@pytest.mark.parametrize("gen,similar,expected", [
    ({"tasks": ["nope_retrieval"]}, True, "params.yaml: params key 'generate.tasks': Value error, unknown task 'nope_retrieval'"),
    ({"languages": ["klingon"]}, True, "generate.languages': Value error, unknown language 'klingon'"),
    ({"code_languages": ["cobol"]}, True, "unknown code language 'cobol'"),
    ({"tasks": ["code_context_retrieval", "code_context_retrieval"]}, True,
     "params.yaml: params key 'generate.tasks': Value error, 'code_context_retrieval' is listed twice"),
    ({"tasks": ["code_modification_retrieval"]}, False, "data/paired/docs.parquet: column 'similar_text' missing; task code_modification_retrieval"),
    ({"model_path": "/nowhere/model.gguf"}, True, "generate.model_path: model file not found: /nowhere/model.gguf"),
    ({"backend": "openai", "base_urls": ["http://127.0.0.1:{port}/v1"]}, True,
     "error: params.yaml: generate.base_urls: cannot reach LLM endpoint http://127.0.0.1:"),
    ({"backend": "openai", "api_key_env": "TF_UNSET_KEY_VAR"}, True, "environment variable TF_UNSET_KEY_VAR is not set"),
    # a typo in a port was an httpx.InvalidURL traceback
    ({"backend": "openai", "base_urls": ["http://localhost:800O/v1"]}, True,
     "params key 'generate.base_urls': Value error, 'http://localhost:800O/v1' is not a valid URL"),
    ({"backend": "openai", "base_urls": ["http://[::1/v1"]}, True, "'http://[::1/v1' is not a valid URL"),
    ({"base_urls": ["localhost:8000/v1"]}, True, "'localhost:8000/v1' is not an http(s) URL with a host"),
    ({"backend": "vllm", "model": "some/model"}, True, "backend 'vllm' needs the vllm package"),
    ({"max_tokens": "many"}, True, "generate.max_tokens"),
    # a file that is not a model: named and explained, not one llm_error per request
    ({"model_path": "params.yaml"}, True, "params.yaml: generate.model_path: params.yaml is not a GGUF model file"),
    ({"examples_dir": "/nonexistent"}, True, "params.yaml: generate.examples_dir: folder not found: /nonexistent"),
    ({"dedup_against": ["earlier.jsonl"]}, True, "params.yaml: generate.dedup_against: file not found: earlier.jsonl"),
    ({"dedup_against": ["data"]}, True, "params.yaml: generate.dedup_against: data is a directory, not a file"),
    ({"code_languages": ["java"]}, True,
     "params.yaml: generate.code_languages: no document in data/paired/docs.parquet is in java (present: python)"),
])
def test_bad_input_fails_with_one_line_before_any_llm_call(tmp_path: Path, gen: dict, similar: bool,
                                                           expected: str) -> None:
    gen = {k: [u.format(port=free_port()) for u in v] if k == "base_urls" else v for k, v in gen.items()}
    setup(tmp_path, similar=similar, **gen)
    proc = stage(tmp_path, check=False, env={"TF_UNSET_KEY_VAR": ""})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "data" / "generated").exists() and not (tmp_path / "cache" / "llm").exists()


@pytest.mark.parametrize("backend,secret", [
    ("openai", "sk-SECRET-12345"), ("llama-cpp", "sk-SECRET-12345"),
    # keys that are valid variable names too: they were taken for names and printed back in full
    ("openai", "gsk_8fJk2LmQ9xTz4VbN7pRw3YcH5sDe1AqU6"), ("llama-cpp", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("openai", "9f86d081884c7d659a2feaa0c55ad015"),
])
def test_pasted_api_key_is_a_params_error_that_does_not_repeat_it(tmp_path: Path, backend: str, secret: str) -> None:
    setup(tmp_path, backend=backend, api_key_env=secret)
    for args, where in [((), "params.yaml"), (("--set", f"api_key_env={secret}"), "--set")]:
        proc = stage(tmp_path, *args, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"error: {where}: generate.api_key_env: not an environment-variable name "
                                      "(it looks like an API key was pasted)"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and secret not in proc.stderr + proc.stdout


def test_secrets_in_params_values_are_not_repeated_in_errors(tmp_path: Path) -> None:
    setup(tmp_path, backend="openai", api_key_env="my_key_var")  # lower case: could be a key, so not echoed
    proc = stage(tmp_path, check=False)
    assert proc.returncode == 2 and "my_key_var" not in proc.stderr, proc.stderr
    assert "generate.api_key_env: environment variable named there (not repeated" in proc.stderr
    password = "hunter2secret"
    proc = stage(tmp_path, "--set", "api_key_env=", "--set", f"base_urls=[http://me:{password}@127.0.0.1:9/v1]",
                 check=False)
    assert proc.returncode == 2 and password not in proc.stderr, proc.stderr
    assert ("params key 'generate.base_urls': Value error, a base URL with '@', '?' or '#' (not repeated: it may "
            "hold a credential)") in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # the password was echoed by every other error the value could meet: a scalar for the list, a
    # repeat, another entry's error, a forgotten scheme; and a key in the query was accepted
    for urls in [f"http://u:{password}@h/v1", f"[http://u:{password}@h/v1, http://u:{password}@h/v1/]",
                 f"[http://localhost:800O/v1, http://u:{password}@h/v1]", f"[admin:{password}@gpu-box:8000/v1]",
                 f'["http://h/v1?api_key={password}"]', f'["http://u:Pa,{password}@h"]', f'["http://u:Pa/{password}@h"]',
                 f'["http://u:Pa#{password}@h"]', f'["http://admin:2024/{password}@127.0.0.1:9/v1"]',
                 f'["http://h/v1?api_key={password}", "http://h/v1?api_key={password}"]',
                 f"http://h/v1?api_key={password}", f"[http://h:80O/v1, 'https://x.azure.com/v1?api-key={password}']"]:
        proc = stage(tmp_path, "--set", "api_key_env=", "--set", f"base_urls={urls}", check=False)
        assert proc.returncode == 2 and password not in proc.stderr, proc.stderr
        assert proc.stderr.startswith("error: --set: params key 'generate.base_urls'"), proc.stderr
    for item in (f"base_urls: [http://u:{password}@h]", f"=http://u:{password}@h"):  # not even key=value
        proc = stage(tmp_path, "--set", item, check=False)
        assert proc.returncode == 2 and password not in proc.stderr, proc.stderr


def test_set_errors_name_the_key_and_the_command_line(tmp_path: Path) -> None:
    setup(tmp_path, tasks=["code_context_retrieval"])
    # a repeated entry would count every job twice (requested 24, duplicate_pair 12 for 6 jobs)
    proc = stage(tmp_path, "--set", "tasks=[code_context_retrieval,code_context_retrieval]",
                 "--set", "languages=[en,en]", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: --set: params key 'generate.tasks': Value error, 'code_context_retrieval' is listed twice (got "
        "['code_context_retrieval', 'code_context_retrieval']); --set: params key 'generate.languages': Value error, "
        "'en' is listed twice (got ['en', 'en'])"), proc.stderr
    url = f"http://127.0.0.1:{free_port()}/v1"
    proc = stage(tmp_path, "--set", "tasks=[code_summary_retrieval]", "--set", "backend=openai",
                 "--set", f"base_urls=[{url}]", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: --set: generate.base_urls: cannot reach LLM endpoint {url}: ConnectError"), proc.stderr
    assert not (tmp_path / "data" / "generated").exists()


def test_input_paths_outside_data_external_are_warned_and_listed(tmp_path: Path) -> None:
    # DVC watches data/external/, not paths taken from params: say which inputs it will not see change
    ext = tmp_path / "data" / "external"
    (ext / "examples").mkdir(parents=True)
    (tmp_path / "my_examples").mkdir()
    earlier = '{"query": "q", "pos": ["p"], "neg": []}\n'
    (ext / "earlier.jsonl").write_text(earlier)
    (tmp_path / "old.jsonl").write_text(earlier)
    setup(tmp_path, tasks=["code_context_retrieval"], examples_dir="my_examples",  # no LLM: fast
          dedup_against=["data/external/earlier.jsonl", "old.jsonl"])
    proc = stage(tmp_path)
    warned = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warned == [
        "warning: generate.examples_dir: my_examples is outside data/external/, so `dvc repro` will not notice when "
        "it changes (move it there, or re-run this stage with -f after editing it)",
        "warning: generate.dedup_against: old.jsonl is outside data/external/, so `dvc repro` will not notice when "
        "it changes (move it there, or re-run this stage with -f after editing it)",
    ], proc.stderr
    m = json.loads((tmp_path / "metrics" / "generate.json").read_text())
    assert m["untracked_inputs"] == ["my_examples", "old.jsonl"]
    stage(tmp_path, "--set", "examples_dir=data/external/examples", "--set", "dedup_against=[]")
    assert json.loads((tmp_path / "metrics" / "generate.json").read_text())["untracked_inputs"] == []


def test_documents_with_null_text_are_skipped_and_counted(tmp_path: Path) -> None:
    """A null `text` was a `TypeError: object of type 'NoneType' has no len()` traceback."""
    import polars as pl

    setup(tmp_path, tasks=["code_context_retrieval"])  # no LLM: fast
    docs = tmp_path / "data" / "paired" / "docs.parquet"
    frame = pl.read_parquet(docs)
    frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("text")).alias("text")) \
        .write_parquet(docs)
    proc = stage(tmp_path)
    assert "warning: generate: skipped 1 document(s) with null or blank text (metrics: docs_empty_text)" in proc.stderr
    m = json.loads((tmp_path / "metrics" / "generate.json").read_text())
    assert m["docs_empty_text"] == 1 and m["requested"] == frame.height - 1


def test_rerun_writes_byte_identical_metrics_without_the_model(tmp_path: Path) -> None:
    # the no-LLM task: the run's timings would differ, the metrics file must not
    setup(tmp_path, tasks=["code_context_retrieval"])
    metrics = tmp_path / "metrics" / "generate.json"
    proc = stage(tmp_path)
    first = metrics.read_bytes()
    assert re.search(r"^generate: \d+\.\d\d s, no new LLM calls \(0 cached answers\)$", proc.stderr, re.MULTILINE)
    stage(tmp_path)
    assert metrics.read_bytes() == first


def test_missing_input_is_named(tmp_path: Path) -> None:
    setup(tmp_path)
    proc = stage(tmp_path, "--docs", "data/none.parquet", check=False)
    assert proc.returncode == 2 and "error: input not found: data/none.parquet" in proc.stderr


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.llm
def test_real_run_outputs_rerun_and_standalone_overrides(tmp_path: Path) -> None:
    setup(tmp_path, docs=PY_DOCS[:3], tasks=["code_summary_retrieval", "code_context_retrieval"])
    proc = stage(tmp_path)
    out = tmp_path / "data" / "generated"
    metrics = tmp_path / "metrics" / "generate.json"
    m = json.loads(metrics.read_text())
    assert m["requested"] == 6 and m["cache_misses"] == 3 and m["kept"] + m["rejected"] == 6
    assert m["tokens_out"] > 0 and m["new_tokens_out"] == m["tokens_out"]
    # wall-clock figures are on stderr only: in the DVC-tracked metrics they would change every run
    assert not {"seconds", "llm_seconds", "tokens_per_s"} & set(m)
    rate = re.search(r"^generate: \d+\.\d\d s, (\d+\.\d\d) s in 3 new LLM calls, (\d+) new tokens out at "
                     r"(\d+\.\d) tokens/s \(0 cached answers\)$", proc.stderr, re.MULTILINE)
    assert rate and float(rate[1]) > 0 and int(rate[2]) == m["new_tokens_out"] and float(rate[3]) > 0, proc.stderr
    assert proc.stdout == ""
    assert set(m["per_task"]) == {"code_summary_retrieval", "code_context_retrieval"}
    assert (out / "jsonl" / "en" / "code_context_retrieval" / "en-python-triplets.jsonl").is_file()
    first = _files(out)
    proc = stage(tmp_path)
    m2 = json.loads(metrics.read_text())
    assert m2["cache_misses"] == 0 and m2["cache_hits"] == 3 and _files(out) == first
    assert re.search(r"^generate: \d+\.\d\d s, no new LLM calls \(3 cached answers\)$", proc.stderr, re.MULTILINE)
    # two runs on the same cache: byte-identical metrics (dvc.lock and git stay clean)
    cached = metrics.read_bytes()
    stage(tmp_path)
    assert metrics.read_bytes() == cached and _files(out) == first
    # standalone use: --set overrides params.yaml, output paths are options
    stage(tmp_path, "--set", "tasks=[code_context_retrieval]", "--pairs", "alt/p.parquet",
          "--jsonl-dir", "alt/jsonl", "--metrics", "alt/m.json")
    assert json.loads((tmp_path / "alt" / "m.json").read_text())["requested"] == 3


@pytest.mark.llm
def test_translation_to_two_targets_gives_distinct_answers(tmp_path: Path) -> None:
    setup(tmp_path, docs=PY_DOCS[:1], tasks=["code_translation_retrieval"], tgt_code_languages=["java", "cplusplus"],
          max_tokens=48)
    stage(tmp_path)
    m = json.loads((tmp_path / "metrics" / "generate.json").read_text())
    assert m["requested"] == 2 and m["cache_misses"] == 2
    db = sqlite3.connect(tmp_path / "cache" / "llm" / "responses.sqlite")
    texts = [r[0] for r in db.execute("SELECT texts FROM responses")]
    assert len(texts) == 2 and texts[0] != texts[1]


@pytest.mark.llm
@pytest.mark.slow
def test_killed_run_resumes_without_repeating_calls_and_same_bytes(tmp_path: Path) -> None:
    docs = PY_DOCS[:6]
    work = setup(tmp_path / "a", docs=docs, max_tokens=16)
    ref = setup(tmp_path / "b", docs=docs, max_tokens=16)
    db_path = work / "cache" / "llm" / "responses.sqlite"
    env = {**os.environ, "TRIPLEFORGE_CACHE_DIR": str(work / "cache"), "TRIPLEFORGE_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, str(STAGE)], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db_path.exists():
            try:
                done = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 2:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "data" / "generated" / "pairs.parquet").exists()  # nothing half-written
    done = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert 2 <= done < len(docs)
    stage(work)
    m = json.loads((work / "metrics" / "generate.json").read_text())
    assert m["cache_hits"] == done and m["cache_misses"] == len(docs) - done
    stage(ref)  # uninterrupted, separate cache
    assert _files(work / "data" / "generated") == _files(ref / "data" / "generated")


def test_a_run_that_keeps_no_pair_says_so(tmp_path: Path) -> None:
    # 1 token per reply: every reply is cut off (`truncated`); exit 0, but not in silence
    setup(tmp_path, docs=PY_DOCS[:1], max_tokens=1)
    proc = stage(tmp_path)
    assert "warning: generate: no pair kept of 1: the filters rejected every reply" in proc.stderr
    assert proc.stdout == ""
