"""Training-ready data with LLM-Embedder semantics (group sampling, teacher-score filters,
per-task instructions, best-of-n query selection, DPO pairs) and FlagEmbedding-safe records.

Input is the grouped frame of `convert-formats` (``formats.GROUPED_SCHEMA``, rows of split
``train``). Every random choice uses an RNG seeded from ``(seed, qid)``, so a row's sample does
not depend on which other rows exist: adding data does not reshuffle what was already chosen.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, field_validator

from tripleforge import formats as F
from tripleforge.errors import UserError
from tripleforge.formats import GROUPED_SCHEMA
from tripleforge.hashing import sha256_hex
from tripleforge.io import check_dtypes, require_columns
from tripleforge.params import (
    StageParams,
    check_template,
    check_verbatim,
    require_known,
)
from tripleforge.progress import log
from tripleforge.tasks import TASKS

DPO_PROMPT_FIELDS = ("task", "code_language", "language", "document")
DEFAULT_INSTRUCTION_KEY = "*"  # the `instructions` entry for every task without its own


class InstructionTemplate(StageParams):
    query: str | None = None  # per-sample query instruction (the FlagEmbedding `prompt`); None keeps the row's
    passage: str = ""  # prefix added to every positive and negative of the task

    @field_validator("query", "passage")
    @classmethod
    def _verbatim(cls, v: str | None) -> str | None:
        return check_verbatim(v)

    @field_validator("query")
    @classmethod
    def _no_edge_spaces(cls, v: str | None) -> str | None:
        # Every consumer joins the instruction to the query with one space ("{} {}" in FlagEmbedding,
        # "{prompt} {query}" in the shards): "Represent this query: " would give two.
        return v.strip() if v is not None else None


class BatchPlanConfig(StageParams):
    mode: Literal["random", "epoch", "epoch-random"] = "epoch"
    batch_size: int = Field(8, ge=1)
    epochs: int = Field(1, ge=1)
    # false: each dataset's last batch may be shorter, so every row trains once per epoch (a small
    # dataset, e.g. a task of 4 rows, would otherwise never be in the plan); epoch modes only
    drop_last: bool = False
    # true: rows whose positive another row lists as a passage (or that share a query) never share
    # a batch, since there a query's own positive is also an in-batch negative; false: batches are
    # cut as they fall (for a loss that masks such duplicates itself)
    keep_clashing_rows_apart: bool = True


class TokenizerConfig(StageParams):
    enabled: bool = True
    model: str = "minilm"  # "minilm" = bundled all-MiniLM-L6-v2 tokenizer, or a local model directory
    # 256: what the default embedder reads when mining. FlagEmbedding's 32/128 suit short prose
    # queries; a code query (code_summary: the whole function) after a 13-16-token instruction kept
    # ~15 of its tokens at 32. Must also leave room past the tokenizer's special tokens.
    query_max_len: int = Field(256, ge=1)
    passage_max_len: int = Field(256, ge=1)
    shard_rows: int = Field(10000, ge=1, le=2**31 - 1)  # Polars slices at most 2**32 rows


class TrainDataParams(StageParams):
    train_group_size: int = Field(8, ge=2)  # 1 positive + (G-1) negatives per query; FlagEmbedding needs a negative
    select_positive: Literal["first", "random", "teacher", "teacher-pos"] = "first"
    select_negative: Literal["random", "first", "teacher+", "teacher-"] = "random"
    teacher_scores_min: float | None = None  # drop a query whose best teacher score is below this
    # drop a query whose max - min teacher score is below this; max - min is never negative, so a
    # negative margin would filter nothing
    teacher_scores_margin: float | None = Field(None, ge=0)
    stable_distill: bool = False  # sort the chosen negatives by teacher score, descending
    keep_scores: bool = True  # write pos_scores/neg_scores (for --knowledge_distillation)
    instructions: dict[str, InstructionTemplate] = {}  # catalog task -> templates; key "*" = every other task
    # seeded sample of at most N queries per task, of those the selection keeps; None = all
    max_samples_per_task: int | None = Field(None, ge=1)
    # >1: of the first n candidates per (doc_id, task, language, code_language, target) keep the
    # best (see best_of_candidates)
    n_candidates: int = Field(1, ge=1)
    dpo: bool = True  # DPO pairs from candidate groups of LLM-written queries (see dpo_pairs)
    dpo_min_margin: float = 0.0  # chosen_score - rejected_score must exceed this
    dpo_prompt_template: str = "Write a {task} query for this {code_language} document.\n\n{document}"
    # at most 1024: one column per negative (a huge value spent minutes building the columns)
    st_ntuple_negatives: int = Field(3, ge=1, le=1024)  # negatives per row of the sentence-transformers n-tuple layout
    seed: int = Field(42, ge=0)  # numpy seeds must be non-negative
    batch: BatchPlanConfig = BatchPlanConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()

    @field_validator("dpo_prompt_template")
    @classmethod
    def _dpo_fields(cls, v: str) -> str:
        return check_template(v, DPO_PROMPT_FIELDS)

    @field_validator("instructions")
    @classmethod
    def _known_tasks(cls, v: dict[str, InstructionTemplate]) -> dict[str, InstructionTemplate]:
        # A misspelt task would match no row and leave its instruction out without a word.
        require_known(v, [DEFAULT_INSTRUCTION_KEY, *TASKS], "task",
                      f"'{DEFAULT_INSTRUCTION_KEY}' (every other task) or a catalog task: {' '.join(TASKS)}")
        return v


@dataclass
class Selected:
    grouped: pl.DataFrame  # GROUPED rows after selection: pos = [chosen], neg = chosen negatives; raw texts
    dpo: pl.DataFrame  # DPO_COLUMNS
    drops: Counter[str] = field(default_factory=Counter)
    dpo_skipped: Counter[str] = field(default_factory=Counter)  # candidate groups without a DPO pair


def check_train_input(g: pl.DataFrame, name: str) -> pl.DataFrame:
    """`g` if it is the grouped frame of `convert-formats`, else a UserError naming `name`: the
    mined triplets or the pairs file look similar enough to be passed by mistake, and would
    otherwise fail deep in the selection with a bare KeyError. Rows are checked as convert-formats
    checks them (`formats.grouped_row_problem`), so a hand-edited file cannot put a null query or
    a NaN score (invalid JSON) into the training files; the first bad row is the error."""
    require_columns(g, GROUPED_SCHEMA, name, "the triplets of convert-formats, data/formats/triplets.parquet")
    g = check_dtypes(g, GROUPED_SCHEMA, name)
    bad = g.select(_row=pl.int_range(1, pl.len() + 1), qid=pl.col("qid"), _problem=F.grouped_row_problem(g)).filter(
        pl.col("_problem").is_not_null())
    if bad.height:
        row, qid, problem = bad.row(0)
        raise UserError(f"{name}:{row}: {problem.replace('_', ' ')} (qid {qid}; {bad.height} such rows; "
                        "re-run convert-formats rather than editing its output)")
    return g


def row_rng(seed: int, key: str) -> np.random.Generator:
    """An RNG for one row, independent of the other rows (stable under data growth)."""
    return np.random.default_rng([seed, int(sha256_hex(key)[:15], 16)])


def _positive_score() -> pl.Expr:
    return pl.col("pos_scores").list.max().fill_null(float("-inf"))


# Tasks whose candidates are not LLM generations (`context`: seeded cuts of the document); a
# positive score there ranks how easy the cut is to continue, not how good a generation is.
UNRANKED_TASKS = frozenset(t.name for t in TASKS.values() if not t.uses_llm)
# Tasks whose query is the whole output of one LLM call on the document, and whose positive is
# that document (generate._assemble, flow `single` with `query_is_output`: the text2code
# single-call tasks). Only for these do the triplets hold what a DPO pair needs: the prompt's
# input (pos[0]) and two competing LLM answers to it (the queries).
DPO_TASKS = frozenset(t.name for t in TASKS.values() if t.flow == "single" and t.query_is_output)
DPO_COLUMNS: dict[str, pl.DataType] = {
    "prompt": pl.String(), "chosen": pl.String(), "rejected": pl.String(), "chosen_score": pl.Float64(),
    "rejected_score": pl.Float64(), "doc_id": pl.String(), "task": pl.String(), "language": pl.String(),
}


def dpo_skip_reason(task: str | None) -> str | None:
    """None when a task's candidate groups may give DPO pairs (``DPO_TASKS``), else why not."""
    t = TASKS.get(task) if task is not None else None
    if t is None:  # external or hand-made rows: nothing says the query is generated or pos[0] the input
        return "not_a_catalog_task"
    if task in DPO_TASKS:
        return None
    if not t.uses_llm or t.flow in ("single", "translate"):  # the query is the document or a cut of it
        return "query_not_llm_written"
    # two-step flows: the call that wrote the query saw an intermediate LLM output, or the query
    # wraps the document; neither is a column of the triplets
    return "query_input_not_in_triplets"


