"""Nearest-neighbour search by inner product over L2-normalised float32 vectors.

- `exact_search`: FAISS `IndexFlatIP` on CPU; torch fp32 matmul + top-k on GPU (fp16 flips
  near-tied ranks, a known complaint about the original's sharded fp16 GPU index). Queries are
  processed in chunks, and on GPU the corpus too, so memory is O(chunk x corpus_block), never a
  full queries x corpus matrix.
- `approx_search`: HNSW or IVF-Flat for big pools; its recall@k against exact search on a seeded
  sample of queries is measured and returned so stages can report it.

Results never contain -1: FAISS pads with -1 when fewer than k hits exist, and the original
turned that into "the last document". Exact search asks for k' = min(k, len(corpus)) so it
cannot pad; approximate results are returned with a validity mask instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, Field

from tripleforge.devices import resolve_device
from tripleforge.errors import UserError
from tripleforge.params import StageParams
from tripleforge.progress import log

DEVICE_PATTERN = re.compile(r"cpu|auto|cuda(:\d+)?")


def _known_device(v: str) -> str:
    if not DEVICE_PATTERN.fullmatch(v):
        raise ValueError("must be cpu, cuda, cuda:N or auto")
    return v


C_INT_MAX = 2**31 - 1

# a params value naming where search runs (whether this machine has it is checked at run time)
SearchDevice = Annotated[str, AfterValidator(_known_device)]


class SearchConfig(StageParams):
    """How candidates are retrieved (nested as `search` in stage params)."""

    method: Literal["exact", "hnsw", "ivf"] = "exact"
    device: SearchDevice = "cpu"  # cpu | cuda | cuda:N | auto (GPU exact search runs torch fp32)
    chunk_size: int = Field(1024, ge=1)  # queries per search call: bounds memory
    # FAISS takes C ints: a larger value would pass here and fail inside FAISS after the encoding
    hnsw_m: int = Field(32, ge=2, le=C_INT_MAX)  # FAISS segfaults building a graph with M < 2
    hnsw_ef_search: int = Field(256, ge=1, le=C_INT_MAX)
    ivf_nlist: int = Field(0, ge=0, le=C_INT_MAX)  # 0 = 4*sqrt(n)
    ivf_nprobe: int = Field(16, ge=1, le=C_INT_MAX)
    recall_sample: int = Field(256, ge=0)  # queries checked against exact search for recall@k; 0 = not measured
    seed: int = Field(0, ge=0, le=C_INT_MAX)  # numpy and FAISS take no negative seeds


@dataclass
class SearchResult:
    scores: np.ndarray  # (nq, k') float32, descending per row
    indices: np.ndarray  # (nq, k') int64; -1 only where `valid` is False (approx)
    valid: np.ndarray  # (nq, k') bool
    method: str
    recall: float | None  # recall@k' of approx vs exact on a sample (None for exact)


def check_matrix(x: np.ndarray, name: str) -> np.ndarray:
    """Contiguous float32 2-D with finite values, else a one-line error naming `name`."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise UserError(f"{name}: expected a 2-D embedding matrix, got shape {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise UserError(f"{name}: {int(bad.sum())} embedding row(s) contain NaN/inf (first row {int(np.argmax(bad))})")
    return x


def exact_search(
    queries: np.ndarray, corpus: np.ndarray, k: int, chunk_size: int = 1024, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k' by inner product, k' = min(k, len(corpus)): scores (nq, k') float32 descending,
    indices (nq, k') int64, never -1."""
    q = check_matrix(queries, "queries")
    c = check_matrix(corpus, "corpus")
    if q.shape[1] != c.shape[1] and len(q) and len(c):
        raise UserError(f"query dim {q.shape[1]} != corpus dim {c.shape[1]} (embedded with different models?)")
    kk = max(0, min(int(k), len(c)))
    scores = np.zeros((len(q), kk), dtype=np.float32)
    indices = np.zeros((len(q), kk), dtype=np.int64)
    if kk == 0 or len(q) == 0:
        return scores, indices
    dev = resolve_device(device, "search.device")
    if dev.startswith("cuda"):
        _torch_search(q, c, kk, chunk_size, dev, scores, indices)
    else:
        import faiss

        index = faiss.IndexFlatIP(c.shape[1])
        index.add(c)
        # params reject chunk_size < 1; a direct caller's 0 must still step and slice alike
        step = max(1, chunk_size)
        for start in range(0, len(q), step):
            s, i = index.search(q[start : start + step], kk)
            scores[start : start + len(s)] = s
            indices[start : start + len(s)] = i
    if (indices < 0).any():  # cannot happen for a flat index with k' <= n; guard the invariant
        raise RuntimeError("exact search returned -1 (bug)")
    return scores, indices


def _torch_search(
    q: np.ndarray, c: np.ndarray, k: int, chunk_size: int, device: str, scores: np.ndarray, indices: np.ndarray,
    block: int = 262_144,
) -> None:
    """fp32 matmul + topk, chunked over queries and over corpus blocks (merge of running top-k)."""
    import torch

    corpus = torch.from_numpy(c).to(device)
    with torch.inference_mode():
        step = max(1, chunk_size)
        for start in range(0, len(q), step):
            qt = torch.from_numpy(q[start : start + step]).to(device)
            best_s = None
            best_i = None
            for cstart in range(0, len(corpus), block):
                sims = qt @ corpus[cstart : cstart + block].T
                s, i = torch.topk(sims, min(k, sims.shape[1]), dim=1)
                i = i + cstart
                if best_s is None:
                    best_s, best_i = s, i
                else:
                    s = torch.cat([best_s, s], dim=1)
                    i = torch.cat([best_i, i], dim=1)
                    best_s, pos = torch.topk(s, min(k, s.shape[1]), dim=1)
                    best_i = torch.gather(i, 1, pos)
            scores[start : start + len(qt)] = best_s.cpu().numpy()
            indices[start : start + len(qt)] = best_i.cpu().numpy()


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """`message` on stderr, once per process: mining searches once per candidate set."""
    if message not in _WARNED:
        _WARNED.add(message)
        log(message)


def _build_approx(c: np.ndarray, cfg: SearchConfig):  # type: ignore[no-untyped-def]
    import faiss

    d = c.shape[1]
    if cfg.method == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = cfg.hnsw_ef_search
        index.add(c)
        return index
    wanted = cfg.ivf_nlist or max(1, int(4 * np.sqrt(len(c))))
    nlist = min(wanted, max(1, len(c) // 39))  # FAISS wants >= 39 training points per list
    if cfg.ivf_nlist and nlist < cfg.ivf_nlist:
        _warn_once(f"warning: mine_negatives.search.ivf_nlist={cfg.ivf_nlist} lowered to {nlist}: FAISS needs "
                   f"39 documents per list and the pool has {len(c)}")
    if cfg.ivf_nprobe >= nlist:
        _warn_once(f"warning: mine_negatives.search.ivf_nprobe={cfg.ivf_nprobe} probes all {nlist} lists of a "
                   f"{len(c)}-document pool: the ivf search is exact there (and slower than method: exact)")
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(cfg.seed)
    # 64 points per list trains k-means well enough (FAISS wants >= 39) and keeps training cheap
    train = c if len(c) <= nlist * 64 else c[np.sort(rng.choice(len(c), nlist * 64, replace=False))]
    index.cp.seed = cfg.seed
    # nlist above keeps 39 points per list wherever the pool has 39; on a smaller pool (one list)
    # FAISS would print its "please provide at least 39 training points" warning on stderr
    index.cp.min_points_per_centroid = min(39, len(train))
    index.train(train)
    index.add(c)
    index.nprobe = min(cfg.ivf_nprobe, nlist)
    return index


def search(queries: np.ndarray, corpus: np.ndarray, k: int, cfg: SearchConfig | None = None) -> SearchResult:
    """Exact or approximate top-k per `cfg`; approximate results carry a measured recall@k."""
    cfg = cfg or SearchConfig()
    if cfg.method == "exact":
        s, i = exact_search(queries, corpus, k, cfg.chunk_size, cfg.device)
        return SearchResult(s, i, np.ones(i.shape, dtype=bool), "exact", None)
    q = check_matrix(queries, "queries")
    c = check_matrix(corpus, "corpus")
    kk = max(0, min(int(k), len(c)))
    if kk == 0 or len(q) == 0:
        empty = np.zeros((len(q), kk))
        return SearchResult(empty.astype(np.float32), empty.astype(np.int64), empty.astype(bool), cfg.method, None)
    import faiss

    faiss.omp_set_num_threads(max(1, faiss.omp_get_max_threads()))
    index = _build_approx(c, cfg)
    scores = np.zeros((len(q), kk), dtype=np.float32)
    indices = np.zeros((len(q), kk), dtype=np.int64)
    step = max(1, cfg.chunk_size)
    for start in range(0, len(q), step):
        s, i = index.search(q[start : start + step], kk)
        scores[start : start + len(s)] = s
        indices[start : start + len(s)] = i
    valid = indices >= 0
    scores[~valid] = -np.inf
    return SearchResult(scores, indices, valid, cfg.method, sampled_recall(q, c, indices, valid, cfg))


def sampled_recall(q: np.ndarray, c: np.ndarray, indices: np.ndarray, valid: np.ndarray, cfg: SearchConfig) -> float | None:
    """recall@k' on a seeded sample of `cfg.recall_sample` queries: the share of exact top-k' ids
    the index also returned; None when the sample is empty (recall_sample 0 = not measured)."""
    rng = np.random.default_rng(cfg.seed)
    sample = np.sort(rng.choice(len(q), min(len(q), cfg.recall_sample), replace=False))
    if sample.size == 0:
        return None
    _, exact_i = exact_search(q[sample], c, indices.shape[1], cfg.chunk_size, "cpu")
    hits = sum(len(set(exact_i[j].tolist()) & set(indices[r][valid[r]].tolist())) for j, r in enumerate(sample))
    return hits / float(exact_i.size)
