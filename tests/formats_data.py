"""Tiny inline data for the formats/training tests: the spec's four examples and a mined frame
that follows the `mine-negatives` contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from tripleforge.hashing import text_id

SPEC_TRIPLET = {
    "query": "What is machine learning?",
    "pos": ["Machine learning is a subset of artificial intelligence that enables computers to learn without explicit programming.",
            "ML algorithms use statistical techniques to learn patterns from data and make predictions."],
    "neg": ["Weather forecasting uses meteorological data to predict atmospheric conditions.",
            "Cooking recipes require specific ingredients and step-by-step instructions."],
    "pos_scores": [0.95, 0.88],
    "neg_scores": [0.15, 0.08],
    "prompt": "为此查询生成表示:",
    "type": "definition",
}
SPEC_PAIR = {
    "query": "What is machine learning?",
    "passage": "Machine learning is a subset of artificial intelligence that enables computers to learn without explicit programming.",
    "label": 1, "score": 0.95, "qid": "q1", "pid": "p1",
}
SPEC_CANDIDATES = {
    "query": "What is artificial intelligence?",
    "qid": "q1",
    "candidates": [
        {"text": "Artificial intelligence is the simulation of human intelligence in machines.", "score": 0.94, "pid": "c1"},
        {"text": "AI systems can perform tasks that typically require human intelligence.", "score": 0.87, "pid": "c2"},
        {"text": "Mountain climbing requires proper equipment and training.", "score": 0.23, "pid": "c3"},
    ],
}
SPEC_LEGACY = {
    "query": "What is natural language processing?",
    "pos": ["Natural language processing is a field of AI that helps computers understand human language.",
            "NLP combines computational linguistics with machine learning to process text and speech."],
    "neg": ["Automobile manufacturing involves assembly lines and quality control processes.",
            "Photography captures light through camera lenses to create images."],
    "pos_scores": [0.93, 0.86],
    "neg_scores": [0.14, 0.22],
}


def write_lines(path: Path, rows: list[Any]) -> Path:
    """Rows as JSONL; a str row is written verbatim (for malformed-line tests)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


DOCS = [f"def f{i}(x):\n    return x + {i}  # doc {i}" for i in range(12)]


def mined_frame(n_docs: int = 8, candidates: int = 1, n_neg: int = 4, eval_every: int = 4) -> pl.DataFrame:
    """A frame with the `data/mined/triplets.parquet` columns: one row per (doc, candidate)."""
    rows = []
    for d in range(n_docs):
        doc = DOCS[d]
        task = "text2code" if d % 2 == 0 else "code2code"
        for c in range(candidates):
            negs = [DOCS[(d + k + 1) % len(DOCS)] for k in range(n_neg)]
            rows.append({
                "pair_id": text_id(f"{doc}|{task}|{c}"), "doc_id": text_id(doc), "task": task, "language": "en",
                "code_language": "python", "tgt_code_language": None,
                "prompt": f"Given a {task} query, retrieve the code.", "query": f"query {d} candidate {c}",
                "pos": [doc], "neg": negs, "model": "test", "candidate_idx": c, "qc": "pass",
                "tokens_in": 10, "tokens_out": 5, "pos_scores": [0.9 - 0.1 * c],
                "neg_scores": [0.8 - 0.1 * k for k in range(n_neg)], "neg_ranks": list(range(1, n_neg + 1)),
                "pos_rank": 0, "split": "eval" if d % eval_every == 0 else "train",
            })
    return pl.DataFrame(rows).sort("pair_id")
