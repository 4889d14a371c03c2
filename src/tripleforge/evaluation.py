"""Retrieval evaluation of embedding models on BEIR / MTEB / CoIR-format directories.

A dataset directory holds
- `corpus.jsonl`: `_id` (or `id` / `corpus_id` / `doc_id`), `text`, optional `title`;
- `queries.jsonl`: `_id` (or `id` / `query_id`), `text`, optional `task` and `prompt`
  (or `instruction`): the per-query retrieval instruction;
- `qrels/<split>.tsv` (header `query-id corpus-id score`, or CoIR's `query_id corpus_id score`)
  or `qrels/<split>.jsonl` with the same fields, or TREC qrels `qrels/<split>.trec`.

Loading never changes a denominator silently: duplicate ids (first kept), qrels for unknown
queries (dropped: there is no text to encode), qrels for unknown documents (kept: they stay
relevant and unretrievable, so recall shows the loss), and queries without a relevant judgment
(not scorable) are all counted in `EvalDataset.diagnostics`. Malformed lines, and records with
blank text, stop with `file:line: reason`; a dataset with no scorable query stops too (its
metrics would be 0.0 over 0 queries, which is not a score).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import Field, ValidationInfo, field_validator

from tripleforge.devices import resolve_device
from tripleforge.embed import EmbedderConfig
from tripleforge.errors import UserError
from tripleforge.io import iter_jsonl, text_lines
from tripleforge.metrics import (
    METRICS,
    RunStats,
    aggregate,
    check_k_values,
    compare_systems,
    evaluate_run,
    metric_columns,
    metric_key,
    relevant_queries,
)
from tripleforge.params import CrossFieldError, StageParams, place
from tripleforge.progress import log
from tripleforge.search import SearchDevice

_DOC_ID_KEYS = ("_id", "id", "corpus_id", "doc_id")
_QUERY_ID_KEYS = ("_id", "id", "query_id", "qid")
_QRELS_QUERY = ("query-id", "query_id", "qid")
_QRELS_DOC = ("corpus-id", "corpus_id", "doc_id", "docid")
_QRELS_SCORE = ("score", "relevance", "label")
DEFAULT_TASK = "all"


# ---------------------------------------------------------------------------------------------
# params


class EvalModel(EmbedderConfig):
    """One embedder to evaluate: a name for the metrics plus every `EmbedderConfig` key."""

    name: str = Field("minilm", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # used in file names
    # Encode each query with its `prompt` from queries.jsonl (else `query_instruction`).
    query_prompts: bool = True

    def embedder(self) -> EmbedderConfig:
        # at this model's params key, so embedder errors name evaluate.models.<i>.<key>
        cfg = EmbedderConfig(**self.model_dump(exclude={"name", "query_prompts"}))
        return place(cfg, self.params_where) if self.params_where else cfg


class SignificanceParams(StageParams):
    baseline: str = ""  # model name compared against; "" = the first model
    # declared before n_permutations: its validator reads alpha
    alpha: float = Field(0.05, gt=0.0, lt=1.0)  # a p-value threshold; >= 1 calls identical models significant
    n_permutations: int = Field(10_000, ge=1)  # <= 0 gives p = 1 (n = 0) or a negative p
    seed: int = Field(0, ge=0)  # numpy's default_rng takes no negative seed

    @field_validator("n_permutations")
    @classmethod
    def _can_reach_alpha(cls, v: int, info: ValidationInfo) -> int:
        # the randomisation p is (hits + 1) / (n + 1) >= 1 / (n + 1): with fewer permutations
        # `significant` could never be true, a powerless test that would look like "no difference"
        alpha = info.data.get("alpha")
        if alpha is not None and 1 / (v + 1) >= alpha:
            raise CrossFieldError(("alpha",), f"the randomisation p-value is at least 1/(n_permutations+1), so it can "
                                  f"never be below alpha={alpha}; use at least {math.floor(1 / alpha)}")
        return v


class EvaluateParams(StageParams):
    models: list[EvalModel] = [EvalModel()]
    k_values: list[int] = [1, 3, 5, 10, 100]
    main_metric: str = "ndcg_at_10"
    external: list[str] = []  # extra BEIR/MTEB/CoIR dirs, named by their folder name
    split: str = "test"  # qrels/<split>.tsv (or .jsonl, .trec)
    relevance_level: int = Field(1, ge=1)  # pytrec_eval rejects < 1 (and grade 0 means "not relevant")
    ignore_identical_ids: bool = False  # drop a hit whose doc id equals the query id
    significance: SignificanceParams = SignificanceParams()
    quality_report: bool = True
    search_device: SearchDevice = "cpu"  # cpu | cuda | cuda:N | auto
    cache_dir: str = ""  # "" = $TRIPLEFORGE_CACHE_DIR or ~/.cache/tripleforge

    @field_validator("models")
    @classmethod
    def _unique_names(cls, v: list[EvalModel]) -> list[EvalModel]:
        if not v:
            raise ValueError("list at least one model")
        names = [m.name for m in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model names must be unique, repeated: {dup}")
        return v

    @field_validator("k_values")
    @classmethod
    def _positive_k(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1:
            raise ValueError("must be a non-empty list of positive integers")
        # a repeat is a slip (a typo for another cut-off), not a wish: each k is computed once anyway
        for k in v:
            if v.count(k) > 1:
                raise ValueError(f"{k} is listed {'twice' if v.count(k) == 2 else f'{v.count(k)} times'}")
        return v

    @field_validator("main_metric")
    @classmethod
    def _known_metric(cls, v: str, info: ValidationInfo) -> str:
        ks = info.data.get("k_values")
        if ks and v not in metric_columns(ks):
            raise CrossFieldError(("k_values",),
                                  f"must be one of <{'|'.join(METRICS)}>_at_<k> with k in k_values {sorted(set(ks))}")
        return v


# ---------------------------------------------------------------------------------------------
# loading


@dataclass
class EvalDataset:
    """corpus: `doc_id`, `title`, `text`; queries: `query_id`, `text`, `task`, `prompt` (nullable);
    qrels: {query_id: {doc_id: grade}} restricted to known queries."""

    name: str
    corpus: pl.DataFrame
    queries: pl.DataFrame
    qrels: dict[str, dict[str, int]]
    diagnostics: dict[str, int] = field(default_factory=dict)
    relevance_level: int = 1  # the least grade that counts as relevant in this dataset



def _field(obj: dict[str, Any], keys: tuple[str, ...], where: str, what: str, required: bool = True) -> Any:
    for k in keys:
        if k in obj and obj[k] is not None:
            return obj[k]
    if required:
        raise UserError(f"{where}: missing {what} (one of {', '.join(keys)})")
    return None


def _str(value: Any, where: str, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UserError(f"{where}: {what} must be a string, got {type(value).__name__}")
    return str(value)


def load_corpus(path: Path) -> tuple[pl.DataFrame, int]:
    """corpus.jsonl -> (frame `doc_id`, `title`, `text` in file order, duplicate id count)."""
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    seen: set[str] = set()
    dups = 0
    for no, obj in iter_jsonl(path):
        where = f"{path}:{no}"
        doc_id = _str(_field(obj, _DOC_ID_KEYS, where, "document id"), where, "document id")
        text = _str(_field(obj, ("text",), where, "'text'"), where, "text")
        title = _str(obj.get("title") or "", where, "title")
        # a blank document embeds as noise; title-only documents are real (TREC-COVID has many)
        if not text.strip() and not title.strip():
            raise UserError(f"{where}: empty document (blank 'text' and no 'title')")
        if doc_id in seen:
            dups += 1
            continue
        seen.add(doc_id)
        ids.append(doc_id)
        titles.append(title)
        texts.append(text)
    schema = {"doc_id": pl.String, "title": pl.String, "text": pl.String}
    frame = pl.DataFrame({"doc_id": ids, "title": titles, "text": texts}, schema=schema)
    return frame, dups


def load_queries(path: Path) -> tuple[pl.DataFrame, int]:
    """queries.jsonl -> (frame `query_id`, `text`, `task`, `prompt`, duplicate id count)."""
    rows: dict[str, tuple[str, str, str | None]] = {}
    dups = 0
    for no, obj in iter_jsonl(path):
        where = f"{path}:{no}"
        qid = _str(_field(obj, _QUERY_ID_KEYS, where, "query id"), where, "query id")
        text = _str(_field(obj, ("text",), where, "'text'"), where, "text")
        if not text.strip():
            raise UserError(f"{where}: empty query 'text'")
        task = obj.get("task") or DEFAULT_TASK
        prompt = _field(obj, ("prompt", "instruction"), where, "prompt", required=False)
        if qid in rows:
            dups += 1
            continue
        rows[qid] = (text, _str(task, where, "task"), None if prompt is None else _str(prompt, where, "prompt"))
    frame = pl.DataFrame(
        {
            "query_id": list(rows),
            "text": [r[0] for r in rows.values()],
            "task": [r[1] for r in rows.values()],
            "prompt": [r[2] for r in rows.values()],
        },
        schema={"query_id": pl.String, "text": pl.String, "task": pl.String, "prompt": pl.String},
    )
    return frame, dups


# Relevance grades in use are small (0-3 in TREC and BEIR); pytrec_eval's memory grows with the
# grade, and 2^32 gave nDCG 2e18, 2^62 a segfault.
MAX_GRADE = 1000
_GRADE_TEXT = re.compile(r"([+-]?[0-9]+)(\.0*)?")  # ASCII digits: \d also takes "١" and "１"


def _grade(raw: Any, where: str) -> int:
    """An integer relevance grade in [-MAX_GRADE, MAX_GRADE] from a JSON number or TSV text
    (``1`` or ``1.0``; not ``1_0`` or ``1e0``, which Python's float() would take)."""
    bad = UserError(f"{where}: relevance score must be an integer, got {raw!r}")
    if isinstance(raw, bool):  # JSON true/false: float() would read them as grades 1 and 0
        raise bad
    if isinstance(raw, str):
        m = _GRADE_TEXT.fullmatch(raw.strip())
        if not m:
            raise bad
        digits = m.group(1)
        # compared as text first: int() refuses 4300+ digits, and a float would overflow
        value = MAX_GRADE + 1 if len(digits.lstrip("+-").lstrip("0")) > 6 else int(digits)
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, float):
        if not raw.is_integer():  # also NaN and infinity
            raise bad
        value = MAX_GRADE + 1 if abs(raw) > MAX_GRADE else int(raw)
    else:
        raise bad
    if abs(value) > MAX_GRADE:
        shown = raw if len(str(raw)) <= 40 else f"{str(raw)[:20]}...({len(str(raw))} characters)"
        raise UserError(f"{where}: relevance score {shown!r} is out of range (grades are integers from "
                        f"-{MAX_GRADE} to {MAX_GRADE})")
    return value


