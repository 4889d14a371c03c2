"""Benchmark: record-format conversion and pre-tokenized loading, against plain Python.

1. Conversion, on synthetic JSONL files written once per run:
   - pairs -> triplets: N pair records (``query, passage, label, score, qid, pid``; 4 pairs per
     query), read + validated + grouped by qid;
   - the same pairs -> triplets step on records already parsed (conversion without the JSON parse);
   - candidates -> pairs: N/4 candidate records with 4 candidates each (N pair rows out).
   Ours: ``formats.read_external`` (the compiled JSONL reader, ``fast_jsonl``, which parses each
   value straight into its typed column, then Polars expressions for validation and conversion);
   also timed with the compiled reader switched off (``ours_arrow_reader_s``: the Arrow JSON parse
   with a strict schema that formats falls back on), to show what the reader itself gains. Peer: a plain-Python loop (``json.loads`` per line, the same
   checks on types, labels and lengths, dict grouping, and the same removal of negatives that
   equal a positive or repeat one, whitespace-normalized) — what a hand-written converter does.
   Bound: each JSONL case also times the bare parse of its file by the fastest readers at hand
   (``pl.read_ndjson``, ``pyarrow.json.read_json``, both schema-inferring, no validation, and our
   compiled reader alone); no converter that parses the file with them can beat that time, so
   ``python_s / parse_s`` is the ceiling of the end-to-end ratio on the machine the benchmark
   runs on.
2. Loading: M embedder records (1 query + 1 pos + 7 neg) from pre-tokenized shards
   (``tokenized.load_tokenized``) vs reading the JSONL and tokenizing it with the same (fast, Rust)
   MiniLM tokenizer in batches. The tokenizer is loaded before timing in both cases.

    .venv/bin/python benchmarks/bench_formats.py [--rows 1000000] [--token-records 20000] [--repeats 2]

Writes benchmarks/results/formats.json and prints the ratios. Times are best of `--repeats`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from run_info import run_info  # benchmarks/ is sys.path[0]

WORDS = ("sort parse list file read write json value index string number return class method "
         "error async buffer stream token cache query table merge split").split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_pairs(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            q = i // 4
            if i % 4 == 0:  # the 4 pairs of a qid share its query
                query = f"q{q} " + _text(rng, 6)
            fh.write(json.dumps({"query": query, "passage": _text(rng, 12), "label": int(i % 4 == 0),
                                 "score": round(rng.random(), 4), "qid": f"q{q}", "pid": f"p{i}"}) + "\n")


def write_candidates(path: Path, n_pairs: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for q in range(n_pairs // 4):
            cands = [{"text": _text(rng, 12), "score": round(rng.random(), 4), "pid": f"p{q}_{j}"} for j in range(4)]
            fh.write(json.dumps({"query": _text(rng, 6), "qid": f"q{q}", "candidates": cands}) + "\n")


# --- the plain-Python peer -----------------------------------------------------------------------


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _norm(text: str) -> str:
    return " ".join(text.split())


def python_mask_negatives(groups: list[dict[str, Any]]) -> None:
    """In place: drop negatives equal (whitespace-normalized) to a positive of any group with the
    same normalized query, and repeats of an earlier negative of the group; scores kept aligned.
    The check tripleforge makes on every external file."""
    positives: dict[str, set[str]] = {}
    for g in groups:
        positives.setdefault(_norm(g["query"]), set()).update(_norm(t) for t in g["pos"])
    for g in groups:
        banned, seen, keep = positives[_norm(g["query"])], set(), []
        for i, t in enumerate(g["neg"]):
            n = _norm(t)
            if n not in banned and n not in seen:
                seen.add(n)
                keep.append(i)
        if len(keep) < len(g["neg"]):
            g["neg"] = [g["neg"][i] for i in keep]
            g["neg_scores"] = [g["neg_scores"][i] for i in keep]


def python_pairs_to_triplets(path: Path) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            if not isinstance(r.get("query"), str) or not isinstance(r.get("passage"), str):
                raise ValueError(f"{path}:{n}: bad text")
            if r.get("label") not in (0, 1) or isinstance(r.get("label"), bool):
                raise ValueError(f"{path}:{n}: bad label")
            if r.get("score") is not None and not _num(r["score"]):
                raise ValueError(f"{path}:{n}: bad score")
            qid = r.get("qid") or f"{path}:{n}"
            g = groups.get(qid)
            if g is None:
                g = groups[qid] = {"qid": qid, "query": r["query"], "pos": [], "neg": [], "pos_scores": [],
                                   "neg_scores": [], "source": f"{path}:{n}", "source_format": "pairs"}
            side = "pos" if r["label"] == 1 else "neg"
            g[side].append(r["passage"])
            g[side + "_scores"].append(r.get("score"))
    out = list(groups.values())
    python_mask_negatives(out)
    return [g for g in out if g["pos"]]


def python_group_dicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The grouping step of python_pairs_to_triplets on already-parsed records."""
    groups: dict[str, dict[str, Any]] = {}
    for n, r in enumerate(rows, 1):
        qid = r.get("qid") or str(n)
        g = groups.get(qid)
        if g is None:
            g = groups[qid] = {"qid": qid, "query": r["query"], "pos": [], "neg": [], "pos_scores": [], "neg_scores": []}
        side = "pos" if r["label"] == 1 else "neg"
        g[side].append(r["passage"])
        g[side + "_scores"].append(r.get("score"))
    return [g for g in groups.values() if g["pos"]]


