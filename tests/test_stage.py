"""Stage plumbing: where a params error says the bad value came from."""

from __future__ import annotations

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