def load_qrels(path: Path) -> tuple[list[tuple[str, str, int]], int]:
    """qrels TSV (with or without header) or JSONL -> ([(query_id, doc_id, grade)], duplicate pairs)."""
    triples: list[tuple[str, str, int]] = []
    if path.suffix == ".jsonl":
        for no, obj in iter_jsonl(path):
            where = f"{path}:{no}"
            q = _str(_field(obj, _QRELS_QUERY, where, "query id"), where, "query id")
            d = _str(_field(obj, _QRELS_DOC, where, "corpus id"), where, "corpus id")
            triples.append((q, d, _grade(_field(obj, _QRELS_SCORE, where, "score"), where)))
    else:
        # BEIR's .tsv is tab-separated; TREC qrels (.trec) are separated by any whitespace
        split = (lambda s: s.split()) if path.suffix == ".trec" else (lambda s: s.split("\t"))
        for no, text in text_lines(path):
            line = text.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            raw = parts = split(line)
            if len(parts) == 4:  # TREC qrels: qid iteration docid grade
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                sep = "whitespace" if path.suffix == ".trec" else "tab"
                raise UserError(
                    f"{path}:{no}: expected 3 {sep}-separated columns (query-id corpus-id score) or 4 (TREC: "
                    f"query-id iteration corpus-id score), got {len(parts)}"
                )
            if no == 1 and any(p in _QRELS_QUERY + _QRELS_DOC + _QRELS_SCORE for p in parts):
                if (parts[0], parts[1]) not in ((q, d) for q in _QRELS_QUERY for d in _QRELS_DOC):
                    raise UserError(f"{path}:1: header {' '.join(raw)!r}: the columns must be query id, "
                                    f"corpus id, score in that order (e.g. query-id corpus-id score)")
                continue  # header
            triples.append((parts[0], parts[1], _grade(parts[2], f"{path}:{no}")))
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str, int]] = []
    dups = 0
    for q, d, g in triples:
        if (q, d) in seen:
            dups += 1
            continue
        seen.add((q, d))
        out.append((q, d, g))
    return out, dups