def python_candidates_to_pairs(path: Path, threshold: float = 0.5) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            if not isinstance(r.get("query"), str) or not isinstance(r.get("candidates"), list) or not r["candidates"]:
                raise ValueError(f"{path}:{n}: bad record")
            qid = r.get("qid") or f"{path}:{n}"
            for c in r["candidates"]:
                if not isinstance(c, dict) or not isinstance(c.get("text"), str):
                    raise ValueError(f"{path}:{n}: bad candidate")
            scores = [1.0 if c.get("score") is None else c["score"] for c in r["candidates"]]
            # a below-threshold text equal to an above-threshold one, or repeated, is dropped
            positives = {_norm(c["text"]) for c, s in zip(r["candidates"], scores) if s >= threshold}
            seen: set[str] = set()
            for i, (c, s) in enumerate(zip(r["candidates"], scores)):
                if s < threshold:
                    t = _norm(c["text"])
                    if t in positives or t in seen:
                        continue
                    seen.add(t)
                out.append({"qid": qid, "query": r["query"], "passage": c["text"], "pid": c.get("pid") or f"{qid}:c{i}",
                            "label": int(s >= threshold), "score": c.get("score"), "source": f"{path}:{n}",
                            "source_format": "candidates"})
    return out


def best_of(fn: Any, repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def parse_only(path: Path, repeats: int) -> dict[str, Any]:
    """Best time of the bare JSON parse of `path` by each fast reader, and the fastest of them."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.json as pj

    from tripleforge import fast_jsonl
    from tripleforge.formats import READ_SCHEMA

    times = {
        "polars_read_ndjson_s": best_of(lambda: pl.read_ndjson(path), repeats)[0],
        "pyarrow_read_json_s": best_of(lambda: pj.read_json(str(path)), repeats)[0],
        "tripleforge_jsonl_s": best_of(
            lambda: fast_jsonl.read_schema_records(pa.memory_map(str(path)).read_buffer(), READ_SCHEMA), repeats)[0],
    }
    fastest = min(times, key=times.__getitem__)
    return {**{k: round(v, 3) for k, v in times.items()}, "parse_s": round(times[fastest], 3),
            "parse_reader": fastest.removesuffix("_s")}


def with_bound(case: dict[str, Any], parse: dict[str, Any]) -> dict[str, Any]:
    """`case` plus the parse-only times and the ratio they allow (python_s / parse_s)."""
    return {**case, "parse_only": parse, "ceiling_speedup": round(case["python_s"] / parse["parse_s"], 2)}


def arrow_reader_only(fn: Any) -> Any:
    """`fn` run with formats' compiled JSONL reader switched off (the Arrow path it falls back on)."""
    from tripleforge import formats as F

    def run() -> Any:
        saved = F.read_schema_records
        F.read_schema_records = lambda *_: None
        try:
            return fn()
        finally:
            F.read_schema_records = saved

    return run


def bench_conversion(tmp: Path, rows: int, repeats: int) -> dict[str, Any]:
    from tripleforge import formats as F

    pairs_file, cand_file = tmp / "pairs.jsonl", tmp / "cands.jsonl"
    write_pairs(pairs_file, rows)
    write_candidates(cand_file, rows)
    res: dict[str, Any] = {}
    # Pay the one-time pyarrow import (~0.1 s) and thread-pool start before timing: with
    # --repeats 1 the first timed call would carry it, and the peer's json module is preloaded.
    write_pairs(tmp / "warm.jsonl", 100)
    F.read_external(tmp / "warm.jsonl")

    t_ours, (g, _, _) = best_of(lambda: F.read_external(pairs_file), repeats)
    t_arrow, (g_arrow, _, _) = best_of(arrow_reader_only(lambda: F.read_external(pairs_file)), repeats)
    t_py, py = best_of(lambda: python_pairs_to_triplets(pairs_file), repeats)
    assert g.height == len(py) and g["pos"].to_list()[:50] == [x["pos"] for x in py[:50]]
    assert g.equals(g_arrow)
    res["pairs_to_triplets"] = with_bound(
        {"input_rows": rows, "output_rows": g.height, "ours_s": round(t_ours, 3), "python_s": round(t_py, 3),
         "ours_arrow_reader_s": round(t_arrow, 3),
         "ours_rows_per_s": round(rows / t_ours), "python_rows_per_s": round(rows / t_py),
         "speedup": round(t_py / t_ours, 2)},
        parse_only(pairs_file, repeats),
    )

    # The conversion alone, on records already parsed (Polars expressions vs Python dict loop):
    rec = F.read_records(pairs_file)
    dicts = [json.loads(x) for x in pairs_file.read_text(encoding="utf-8").splitlines()]
    t_ours_c, g2 = best_of(lambda: F.pairs_to_grouped(F.records_to_pairs(rec)), repeats)
    t_py_c, py_c = best_of(lambda: python_group_dicts(dicts), repeats)
    assert g2.height == len(py_c)
    res["pairs_to_triplets_after_parse"] = {"input_rows": rows, "ours_s": round(t_ours_c, 3), "python_s": round(t_py_c, 3),
                                            "ours_rows_per_s": round(rows / t_ours_c),
                                            "python_rows_per_s": round(rows / t_py_c),
                                            "speedup": round(t_py_c / t_ours_c, 2)}
    # Free the first case's frames and dicts before the next one: millions of live Python
    # objects slow both sides (the collector walks them, the allocator works around them).
    del dicts, py, py_c, g, g2, g_arrow, rec
    gc.collect()

    t_ours, (_, p, _) = best_of(lambda: F.read_external(cand_file), repeats)
    t_arrow, (_, p_arrow, _) = best_of(arrow_reader_only(lambda: F.read_external(cand_file)), repeats)
    t_py, py2 = best_of(lambda: python_candidates_to_pairs(cand_file), repeats)
    assert p.height == len(py2) == rows and p["label"].to_list()[:100] == [x["label"] for x in py2[:100]]
    assert p.equals(p_arrow)
    res["candidates_to_pairs"] = with_bound(
        {"input_records": rows // 4, "output_rows": p.height, "ours_s": round(t_ours, 3), "python_s": round(t_py, 3),
         "ours_arrow_reader_s": round(t_arrow, 3),
         "ours_rows_per_s": round(rows / t_ours), "python_rows_per_s": round(rows / t_py),
         "speedup": round(t_py / t_ours, 2)},
        parse_only(cand_file, repeats),
    )
    return res


def bench_tokenized(tmp: Path, n: int, repeats: int) -> dict[str, Any]:
    from tripleforge.io import write_jsonl
    from tripleforge.tokenized import build_tokenized, load_tokenized, load_tokenizer

    rng = random.Random(2)
    recs = [{"query": _text(rng, 8), "pos": [_text(rng, 40)], "neg": [_text(rng, 40) for _ in range(7)]}
            for _ in range(n)]
    jsonl = tmp / "embedder.jsonl"
    write_jsonl(recs, jsonl)
    build_tokenized({"en/t": recs}, tmp / "tok", "minilm", 32, 128, shard_rows=10000)
    tok = load_tokenizer("minilm")

    def from_jsonl() -> int:
        rows = [json.loads(x) for x in jsonl.read_text(encoding="utf-8").splitlines()]
        q = tok([r["query"] for r in rows], truncation=True, max_length=32)["input_ids"]
        p = tok([t for r in rows for t in r["pos"] + r["neg"]], truncation=True, max_length=128)["input_ids"]
        return len(q) + len(p)

    def from_shards() -> int:
        df = load_tokenized(tmp / "tok", "en/t")
        return df.height

    t_tok, _ = best_of(from_jsonl, repeats)
    t_load, h = best_of(from_shards, repeats)
    assert h == n
    return {"records": n, "passages_per_record": 8, "tokenize_jsonl_s": round(t_tok, 3),
            "load_shards_s": round(t_load, 4), "speedup": round(t_tok / t_load, 1),
            "tokenizer": "bundled all-MiniLM-L6-v2 (fast tokenizer)", "query_max_len": 32, "passage_max_len": 128}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--token-records", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "formats.json"))
    a = ap.parse_args()
    os.environ.setdefault("TRIPLEFORGE_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        conv = bench_conversion(tmp, a.rows, a.repeats)
        for k, v in conv.items():
            line = f"{k}: ours {v['ours_rows_per_s']:,} rows/s vs python {v['python_rows_per_s']:,} rows/s -> {v['speedup']}x"
            if "ours_arrow_reader_s" in v:
                line += f" (ours {v['ours_s']} s; with the Arrow reader {v['ours_arrow_reader_s']} s)"
            if "parse_only" in v:
                b = v["parse_only"]
                line += f" (parse alone: {b['parse_reader']} {b['parse_s']} s -> ceiling {v['ceiling_speedup']}x)"
            print(line)
        tokd = bench_tokenized(tmp, a.token_records, a.repeats)
        print(f"load shards {tokd['load_shards_s']} s vs tokenize JSONL {tokd['tokenize_jsonl_s']} s -> {tokd['speedup']}x")
    import polars as pl

    result = {
        "conversion": conv,
        "tokenized_loading": tokd,
        "goals": {"conversion_speedup": 10, "tokenized_speedup": 10},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "polars": pl.__version__},
        "run": run_info(),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
