"""The train-data directory: dataset naming, and all-or-nothing replacement."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from formats_data import mined_frame

from tripleforge.convert import ConvertFormatsParams, convert_all
from tripleforge.errors import UserError
from tripleforge.train_outputs import write_train_dir
from tripleforge.training import TrainDataParams


def _grouped() -> pl.DataFrame:
    return convert_all(mined_frame(n_docs=6, n_neg=3, eval_every=100), "m.parquet", ConvertFormatsParams()).grouped


def test_unsafe_task_names_and_null_language(tmp_path: Path) -> None:
    g = _grouped().with_columns(task=pl.lit("a/b c"), language=pl.lit(None, pl.String))
    m = write_train_dir(g, TrainDataParams(tokenizer={"enabled": False}), tmp_path / "train")  # type: ignore[arg-type]
    assert m["datasets"] == {"any/a_b_c": 5}  # doc 0 is eval
    assert (tmp_path / "train" / "embedder" / "any" / "a_b_c.jsonl").is_file()
    # the counts name language and task as the dataset folders do, never "none"
    assert m["by_language"] == {"any": 5} and m["by_task"] == {"a_b_c": 5}
    nulls = _grouped().with_columns(task=pl.lit(None, pl.String), language=pl.lit(None, pl.String))
    m = write_train_dir(nulls, TrainDataParams(tokenizer={"enabled": False}), tmp_path / "train")  # type: ignore[arg-type]
    assert m["datasets"] == {"any/default": 5}
    assert m["by_language"] == {"any": 5} and m["by_task"] == {"default": 5}


def test_failed_run_leaves_previous_output_intact(tmp_path: Path) -> None:
    out = tmp_path / "train"
    write_train_dir(_grouped(), TrainDataParams(tokenizer={"enabled": False}), out)  # type: ignore[arg-type]
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    bad = TrainDataParams(tokenizer={"model": str(tmp_path / "no-such-tokenizer")})  # type: ignore[arg-type]
    with pytest.raises(UserError, match="not a local directory"):
        write_train_dir(_grouped(), bad, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["train"]  # no temp directory left behind


def test_max_len_over_the_model_limit_fails_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "train"
    write_train_dir(_grouped(), TrainDataParams(tokenizer={"enabled": False}), out)  # type: ignore[arg-type]
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = TrainDataParams(tokenizer={"passage_max_len": 100000})  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"^params.yaml: train_data.tokenizer.passage_max_len: 100000 is more than "
                                        r"the model's 512 positions"):
        write_train_dir(_grouped(), bad, out)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["train"]


def test_short_ntuple_rows_are_counted_and_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = TrainDataParams(train_group_size=3, st_ntuple_negatives=3, tokenizer={"enabled": False})  # type: ignore[arg-type]
    m = write_train_dir(_grouped(), p, tmp_path / "train")
    assert m["sentence_transformers"]["ntuple"] == 0 and m["sentence_transformers"]["triplet"] > 0
    assert "ntuple.jsonl keeps 0 of" in capsys.readouterr().err