def find_qrels(root: Path, split: str) -> Path:
    for name in (f"qrels/{split}.tsv", f"qrels/{split}.jsonl", f"qrels/{split}.trec"):
        if (root / name).is_file():
            return root / name
    raise UserError(f"{root}: no qrels/{split}.tsv (or .jsonl, .trec) found")


def load_dataset(
    root: str | Path, name: str | None = None, split: str = "test", relevance_level: int = 1
) -> EvalDataset:
    """Read one BEIR/MTEB/CoIR directory and count everything that affects the denominator."""
    root = Path(root).expanduser()  # as the params check expands it: `~/beir/x` passed it, then was "not found"
    if not root.is_dir():
        raise UserError(f"evaluation directory not found: {root}")
    for f in ("corpus.jsonl", "queries.jsonl"):
        if not (root / f).is_file():
            raise UserError(f"{root / f}: file not found (expected a BEIR/MTEB layout)")
    corpus, dup_docs = load_corpus(root / "corpus.jsonl")
    if corpus.height == 0:  # every query would score 0.0 against nothing, which is not a score
        raise UserError(f"{root / 'corpus.jsonl'}: no documents, nothing to evaluate")
    queries, dup_queries = load_queries(root / "queries.jsonl")
    qrels_path = find_qrels(root, split)
    triples, dup_qrels = load_qrels(qrels_path)
    doc_ids = set(corpus["doc_id"].to_list())
    query_ids = set(queries["query_id"].to_list())
    qrels: dict[str, dict[str, int]] = {}
    unknown_q = unknown_d = 0
    for q, d, g in triples:
        if q not in query_ids:
            unknown_q += 1
            continue
        if d not in doc_ids:
            unknown_d += 1
        qrels.setdefault(q, {})[d] = g
    scorable = set(relevant_queries(qrels, relevance_level))
    if not scorable:
        raise UserError(_nothing_to_score(root, qrels_path, queries.height, len(triples), relevance_level))
    diagnostics = {
        "corpus_docs": corpus.height,
        "queries": queries.height,
        "qrels_rows": len(triples) + dup_qrels,
        "duplicate_doc_ids": dup_docs,
        "duplicate_query_ids": dup_queries,
        "duplicate_qrels": dup_qrels,
        "qrels_unknown_queries": unknown_q,
        "qrels_unknown_docs": unknown_d,
        "queries_without_qrels": queries.height - len(scorable),
        "evaluated_queries": len(scorable),
        "relevance_level": relevance_level,
    }
    return EvalDataset(name or root.name, corpus, queries, qrels, diagnostics, relevance_level)