@dataclass
class Candidates:
    kept: pl.DataFrame  # the input with each candidate group reduced to its best row
    dpo: pl.DataFrame  # DPO_COLUMNS
    drops: Counter[str] = field(default_factory=Counter)  # rows: candidate_beyond_n, not_best_candidate
    dpo_skipped: Counter[str] = field(default_factory=Counter)  # candidate groups without a DPO pair, by reason


def _note_unselected_candidates(g: pl.DataFrame) -> None:
    """With `n_candidates` 1, rows generated as several candidates of one job (generate's
    `n_candidates`) all train, as separate rows: fine as augmentation, but rarely what was meant."""
    most = g["candidate_idx"].max() if g.height else None
    if isinstance(most, int) and most > 0:
        log(f"warning: train-data: the triplets hold up to {most + 1} candidates per generation job "
            f"(generate.n_candidates) and train_data.n_candidates is 1, so every candidate trains as its own row; "
            f"set train_data.n_candidates={most + 1} to keep the best one per job")


def best_of_candidates(g: pl.DataFrame, p: TrainDataParams, usable: pl.Expr | None = None) -> Candidates:
    """Best-of-n selection and DPO pairs.

    Rows sharing ``formats.CANDIDATE_KEY`` are candidates for one generation job (``candidate_idx``);
    candidates of other languages, code languages or translation targets never compete. With
    ``n_candidates > 1`` only the first n compete and one row is kept: the one whose positive
    scores highest (the query that best retrieves its document, or the LLM-written positive that
    best fits its query), except for ``UNRANKED_TASKS``, which keep their lowest candidate_idx.
    Ties go to the lower candidate_idx, then qid. `usable` (a boolean expression) puts the rows
    that can train (`select_group` keeps them) ahead of the others, so a job whose best-scoring
    candidate has no negatives keeps its best usable one. Rows without doc_id or candidate_idx are
    untouched. Kept rows stay in input order. DPO pairs (see ``dpo_pairs``) rank every candidate by
    score alone: they judge the queries, not the rows."""
    if p.n_candidates <= 1 or g.height == 0:
        _note_unselected_candidates(g)
        return Candidates(g, pl.DataFrame(schema=DPO_COLUMNS))
    drops: Counter[str] = Counter()
    key = F.CANDIDATE_KEY
    columns = g.columns
    g = g.with_row_index("_o")  # the kept rows stay in input order: a job of one candidate changes nothing
    keyed = g.filter(pl.col("doc_id").is_not_null() & pl.col("candidate_idx").is_not_null())
    rest = g.filter(pl.col("doc_id").is_null() | pl.col("candidate_idx").is_null())
    over = keyed.filter(pl.col("candidate_idx") >= p.n_candidates)
    if over.height:
        drops["candidate_beyond_n"] += over.height
    keyed = keyed.filter(pl.col("candidate_idx") < p.n_candidates).with_columns(_pscore=_positive_score())
    rank = pl.when(pl.col("task").is_in(list(UNRANKED_TASKS))).then(pl.lit(0.0)).otherwise(pl.col("_pscore"))
    ranked = keyed.with_columns(_rank=rank).sort(
        [*key, "_rank", "candidate_idx", "qid"], descending=[False] * len(key) + [True, False, False], nulls_last=True)
    if usable is not None:
        ranked = ranked.with_columns(_usable=usable)
        best = ranked.sort([*key, "_usable"], descending=[False] * len(key) + [True], nulls_last=True,
                           maintain_order=True)
        best = best.group_by(key, maintain_order=True).first()
    else:
        best = ranked.group_by(key, maintain_order=True).first()
    if keyed.height > best.height:
        drops["not_best_candidate"] += keyed.height - best.height
    dpo, skipped = dpo_pairs(ranked, key, p) if p.dpo else (pl.DataFrame(schema=DPO_COLUMNS), Counter[str]())
    out = pl.concat([best.select(g.columns), rest]).sort("_o").select(columns)
    return Candidates(out, dpo, drops, skipped)


