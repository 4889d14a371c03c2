"""Hard-negative mining: (query, positives) pairs + a candidate pool -> ranked, filtered negatives.

Input columns (pairs): `pair_id`, `doc_id`, `query`, `pos` (list[str]), `neg` (list[str]),
`prompt` (strings; `pos`, `neg` list[str]); every other column is carried through. Pool columns:
`text` (`doc_id` optional); pool rows with null or blank text are dropped and counted.
Output: the pairs plus `neg` (mined), `pos_scores`, `neg_scores` (list[f64]), `neg_ranks`
(list[i64], 0-based rank in the query's search; null for a negative that was not retrieved
within the searched depth, e.g. random ones), `pos_rank` (i64 or null), `split` (`train`/`eval`).

Candidates are deduplicated by normalized text, so a negative is never a duplicate of another.
They come in sets (`candidates` param, `candidate_sets`): by default a row whose positive is code
(its task's `positive_is_code`; rows without a known task count as code) searches the pool plus
the code positives, and a row whose positive is prose searches the prose positives only, so a
summary's negatives are other summaries, not code. With `same_code_language`, each set is cut by
the code language of its rows' positives, and the pool joins by its texts' `code_language`. For
each query, every positive of every row with the same normalized query text, the row's source
document and the query text itself are masked before any rule applies. Rules combine: rank window
[range_min, range_max), `relative_margin` (neg <= p * hardest positive, sign-safe), `margin`
(neg <= pos - margin), `max_score`, `min_score`.
LLM-written negatives (the pairs' `neg`, from generate's `gen_hard_neg`) are kept only with
`keep_llm_negatives`, and then under the same masks (by text id) and the same score rules (not the
rank window: they are not in the query's search), in the places of the last mined ones, so a row
never holds more than `num_negatives`; every one is accounted for in `llm_negatives`.
When fewer than `num_negatives` survive, the fallback window [fallback_range_min,
fallback_range_max) is scanned with the same masks and rules; rows still short keep fewer
negatives (never padded with a positive, the query or a duplicate) and are counted.
Selection is vectorised over chunks of queries; random choices hash (seed, pair_id, candidate text
id), so results do not depend on chunking, row order or the pool's order and size.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, ValidationInfo, field_validator

from tripleforge.devices import resolve_device
from tripleforge.embed import (
    EmbedderConfig,
    encode_documents,
    encode_queries,
    read_json_object,
    resolve_model_dir,
)
from tripleforge.errors import UserError
from tripleforge.hashing import normalize_text, sha256_hex, text_id
from tripleforge.io import check_dtypes, drop_blank_text, is_blank, require_columns
from tripleforge.near_duplicates import near_duplicate_groups
from tripleforge.params import CrossFieldError, StageParams
from tripleforge.progress import bar, log
from tripleforge.quality_report import rank_histogram
from tripleforge.search import SearchConfig, search
from tripleforge.tasks import TASKS

PAIR_COLUMNS = ("pair_id", "doc_id", "query", "pos", "neg", "prompt")
STR_LIST = pl.List(pl.String)
PAIR_DTYPES: dict[str, pl.DataType] = {
    "pair_id": pl.String(), "doc_id": pl.String(), "query": pl.String(), "pos": STR_LIST, "neg": STR_LIST,
    "prompt": pl.String(),
}


class MineParams(StageParams):
    """Params section `mine_negatives` (defaults equal params.yaml)."""

    embedder: EmbedderConfig = EmbedderConfig()
    search: SearchConfig = SearchConfig()
    use_prompt_as_instruction: bool = False
    candidates: Literal["kind", "task", "all"] = "kind"
    # each candidate set cut by the code language of its rows' positives; the pool joins by its
    # texts' `code_language`
    same_code_language: bool = False
    num_negatives: int = Field(15, ge=1)
    range_min: int = Field(0, ge=0)
    range_max: int = 100
    # a share of the hardest positive's score: above 1 a negative could outscore the positive,
    # at or below 0 every negative with a positive score would be cut
    relative_margin: float | None = Field(0.95, gt=0.0, le=1.0)
    margin: float | None = Field(None, ge=0.0)  # below 0, negatives could score above the positive
    max_score: float | None = None
    min_score: float | None = None
    sampling: Literal["top", "random"] = "top"
    fallback_range_min: int = Field(0, ge=0)
    fallback_range_max: int = Field(0, ge=0)  # 0 = no fallback window
    drop_short: bool = False
    filter_rank: int | None = Field(None, ge=0)
    neg_type: Literal["hard", "random", "mixed"] = "hard"
    keep_llm_negatives: bool = False
    rescore_model: str | None = None
    rescore_batch_size: int = Field(16, ge=1)
    rescore_device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")  # auto | cpu | cuda | cuda:N
    rescore_max_length: int | None = Field(None, ge=1)  # tokens per (query, text) pair; None = the model's
    # 1.0 would put every pair in eval and leave training nothing
    eval_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    # documents at least this similar (token Jaccard) share one split; null = each its own
    split_jaccard: float | None = Field(0.7, gt=0.0, le=1.0)
    seed: int = Field(42, ge=0)  # of the random choices (sampling random, neg_type random/mixed)
    # The split has its own seed: resampling negatives (a new `seed`) keeps the eval set, so the
    # metrics of such experiments stay comparable.
    split_seed: int = Field(42, ge=0)
    query_chunk: int = Field(2048, ge=1)
    histogram_bins: int = Field(20, ge=1, le=10_000)  # numpy allocates every bin
    cache_dir: str = ""  # "" = $TRIPLEFORGE_CACHE_DIR or ~/.cache/tripleforge

    # fields validate in declaration order, so `info.data` holds the earlier bound when it was valid
    @field_validator("range_max")
    @classmethod
    def _window_not_empty(cls, v: int, info: ValidationInfo) -> int:
        lo = info.data.get("range_min")
        if lo is not None and v <= lo:
            raise CrossFieldError(("range_min",), f"must be greater than range_min ({lo})")
        return v

    @field_validator("fallback_range_max")
    @classmethod
    def _fallback_not_empty(cls, v: int, info: ValidationInfo) -> int:
        lo = info.data.get("fallback_range_min")
        if v > 0 and lo is not None and v <= lo:
            raise CrossFieldError(("fallback_range_min",), f"must be greater than fallback_range_min ({lo}), or 0 for no fallback")
        return v

    @field_validator("min_score")
    @classmethod
    def _scores_overlap(cls, v: float | None, info: ValidationInfo) -> float | None:
        hi = info.data.get("max_score")
        if v is not None and hi is not None and v > hi:
            raise CrossFieldError(("max_score",), f"must not exceed max_score ({hi}): no score could pass both")
        return v

    def depth(self) -> int:
        """Unmasked hits the search must reach: the rank windows, and `filter_rank`, since a
        positive ranked beyond the search has no rank and would be dropped as if it failed it."""
        return max(self.range_max, self.fallback_range_max, self.filter_rank or 0)


SCORE_RULES = ("max_score", "min_score", "relative_margin", "margin")  # the order rule_mask applies them
LLM_MASK_REASONS = ("empty_text", "positive_or_query", "eval_text", "duplicate")


def empty_llm_counts() -> dict[str, Any]:
    """`llm_negatives` metrics: where each LLM-written negative of the pairs file went.
    in_pairs = kept + dropped_by_setting + dropped_with_pair + sum(dropped_by_mask) + sum(dropped_by_rule)
    + dropped_over_num_negatives."""
    return {
        "in_pairs": 0,
        "kept": 0,  # in the output triplets
        "dropped_by_setting": 0,  # keep_llm_negatives: false drops them all
        "dropped_with_pair": 0,  # their pair is not in the output (empty_query, no_positive, filter_rank, short_dropped)
        "dropped_by_mask": dict.fromkeys(LLM_MASK_REASONS, 0),
        "dropped_by_rule": dict.fromkeys(SCORE_RULES, 0),
        "dropped_over_num_negatives": 0,  # a row keeps at most num_negatives negatives in all
        "replaced_mined": 0,  # not in the sum: mined negatives that gave their place to kept LLM ones
    }


# every reason is in `skipped`, 0 when nothing was skipped for it, so `dvc metrics diff` and
# `dvc exp show` compare runs key by key
SKIP_REASONS = ("masked_positive_or_query", *SCORE_RULES, "empty_query", "no_positive", "filter_rank",
                "short_dropped", "empty_positive_text", "pool_empty_text", "train_positive_is_eval_text")


@dataclass
class MineReport:
    """Counts for `metrics/mine_negatives.json`."""

    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    short_of_negatives: int = 0
    search: dict[str, Any] = field(default_factory=dict)
    candidates: int = 0  # summed over the candidate sets
    candidate_sets: dict[str, dict[str, int]] = field(default_factory=dict)
    llm_negatives: dict[str, Any] = field(default_factory=empty_llm_counts)
    unknown_task: int = 0  # mined rows whose task is none of TASKS (mined as code)
    split_grouped_docs: int = 0  # documents keyed on a near-duplicate for their split

    def add(self, key: str, n: int) -> None:
        self.skipped[key] = self.skipped.get(key, 0) + int(n)


# ---------------------------------------------------------------------------------------------
# deterministic per-row randomness


def row_seeds(keys: list[str], seed: int) -> np.ndarray:
    """uint64 seed per row from (seed, key): independent of row order and chunking."""
    return np.array([int(sha256_hex(f"{seed}\0{k}")[:16], 16) for k in keys], dtype=np.uint64)


def hash_uniform(row_seed: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Splitmix64 of (row seed, candidate key) -> uniform [0, 1): one random key per (row, candidate).
    The mining passes `candidate_keys`, not positions, so a candidate keeps its key for a row
    whatever else is in the pool and in what order."""
    with np.errstate(over="ignore"):
        z = row_seed[:, None] + (cand.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# ---------------------------------------------------------------------------------------------
# selection over one chunk of queries (pure numpy; the tests compare it with a brute force)


@dataclass
class Rules:
    range_min: int
    range_max: int
    relative_margin: float | None
    margin: float | None
    max_score: float | None
    min_score: float | None


def rule_mask(scores: np.ndarray, pos_ref: np.ndarray, rules: Rules, report: MineReport | None, counted: np.ndarray) -> np.ndarray:
    """Candidates passing every score rule; counts (sequentially) what each rule removes among `counted`."""
    ok = np.ones(scores.shape, dtype=bool)
    ref = pos_ref[:, None]
    checks: list[tuple[str, np.ndarray]] = []
    if rules.max_score is not None:
        checks.append(("max_score", scores <= rules.max_score))
    if rules.min_score is not None:
        checks.append(("min_score", scores >= rules.min_score))
    if rules.relative_margin is not None:
        # p * pos for positive scores; sign-safe form pos - |pos| * (1 - p) for negative ones
        checks.append(("relative_margin", scores <= ref - np.abs(ref) * (1.0 - rules.relative_margin)))
    if rules.margin is not None:
        checks.append(("margin", scores <= ref - rules.margin))
    for name, passed in checks:
        if report is not None:
            report.add(name, int((counted & ok & ~passed).sum()))
        ok &= passed
    return ok


def best_positive_rank(indices: np.ndarray, valid: np.ndarray, pos_ids: np.ndarray, masked_ids: np.ndarray) -> np.ndarray:
    """Per query, the 0-based rank of its best positive among the hits that are not masked for it
    (-1 when no positive is within the searched depth). The masked hits ahead of it (the row's
    own document, its query text, the query group's other positives) are not competitors: for a
    code-continuation query the source document, which contains the positive, is the top hit
    every time, and counting it would make every positive rank 1 at best."""
    is_pos = (indices[:, :, None] == pos_ids[:, None, :]).any(-1) & valid
    is_masked = (indices[:, :, None] == masked_ids[:, None, :]).any(-1) & valid
    first = np.where(is_pos.any(axis=1), is_pos.argmax(axis=1), -1)
    masked_before = np.cumsum(is_masked, axis=1) - is_masked  # masked hits strictly before each column
    rows = np.arange(indices.shape[0])
    return np.where(first >= 0, first - masked_before[rows, np.maximum(first, 0)], -1)


def take(eligible: np.ndarray, n: np.ndarray, keys: np.ndarray | None) -> np.ndarray:
    """Per row pick `n[row]` eligible positions: the first ones by rank (keys None) or the
    smallest random keys; returns a bool matrix of the chosen positions."""
    if keys is None:
        order_rank = np.cumsum(eligible, axis=1)
        return eligible & (order_rank <= n[:, None])
    k = np.where(eligible, keys, np.inf)
    order = np.argsort(k, axis=1, kind="stable")
    pos_in_order = np.empty_like(order)
    np.put_along_axis(pos_in_order, order, np.arange(k.shape[1])[None, :].repeat(k.shape[0], 0), axis=1)
    return eligible & (pos_in_order < n[:, None])


def select_chunk(
    scores: np.ndarray,
    indices: np.ndarray,
    valid: np.ndarray,
    masked_ids: np.ndarray,
    pos_ref: np.ndarray,
    n_wanted: int,
    rules: Rules,
    fallback: tuple[int, int],
    keys: np.ndarray | None,
    report: MineReport | None = None,
) -> np.ndarray:
    """Chosen hit positions (bool, same shape as `indices`) for one chunk of queries.

    `masked_ids` (nq, m) holds candidate ids that may never be chosen (padding: -2)."""
    nq, k = indices.shape
    ranks = np.arange(k)[None, :]
    masked = (indices[:, :, None] == masked_ids[:, None, :]).any(-1) if masked_ids.size else np.zeros((nq, k), bool)
    window = (ranks >= rules.range_min) & (ranks < rules.range_max) & valid
    if report is not None:
        report.add("masked_positive_or_query", int((window & masked).sum()))
    passing = rule_mask(scores, pos_ref, rules, report, window & ~masked) & valid & ~masked
    want = np.full(nq, n_wanted)
    chosen = take(window & passing, want, keys)
    lo, hi = fallback
    if hi > lo:
        have = chosen.sum(axis=1)
        short = have < n_wanted
        if short.any():
            fb = (ranks >= lo) & (ranks < hi) & passing & ~chosen & short[:, None]
            chosen |= take(fb, want - have, keys)
    return chosen


# ---------------------------------------------------------------------------------------------
# the stage function


def check_unique_pair_ids(pairs: pl.DataFrame) -> None:
    """Downstream stages use `pair_id` as the query id: a missing one has no id, a repeated one
    would merge two queries. A missing `doc_id` is an error too: a row without one has no split."""
    missing = pairs.get_column("pair_id").null_count()
    if missing:
        raise UserError(f"pairs: {missing} row(s) have a null pair_id")
    # the split, the masks of a document's other positives and the eval files go by document
    no_doc = pairs.get_column("doc_id").null_count() if "doc_id" in pairs.columns else 0
    if no_doc:
        raise UserError(f"pairs: {no_doc} row(s) have a null doc_id (rows are split into train/eval by document)")
    dup = pairs.filter(pl.col("pair_id").is_duplicated())
    if dup.height:
        first = dup.get_column("pair_id")[0]
        raise UserError(f"pairs: duplicate pair_id {first!r} ({dup.height} rows share a pair_id with another row)")


def check_rank_window(params: MineParams, n_candidates: int, label: str = "all", fatal: bool = True) -> None:
    """A primary window starting past the last candidate mines nothing; an error unless the
    fallback window still reaches candidates (then a warning), or unless not `fatal` (a set that
    `same_code_language` cut small, while other sets are reached): then a warning too, its rows
    mining no negatives (counted short)."""
    if params.neg_type == "random" or params.range_min < n_candidates:
        return
    if label.startswith("all"):  # `all`, `all/<split>`, `all@<language>/<split>`
        which = f"(pool + positives: candidate set '{label}')"
    elif label.startswith("code"):
        which = f"(pool + code positives: candidate set '{label}')"
    else:
        which = f"(prose positives only: candidate set '{label}', see mine_negatives.candidates)"
    what = (f"mine_negatives.range_min: {params.range_min} is past the last of the {n_candidates} candidates "
            f"{which}, so the rank window [{params.range_min}, {params.range_max}) is empty")
    fb_lo, fb_hi = params.fallback_range_min, params.fallback_range_max
    if fb_hi > 0 and fb_lo < n_candidates:
        log(f"warning: {what}; hard negatives come only from the fallback window [{fb_lo}, {fb_hi})")
        return
    if not fatal:
        log(f"warning: {what}: mine_negatives.same_code_language cut this set to one language; its rows get no "
            "mined negatives (counted in short_of_negatives)")
        return
    raise UserError(f"{what} and no fallback window reaches a candidate; set range_min below {n_candidates}")


def clean_positives(pairs: pl.DataFrame, report: MineReport) -> pl.DataFrame:
    """`pos` without null or blank texts (counted per text in `empty_positive_text`): a blank
    positive teaches nothing and would become a blank candidate."""
    blank = pl.element().is_null() | is_blank(pl.element())
    n_blank = pairs.select(pl.col("pos").list.eval(blank).list.sum().sum()).item()
    report.add("empty_positive_text", n_blank or 0)
    return pairs.with_columns(pl.col("pos").list.eval(pl.element().filter(~blank)))


def query_group_masks(queries: list[str], pos_lists: list[list[str]], doc_ids: list[str | None]) -> list[set[str]]:
    """Per row, the text ids no negative may have: the positives of every row with the same
    normalized query (duplicate queries grouped), the positives of every row made from the same
    document (same `doc_id`), the row's document id and its query text.

    Same document: the tasks of one document share its text, e.g. the positive of its
    code_context_retrieval row is the tail of the document, verbatim; mined as a negative of the
    document's web_code_retrieval row, it taught that most of the answer is irrelevant to the
    query (4 of 6 such rows on the default run had it among their negatives, twice at rank 1)."""
    by_query: dict[str, set[str]] = {}
    by_doc: dict[str, set[str]] = {}
    for q, plist, d in zip(queries, pos_lists, doc_ids, strict=True):
        tids = {text_id(p) for p in plist}
        by_query.setdefault(normalize_text(q), set()).update(tids)
        if d is not None:
            by_doc.setdefault(d, set()).update(tids)
    return [by_query[normalize_text(q)] | by_doc.get(d, set()) | {text_id(q)} | ({d} if d is not None else set())
            for q, d in zip(queries, doc_ids, strict=True)]


def kept_llm_negatives(
    llm_negs: list[list[str | None]], masked_tids: list[set[str]], mined: list[list[str]], report: MineReport,
    eval_tids: Collection[str] = frozenset(),
) -> list[list[str]]:
    """Per row, the LLM-written negatives that pass the masks: not blank, not masked for the row
    (`masked_tids`: text ids of its query group's positives, its document and its query), not an
    eval text (`eval_tids`, given for train rows: no eval text reaches a training file, as mined
    negatives never do), not a repeat of a negative it already has. Each removal is counted
    (`llm_negatives.dropped_by_mask`), since the LLM meant it as a negative. The score rules come
    after (`llm_negatives_passing_rules`)."""
    dropped = report.llm_negatives["dropped_by_mask"]
    out = []
    for negs, masked, have in zip(llm_negs, masked_tids, mined, strict=True):
        seen = {text_id(t) for t in have}
        extra = []
        for t in negs:
            if t is None or not t.strip():
                dropped["empty_text"] += 1
            elif text_id(t) in masked:
                dropped["positive_or_query"] += 1
            elif text_id(t) in eval_tids:
                dropped["eval_text"] += 1
            elif text_id(t) in seen:
                dropped["duplicate"] += 1
            else:
                seen.add(text_id(t))
                extra.append(t)
        out.append(extra)
    return out


def llm_negatives_passing_rules(
    extra_rows: list[list[str]], scores: list[list[float]], pos_ref: np.ndarray, rules: Rules, report: MineReport
) -> tuple[list[list[str]], list[list[float]]]:
    """Per row, the LLM negatives (and their scores) that pass the score rules the mined ones pass:
    `max_score`, `min_score`, `relative_margin`, `margin` against the row's hardest positive
    (`pos_ref`). The rank window does not apply: they are not in the query's search. An LLM
    negative scoring above its positive is as likely a false negative as a mined one, and the
    trainer's group sampling would repeat it. Drops counted per rule in `llm_negatives.dropped_by_rule`."""
    lens = [len(ex) for ex in extra_rows]
    flat = np.array([s for row in scores for s in row], dtype=np.float64)
    counts = MineReport()
    passed = rule_mask(flat[:, None], np.repeat(pos_ref.astype(np.float64), lens), rules, counts,
                       np.ones((flat.size, 1), bool))[:, 0]
    for name in SCORE_RULES:
        report.llm_negatives["dropped_by_rule"][name] += counts.skipped[name]
    texts_out, scores_out, k = [], [], 0
    for ex, sc in zip(extra_rows, scores, strict=True):
        keep = passed[k : k + len(ex)]
        texts_out.append([t for t, ok in zip(ex, keep, strict=True) if ok])
        scores_out.append([s for s, ok in zip(sc, keep, strict=True) if ok])
        k += len(ex)
    return texts_out, scores_out


RESCORE_KEY = "mine_negatives.rescore_model"


def resolve_rescore_model(model: str) -> Path:
    """The cross-encoder folder, resolved like `embedder.model` (local only, never downloaded), and
    checked from its config files alone (no weights read) to be a cross-encoder: a
    sentence-transformers CrossEncoder folder (`config_sentence_transformers.json` with
    `model_type: CrossEncoder`), or a transformers `*ForSequenceClassification` (`architectures` in
    `config.json`). A bi-encoder or base model loads as a cross-encoder with a newly initialised,
    random score head, whose scores are noise that changes from run to run."""
    if model == "minilm":
        # the bundled MiniLM is a bi-encoder: as a cross-encoder its score head would be random
        raise UserError(f"{RESCORE_KEY}: 'minilm' is the bundled bi-encoder, not a cross-encoder")
    try:
        path = resolve_model_dir(model)
    except UserError:
        raise UserError(f"{RESCORE_KEY}: '{model}' is not a local cross-encoder directory "
                        f"(models are never downloaded)") from None
    config = read_json_object(path / "config.json")
    if not config:
        raise UserError(f"{RESCORE_KEY}: '{model}' has no readable config.json, so it is not a cross-encoder folder")
    st_type = read_json_object(path / "config_sentence_transformers.json").get("model_type")
    if st_type == "CrossEncoder":
        return path
    if st_type is not None:
        raise UserError(f"{RESCORE_KEY}: '{model}' is a sentence-transformers {st_type} (a bi-encoder), not a "
                        f"CrossEncoder: its score head would be random")
    archs = config.get("architectures") or []
    if not any(isinstance(a, str) and a.endswith("ForSequenceClassification") for a in archs):
        raise UserError(f"{RESCORE_KEY}: '{model}' is not a cross-encoder: config.json architectures {archs} has no "
                        f"*ForSequenceClassification and there is no sentence-transformers CrossEncoder config "
                        f"(a bi-encoder or base model: its score head would be random)")
    return path


def load_rescorer(model_dir: Path, model: str, device: str = "cpu", max_length: int | None = None) -> Any:
    """The sentence-transformers CrossEncoder in `model_dir`, loaded once on `device` (a resolved
    one: `resolve_device`) and checked to be trained: a parameter that loading left newly
    initialised (a head missing from the checkpoint) scores at random, so it is an error, as is a
    model with more than one output per pair, or a `max_length` beyond its position embeddings."""
    import os

    from sentence_transformers import CrossEncoder
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # transformers' multi-line load report would precede the one-line error below, which names
    # the newly initialised weights itself; its per-tensor bar is noise for a ~1 s load
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        ce = CrossEncoder(str(model_dir), device=device, max_length=max_length, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: weights of the wrong shape
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{RESCORE_KEY}: '{model}' does not load as a cross-encoder: {first}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    fresh = newly_initialised(ce.model) if ce.model is not None else []
    if fresh:
        shown = ", ".join(fresh[:3]) + (f" and {len(fresh) - 3} more" if len(fresh) > 3 else "")
        raise UserError(f"{RESCORE_KEY}: '{model}' is not a trained cross-encoder: loading it left {len(fresh)} "
                        f"weight(s) newly initialised ({shown}), so its scores would be random")
    if ce.num_labels != 1:
        raise UserError(f"{RESCORE_KEY}: '{model}' gives {ce.num_labels} scores per pair; rescoring needs a "
                        f"reranker with one (num_labels 1)")
    limit = getattr(getattr(ce.model, "config", None), "max_position_embeddings", None)
    if max_length is not None and isinstance(limit, int) and max_length > limit:
        # past the position table the model fails mid-run on the first long pair
        raise UserError(f"mine_negatives.rescore_max_length: {max_length} exceeds the {limit} positions of "
                        f"cross-encoder '{model}'")
    return ce


def newly_initialised(model: Any) -> list[str]:
    """Names of the parameters and persistent buffers that `from_pretrained` did not find in the
    checkpoint: transformers marks every loaded (or tied) tensor `_is_hf_initialized` before it
    initialises the rest. When no tensor carries the mark at all (a loader that does not set it),
    nothing can be told apart and none is reported."""
    tensors = model.state_dict(keep_vars=True)
    marked = [k for k, v in tensors.items() if getattr(v, "_is_hf_initialized", False)]
    if not marked:
        return []
    return sorted(k for k, v in tensors.items() if not getattr(v, "_is_hf_initialized", False))


def assign_split(doc_ids: list[str], eval_fraction: float, seed: int) -> list[str]:
    """`eval` for a seeded-hash fraction of documents, `train` for the rest (by document)."""
    out = []
    for d in doc_ids:
        u = int(sha256_hex(f"split\0{seed}\0{d}")[:13], 16) / float(1 << 52)
        out.append("eval" if u < eval_fraction else "train")
    return out


def build_candidates(pool: list[tuple[str, str]], pos_lists: list[list[str]]) -> tuple[list[str], dict[str, int]]:
    """Pool texts (pool order, as (text id, text)) then positives not already there (by text
    id): texts and id->index."""
    texts: list[str] = []
    index: dict[str, int] = {}
    for tid, t in pool:
        if tid not in index:
            index[tid] = len(texts)
            texts.append(t)
    extra: dict[str, str] = {}
    for plist in pos_lists:
        for p in plist:
            tid = text_id(p)
            if tid not in index:
                extra.setdefault(tid, p)
    for tid in sorted(extra):
        index[tid] = len(texts)
        texts.append(extra[tid])
    return texts, index


def candidate_counts(parts: list[tuple[list[tuple[str, str]], list[int]]], pos_lists: list[list[str]]) -> list[int]:
    """For each (pool part, rows whose positives join it), how many candidates `build_candidates`
    makes of it, without building them: the rank windows are checked before any encoding, and
    every set's candidate list at once would hold gigabytes (70 per-task sets of a 1M-document
    pool). The pool parts are a few shared lists, so their id sets are made once each."""
    pool_ids: dict[int, set[str]] = {}
    counts = []
    for pool_part, rows in parts:
        if (ids := pool_ids.get(id(pool_part))) is None:  # setdefault would build the set every time
            ids = pool_ids[id(pool_part)] = {tid for tid, _ in pool_part}
        extra = {text_id(p) for r in rows for p in pos_lists[r]} - ids
        counts.append(len(ids) + len(extra))
    return counts


def candidate_keys(index: dict[str, int]) -> np.ndarray:
    """uint64 per candidate position (`build_candidates`' id->index): its text id as a number."""
    keys = np.zeros(len(index), dtype=np.uint64)
    for tid, i in index.items():
        keys[i] = int(tid, 16)
    return keys


def document_text_ids(doc_ids: list[str | None], pool: pl.DataFrame, pool_ids: list[tuple[str, str]]) -> list[str | None]:
    """Per row, the text id of its document, which the masks and splits work with: the pool row
    with that `doc_id` gives it (`pool_ids`: the pool's (text id, text), row-aligned). The
    pipeline's doc_ids are text ids already; hand-made files often number their documents, and
    without this their source document would escape the masks. A doc_id the pool lacks is kept."""
    if "doc_id" not in pool.columns:
        return doc_ids
    key: dict[str, str] = {}
    ids = pool.get_column("doc_id")
    if not (ids.dtype == pl.String or ids.dtype == pl.Null or ids.dtype.is_integer()):
        raise UserError(f"pool: column 'doc_id' has type {ids.dtype}, expected String (or integers)")
    # as strings: a pool that numbers its documents (an integer column) is matched by the same
    # numbers in the pairs, whose doc_id is a string
    for d, (tid, _) in zip(ids.cast(pl.String).to_list(), pool_ids, strict=True):
        if d is not None and key.setdefault(d, tid) != tid:
            raise UserError(f"pool: doc_id {d!r} names two different texts; a doc_id must name one document")
    return [key.get(d, d) if d is not None else None for d in doc_ids]


def pool_with_ids(pool_texts: list[str | None]) -> list[tuple[str, str]]:
    """(text id, text) of the pool's non-blank texts, in pool order: hashed once per run."""
    return [(text_id(t), t) for t in pool_texts if t is not None and t.strip()]


def row_splits(doc_ids: list[str], pool: list[tuple[str, str]], params: MineParams) -> tuple[list[str], int]:
    """`train`/`eval` per row, by document (`assign_split`), documents that are near-duplicates
    of each other (`split_jaccard`, texts from the pool, where doc_id is the text id) keyed on
    their group's first document so they share a split. Also returns how many documents were
    keyed on another one."""
    docs = sorted(set(doc_ids))
    key = {d: d for d in docs}
    if params.split_jaccard is not None and params.eval_fraction > 0:
        texts = dict(pool)
        known = [d for d in docs if d in texts]
        groups = near_duplicate_groups([texts[d] for d in known], params.split_jaccard)
        key.update((d, known[g]) for d, g in zip(known, groups, strict=True))
    splits = assign_split([key[d] for d in docs], params.eval_fraction, params.split_seed)
    split_of = dict(zip(docs, splits, strict=True))
    return [split_of[d] for d in doc_ids], sum(key[d] != d for d in docs)


def positive_kind(task: str | None) -> str:
    """`code` or `text`: what a row's positive is, from its task (a row without a known task has
    a document, i.e. code, as positive, as the pool's texts are)."""
    known = TASKS.get(task) if task is not None else None
    return "text" if known is not None and not known.positive_is_code else "code"


def count_unknown_tasks(tasks: list[str | None]) -> int:
    """How many rows have a task that is none of TASKS (hand-edited or external pairs); they are
    mined as rows with a code positive, which is wrong for a prose positive, so say so once."""
    unknown = sorted({t for t in tasks if t not in TASKS}, key=str)
    n = sum(t not in TASKS for t in tasks)
    if n:
        names = ", ".join("null" if t is None else repr(t) for t in unknown[:5])
        log(f"warning: mine-negatives: {n} pairs have a task that is none of tripleforge's tasks ({names}); "
            f"they are mined as pairs with a code positive (metrics: unknown_task)")
    return n


def candidate_sets(
    tasks: list[str | None], mode: str, languages: list[str | None] | None = None,
) -> list[tuple[str, bool, list[int]]]:
    """(label, uses the pool, row indices) per candidate set, in label order.

    `kind`: rows whose positive is code search the pool plus the code positives; rows whose
    positive is prose (code2text tasks, written answers) search only the prose positives, since a
    code negative for a prose positive is one a model rejects by its form alone. `task`: one set
    per task (the pool joins the code ones). `all`: one set, the pool plus every positive.
    With `languages` (per row, the code language of its positive: `positive_languages`), each set
    is cut by it, labelled ``<set>@<language>`` (``<set>@`` for rows without one, as no
    language is named blank: `language_name`)."""
    groups: dict[tuple[str, str | None], list[int]] = {}
    for r, t in enumerate(tasks):
        kind = positive_kind(t)
        label = "all" if mode == "all" else kind if mode == "kind" else f"{kind}:{t}"
        groups.setdefault((label, languages[r] if languages is not None else None), []).append(r)

    def shown(label: str, lang: str | None) -> str:
        return label if languages is None else f"{label}@{lang or ''}"  # a blank name is none

    ordered = sorted(groups.items(), key=lambda g: (shown(*g[0]), g[0][1] is not None))
    return [(shown(label, lang), label.startswith(("code", "all")), idx) for (label, lang), idx in ordered]


def positive_languages(rows: pl.DataFrame) -> list[str | None]:
    """Per row, the code language of its positive: ``tgt_code_language`` (code-to-code tasks
    whose positive is in another language) where set, else ``code_language``."""
    if "code_language" not in rows.columns:
        raise UserError("pairs: mine_negatives.same_code_language is true but the pairs have no "
                        "'code_language' column; set it to false")
    lang = language_name("code_language")
    if "tgt_code_language" in rows.columns:
        lang = pl.coalesce(language_name("tgt_code_language"), lang)
    return rows.select(lang).to_series().to_list()


def language_name(col: str) -> pl.Expr:
    """Column `col` as a code language name, a blank one as none (hand-made files write "" for
    "not set", and a set of language "" would hold every language's positives)."""
    c = pl.col(col).cast(pl.String)
    return pl.when(is_blank(c)).then(None).otherwise(c)


def train_rows_holding_eval_texts(splits: list[str], doc_ids: list[str], pos_lists: list[list[str]],
                                  pool: list[tuple[str, str]], eval_tids: frozenset[str],
                                  tasks: list[str | None], queries: list[str]) -> set[int]:
    """Train rows whose positive is an eval document, or a text written for an eval row (the same
    summary twice), and `code_comparison_retrieval` rows whose query quotes an eval document:
    left out of mining, so that neither reaches a training file, as a positive, a query or
    another train row's negative. A code-to-code row's positive, or the code a comparison quotes,
    can be another pool document (a similar one) of the other split. An eval row's positive that
    is a training document is not such a text: the eval corpus holds training texts, as MS
    MARCO's dev corpus does; only its judgment (query, positive) is eval's."""
    if not eval_tids:
        return set()
    pool_ids = {tid for tid, _ in pool}
    eval_docs = {doc_ids[r] for r, sp in enumerate(splits) if sp == "eval"}
    held = {t for t in eval_tids if t in eval_docs or t not in pool_ids}
    return {r for r, sp in enumerate(splits)
            if sp == "train" and (any(text_id(p) in held for p in pos_lists[r])
                                  or (tasks[r] == "code_comparison_retrieval"
                                      and any(text_id(c) in eval_docs for c in quoted_similar_code(queries[r]))))}


def quoted_similar_code(query: str) -> list[str]:
    """What a `code_comparison_retrieval` query may quote as its similar document: generate
    writes it last, after ``Output Code:`` and a fence. The text after each such mark is one
    guess, since the document itself may hold the mark (a prompt template), and only one of
    them is the whole document; none when the query has no mark."""
    mark = "\n\nOutput Code:\n```\n"
    out, at = [], query.find(mark)
    while at >= 0:
        out.append(query[at + len(mark):].removesuffix("```"))
        at = query.find(mark, at + 1)
    return out


def eval_text_ids(splits: list[str], doc_ids: list[str], pos_lists: list[list[str]]) -> frozenset[str]:
    """Text ids of the eval rows' documents and positives: what no train row may have as a negative."""
    tids = {doc_ids[r] for r, sp in enumerate(splits) if sp == "eval"}
    tids.update(text_id(p) for r, sp in enumerate(splits) if sp == "eval" for p in pos_lists[r])
    return frozenset(tids)


def split_candidate_sets(
    sets: list[tuple[str, bool, list[int]]], splits: list[str], eval_tids: frozenset[str],
    pool: list[tuple[str, str]], pool_languages: list[str | None] | None = None,
    row_languages: list[str | None] | None = None,
) -> list[tuple[str, list[tuple[str, str]], list[int], list[int]]]:
    """Each candidate set cut by split: (`<set>/<split>` label, pool part, rows, rows whose
    positives are extra candidates). With `pool_languages` (the pool's `code_language`, aligned
    with `pool`) and `row_languages` (`positive_languages`, which cut the sets: `candidate_sets`),
    a set gets the pool texts of its rows' language.

    Eval rows search everything their set would (the pool and every positive of the set: training
    texts are distractors in the eval corpus, as in MS MARCO's). Train rows never see an eval
    document or a text written for an eval row: eval documents and eval positives are taken out
    of their pool part (`eval_tids`: `eval_text_ids`), and only train positives join it, none of
    them such a text (`train_rows_holding_eval_texts` left those rows out); an eval positive that
    is a training document joins again as the positive of its own train rows. No rows at all:
    the pool alone is still searched, so the rank window is checked against it."""
    if not sets:
        return [("all", pool, [], [])]
    # one list per language (and its train part), shared by the sets of that language:
    # `candidate_counts` counts each list once
    parts: dict[str | None, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {}

    def pool_parts(idx: list[int]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        lang = row_languages[idx[0]] if pool_languages is not None and row_languages is not None else None
        if lang not in parts:
            whole = pool if pool_languages is None else [
                p for p, pl_ in zip(pool, pool_languages, strict=True) if pl_ == lang]
            parts[lang] = whole, [(tid, t) for tid, t in whole if tid not in eval_tids] if eval_tids else whole
        return parts[lang]

    out = []
    for label, uses_pool, idx in sets:
        ev = [r for r in idx if splits[r] == "eval"]
        tr = [r for r in idx if splits[r] != "eval"]
        whole, train_pool = pool_parts(idx) if uses_pool else ([], [])
        if ev:
            out.append((f"{label}/eval", whole, ev, tr))
        if tr:
            out.append((f"{label}/train", train_pool, tr, []))
    return out


@dataclass
class MinedRows:
    """Per-row mining results, aligned with the rows being mined."""

    neg_texts: list[list[str]]
    neg_scores: list[list[float]]
    neg_ranks: list[list[int | None]]
    pos_scores: list[list[float]]
    pos_rank: list[int | None]
    llm_kept: list[int]  # LLM-written negatives appended to the row (the last ones of `neg_texts`)

    @classmethod
    def empty(cls, n: int) -> MinedRows:
        return cls([[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)],
                   [[] for _ in range(n)], [None] * n, [0] * n)

    def scatter(self, idx: list[int], part: MinedRows) -> None:
        """Put the rows of `part` (one candidate set's rows) at positions `idx`."""
        for j, r in enumerate(idx):
            self.neg_texts[r], self.neg_scores[r], self.neg_ranks[r] = (
                part.neg_texts[j], part.neg_scores[j], part.neg_ranks[j])
            self.pos_scores[r], self.pos_rank[r] = part.pos_scores[j], part.pos_rank[j]
            self.llm_kept[r] = part.llm_kept[j]


def merged_search_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One `search` metrics entry over the candidate sets: the deepest search, and the lowest
    measured recall (null when every set was searched exactly)."""
    if len(reports) == 1:
        return reports[0]
    recalls = [r["recall_at_depth"] for r in reports if r.get("recall_at_depth") is not None]
    first = reports[0] if reports else {}
    return {
        "method": first.get("method"),
        "depth": max((r["depth"] for r in reports), default=0),
        "device": first.get("device"),
        "recall_at_depth": min(recalls) if recalls else None,
    }


RESCORE_CHUNK_BATCHES = 32  # batches per predict call


def _rescore(ce: Any, queries: list[str], lists: list[list[str]], batch_size: int) -> list[list[float]]:
    """Cross-encoder teacher scores for (query, text) pairs, row by row lists (`ce`: `load_rescorer`).
    Scored in chunks of a fixed number of batches, so the bar moves with throughput and ETA and the
    batches (predict sorts each call's pairs by length) depend only on the input and batch size."""
    import torch

    flat = [(q, t) for q, ts in zip(queries, lists, strict=True) for t in ts]
    chunk = batch_size * RESCORE_CHUNK_BATCHES
    # Raw logits, as FlagEmbedding's rerankers give them (normalize=False): its distillation takes
    # softmax(teacher scores) over a group without a temperature, and CrossEncoder's default
    # sigmoid squeezes every score into (0, 1), where even a perfect teacher gives its positive at
    # most e/(e+7) = 0.28 of a group of 8: the student is taught that all passages are alike.
    raw = torch.nn.Identity()
    scores: list[float] = []
    with bar(len(flat), "rescore", unit="pair") as b:
        for start in range(0, len(flat), chunk):
            part = flat[start : start + chunk]
            scores.extend(ce.predict(part, batch_size=batch_size, show_progress_bar=False,
                                     convert_to_numpy=True, activation_fn=raw).tolist())
            b.update(len(part))
    out, i = [], 0
    for ts in lists:
        out.append([float(s) for s in scores[i : i + len(ts)]])
        i += len(ts)
    return out


def _mine_candidate_set(
    label: str,
    queries: list[str],
    pos_lists: list[list[str]],
    masked_tids: list[set[str]],
    llm_negs: list[list[str | None]],
    seeds: np.ndarray,
    pool: list[tuple[str, str]],
    other_positives: list[list[str]],
    eval_tids: frozenset[str],
    instructions: list[str | None] | None,
    params: MineParams,
    report: MineReport,
) -> tuple[MinedRows, dict[str, Any]]:
    """Mine the rows of one candidate set (`candidate_sets`, one split of it): candidates =
    `pool` plus the rows' positives plus `other_positives`; `eval_tids`: the texts its rows' LLM
    negatives may not be (the eval texts, for train rows). Returns the rows' results and this
    set's `search` metrics entry."""
    nq = len(queries)
    cand_texts, cand_index = build_candidates(pool, pos_lists + other_positives)
    report.candidates += len(cand_texts)
    report.candidate_sets[label] = {"queries": nq, "candidates": len(cand_texts)}
    cfg = params.embedder
    c_emb = encode_documents(cand_texts, cfg, params.cache_dir)
    q_emb = encode_queries(queries, cfg, instructions, params.cache_dir) if nq else np.zeros((0, c_emb.shape[1]), np.float32)

    cand_keys = candidate_keys(cand_index)
    masks = [{cand_index[t] for t in tids if t in cand_index} for tids in masked_tids]
    width = max((len(m) for m in masks), default=0)
    masked_ids = np.full((nq, max(width, 1)), -2, dtype=np.int64)
    for r, m in enumerate(masks):
        masked_ids[r, : len(m)] = sorted(m)

    pos_idx = [[cand_index[text_id(p)] for p in plist] for plist in pos_lists]
    pos_scores = [[float(q_emb[r] @ c_emb[i]) for i in idxs] for r, idxs in enumerate(pos_idx)]
    pos_ref = np.array([min(s) for s in pos_scores], dtype=np.float64)

    n_total = params.num_negatives
    n_hard = {"hard": n_total, "random": 0, "mixed": math.ceil(n_total / 2)}[params.neg_type]
    depth = params.depth() + width
    res = search(q_emb, c_emb, depth, params.search)
    searched = {
        "method": res.method,
        "depth": int(res.indices.shape[1]),
        "device": params.search.device,
        "recall_at_depth": res.recall,
    }
    rules = Rules(params.range_min, params.range_max, params.relative_margin, params.margin,
                  params.max_score, params.min_score)

    pwidth = max((len(x) for x in pos_idx), default=1)
    pos_ids = np.full((nq, max(pwidth, 1)), -2, dtype=np.int64)
    for r, idxs in enumerate(pos_idx):
        pos_ids[r, : len(idxs)] = idxs
    neg_idx: list[list[int]] = []
    neg_rank: list[list[int | None]] = []
    neg_scores: list[list[float]] = []
    pos_rank: list[int | None] = []
    with bar(nq, f"mine negatives ({label})", unit="query") as b:
        for start in range(0, nq, params.query_chunk):
            sl = slice(start, start + params.query_chunk)
            s, i, v = res.scores[sl], res.indices[sl], res.valid[sl]
            keys = hash_uniform(seeds[sl], cand_keys[np.where(v, i, 0)]) if params.sampling == "random" else None
            chosen = select_chunk(
                s, i, v, masked_ids[sl], pos_ref[sl], n_hard, rules,
                (params.fallback_range_min, params.fallback_range_max), keys, report,
            ) if n_hard else np.zeros(i.shape, bool)
            first = best_positive_rank(i, v, pos_ids[sl], masked_ids[sl])
            for r in range(i.shape[0]):
                cols = np.flatnonzero(chosen[r])
                neg_idx.append(i[r, cols].tolist())
                neg_rank.append(cols.tolist())
                neg_scores.append(s[r, cols].astype(np.float64).tolist())
                pos_rank.append(int(first[r]) if first[r] >= 0 else None)
            b.update(i.shape[0])

    # random negatives: uniform over the candidates that pass the score rules (a random pick
    # above the positive's margin is as likely a false negative as a mined one), never masked,
    # never already chosen; the rank window does not apply. The picks are the smallest keys of
    # (row, candidate text id), so they do not depend on the pool's order or on other documents.
    if params.neg_type in ("random", "mixed"):
        n_cand = len(cand_texts)
        for r in range(nq):
            taken = set(neg_idx[r]) | masks[r]
            need = n_total - len(neg_idx[r])
            passing = rule_mask((c_emb @ q_emb[r])[None, :].astype(np.float64), pos_ref[r : r + 1], rules, None,
                                np.zeros((1, n_cand), bool))[0]
            eligible = np.array([c for c in np.flatnonzero(passing).tolist() if c not in taken], dtype=np.int64)
            order = np.argsort(hash_uniform(seeds[r : r + 1], cand_keys[eligible])[0], kind="stable")
            picks = eligible[order[: max(need, 0)]].tolist()
            rank_of = {int(c): j for j, c in enumerate(res.indices[r]) if res.valid[r, j]}
            neg_idx[r] = neg_idx[r] + picks
            neg_rank[r] = neg_rank[r] + [rank_of.get(c) for c in picks]
            neg_scores[r] = neg_scores[r] + [float(q_emb[r] @ c_emb[c]) for c in picks]

    neg_texts = [[cand_texts[c] for c in idxs] for idxs in neg_idx]
    llm_kept = [0] * nq
    if params.keep_llm_negatives:
        extra_rows = kept_llm_negatives(llm_negs, masked_tids, neg_texts, report, eval_tids)
        flat = [t for ex in extra_rows for t in ex]
        e_emb = encode_documents(flat, cfg, params.cache_dir) if flat else np.zeros((0, c_emb.shape[1]), np.float32)
        extra_scores, k = [], 0
        for r, ex in enumerate(extra_rows):
            extra_scores.append([float(q_emb[r] @ e_emb[k + j]) for j in range(len(ex))])
            k += len(ex)
        extra_rows, extra_scores = llm_negatives_passing_rules(extra_rows, extra_scores, pos_ref, rules, report)
        llm = report.llm_negatives
        for r, (ex, sc) in enumerate(zip(extra_rows, extra_scores, strict=True)):
            # the user asked for them, so they take places of mined ones (the last chosen go
            # first), but the row never exceeds num_negatives
            llm["dropped_over_num_negatives"] += max(0, len(ex) - n_total)
            ex, sc = ex[:n_total], sc[:n_total]
            room = n_total - len(ex)
            llm["replaced_mined"] += max(0, len(neg_texts[r]) - room)
            neg_texts[r] = neg_texts[r][:room] + ex
            neg_scores[r] = neg_scores[r][:room] + sc
            neg_rank[r] = neg_rank[r][:room] + [None] * len(ex)
            llm_kept[r] = len(ex)
    return MinedRows(neg_texts, neg_scores, neg_rank, pos_scores, pos_rank, llm_kept), searched


LLM_KEPT_COLUMN = "__llm_negatives_kept"  # working column, never in the output


def mine_negatives(pairs: pl.DataFrame, pool: pl.DataFrame, params: MineParams) -> tuple[pl.DataFrame, MineReport]:
    """Mine negatives for every pair; returns (triplets sorted by pair_id, report)."""
    require_columns(pairs, PAIR_COLUMNS, "pairs")
    require_columns(pool, ("text",), "pool")
    pairs = check_dtypes(pairs, PAIR_DTYPES, "pairs")
    pool = check_dtypes(pool, {"text": pl.String()}, "pool")
    check_unique_pair_ids(pairs)
    # environment and model checks come before any encoding, which can take minutes
    resolve_device(params.search.device, "mine_negatives.search.device")
    rescore_dir = resolve_rescore_model(params.rescore_model) if params.rescore_model else None
    rescore_device = resolve_device(params.rescore_device, "mine_negatives.rescore_device") if rescore_dir else "cpu"
    report = MineReport()
    if pool.height == 0:
        raise UserError("pool: no documents; mining needs a candidate pool (the pool file is empty)")
    pool, blank = drop_blank_text(pool)
    report.add("pool_empty_text", blank)
    if pool.height == 0:
        raise UserError(f"pool: no documents; mining needs a candidate pool (all {blank} rows have null or blank text)")

    # rows that cannot be mined are counted, not silently lost
    pairs = clean_positives(pairs, report)
    bad_query = pl.col("query").is_null() | is_blank(pl.col("query"))
    bad_pos = pl.col("pos").is_null() | (pl.col("pos").list.len() == 0)
    report.add("empty_query", pairs.filter(bad_query).height)
    report.add("no_positive", pairs.filter(~bad_query & bad_pos).height)
    llm = report.llm_negatives
    llm["in_pairs"] = int(pairs.get_column("neg").list.len().sum() or 0)
    if not params.keep_llm_negatives:
        llm["dropped_by_setting"] = llm["in_pairs"]
        if llm["in_pairs"]:
            log(f"warning: mine-negatives: the pairs carry {llm['in_pairs']} LLM-written negatives "
                f"(generate.gen_hard_neg) and mine_negatives.keep_llm_negatives is false, so all are dropped; "
                f"set it to true to keep those that pass the masks and score rules")
    else:
        llm["dropped_with_pair"] = int(pairs.filter(bad_query | bad_pos).get_column("neg").list.len().sum() or 0)
    rows = pairs.filter(~bad_query & ~bad_pos).sort("pair_id", maintain_order=True)
    nq = rows.height
    queries = rows.get_column("query").to_list()
    pos_lists = rows.get_column("pos").to_list()
    llm_negs = [list(x or []) for x in rows.get_column("neg").to_list()]
    instructions = rows.get_column("prompt").to_list() if params.use_prompt_as_instruction else None

    pool_ids = pool_with_ids(pool.get_column("text").to_list())
    doc_ids = document_text_ids(rows.get_column("doc_id").to_list(), pool, pool_ids)
    # masks, by text id: positives of every row sharing the normalized query or the document (in
    # any candidate set), the row's doc, the query text (kept LLM negatives get the same; need not
    # be candidates)
    masked_tids = query_group_masks(queries, pos_lists, doc_ids)
    tasks = rows.get_column("task").to_list() if "task" in rows.columns else [None] * nq
    report.unknown_task = count_unknown_tasks(tasks)
    pair_ids = rows.get_column("pair_id").to_list()
    # loaded once, after the cheap input checks and before any encoding: a folder that is no
    # trained cross-encoder fails here, not after minutes of mining
    rescorer = (load_rescorer(rescore_dir, params.rescore_model or "", rescore_device, params.rescore_max_length)
                if rescore_dir is not None else None)
    splits, report.split_grouped_docs = row_splits(doc_ids, pool_ids, params)
    mined = MinedRows.empty(nq)
    search_reports = []
    eval_tids = eval_text_ids(splits, doc_ids, pos_lists)
    left_out = train_rows_holding_eval_texts(splits, doc_ids, pos_lists, pool_ids, eval_tids, tasks, queries)
    if params.same_code_language:
        if "code_language" not in pool.columns:
            raise UserError("pool: mine_negatives.same_code_language is true but the pool has no 'code_language' "
                            "column; set it to false")
        row_langs: list[str | None] | None = positive_languages(rows)
        sets = candidate_sets(tasks, params.candidates, row_langs)
        # the pool's blank texts were dropped above, so its rows align with `pool_ids`
        pool_langs: list[str | None] | None = pool.select(language_name("code_language")).to_series().to_list()
    else:
        sets, pool_langs, row_langs = candidate_sets(tasks, params.candidates), None, None
    if left_out:
        sets = [(label, uses_pool, kept) for label, uses_pool, idx in sets
                if (kept := [r for r in idx if r not in left_out])]
    parts = split_candidate_sets(sets, splits, eval_tids, pool_ids, pool_langs, row_langs)
    # every rank window checked before any encoding (minutes), the smallest set first: its
    # `range_min below N` advice then holds for every set
    counts = candidate_counts([(pool_part, idx + others) for _, pool_part, idx, others in parts], pos_lists)
    sized = sorted(((n, label) for (label, *_), n in zip(parts, counts, strict=True)), key=lambda x: x[0])
    if params.same_code_language:
        # With sets cut by language, one the window misses only warns while a train set is reached
        # (the training data then has hard negatives; an eval set, holding the whole pool of its
        # language, is larger than its train set and cannot stand in for one). The largest train
        # set is checked first, so an error names it and its advice holds for it.
        n, label = max((x for x in sized if x[1].endswith("/train")), default=sized[-1], key=lambda x: x[0])
        check_rank_window(params, n, label)
        sized = [x for x in sized if x[1] != label]
    for n, label in sized:
        check_rank_window(params, n, label, fatal=not params.same_code_language)
    for label, pool_part, idx, others in parts:
        train = bool(idx) and splits[idx[0]] != "eval"  # a part's rows share their split
        sub, searched = _mine_candidate_set(
            label, [queries[r] for r in idx], [pos_lists[r] for r in idx], [masked_tids[r] for r in idx],
            [llm_negs[r] for r in idx], row_seeds([pair_ids[r] for r in idx], params.seed),
            pool_part, [pos_lists[r] for r in others], eval_tids if train else frozenset(),
            [instructions[r] for r in idx] if instructions else None, params, report,
        )
        mined.scatter(idx, sub)
        search_reports.append(searched)
    report.search = merged_search_report(search_reports)
    neg_texts, neg_scores, neg_rank = mined.neg_texts, mined.neg_scores, mined.neg_ranks
    pos_scores, pos_rank = mined.pos_scores, mined.pos_rank

    out = rows.with_columns(
        pl.Series("neg", neg_texts, dtype=pl.List(pl.String)),
        pl.Series("pos_scores", pos_scores, dtype=pl.List(pl.Float64)),
        pl.Series("neg_scores", neg_scores, dtype=pl.List(pl.Float64)),
        pl.Series("neg_ranks", neg_rank, dtype=pl.List(pl.Int64)),
        pl.Series("pos_rank", pos_rank, dtype=pl.Int64),
        pl.Series("split", splits, dtype=pl.String),
        pl.Series(LLM_KEPT_COLUMN, mined.llm_kept, dtype=pl.Int64),
    )
    if rescorer is not None:
        log(f"rescoring {nq} queries with cross-encoder {params.rescore_model} on {rescore_device}")
        out = out.with_columns(
            pl.col("pos_scores").alias("dense_pos_scores"), pl.col("neg_scores").alias("dense_neg_scores")
        )
        # one predict call: positives then negatives, row by row
        teacher = _rescore(rescorer, queries + queries, [list(p) for p in pos_lists] + neg_texts,
                           params.rescore_batch_size)
        teacher_pos, teacher_neg = teacher[:nq], teacher[nq:]
        out = out.with_columns(
            pl.Series("pos_scores", teacher_pos, dtype=pl.List(pl.Float64)),
            pl.Series("neg_scores", teacher_neg, dtype=pl.List(pl.Float64)),
        )

    llm_before = sum(mined.llm_kept)
    if left_out:
        report.add("train_positive_is_eval_text", len(left_out))
        if params.keep_llm_negatives:
            llm["dropped_with_pair"] += sum(len(llm_negs[r]) for r in left_out)
        out = out.filter(~pl.int_range(pl.len()).is_in(sorted(left_out)))
    if params.filter_rank is not None:
        keep = pl.col("pos_rank").is_not_null() & (pl.col("pos_rank") < params.filter_rank)
        report.add("filter_rank", out.filter(~keep).height)
        out = out.filter(keep)
    short = pl.col("neg").list.len() < params.num_negatives
    report.short_of_negatives = out.filter(short).height
    if params.drop_short:
        report.add("short_dropped", report.short_of_negatives)
        out = out.filter(~short)
    llm["kept"] = int(out.get_column(LLM_KEPT_COLUMN).sum() or 0)
    llm["dropped_with_pair"] += llm_before - llm["kept"]
    return out.drop(LLM_KEPT_COLUMN).sort("pair_id", maintain_order=True), report


# ---------------------------------------------------------------------------------------------
# metrics and plots


def mine_metrics(out: pl.DataFrame, report: MineReport, pairs_in: int, params: MineParams) -> dict[str, Any]:
    # Metrics speak 1-based ranks (1 = the positive is the top hit), as the evaluate quality
    # report does; the `pos_rank` column stays a 0-based index (what `filter_rank` compares).
    # The distribution is over the output pairs, the same set as `pairs`: the ones dropped by
    # `filter_rank` / `drop_short` are in `skipped`.
    hist = rank_histogram(out)
    found = [r + 1 for r in out.get_column("pos_rank").to_list() if r is not None]
    negs = out.get_column("neg").list.len() if out.height else pl.Series([], dtype=pl.UInt32)
    pos_s = out.get_column("pos_scores").explode().drop_nulls() if out.height else pl.Series([], dtype=pl.Float64)
    neg_s = out.get_column("neg_scores").explode().drop_nulls() if out.height else pl.Series([], dtype=pl.Float64)

    def mean(s: pl.Series) -> float | None:
        return round(float(s.mean()), 6) if len(s) else None  # type: ignore[arg-type]

    splits = out.get_column("split").value_counts(sort=False) if out.height else None
    split_counts = {"train": 0, "eval": 0}
    if splits is not None:
        for name, cnt in splits.iter_rows():
            split_counts[name] = int(cnt)
    return {
        "pairs_in": pairs_in,
        "pairs": out.height,
        "candidates": report.candidates,
        "candidate_sets": report.candidate_sets,
        "unknown_task": report.unknown_task,
        "short_of_negatives": report.short_of_negatives,
        # of those short, the ones with none at all: FlagEmbedding cannot train on them, and
        # train-data drops them (no_negatives), so the mean alone hides them
        "without_negatives": int((negs == 0).sum()) if len(negs) else 0,
        "negatives_total": int(negs.sum()) if len(negs) else 0,
        "negatives_mean": round(float(negs.mean()), 4) if len(negs) else 0.0,  # type: ignore[arg-type]
        "skipped": dict(sorted(report.skipped.items())),
        "llm_negatives": report.llm_negatives,
        "pos_rank": {
            "histogram": dict(zip(hist["bucket"].to_list(), hist["pairs"].to_list(), strict=True)),
            "median": float(np.median(found)) if found else None,
            "mean": round(float(np.mean(found)), 4) if found else None,
            "found": len(found),
        },
        "scores": {"pos_mean": mean(pos_s), "neg_mean": mean(neg_s)},
        "search": report.search,
        "split": split_counts,
        "split_grouped_docs": report.split_grouped_docs,
        "num_negatives": params.num_negatives,
    }


def score_histogram(out: pl.DataFrame, bins: int) -> pl.DataFrame:
    """Counts of positive and negative scores per bin (columns `score`, `pos`, `neg`) for DVC plots."""
    pos = out.get_column("pos_scores").explode().drop_nulls().to_numpy() if out.height else np.zeros(0)
    neg = out.get_column("neg_scores").explode().drop_nulls().to_numpy() if out.height else np.zeros(0)
    both = np.concatenate([pos, neg])
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    pc, _ = np.histogram(pos, edges)
    nc, _ = np.histogram(neg, edges)
    centers = np.round((edges[:-1] + edges[1:]) / 2, 6)
    return pl.DataFrame({"score": centers, "pos": pc.astype(np.int64), "neg": nc.astype(np.int64)})