def _nothing_to_score(root: Path, qrels_path: Path, n_queries: int, n_judgments: int, relevance_level: int) -> str:
    """Why a dataset has no scorable query, naming the file to look at."""
    if n_queries == 0:
        return f"{root / 'queries.jsonl'}: no queries, nothing to evaluate"
    if n_judgments == 0:
        return f"{qrels_path}: no judgments, nothing to evaluate"
    return (f"{qrels_path}: no query of {root / 'queries.jsonl'} has a judgment with grade >= {relevance_level} "
            f"(evaluate.relevance_level), nothing to evaluate")


def empty_split_reason(triplets: Path) -> tuple[str, str]:
    """(why, advice) for a built-in eval split without queries, judged from the mined triplets.
    Not only eval_fraction 0: the split is a seeded hash per document, so a small fraction of a
    few documents can draw none of them. Nor only the split: with no pairs at all (generate kept
    none), or eval rows that convert-formats did not export (include_mined false), no split can
    help, and the advice must say so."""
    try:
        counts = pl.scan_parquet(triplets).select(
            rows=pl.len(), eval=(pl.col("split") == "eval").sum()).collect().row(0) if triplets.is_file() else None
    except Exception:  # noqa: BLE001 - an unreadable file: the split message stands, and quality_report names it
        counts = None
    if counts and counts[0] == 0:
        return (f"the eval split has no queries: there are no pairs to split ({triplets} has 0 rows; see pairs_in "
                "and skipped in metrics/mine_negatives.json, kept in metrics/generate.json)",
                "make generate keep pairs (see its rejected_by_reason) and mine-negatives keep them (its "
                "skipped: filter_rank, drop_short, the score rules), or name datasets in evaluate.external")
    if counts and counts[1]:
        return (f"the eval split has no queries, although {triplets} has {counts[1]} eval rows: convert-formats "
                "exported none (convert_formats.include_mined is false, or every eval query was left out: see "
                "eval.left_out in metrics/convert_formats.json)",
                "set convert_formats.include_mined=true or name datasets in evaluate.external")
    return ("the eval split has no queries (mine-negatives put no document in it: eval_fraction 0, or a fraction "
            "that drew none of a few documents; see `split` in metrics/mine_negatives.json)",
            "raise mine_negatives.eval_fraction, try another mine_negatives.split_seed or name datasets in "
            "evaluate.external")