def dpo_pairs(ranked: pl.DataFrame, key: list[str], p: TrainDataParams) -> tuple[pl.DataFrame, Counter[str]]:
    """One DPO row per candidate group of a ``DPO_TASKS`` task: the best query (``chosen``) vs
    the worst (``rejected``), ``prompt`` = ``dpo_prompt_template`` with ``{document}`` = pos[0],
    the document the LLM wrote the queries from. ``ranked``: best first per group, with
    ``_pscore``. Groups of one candidate are not counted; the others without a pair are, by reason
    (``dpo_skip_reason``, ``same_query``, ``no_score``, ``margin_not_above_dpo_min_margin``)."""
    groups = ranked.group_by(key, maintain_order=True).agg(
        chosen=pl.col("query").first(), rejected=pl.col("query").last(),
        chosen_score=pl.col("_pscore").first(), rejected_score=pl.col("_pscore").last(),
        n=pl.len(), document=pl.col("pos").first().list.first(),
    ).filter(pl.col("n") > 1)
    reasons = [dpo_skip_reason(t) for t in groups["task"].to_list()]
    why = groups.with_columns(_why=pl.Series(reasons, dtype=pl.String)).with_columns(
        _why=pl.coalesce(
            pl.col("_why"),
            pl.when(pl.col("chosen") == pl.col("rejected")).then(pl.lit("same_query")),
            pl.when(~(pl.col("chosen_score").is_finite() & pl.col("rejected_score").is_finite()))
            .then(pl.lit("no_score")),
            pl.when((pl.col("chosen_score") - pl.col("rejected_score")) <= p.dpo_min_margin)
            .then(pl.lit("margin_not_above_dpo_min_margin")),
        ))
    skipped = Counter({str(k): int(n) for k, n in why["_why"].drop_nulls().value_counts().iter_rows()})
    pairs = why.filter(pl.col("_why").is_null())
    prompts = [  # the fields are DPO_PROMPT_FIELDS, which the params check against
        p.dpo_prompt_template.format(task=r["task"] or "", code_language=r["code_language"] or "",
                                     language=r["language"] or "", document=r["document"] or "")
        for r in pairs.iter_rows(named=True)
    ]
    return pairs.with_columns(prompt=pl.Series(prompts, dtype=pl.String)).select(list(DPO_COLUMNS)), skipped


