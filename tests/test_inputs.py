"""Which user-named input paths `dvc repro` watches (those under data/external/)."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_path_problem_says_what_is_wrong_not_just_not_found(tmp_path: Path) -> None:
    """A folder or a symlink loop given for a file was reported as "file not found"."""
    from tripleforge.errors import UserError
    from tripleforge.inputs import check_input_path, path_problem

    (tmp_path / "f.jsonl").write_text("{}\n")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    assert path_problem(tmp_path / "f.jsonl") is None and path_problem(tmp_path, "folder") is None
    assert path_problem(tmp_path) == f"{tmp_path} is a directory, not a file"
    assert path_problem(tmp_path / "f.jsonl", "folder") == f"{tmp_path}/f.jsonl is a file, not a folder"
    assert path_problem(tmp_path / "loop") == f"{tmp_path}/loop is a symlink loop"
    assert path_problem(tmp_path / "gone") == f"{tmp_path}/gone is a broken symlink (its target {tmp_path}/nowhere does not exist)"
    assert path_problem("nope.jsonl") == "file not found: nope.jsonl"
    assert path_problem("nope", "folder") == "folder not found: nope"
    assert path_problem("/dev/null") == "/dev/null is not a regular file"
    with pytest.raises(UserError, match=r"^params\.yaml: sample\.external\.0: .*/loop is a symlink loop$"):
        check_input_path(tmp_path / "loop", "sample.external.0")
    # a loop is outside data/external/ (its resolve() raised RuntimeError)
    assert outside_external_dir(["loop"], cwd=tmp_path) == ["loop"]