# ---------------------------------------------------------------------------------------------
# retrieval + metrics


# Hits fetched beyond those wanted, to see whether a tie at the cut runs past them (`retrieve`).
_SPARE_HITS = 8


def retrieve(ds: EvalDataset, model: EvalModel, depth: int, device: str = "cpu",
             cache_dir: str | None = None, ignore_identical_ids: bool = False) -> dict[str, dict[str, float]]:
    """Dense exact search of every query over the corpus -> run {query_id: {doc_id: score}}.

    Documents are encoded as `title text` when a title is present (the BEIR convention)."""
    from tripleforge.embed import encode_documents, encode_queries
    from tripleforge.search import exact_search

    if ds.corpus.height == 0 or ds.queries.height == 0:
        return {q: {} for q in ds.queries["query_id"].to_list()}
    cfg = model.embedder()
    docs = [f"{t} {x}" if t else x for t, x in zip(ds.corpus["title"].to_list(), ds.corpus["text"].to_list())]
    doc_vecs = encode_documents(docs, cfg, cache_dir=cache_dir)
    instructions = ds.queries["prompt"].to_list() if model.query_prompts else None
    q_vecs = encode_queries(ds.queries["text"].to_list(), cfg, instructions=instructions, cache_dir=cache_dir)
    # one extra hit so dropping the query's own id still leaves `depth` results
    want = depth + 1 if ignore_identical_ids else depth
    doc_ids = ds.corpus["doc_id"].to_list()
    # A few spare hits show whether documents tied with the last one wanted run past the hits
    # returned: the search cuts ties by corpus position, the ranking by doc id, and identical
    # documents under two ids (common in code) would make a metric @k depend on file order.
    k = min(len(doc_ids), want + _SPARE_HITS)
    scores, idx = exact_search(q_vecs, doc_vecs, k, device=device)
    rows: dict[int, tuple[Any, Any]] = {qi: (scores[qi], idx[qi]) for qi in range(len(q_vecs))}
    while k < len(doc_ids) and want <= k:
        # queries whose tie runs through the spare hits are searched again, four times deeper
        tied = [qi for qi, (s, _) in rows.items() if len(s) == k and s[k - 1] == s[want - 1]]
        if not tied:
            break
        k = min(len(doc_ids), 4 * k)
        more_s, more_i = exact_search(q_vecs[tied], doc_vecs, k, device=device)
        rows.update({qi: (more_s[j], more_i[j]) for j, qi in enumerate(tied)})
    run: dict[str, dict[str, float]] = {}
    for qi, qid in enumerate(ds.queries["query_id"].to_list()):
        row_s, row_i = rows[qi]
        hits: dict[str, float] = {}
        for neg_s, d in sorted(zip((-float(s) for s in row_s), (doc_ids[i] for i in row_i))):
            if ignore_identical_ids and d == qid:
                continue
            if len(hits) < depth:
                hits[d] = -neg_s
        run[qid] = hits
    return run