def apply_instructions(g: pl.DataFrame, instructions: dict[str, InstructionTemplate]) -> pl.DataFrame:
    """Per-task query instruction (replaces ``prompt`` when set) and passage prefix (baked into
    the texts, since FlagEmbedding's passage instruction is one global argument).

    For the FlagEmbedding embedder layout only (and the tokenized shards, which mirror it): the
    reranker and sentence-transformers trainers take their instructions as arguments
    (``--query_instruction_for_rerank``, ``prompts=``), so those layouts keep the raw texts, and
    a prefix baked in there would be doubled or, at inference, missing."""
    if not instructions:
        return g
    default = instructions.get(DEFAULT_INSTRUCTION_KEY)
    parts = []
    for (task,), part in g.group_by(["task"], maintain_order=True):
        tmpl = instructions.get(task) if task is not None else None
        tmpl = tmpl or default
        if tmpl is None:
            parts.append(part)
            continue
        exprs: dict[str, pl.Expr] = {}
        if tmpl.query is not None:
            exprs["prompt"] = pl.lit(tmpl.query)
        if tmpl.passage:
            exprs["pos"] = pl.col("pos").list.eval(pl.lit(tmpl.passage) + pl.element())
            exprs["neg"] = pl.col("neg").list.eval(pl.lit(tmpl.passage) + pl.element())
        parts.append(part.with_columns(**exprs) if exprs else part)
    return pl.concat(parts).select(g.columns) if parts else g


