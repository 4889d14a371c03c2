"""Dedup and seeded per-language sampling (tripleforge.corpus)."""

from __future__ import annotations

import polars as pl
import pytest

from tripleforge.corpus import OUTPUT_COLUMNS, SampleParams, dedup, sample_frames, to_frame
from tripleforge.errors import UserError
from tripleforge.hashing import text_id
from tripleforge.params import validate_params


def frame(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    """rows of (text, code_language, source)."""
    cols: dict[str, list] = {c: [] for c in OUTPUT_COLUMNS}
    for text, lang, source in rows:
        for k, v in (("doc_id", text_id(text)), ("text", text), ("code_language", lang),
                     ("length_bucket", "len_0_500"), ("source", source), ("n_chars", len(text)),
                     ("unit", ""), ("unit_type", "file"), ("meta", "{}")):
            cols[k].append(v)
    return to_frame(cols)


def corpus(n_py: int, n_go: int) -> pl.DataFrame:
    rows = [(f"def f{i}():\n    return {i}", "python", f"p{i}.py") for i in range(n_py)]
    rows += [(f"func F{i}() int {{ return {i} }}", "go", f"g{i}.go") for i in range(n_go)]
    return frame(rows)


def test_dedup_by_normalized_text_keeps_first_by_source() -> None:
    f = frame([("def a():\n    return 1", "python", "b.py"),
               ("def a():   \n\n    return 1", "python", "a.py"),  # same after whitespace normalization
               ("def b():\n    return 2", "python", "c.py")])
    out = dedup(f)
    assert out.height == 2
    assert sorted(out["source"].to_list()) == ["a.py", "c.py"]
    assert dedup(f.reverse()).equals(out)  # reading order does not matter


def test_sampling_is_deterministic_per_seed_and_docs_subset_of_pool() -> None:
    f = corpus(40, 15)
    p = SampleParams(num_samples=5, max_pool=12, seed=7)
    docs, pool = sample_frames(f, p)
    assert docs["code_language"].value_counts().sort("code_language").rows() == [("go", 5), ("python", 5)]
    assert pool.height == 24
    assert set(docs["doc_id"]) <= set(pool["doc_id"])
    assert docs.columns == list(OUTPUT_COLUMNS)
    assert docs.sort(["code_language", "doc_id"]).equals(docs)  # sorted output
    again, _ = sample_frames(f.sample(fraction=1.0, shuffle=True, seed=1), p)
    assert again.equals(docs)  # input order does not matter
    other, _ = sample_frames(f, SampleParams(num_samples=5, max_pool=12, seed=8))
    assert not other.equals(docs)


def test_quotas_override_num_samples_and_pool_holds_every_doc() -> None:
    f = corpus(30, 30)
    docs, pool = sample_frames(f, SampleParams(num_samples=3, quotas={"go": 10}, max_pool=4))
    counts = dict(docs["code_language"].value_counts().rows())
    assert counts == {"python": 3, "go": 10}
    pool_counts = dict(pool["code_language"].value_counts().rows())
    assert pool_counts == {"python": 4, "go": 10}  # pool grows to the quota so docs ⊆ pool
    assert set(docs["doc_id"]) <= set(pool["doc_id"])


def test_growing_corpus_keeps_earlier_choices() -> None:
    p = SampleParams(num_samples=50, max_pool=50)
    small, _ = sample_frames(corpus(20, 0), p)
    big, _ = sample_frames(corpus(40, 0), p)
    assert set(small["doc_id"]) <= set(big["doc_id"])


@pytest.mark.parametrize(("raw", "needle"), [
    ({"quotas": {"cobol": 3}}, "sample.quotas"),
    ({"code_languages": ["c#"]}, "sample.code_languages"),
    ({"length_buckets": ["len_0_100"]}, "sample.length_buckets"),
    ({"num_samples": -1}, "sample.num_samples"),
    ({"max_chars": 50000}, "sample.max_chars"),
    ({"min_chars": 5000, "max_chars": 100}, "'sample.max_chars': Value error, max_chars 100 is below min_chars 5000"),
    ({"min_chars": 2000, "max_file_bytes": 1000}, "'sample.max_file_bytes': Value error, max_file_bytes 1000 is below"),
    ({"num_sample": 3}, "unknown params key 'sample.num_sample'"),
])
def test_bad_params_name_the_key(raw: dict, needle: str) -> None:
    with pytest.raises(UserError) as err:
        validate_params(SampleParams, "sample", raw, source="params.yaml")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_length_bounds_may_meet() -> None:
    p = validate_params(SampleParams, "sample", {"min_chars": 100, "max_chars": 100, "max_file_bytes": 100})
    assert (p.min_chars, p.max_chars, p.max_file_bytes) == (100, 100, 100)
