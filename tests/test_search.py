"""Exact and approximate inner-product search."""

from __future__ import annotations

import numpy as np
import pytest

from tripleforge.errors import UserError
from tripleforge.search import SearchConfig, exact_search, search


def unit(rng, n, d=32):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_equals_numpy_argsort():
    rng = np.random.default_rng(0)
    q, c = unit(rng, 40), unit(rng, 300)
    s, i = exact_search(q, c, 10)
    ref = q @ c.T
    ref_i = np.argsort(-ref, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(s, np.take_along_axis(ref, ref_i, axis=1), atol=1e-5)
    assert (np.diff(s, axis=1) <= 1e-7).all()


def test_chunked_equals_unchunked():
    rng = np.random.default_rng(1)
    q, c = unit(rng, 57), unit(rng, 200)
    a = exact_search(q, c, 15, chunk_size=4096)
    b = exact_search(q, c, 15, chunk_size=7)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


def test_k_larger_than_corpus_never_minus_one():
    rng = np.random.default_rng(2)
    s, i = exact_search(unit(rng, 3), unit(rng, 4), 100)
    assert i.shape == (3, 4) and (i >= 0).all()
    assert sorted(i[0].tolist()) == [0, 1, 2, 3]
    s, i = exact_search(unit(rng, 3), np.zeros((0, 32), np.float32), 5)
    assert i.shape == (3, 0)


def test_nan_embeddings_rejected():
    rng = np.random.default_rng(3)
    c = unit(rng, 10)
    c[4, 0] = np.nan
    with pytest.raises(UserError, match="NaN"):
        exact_search(unit(rng, 2), c, 3)


def test_dim_mismatch_rejected():
    rng = np.random.default_rng(4)
    with pytest.raises(UserError, match="dim"):
        exact_search(unit(rng, 2, 16), unit(rng, 10, 32), 3)


@pytest.mark.parametrize("method", ["hnsw", "ivf"])
def test_approx_reports_recall(method):
    rng = np.random.default_rng(5)
    q, c = unit(rng, 50), unit(rng, 3000)
    res = search(q, c, 10, SearchConfig(method=method, ivf_nprobe=64))
    assert res.method == method and res.recall is not None
    assert 0.5 <= res.recall <= 1.0
    # the invalid (-1) slots are flagged, never returned as valid ids
    assert ((res.indices >= 0) == res.valid).all()


def test_exact_search_via_search_config_matches():
    rng = np.random.default_rng(6)
    q, c = unit(rng, 5), unit(rng, 50)
    res = search(q, c, 7, SearchConfig())
    assert res.recall is None and res.valid.all()
    np.testing.assert_array_equal(res.indices, exact_search(q, c, 7)[1])


def test_torch_path_blocks_merge_like_faiss():
    """The GPU code path (torch fp32, corpus blocks merged) run on CPU with tiny blocks."""
    from tripleforge.search import _torch_search

    rng = np.random.default_rng(8)
    q, c = unit(rng, 9), unit(rng, 50)
    s = np.zeros((9, 12), np.float32)
    i = np.zeros((9, 12), np.int64)
    _torch_search(q, c, 12, 4, "cpu", s, i, block=3)
    ref_s, ref_i = exact_search(q, c, 12)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(s, ref_s, atol=1e-5)


MEMORY_SCRIPT = """
import resource, sys
import numpy as np
from tripleforge.search import exact_search, _torch_search
rng = np.random.default_rng(0)
c = rng.standard_normal((50_000, 32), dtype=np.float32)
q = rng.standard_normal((4_000, 32), dtype=np.float32)
import faiss, torch  # imported before the baseline so only the search itself is measured
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "faiss":
    exact_search(q, c, 10, chunk_size=256)
else:
    s = np.zeros((4000, 10), np.float32); i = np.zeros((4000, 10), np.int64)
    _torch_search(q, c, 10, 256, "cpu", s, i, block=8192)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


@pytest.mark.parametrize("path", ["faiss", "torch"])
def test_memory_bounded_by_chunking(path):
    """4000 x 50000 queries x corpus would be 800 MB as one matrix; chunked search stays far below."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, path], capture_output=True, text=True, check=True)
    grown_mb = float(proc.stdout.strip().splitlines()[-1])
    assert grown_mb < 150, grown_mb


def test_chunk_size_below_one_still_searches_every_query():
    """Params reject chunk_size < 1; a direct call with 0 must not slice empty chunks (zeros as hits)."""
    from tripleforge.search import _torch_search

    rng = np.random.default_rng(9)
    q, c = unit(rng, 11), unit(rng, 400)
    _, ref_i = exact_search(q, c, 6)
    for chunk in (0, -3):
        _, i = exact_search(q, c, 6, chunk_size=chunk)
        np.testing.assert_array_equal(i, ref_i)
        ts, ti = np.zeros((11, 6), np.float32), np.zeros((11, 6), np.int64)
        _torch_search(q, c, 6, chunk, "cpu", ts, ti)
        np.testing.assert_array_equal(ti, ref_i)
        # model_copy skips validation, as a caller building the config by hand could
        res = search(q, c, 6, SearchConfig(method="hnsw").model_copy(update={"chunk_size": chunk}))
        assert res.valid.all()
        np.testing.assert_allclose(res.scores, np.take_along_axis(q @ c.T, res.indices, axis=1), atol=1e-5)
        assert (res.indices[:, 0] == ref_i[:, 0]).mean() > 0.8


def test_recall_sample_zero_means_not_measured():
    rng = np.random.default_rng(10)
    q, c = unit(rng, 20), unit(rng, 800)
    res = search(q, c, 5, SearchConfig(method="ivf", recall_sample=0))
    assert res.recall is None and res.valid.any()


def test_ivf_on_a_pool_under_39_documents_prints_no_faiss_warning(capfd):
    rng = np.random.default_rng(11)
    q, c = unit(rng, 3), unit(rng, 12)
    res = search(q, c, 5, SearchConfig(method="ivf"))
    assert res.valid[:, :5].all()
    assert "WARNING" not in capfd.readouterr().err  # FAISS: "please provide at least 39 training points"


def test_ivf_says_when_it_lowers_nlist_or_probes_every_list(capfd):
    """An explicit ivf_nlist was silently capped at pool/39, and on a pool under ~624 documents the
    default nprobe covers every list: `ivf` was then an exact search that looked approximate."""
    rng = np.random.default_rng(12)
    q, c = unit(rng, 5), unit(rng, 603)
    search(q, c, 5, SearchConfig(method="ivf", ivf_nlist=50, ivf_nprobe=1))
    err = capfd.readouterr().err
    assert "warning: mine_negatives.search.ivf_nlist=50 lowered to 15: FAISS needs 39 documents per list and the pool has 603" in err
    assert "ivf_nprobe" not in err
    search(q, c, 5, SearchConfig(method="ivf"))
    assert "warning: mine_negatives.search.ivf_nprobe=16 probes all 15 lists of a 603-document pool" in capfd.readouterr().err
    search(q, c, 5, SearchConfig(method="ivf"))  # the same pool again (another candidate set): said once
    assert "warning" not in capfd.readouterr().err
    search(q, unit(rng, 3000), 5, SearchConfig(method="ivf", ivf_nlist=40))
    assert "warning" not in capfd.readouterr().err


def test_cuda_asked_for_on_a_machine_without_it(monkeypatch):
    import torch

    from tripleforge.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", "k") == "cpu" and resolve_device("cpu", "k") == "cpu"
    for device in ("cuda", "cuda:0"):
        with pytest.raises(UserError, match="mine_negatives.search.device: .*is_available"):
            resolve_device(device, "mine_negatives.search.device")
    rng = np.random.default_rng(11)
    with pytest.raises(UserError, match="search.device"):
        exact_search(unit(rng, 2), unit(rng, 10), 3, device="cuda")


@pytest.mark.parametrize("key", ["seed", "hnsw_ef_search", "hnsw_m", "ivf_nlist", "ivf_nprobe"])
def test_faiss_int_params_beyond_a_c_int_are_params_errors(key):
    # FAISS stores these in C ints; 2**31 once passed validation and failed in FAISS after encoding
    SearchConfig(**{key: 2**31 - 1})
    with pytest.raises(ValueError, match=key):
        SearchConfig(**{key: 2**31})
