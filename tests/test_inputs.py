"""Which user-named input paths `dvc repro` watches (those under data/external/)."""

from __future__ import annotations

from pathlib import Path

from tripleforge.corpus import SampleParams, input_files
from tripleforge.inputs import outside_external_dir


def test_paths_under_data_external_are_watched_and_the_rest_reported_in_order(tmp_path: Path) -> None:
    ext = tmp_path / "data" / "external"
    (ext / "corpus").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (ext / "link").symlink_to(tmp_path / "elsewhere")
    paths = ["data/external/a.jsonl", "data/external/corpus", str(ext / "b.parquet"),  # inside
             "data/b.jsonl", "data/external/../c.jsonl", "data/externalx/d.jsonl", "data/external/link",  # outside
             "/tmp/e.jsonl"]
    assert outside_external_dir(paths, cwd=tmp_path) == [
        "data/b.jsonl", "data/external/../c.jsonl", "data/externalx/d.jsonl", "data/external/link", "/tmp/e.jsonl",
    ]
    assert outside_external_dir([], cwd=tmp_path) == []


def test_sample_inputs_are_the_corpus_folder_and_external_files_but_not_the_stdlib() -> None:
    assert input_files(SampleParams()) == []
    assert input_files(SampleParams(corpus="data/external/corpus", external=["x.jsonl"])) == [
        "data/external/corpus", "x.jsonl",
    ]
    assert input_files(SampleParams(corpus="anything", corpus_kind="python-stdlib")) == []