def select_group(row: dict[str, Any], p: TrainDataParams) -> tuple[dict[str, Any] | None, str | None]:
    """LLM-Embedder group sampling for one row -> (row with pos=[one], neg=[<= G-1], scores) or
    (None, drop reason). Teacher scores are ``pos_scores + neg_scores`` when both exist."""
    pos: list[str] = list(row["pos"] or [])
    neg: list[str] = list(row["neg"] or [])
    ps, ns = row.get("pos_scores"), row.get("neg_scores")
    scored = ps is not None and ns is not None and len(ps) == len(pos) and len(ns) == len(neg)
    if not pos:
        return None, "no_positive"
    if scored:
        allsc = [*ps, *ns]
        if p.teacher_scores_min is not None and max(allsc) < p.teacher_scores_min:
            return None, "below_teacher_scores_min"
        if p.teacher_scores_margin is not None and max(allsc) - min(allsc) < p.teacher_scores_margin:
            return None, "below_teacher_scores_margin"
    rng = row_rng(p.seed, str(row["qid"]))
    ns = list(ns) if scored else None
    if p.select_positive == "random":
        i = int(rng.integers(len(pos)))
    elif p.select_positive == "teacher" and scored:
        allsc = [*ps, *ns]  # type: ignore[misc]
        i = int(np.argmax(allsc))
        if i >= len(pos):  # the teacher prefers a negative: it becomes the positive
            j = i - len(pos)
            chosen, chosen_score = neg.pop(j), ns.pop(j)  # type: ignore[union-attr]
            pos, ps, i = [chosen], [chosen_score], 0
    elif p.select_positive == "teacher-pos" and scored:
        i = int(np.argmax(ps))
    else:
        i = 0
    if not neg:
        return None, "no_negatives"
    k = max(p.train_group_size - 1, 0)
    if p.select_negative in ("teacher+", "teacher-") and scored:
        order = np.argsort(np.asarray(ns), kind="stable")
        idx = [int(x) for x in (order[::-1] if p.select_negative == "teacher+" else order)[:k]]
    elif p.select_negative != "random":  # first, or a teacher option on a row without scores
        idx = list(range(min(k, len(neg))))
    else:
        idx = sorted(int(x) for x in rng.choice(len(neg), size=min(k, len(neg)), replace=False))
    if p.stable_distill and scored:
        idx = sorted(idx, key=lambda j: (-ns[j], j))  # type: ignore[index]
    out = dict(row)
    out["pos"] = [pos[i]]
    out["neg"] = [neg[j] for j in idx]
    out["pos_scores"] = [float(ps[i])] if scored else None  # type: ignore[index]
    out["neg_scores"] = [float(ns[j]) for j in idx] if scored else None  # type: ignore[index]
    return out, None


def sample_per_task(g: pl.DataFrame, n: int | None, seed: int) -> tuple[pl.DataFrame, int]:
    """At most n rows per task: the n with the smallest seeded hash of qid (order kept)."""
    if n is None or g.height == 0:
        return g, 0
    keys = [sha256_hex(f"{seed}:{q}") for q in g["qid"].to_list()]
    ranked = g.with_columns(_k=pl.Series(keys, dtype=pl.String), _o=pl.int_range(pl.len()))
    kept = ranked.filter(pl.col("_k").rank("ordinal").over("task") <= n).sort("_o").drop("_k", "_o")
    return kept, g.height - kept.height


