"""Stage plumbing: where a params error says the bad value came from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from test_evaluation import write_beir

from tripleforge.stage import relabel_params_error


def test_params_errors_name_the_file_read_or_set() -> None:
    msg = "params.yaml: sample.external.0: file not found: x.jsonl"
    assert relabel_params_error(msg, "exp.yaml", []) == "exp.yaml: sample.external.0: file not found: x.jsonl"
    assert relabel_params_error(msg, "params.yaml", ["external=[x.jsonl]"]).startswith("--set: sample.external.0:")
    # an override of another key leaves the file as the source
    assert relabel_params_error(msg, "params.yaml", ["num_samples=3"]) == msg
    nested = "params.yaml: evaluate.significance.baseline 'm' is not one of the models ['a']"
    assert relabel_params_error(nested, "p.yaml", ["significance.baseline=m"]).startswith("--set: evaluate.significance")
    assert relabel_params_error(nested, "p.yaml", ["significance={baseline: m}"]).startswith("--set: ")
    assert relabel_params_error("pool: bad", "p.yaml", ["a=1"]) == "pool: bad"  # not a params error


def test_warnings_name_where_a_params_value_came_from(capsys: pytest.CaptureFixture[str]) -> None:
    # the tryout: a base URL given with --set that did not answer was warned about as params.yaml's
    from tripleforge.progress import log
    from tripleforge.stage import user_errors

    down = "generate.base_urls: cannot reach LLM endpoint http://127.0.0.1:9/v1: ConnectError"

    @user_errors
    def main(params: str = "params.yaml", set_: list[str] | None = None) -> None:
        log(f"warning: generate: params.yaml: {down}; continuing with the other 1 of 2 base URLs")

    main(params="exp.yaml", set_=["base_urls=[http://127.0.0.1:9/v1, http://127.0.0.1:8/v1]"])
    assert capsys.readouterr().err.startswith(f"warning: generate: --set: {down};")
    main(params="exp.yaml", set_=["max_docs=2"])
    assert capsys.readouterr().err.startswith(f"warning: generate: exp.yaml: {down};")
    log(f"warning: params.yaml: {down}")  # outside a stage: as written
    assert capsys.readouterr().err.startswith("warning: params.yaml: ")


def test_a_message_naming_several_keys_says_set_if_any_was_set() -> None:
    msg = "params.yaml: sample.corpus_kind: 'coder' needs sample.corpus to be a CodeR folder"
    assert relabel_params_error(msg, "p.yaml", ["corpus=/x"]).startswith("--set: sample.corpus_kind: ")
    assert relabel_params_error(msg, "p.yaml", ["corpus_kind=coder"]).startswith("--set: sample.corpus_kind: ")
    assert relabel_params_error(msg, "p.yaml", ["seed=1"]).startswith("p.yaml: sample.corpus_kind: ")
    # setting one key of a nested mapping leaves its siblings to the file
    dev = "params.yaml: mine_negatives.embedder.device: 'cuda' asked for"
    assert relabel_params_error(dev, "p.yaml", ["embedder.max_length=64"]).startswith("p.yaml: ")
    assert relabel_params_error(dev, "p.yaml", ["embedder={device: cuda}"]).startswith("--set: ")
    tok = ("params.yaml: train_data.tokenizer.passage_max_len: 600 is more than the model's 512 positions "
           "(max_position_embeddings in config.json of train_data.tokenizer.model; use at most 512)")
    assert relabel_params_error(tok, "p.yaml", ["tokenizer.model=/m"]).startswith("--set: ")
    assert relabel_params_error(tok, "p.yaml", ["seed=1"]).startswith("p.yaml: ")


def test_a_library_message_that_starts_with_a_key_of_the_stage_section_gets_its_source() -> None:
    """`mine_negatives.rescore_model: ...` had no source: now the file read, or --set."""
    msg = "mine_negatives.rescore_model: '/x' is not a local cross-encoder directory"
    sections = {"mine_negatives"}
    assert relabel_params_error(msg, "p.yaml", ["rescore_model=/x"], sections) == f"--set: {msg}"
    assert relabel_params_error(msg, "p.yaml", [], sections) == f"p.yaml: {msg}"
    assert relabel_params_error("evaluate.models.0.device: no", "p.yaml", ["models=[{device: cuda}]"],
                                {"evaluate"}) == "--set: evaluate.models.0.device: no"
    assert relabel_params_error(msg, "p.yaml", [], {"sample"}) == msg  # not this stage's section
    assert relabel_params_error("pairs.parquet: bad", "p.yaml", [], sections) == "pairs.parquet: bad"
    # a file named like a section is a file
    assert relabel_params_error("mine_negatives.jsonl: bad", "p.yaml", [], sections) == "mine_negatives.jsonl: bad"
    # the stage itself may name the file it read
    base = "p.yaml: evaluate.significance.baseline 'x' is not a model name"
    assert relabel_params_error(base, "p.yaml", ["significance.baseline=x"]).startswith("--set: evaluate.")
    # validation errors already name their source and are left alone
    done = "p.yaml: params key 'sample.seed': bad (got 'x'); --set: params key 'sample.min_chars': bad (got 'y')"
    assert relabel_params_error(done, "p.yaml", ["min_chars=y"], {"sample"}) == done


# ---------------------------------------------------------------------------------------------
# the stage scripts (in a temp dir: nothing is encoded, as every case fails first)

STAGES = Path(__file__).resolve().parents[1] / "stages"
NO_CUDA = {"CUDA_VISIBLE_DEVICES": ""}  # torch.cuda.is_available() is false on any machine


def _inputs(cwd: Path) -> None:
    import yaml

    from tripleforge.io import write_parquet

    texts = ["def add(a, b):\n    return a + b", "def sub(a, b):\n    return a - b"]
    docs = pl.DataFrame({"doc_id": ["d0", "d1"], "text": texts, "code_language": ["python", "python"]})
    write_parquet(docs, cwd / "data/sample/docs.parquet")
    write_parquet(docs, cwd / "data/sample/pool.parquet")
    write_parquet(pl.DataFrame({"pair_id": ["p0"], "doc_id": ["d0"], "task": ["web_code_retrieval"], "prompt": [""],
                                "query": ["add numbers"], "pos": [[texts[0]]], "neg": [[]]}),
                  cwd / "data/generated/pairs.parquet")
    write_beir(cwd / "data/formats/eval")
    params = yaml.safe_load((STAGES.parent / "params.yaml").read_text())
    for section in ("pair_similar", "mine_negatives", "evaluate"):
        params[section]["cache_dir"] = str(cwd / "cache")
    params["evaluate"]["quality_report"] = False
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))


def _error(cwd: Path, stage: str, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, str(STAGES / f"{stage}.py"), *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=600)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]  # after any progress log
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().endswith(errors[0])
    assert not (cwd / "data/mined").exists() and not (cwd / "data/paired").exists() and not (cwd / "metrics").exists()
    return errors[0][len("error: "):]


def test_cross_field_params_errors_name_both_keys_and_the_source(tmp_path: Path) -> None:
    """`--set range_min=700` once gave `params.yaml: params key 'mine_negatives.range_max': ...`."""
    _inputs(tmp_path)
    assert _error(tmp_path, "mine_negatives", "--set", "range_min=700") == (
        "--set: params keys 'mine_negatives.range_min' and 'mine_negatives.range_max': Value error, must be greater "
        "than range_min (700) (got range_max=100)")
    exp = tmp_path / "exp.yaml"
    exp.write_text((tmp_path / "params.yaml").read_text().replace("range_min: 0", "range_min: 700"))
    assert _error(tmp_path, "mine_negatives", "--params", str(exp)).startswith(
        f"{exp}: params keys 'mine_negatives.range_min' and 'mine_negatives.range_max': ")
    assert _error(tmp_path, "mine_negatives", "--params", str(exp), "--set", "range_max=50").startswith(
        "--set: params keys 'mine_negatives.range_min' and 'mine_negatives.range_max': ")


@pytest.mark.parametrize(
    "stage,args,message",
    [
        ("pair_similar", ["--set", "embedder.device=cuda"],
         "--set: pair_similar.embedder.device: 'cuda' asked for, but torch.cuda.is_available() is false"),
        ("pair_similar", ["--set", "embedder.max_length=100000"],
         "--set: pair_similar.embedder.max_length: 100000 exceeds the 512 positions of model 'minilm' "
         "(pair_similar.embedder.model)"),
        ("mine_negatives", ["--set", "embedder.device=cuda"],
         "--set: mine_negatives.embedder.device: 'cuda' asked for, but torch.cuda.is_available() is false"),
        ("mine_negatives", ["--set", "embedder.max_length=100000"],
         "--set: mine_negatives.embedder.max_length: 100000 exceeds the 512 positions of model 'minilm' "
         "(mine_negatives.embedder.model)"),
        ("mine_negatives", ["--set", "embedder.model=/nonexistent"],
         "--set: mine_negatives.embedder.model: '/nonexistent' is not a local model directory"),
        ("mine_negatives", ["--set", "search.device=cuda"],
         "--set: mine_negatives.search.device: 'cuda' asked for"),
        ("mine_negatives", ["--set", "rescore_model=/nonexistent"],
         "--set: mine_negatives.rescore_model: '/nonexistent' is not a local cross-encoder directory"),
        ("evaluate", ["--set", "models=[{name: m, max_length: 100000}]"],
         "--set: evaluate.models.0.max_length: 100000 exceeds the 512 positions of model 'minilm' "
         "(evaluate.models.0.model)"),
        ("evaluate", ["--set", "models=[{name: m, device: cuda}]"], "--set: evaluate.models.0.device: 'cuda' asked for"),
        ("evaluate", ["--set", "search_device=cuda"], "--set: evaluate.search_device: 'cuda' asked for"),
    ],
)
def test_embedder_and_device_errors_name_section_and_source(tmp_path: Path, stage: str, args: list[str],
                                                            message: str) -> None:
    """`--set embedder.device=cuda` once gave `error: embedder.device: ...`: no section, no source."""
    _inputs(tmp_path)
    assert _error(tmp_path, stage, *args, env=NO_CUDA).startswith(message)


def test_embedder_errors_from_the_params_file_name_it(tmp_path: Path) -> None:
    _inputs(tmp_path)
    exp = tmp_path / "exp.yaml"
    exp.write_text((tmp_path / "params.yaml").read_text().replace("max_length: 256", "max_length: 100000"))
    assert _error(tmp_path, "pair_similar", "--params", str(exp)).startswith(
        f"{exp}: pair_similar.embedder.max_length: 100000 exceeds")
    # the limit is the model's: a model given with --set makes it a --set error
    assert _error(tmp_path, "pair_similar", "--params", str(exp), "--set", "embedder.model=minilm").startswith(
        "--set: pair_similar.embedder.max_length: 100000 exceeds")
