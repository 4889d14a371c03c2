"""Benchmark the `sample` stage on a large real tree: the interpreter's stdlib plus this venv's
site-packages. Each measurement runs in a fresh child process so its peak RSS is its own.

Compared in the same run against two baselines over exactly the same files:
- `read_hash`: a plain single-threaded read + sha256 of every file (the I/O floor);
- `ast_python`: Python's own `ast` splitting top-level functions/classes of the .py files (what
  a Python-only tool would do; tripleforge parses 18 grammars with tree-sitter instead).

Usage:  .venv/bin/python benchmarks/bench_sample.py [--roots DIR ...]
Writes benchmarks/results/sample.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

from run_info import run_info  # benchmarks/ is sys.path[0]

HERE = Path(__file__).resolve().parent


def default_roots() -> list[tuple[str, str]]:
    import site
    import sysconfig

    venv_site = next(p for p in site.getsitepackages() if p.endswith("site-packages"))
    return [("python-stdlib", sysconfig.get_paths()["stdlib"]), ("tree", venv_site)]


def list_files(kind: str, root: str) -> list[Path]:
    from tripleforge.corpus import SKIP_DIRS, STDLIB_SKIP_DIRS, walk_tree
    from tripleforge.languages import language_of_path

    skip = SKIP_DIRS | STDLIB_SKIP_DIRS if kind == "python-stdlib" else SKIP_DIRS
    return [p for p in walk_tree(Path(root), skip) if language_of_path(p.name)]


def _peak_rss_mb() -> float:
    """Peak RSS of this process, or of its largest pool worker if that is bigger (Linux: KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, workers) / 1024


def run_tripleforge(kind: str, root: str, q: Any, workers: int = 1) -> None:
    from tripleforge.corpus import SampleParams, sample_corpus

    t = time.perf_counter()
    # the stdlib is read by name (`python-stdlib` skips its test suites); a path would be a tree
    corpus = "python-stdlib" if kind == "python-stdlib" else root
    res = sample_corpus(SampleParams(corpus=corpus, corpus_kind=kind, workers=workers))  # type: ignore[arg-type]
    q.put({"seconds": time.perf_counter() - t, "peak_rss_mb": _peak_rss_mb(),
           "files": res.metrics["files_read"], "bytes": res.metrics["bytes_read"],
           "units": res.metrics["units_found"], "candidates": res.metrics["candidates"],
           "docs": res.metrics["docs"], "pool": res.metrics["pool"], "workers": workers,
           "docs_sha256": hashlib.sha256(res.docs.write_ipc(None).getvalue()).hexdigest()})


def run_tripleforge_2(kind: str, root: str, q: Any) -> None:
    run_tripleforge(kind, root, q, workers=2)


def run_read_hash(kind: str, root: str, q: Any) -> None:
    import hashlib

    files = list_files(kind, root)
    t = time.perf_counter()
    n = size = 0
    for p in files:
        try:
            data = p.read_bytes()
        except OSError:
            continue
        hashlib.sha256(data).hexdigest()
        n += 1
        size += len(data)
    q.put({"seconds": time.perf_counter() - t, "peak_rss_mb": _peak_rss_mb(), "files": n, "bytes": size})


def run_ast_python(kind: str, root: str, q: Any) -> None:
    import ast

    files = [p for p in list_files(kind, root) if p.suffix == ".py"]
    t = time.perf_counter()
    n = size = units = 0
    for p in files:
        try:
            text = p.read_bytes().decode("utf-8-sig")
            tree = ast.parse(text)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        n += 1
        size += len(text)
        # Slice by line numbers (ast.get_source_segment re-splits the file on every call).
        lines = text.splitlines(keepends=True)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                "".join(lines[node.lineno - 1:node.end_lineno])
                units += 1
    q.put({"seconds": time.perf_counter() - t, "peak_rss_mb": _peak_rss_mb(), "files": n, "bytes": size,
           "units": units})


def in_child(fn: Any, kind: str, root: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=fn, args=(kind, root, q))
    proc.start()
    out = q.get()
    proc.join()
    return out


def rates(r: dict[str, Any]) -> dict[str, Any]:
    return r | {"files_per_s": round(r["files"] / r["seconds"], 1),
                "mb_per_s": round(r["bytes"] / 1e6 / r["seconds"], 2),
                "seconds": round(r["seconds"], 4), "peak_rss_mb": round(r["peak_rss_mb"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--roots", nargs="*", help="source trees (default: stdlib + venv site-packages)")
    ap.add_argument("--out", default=str(HERE / "results" / "sample.json"))
    args = ap.parse_args()
    roots = [("tree", r) for r in args.roots] if args.roots else default_roots()
    import os

    os.environ["TRIPLEFORGE_NO_PROGRESS"] = "1"
    results: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                           "platform": platform.platform()}, "roots": []}
    for kind, root in roots:
        entry = {"kind": kind, "root": root}
        for name, fn in (("tripleforge", run_tripleforge), ("tripleforge_workers2", run_tripleforge_2),
                         ("read_hash", run_read_hash),
                         ("ast_python", run_ast_python)):
            entry[name] = rates(in_child(fn, kind, root))
            print(f"{Path(root).name:>14} {name:>12}: {entry[name]['files']} files "
                  f"{entry[name]['mb_per_s']} MB/s {entry[name]['files_per_s']} files/s "
                  f"{entry[name]['seconds']} s peak {entry[name]['peak_rss_mb']} MB", flush=True)
        tf, rh, ap_ = entry["tripleforge"], entry["read_hash"], entry["ast_python"]
        assert tf["docs_sha256"] == entry["tripleforge_workers2"]["docs_sha256"], "workers changed the output"
        entry["ratios"] = {
            "workers2_speedup": round(tf["seconds"] / entry["tripleforge_workers2"]["seconds"], 2),
            "tripleforge_vs_read_hash_time": round(tf["seconds"] / rh["seconds"], 2),
            # ast only handles .py; compare MB/s so the different byte counts are accounted for
            "tripleforge_vs_ast_python_mb_per_s": round(tf["mb_per_s"] / ap_["mb_per_s"], 2),
        }
        print(f"{'':>14} ratios: {entry['ratios']}", flush=True)
        results["roots"].append(entry)
    total = {k: sum(e["tripleforge"][k] for e in results["roots"]) for k in ("seconds", "files", "bytes")}
    results["total_tripleforge"] = total | {"files_per_s": round(total["files"] / total["seconds"], 1),
                                            "mb_per_s": round(total["bytes"] / 1e6 / total["seconds"], 2)}
    print(f"total tripleforge: {results['total_tripleforge']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results["run"] = run_info()
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