def select_training_groups(g: pl.DataFrame, p: TrainDataParams) -> Selected:
    """The whole selection: train split -> best-of-n (+DPO) -> group sampling and teacher filters
    -> per-task cap. Output keeps GROUPED columns, one positive and <= G-1 negatives per row, texts
    as in the input (``apply_instructions`` is for the embedder layout only)."""
    drops: Counter[str] = Counter()
    train = g.filter(pl.col("split") == "train")
    drops["not_train_split"] += g.height - train.height
    # Every row is sampled before best-of-n picks a job's row: a best candidate that the sampling
    # then drops (no negatives, a teacher filter) would take its job's usable candidates with it.
    train = train.with_row_index("_row")
    picked: dict[int, dict[str, Any]] = {}
    reasons: dict[int, str] = {}
    for row in train.iter_rows(named=True):
        out, reason = select_group(row, p)
        if out is None:
            reasons[row["_row"]] = str(reason)
        else:
            picked[row["_row"]] = out
    usable = pl.col("_row").is_in(pl.Series(list(picked), dtype=pl.UInt32).implode())
    cands = best_of_candidates(train, p, usable if len(picked) < train.height else None)
    # an exact copy of a row (e.g. the same record in two external files) would put each copy's
    # positive among the other's in-batch negatives
    kept = F.drop_copies(cands.kept, F.RECORD_CONTENT, F.record_probe(), drops)
    drops.update(cands.drops)
    rows = []
    for r in kept["_row"].to_list():
        if r in picked:
            rows.append(picked[r])
        else:
            drops[reasons[r]] += 1
    sel = (pl.DataFrame(rows, schema=train.schema) if rows else train.clear()).drop("_row")
    # The cap comes last: capping first would spend it on rows the filters then drop (a task could
    # end with fewer than N rows, even none, while usable rows were discarded) and would count rows
    # without negatives as `max_samples_per_task`. The sample is keyed by (seed, qid), so it does
    # not depend on the order of the steps before it.
    sel, capped = sample_per_task(sel, p.max_samples_per_task, p.seed)
    drops["max_samples_per_task"] += capped
    return Selected(sel, cands.dpo, Counter({k: v for k, v in drops.items() if v}), cands.dpo_skipped)


# FlagEmbedding's `type`: how its same-dataset mode trains a batch, one mode per batch (a batch
# mixing two fails its "Data type is not consistent in the same batch" assertion). The data-format
# spec's `type` is a query class instead ("definition"), which FlagEmbedding trains as normal.
FLAG_TYPES = ("normal", "only_1neg", "symmetric_sts", "symmetric_class", "symmetric_clustering")


def flag_type() -> pl.Expr:
    """A row's FlagEmbedding mode: its ``type`` when that is one of FLAG_TYPES, else normal."""
    return pl.when(pl.col("type").is_in(FLAG_TYPES)).then(pl.col("type")).otherwise(pl.lit("normal"))


def embedder_records(g: pl.DataFrame, keep_scores: bool, with_prompt: bool | None = None) -> list[dict[str, Any]]:
    """FlagEmbedding embedder JSONL rows for ONE dataset: ``query, pos, neg`` always; scores only
    when every row has them; ``prompt`` when `with_prompt` (default: when some row of `g` has
    one), nulls as "", never null, which FlagEmbedding would turn into the string "None";
    ``type`` (`flag_type`) only when it is not normal, which the dataset's rows then share
    (`train_outputs` files each mode apart). Rows must already have non-empty ``neg``.

    `with_prompt` is for the caller that writes several datasets: FlagEmbedding concatenates every
    file it is given into one table, so a file without the key next to one with it gets a null
    prompt per row, "None " + query again; every file must have the key or none."""
    cols = ["query", "pos", "neg"]
    if keep_scores and g["pos_scores"].null_count() == 0 and g["neg_scores"].null_count() == 0:
        cols += ["pos_scores", "neg_scores"]
    df = g.select(cols)
    if with_prompt is None:
        with_prompt = g["prompt"].null_count() < g.height
    if with_prompt:
        df = df.with_columns(g["prompt"].fill_null(""))
    modes = g.select(flag_type()).to_series()
    if (modes != "normal").any():
        df = df.with_columns(modes.alias("type"))
    return df.to_dicts()


def reranker_records(g: pl.DataFrame, keep_scores: bool) -> list[dict[str, Any]]:
    """FlagEmbedding reranker JSONL rows: ``query, pos, neg`` (+ scores). No ``prompt``: for the
    reranker that key is the final LLM yes/no prompt, not a retrieval instruction."""
    cols = ["query", "pos", "neg"]
    if keep_scores and g["pos_scores"].null_count() == 0 and g["neg_scores"].null_count() == 0:
        cols += ["pos_scores", "neg_scores"]
    return g.select(cols).to_dicts()