def check_models(params: EvaluateParams) -> None:
    """Fail on a device this machine lacks, or a model folder that is none (or a cross-encoder),
    before any dataset is read or text encoded, naming the evaluate key (the search would otherwise
    fail after encoding, naming `search.device`; a bad folder after the first model's results)."""
    from tripleforge.embed import config_key

    resolve_device(params.search_device, "evaluate.search_device")
    for i, model in enumerate(params.models):
        resolve_device(model.device, f"evaluate.models.{i}.device")
    for model in params.models:
        config_key(model.embedder())  # reads config files only: folder, max_length and device checks


@dataclass
class EvaluationResult:
    per_query: pl.DataFrame  # dataset, model, query_id, task, <metric>_at_<k>...
    run_stats: dict[tuple[str, str], RunStats]  # (dataset, model) -> counts


def evaluate_models(datasets: list[EvalDataset], params: EvaluateParams) -> EvaluationResult:
    """Evaluate every model on every dataset; per-query values sorted by (dataset, model, query_id)."""
    ks = check_k_values(params.k_values)
    main_k = _task_k(params.main_metric)
    check_models(params)
    for ds in datasets:  # load_dataset checks this too; a dataset built by hand may not have been
        if not relevant_queries(ds.qrels, ds.relevance_level):
            raise UserError(f"dataset {ds.name}: no query has a judgment with grade >= {ds.relevance_level} "
                            f"(evaluate.relevance_level), nothing to evaluate")
    frames: list[pl.DataFrame] = []
    stats: dict[tuple[str, str], RunStats] = {}
    for ds in datasets:
        if ds.corpus.height <= main_k:
            # a tryout scored nDCG@10 = 1.0 on 1 document without a word: no ranking was tested
            log(f"warning: evaluate: dataset {ds.name} has only {ds.corpus.height} documents: each query's top "
                f"{main_k} holds all of them, so its @{main_k} scores ({params.main_metric}) rank at most "
                f"{ds.corpus.height} candidates and say little")
        tasks = ds.queries.select("query_id", "task")
        for model in params.models:
            log(f"evaluate: {model.name} on {ds.name} ({ds.queries.height} queries, {ds.corpus.height} docs)")
            run = retrieve(ds, model, ks[-1], params.search_device, params.cache_dir or None,
                           params.ignore_identical_ids)
            pq, st = evaluate_run(ds.qrels, run, ks, ds.relevance_level)
            stats[(ds.name, model.name)] = st
            if params.main_metric in pq.columns:
                value = aggregate(pq.select(params.main_metric))[params.main_metric]
                log(f"evaluate: {model.name} on {ds.name}: {params.main_metric}={value} over {st.evaluated_queries} queries")
            frames.append(
                pq.join(tasks, on="query_id", how="left", maintain_order="left")
                .with_columns(pl.lit(ds.name).alias("dataset"), pl.lit(model.name).alias("model"))
                .select("dataset", "model", "query_id", "task", *metric_columns(ks))
            )
    schema = {"dataset": pl.String, "model": pl.String, "query_id": pl.String, "task": pl.String,
              **{c: pl.Float64 for c in metric_columns(ks)}}
    per_query = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    return EvaluationResult(per_query.sort("dataset", "model", "query_id"), stats)


def _task_k(main_metric: str) -> int:
    return int(main_metric.rsplit("_at_", 1)[1])


def summarize(result: EvaluationResult, datasets: list[EvalDataset], params: EvaluateParams) -> dict[str, Any]:
    """The metrics JSON: per model and dataset, overall metrics at every k, per-task metrics at the
    main metric's k, denominator counts; dataset diagnostics; with >= 2 models, a comparison."""
    k_task = _task_k(params.main_metric)
    task_cols = [metric_key(m, k_task) for m in METRICS]
    models: dict[str, Any] = {}
    pq = result.per_query
    for model in params.models:
        entry: dict[str, Any] = {}
        for ds in datasets:
            sub = pq.filter((pl.col("model") == model.name) & (pl.col("dataset") == ds.name))
            per_task = {
                task: aggregate(g.select(task_cols)) | {"queries": g.height}
                for (task,), g in sub.group_by(["task"], maintain_order=True)
            }
            entry[ds.name] = {
                "overall": aggregate(sub.drop("dataset", "model", "query_id", "task")),
                "per_task": dict(sorted(per_task.items())),
                **result.run_stats[(ds.name, model.name)].as_dict(),
            }
        models[model.name] = entry
    out: dict[str, Any] = {
        "main_metric": params.main_metric,
        "models": models,
        "datasets": {ds.name: ds.diagnostics for ds in datasets},
    }
    if len(params.models) >= 2:
        out["comparison"] = compare(result, datasets, params)
    return out


def compare(result: EvaluationResult, datasets: list[EvalDataset], params: EvaluateParams) -> dict[str, Any]:
    """Each model against the baseline on the main metric, per dataset (paired over queries)."""
    sig = params.significance
    names = [m.name for m in params.models]
    baseline = sig.baseline or names[0]
    if baseline not in names:
        raise UserError(f"params.yaml: evaluate.significance.baseline '{baseline}' is not one of the models {names}")
    pq = result.per_query
    out: dict[str, Any] = {"baseline": baseline, "metric": params.main_metric}
    for name in names:
        if name == baseline:
            continue
        out[name] = {
            ds.name: compare_systems(
                pq.filter((pl.col("model") == baseline) & (pl.col("dataset") == ds.name)),
                pq.filter((pl.col("model") == name) & (pl.col("dataset") == ds.name)),
                params.main_metric,
                n_permutations=sig.n_permutations,
                seed=sig.seed,
                alpha=sig.alpha,
            )
            for ds in datasets
        }
    return out


def curve_stem(model: str, dataset: str) -> str:
    return f"{model}__{dataset}"


def check_curve_stems(models: list[str], datasets: list[str]) -> None:
    """A UserError when two (model, dataset) pairs would write one curve file: names may hold
    `__` themselves (model `a` on dataset `b__x`, model `a__b` on dataset `x`), and one of the two
    curves was lost without a word."""
    seen: dict[str, tuple[str, str]] = {}
    for model in models:
        for ds in datasets:
            stem = curve_stem(model, ds)
            if stem in seen and seen[stem] != (model, ds):
                other = seen[stem]
                raise UserError(f"evaluate.models: model '{model}' on dataset '{ds}' and model '{other[0]}' on dataset "
                                f"'{other[1]}' would both write the curve {stem}.csv; rename a model (or a dataset "
                                "folder) so that no name holds '__'")
            seen[stem] = (model, ds)


def curve_frames(summary: dict[str, Any], k_values: list[int]) -> dict[str, pl.DataFrame]:
    """Per-k curves for DVC plots, one frame per `<model>__<dataset>`: columns `k` and one per
    metric (`ndcg`, `recall`, `mrr`, `map`, `precision`), sorted by `k`."""
    out: dict[str, pl.DataFrame] = {}
    schema = {"k": pl.Int64, **{m: pl.Float64 for m in METRICS}}
    for model, per_ds in summary["models"].items():
        for ds, entry in per_ds.items():
            rows = [{"k": k, **{m: entry["overall"][metric_key(m, k)] for m in METRICS}} for k in sorted(set(k_values))]
            out[curve_stem(model, ds)] = pl.DataFrame(rows, schema=schema)
    return dict(sorted(out.items()))


def per_task_frame(summary: dict[str, Any]) -> pl.DataFrame:
    """Per-task bars: `series` (`model/dataset/task`), `model`, `dataset`, `task`, `metric` (the
    main metric's name), `value`, `queries`; sorted by `series`."""
    metric = summary["main_metric"]
    rows = []
    for model, per_ds in summary["models"].items():
        for ds, entry in per_ds.items():
            for task, vals in entry["per_task"].items():
                rows.append({"series": f"{model}/{ds}/{task}", "model": model, "dataset": ds, "task": task,
                             "metric": metric, "value": vals[metric], "queries": vals["queries"]})
    schema = {"series": pl.String, "model": pl.String, "dataset": pl.String, "task": pl.String,
              "metric": pl.String, "value": pl.Float64, "queries": pl.Int64}
    return pl.DataFrame(rows, schema=schema).sort("series")
