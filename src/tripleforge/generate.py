"""Generation flows: documents -> (query, positive) pairs written by an LLM.

Input frame (`data/paired/docs.parquet`): `doc_id`, `text`, `code_language` (+ `similar_doc_id`,
`similar_text` for the two similar-code tasks). Output frame (`data/generated/pairs.parquet`):
`pair_id`, `doc_id`, `task`, `language`, `code_language`, `tgt_code_language`, `prompt`, `query`,
`pos`, `neg`, `model`, `candidate_idx`, `qc`, `tokens_in`, `tokens_out`, sorted by `pair_id`.

Work runs in rounds (step 0 of every job, then step 1, then QC, then LLM negatives), so a backend
sees big batches. Every request has a seed derived from its job, and its answer is committed to
the response cache as it arrives: a killed run restarts without repeating finished calls and
reuses their answers byte for byte. The answers it still has to ask for are the same as in an
uninterrupted run only where the backend answers the same request the same way (the embedded
llama-cpp does; a server batching concurrent requests may not).
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter, defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import polars as pl
from pydantic import Field, ValidationInfo, field_validator

from tripleforge.claims import claimed_slices
from tripleforge.errors import UserError
from tripleforge.hashing import key_of, normalize_text, sha256_hex
from tripleforge.inputs import check_input_path
from tripleforge.io import PARQUET_READ_ERRORS, check_dtypes, drop_blank_text, iter_jsonl
from tripleforge.llm.base import Backend, ChatRequest, ChatResult, Sampling
from tripleforge.llm.cache import ResponseCache, request_key
from tripleforge.params import PARAMS_LABEL, StageParams, require_known
from tripleforge.progress import bar, log
from tripleforge.prompts import (
    PROMPT_VERSION,
    Example,
    choose_examples,
    generation_messages,
    hard_negative_messages,
    load_examples,
    qc_messages,
)
from tripleforge.quality import (
    check_output,
    clean_reply,
    code_not_text,
    note_after_code,
    parse_verdict,
    wrong_code_language,
)
from tripleforge.languages import CODE_LANGUAGES
from tripleforge.tasks import LANGUAGES, TASKS, Task, retrieval_instruction, translation_targets

CONTEXT_MODEL = "rule:context-cut"


# A base URL with one of these may carry a user:password part or a key in its query.
_MAY_HOLD_CREDENTIAL = re.compile(r"[@?#]")


class GenerateParams(StageParams):
    """The `generate` section of params.yaml (defaults = the embedded CPU job)."""

    SECRET_FIELDS = frozenset({"base_urls", "api_key_env"})

    tasks: list[str] = ["code_summary_retrieval", "web_code_retrieval", "code_context_retrieval"]
    languages: list[str] = ["en"]
    code_languages: list[str] = []          # [] = every code language present in the input
    tgt_code_languages: list[str] = []      # code_translation_retrieval targets ([] = the catalog's pairs)
    backend: Literal["llama-cpp", "openai", "vllm"] = "llama-cpp"
    model_path: str = "smollm2"             # llama-cpp: GGUF file; "smollm2" = bundled SmolLM2-135M
    n_ctx: int = Field(4096, ge=512)
    n_threads: int = Field(0, ge=0)         # 0 = min(4, cpu count)
    model: str = ""                         # openai/vllm model name ("" = first model the server lists)
    base_urls: list[str] = ["http://127.0.0.1:8000/v1"]
    api_key_env: str = ""                   # NAME of the env var holding the API key ("" = none)
    concurrency: int = Field(4, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_tokens: int = Field(96, ge=1)
    seed: int = 42
    n_candidates: int = Field(1, ge=1)
    qc: bool = False
    gen_hard_neg: int = Field(0, ge=0)      # LLM-written negatives per kept pair
    num_examples: int = Field(3, ge=0)
    examples_dir: str = ""
    max_docs: int = Field(0, ge=0)          # 0 = all documents
    max_input_chars: int = Field(8000, ge=1)
    max_output_chars: int = Field(4000, ge=1)
    dedup_against: list[str] = []           # earlier pairs files (.parquet/.jsonl) whose queries/positives are excluded
    cache_dir: str = ""                     # "" = $TRIPLEFORGE_LLM_CACHE or <cache root>/llm
    max_failed_fraction: float = Field(0.0, ge=0, le=1)  # failed LLM requests tolerated; more = error, nothing written

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        require_known(v, TASKS, "task", "see `tripleforge tasks`")
        if not v:
            raise ValueError("at least one task is needed")
        return v

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, v: list[str]) -> list[str]:
        require_known(v, LANGUAGES, "language")
        if not v:
            raise ValueError("at least one language is needed")
        return v

    @field_validator("code_languages", "tgt_code_languages")
    @classmethod
    def _known_code_languages(cls, v: list[str]) -> list[str]:
        require_known(v, CODE_LANGUAGES, "code language")
        return v

    @field_validator("tasks", "languages", "code_languages", "tgt_code_languages", "base_urls", "dedup_against")
    @classmethod
    def _no_repeats(cls, v: list[str], info: ValidationInfo) -> list[str]:
        """A repeat is a slip, never a wish: a repeated task, language or target makes every job
        twice (counted as requested, then rejected as `duplicate_pair`), a repeated base URL gets
        twice its share of requests. A trailing `/` does not count (`http://h/v1/` is `http://h/v1`)."""
        counts = Counter(x.rstrip("/") for x in v)
        for item in v:
            times = counts[item.rstrip("/")]
            if times > 1:
                secret = info.field_name == "base_urls" and _MAY_HOLD_CREDENTIAL.search(item)  # see _http_urls
                shown = "a base URL with '@', '?' or '#'" if secret else repr(item)
                raise ValueError(f"{shown} is listed {'twice' if times == 2 else f'{times} times'}")
        return v

    @field_validator("base_urls")
    @classmethod
    def _http_urls(cls, v: list[str]) -> list[str]:
        """Each an `http(s)://host[:port]/path` URL: a typo such as `:800O` would otherwise
        surface as a traceback from the HTTP client. No `@`, `?` or `#`: a user:password part or
        a key in the query would be published with the params (git, dvc.lock), and a query could
        not work anyway (requests append `/models`, `/chat/completions`). The value is repeated
        only when it holds none of those (`SECRET_FIELDS`)."""
        for url in v:
            if _MAY_HOLD_CREDENTIAL.search(url):
                raise ValueError("a base URL with '@', '?' or '#' (not repeated: it may hold a credential); a "
                                 "user:password part or a key in the query would be published with the params, "
                                 "so put the key in an environment variable and name it in generate.api_key_env")
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 - parsing the port is the check
            except ValueError as exc:
                raise ValueError(f"{url!r} is not a valid URL ({exc})") from None
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL with a host, such as http://127.0.0.1:8000/v1")
        return v


@dataclass
class Job:
    """One (document, task, language, target, candidate) -> at most one pair."""

    pair_id: str
    doc_id: str
    text: str
    task: Task
    language: str
    code_language: str
    tgt: str | None
    cand: int
    similar: str | None
    examples: list[Example]
    outputs: list[str] = field(default_factory=list)
    query: str = ""
    pos: str = ""
    neg: list[str] = field(default_factory=list)
    qc: str = "off"
    tokens_in: int = 0
    tokens_out: int = 0
    reason: str | None = None

    def seed(self, base: int, role: str) -> int:
        return int(key_of("seed", base, self.pair_id, role)[:8], 16) & 0x7FFFFFFF


@dataclass
class RunStats:
    cache_hits: int = 0
    cache_misses: int = 0
    llm_failures: int = 0
    first_error: str | None = None
    new_tokens_in: int = 0
    new_tokens_out: int = 0
    llm_seconds: float = 0.0

    @property
    def llm_requests(self) -> int:
        return self.cache_hits + self.cache_misses


class LLMFailures(UserError):
    """Too many LLM requests failed: the run wrote nothing (exit 1: the input was fine, the run was not)."""

    exit_code = 1


def pair_id_of(doc_id: str, task: str, language: str, code_language: str, tgt: str | None, cand: int) -> str:
    return key_of("pair", doc_id, task, language, code_language, tgt, cand)[:16]


def check_params(params: GenerateParams) -> None:
    """Params that pydantic cannot judge alone, checked before the model loads or any LLM call."""
    from tripleforge.llm.openai_compat import check_api_key_env

    check_api_key_env(params.api_key_env)  # for every backend: a pasted key in params is a leak anyway
    check_input_paths(params)


def check_input_paths(params: GenerateParams) -> None:
    """Files and folders named in params exist. A mistyped `examples_dir` would otherwise silently
    mean "no few-shot examples", which changes every prompt without a word."""
    if params.examples_dir:
        check_input_path(params.examples_dir, "generate.examples_dir", "folder")
    for p in params.dedup_against:
        check_input_path(p, "generate.dedup_against")


def check_docs(docs: pl.DataFrame, params: GenerateParams, source: str) -> None:
    """Fail (one line) before any LLM call when the input cannot serve the requested tasks."""
    for col in ("doc_id", "text", "code_language"):
        if col not in docs.columns:
            raise UserError(f"{source}: column '{col}' missing")
    check_dtypes(docs, {"text": pl.String()}, source)  # null text is skipped later; a number is no document
    for name in params.tasks:
        if TASKS[name].needs_similar and "similar_text" not in docs.columns:
            raise UserError(f"{source}: column 'similar_text' missing; task {name} needs the pair-similar stage output")
    present = set(docs["code_language"].drop_nulls().to_list())
    unknown = sorted(present - set(CODE_LANGUAGES))
    if unknown:
        raise UserError(f"{source}: unknown code_language {unknown[0]!r}")
    _check_code_languages(params.code_languages, present, docs.height, source)


def _check_code_languages(wanted: list[str], present: set[str], n_docs: int, source: str) -> None:
    """Asking for code languages the input lacks is a mistake (a typo, or the sample stage kept other
    languages): if none remain it is an error, since an empty pairs file only fails later, further from
    the cause; if some remain, a warning, since the rest is still a useful run."""
    missing = [c for c in wanted if c not in present]
    if not missing:
        return
    have = " ".join(sorted(present)) or "none"
    if n_docs and len(missing) == len(wanted):
        raise UserError(f"{PARAMS_LABEL}generate.code_languages: no document in {source} is in "
                        f"{' '.join(missing)} (present: {have})")
    log(f"warning: generate.code_languages: no document in {source} is in {' '.join(missing)} (present: {have})")


def _select_docs(docs: pl.DataFrame, params: GenerateParams) -> pl.DataFrame:
    if params.code_languages:
        docs = docs.filter(pl.col("code_language").is_in(params.code_languages))
    docs = docs.sort(["code_language", "doc_id"], maintain_order=True)
    return docs.head(params.max_docs) if params.max_docs else docs


def targets_of(code_language: str, params: GenerateParams) -> list[str]:
    """Translation targets of a document in `code_language`: `tgt_code_languages` when set (exactly
    those: the user asked for them, catalog pair or not), else the catalog's pairs
    (`translation_targets`); never the source language itself."""
    wanted = params.tgt_code_languages or translation_targets(code_language)
    return [t for t in wanted if t != code_language]


def expand_jobs(docs: pl.DataFrame, params: GenerateParams) -> list[Job]:
    """tasks x languages x documents (x targets) x candidates. Text-free (code2code) tasks run once,
    in English, whatever `languages` lists: both sides are code."""
    docs = _select_docs(docs, params)
    if any(TASKS[t].needs_target for t in params.tasks):
        _warn_untranslated(set(docs["code_language"].to_list()), params)
    has_similar = "similar_text" in docs.columns
    pools: dict[tuple[str, str], list[Example]] = {}
    missing_pools: list[str] = []
    jobs: list[Job] = []
    for row in docs.iter_rows(named=True):
        code = row["code_language"]
        for name in params.tasks:
            task = TASKS[name]
            langs = ["en"] if task.text_free else params.languages
            tgts: list[str | None] = list(targets_of(code, params)) if task.needs_target else [None]
            for lang in langs:
                for tgt in tgts:
                    pool_name = f"{code}-to-{tgt}" if tgt else code
                    if (name, pool_name) not in pools:
                        want = bool(params.examples_dir and params.num_examples and task.uses_llm)
                        pools[(name, pool_name)] = load_examples(params.examples_dir, name, pool_name) if want else []
                        if want and not pools[(name, pool_name)]:
                            missing_pools.append(f"{name}/{pool_name}.jsonl")
                    for cand in range(params.n_candidates):
                        pid = pair_id_of(row["doc_id"], name, lang, code, tgt, cand)
                        ex_seed = int(key_of("examples", params.seed, pid)[:8], 16)
                        jobs.append(Job(
                            pair_id=pid, doc_id=row["doc_id"], text=row["text"], task=task, language=lang,
                            code_language=code, tgt=tgt, cand=cand,
                            similar=row.get("similar_text") if has_similar else None,
                            examples=choose_examples(pools[(name, pool_name)], params.num_examples, ex_seed),
                        ))
    if missing_pools:
        log(f"warning: generate.examples_dir: no examples for {len(missing_pools)} (task, code language) "
            f"pool(s), e.g. {Path(params.examples_dir) / missing_pools[0]}; those prompts get no few-shot examples")
    jobs.sort(key=lambda j: j.pair_id)
    return jobs


# ---------------------------------------------------------------- requests per flow step


def _warn_untranslated(codes: set[str], params: GenerateParams) -> None:
    """code_translation_retrieval makes nothing for documents whose language has no target: say so
    instead of leaving the task's row in the metrics at 0 requested without a reason."""
    none = sorted(c for c in codes if not targets_of(c, params))
    if not none:
        return
    why = ("its only target is the source language" if params.tgt_code_languages
           else "the catalog pairs no target with it; set generate.tgt_code_languages")
    log(f"warning: generate.tgt_code_languages: code_translation_retrieval makes no pairs for documents in "
        f"{' '.join(none)} ({why})")


def _step_inputs(job: Job, step: int) -> list[tuple[str, str]]:
    f = job.task.flow
    if f in ("similar_modify", "similar_compare") and step == 0:
        return [("Input code", job.text), ("Output code", job.similar or "")]
    if step == 0:
        return [("Code", job.text)]
    prev = job.outputs[0]
    if f == "similar_modify":
        return [("Differences", prev)]
    if f == "similar_compare":
        return [("Hybrid", _similar_query(job))]
    if f == "two_step_reuse":
        return [("Hybrid", _reuse_query(job))]
    return [("Code", prev)]  # bug_desc, two_step_fresh: step 1 works on step 0's code


def _reuse_query(job: Job) -> str:
    return f"{job.outputs[0]}\n\n```\n{job.text.rstrip()}\n```"


def _similar_query(job: Job) -> str:
    return (f"{job.outputs[0]}\n\nInput Code:\n```\n{job.text.rstrip()}\n```\n\n"
            f"Output Code:\n```\n{(job.similar or '').rstrip()}\n```")


def _step_is_text(task: Task, step: int) -> bool:
    """Whether step `step`'s output is natural language (gets the language check)."""
    last = step == len(task.steps) - 1
    if last:
        return not task.output_is_code
    return task.flow in ("two_step_reuse", "similar_modify", "similar_compare")


def _quote_source(task: Task, step: int, source: str, similar: str | None = None) -> str:
    """The code a text output of `step` must not quote a line of (`quotes_input`), or "" for no check.
    Checked: text2code and code2text tasks, where the text and the code it was written from end up
    on the two sides of one pair, so a copied line hands the retriever the answer (a search query
    holding the positive's signature); and the change instruction of `similar_modify`, which goes
    into the query while the `similar` document is the positive (a tryout kept an instruction that
    held the positive's signature and docstring). Not checked: code outputs; other hybrid outputs
    (the document is part of the query anyway, and their answers discuss its lines); tasks that
    cite code (`Task.cites_code`)."""
    if task.flow == "similar_modify" and step == len(task.steps) - 1:
        return similar or ""
    if task.group not in ("text2code", "code2text") or task.cites_code or not _step_is_text(task, step):
        return ""
    return source


def _sampling(params: GenerateParams, seed: int, greedy: bool = False, max_tokens: int | None = None) -> Sampling:
    if greedy:
        return Sampling(temperature=0.0, top_p=1.0, max_tokens=max_tokens or 4, seed=seed)
    return Sampling(params.temperature, params.top_p, max_tokens or params.max_tokens, seed)


def _request(fp: str, messages: list[dict[str, str]], sampling: Sampling) -> ChatRequest:
    return ChatRequest(
        key=request_key(fp, messages, sampling, PROMPT_VERSION),
        messages=tuple((m["role"], m["content"]) for m in messages),
        sampling=sampling,
    )


class Runner:
    """Serves requests from the cache, sends the rest to the backend, commits each answer.

    Stops early when the run's failure verdict is already certain: once more requests failed than
    `max_failed_fraction` allows of the most requests the run can need (those counted so far plus
    `later`, a bound on the rounds still to come), `on_result` asks the backend to start no new
    request; the requests in flight finish (answers cached), then `LLMFailures` is raised, naming
    the requests not sent. A run the final `check_failures` would pass never stops early."""

    def __init__(self, backend: Backend | None, cache: ResponseCache, stats: RunStats,
                 max_failed_fraction: float = 0.0):
        self.backend = backend
        self.cache = cache
        self.stats = stats
        self.max_failed_fraction = max_failed_fraction

    def run(self, requests: list[ChatRequest], desc: str, later: int = 0) -> dict[str, ChatResult]:
        """Answers by cache key. `later`: at most how many LLM requests the rounds after this one need."""
        results: dict[str, ChatResult] = {}
        todo: dict[str, ChatRequest] = {}
        for r in requests:
            if r.key in results or r.key in todo:
                continue
            hit = self.cache.get(r.key)
            if hit is not None:
                results[r.key] = hit
                self.stats.cache_hits += 1
            else:
                todo[r.key] = r
        if not todo:
            return results
        assert self.backend is not None, "LLM requests need a backend"
        self.stats.cache_misses += len(todo)
        log(f"{desc}: {len(results)} cached, {len(todo)} to generate with {self.backend.fingerprint()}")
        start = time.perf_counter()
        tokens_before = self.stats.new_tokens_out  # the bar's rate is this round's tokens over its time
        answered = 0
        stop = False
        with bar(len(todo), desc, unit="req") as b:

            def on_result(req: ChatRequest, res: ChatResult) -> bool:
                nonlocal answered, stop
                if res.ok and not res.texts:  # no answer is a failure: never cached, asked again next run
                    res = ChatResult(error="the backend returned no text", tokens_in=res.tokens_in)
                # committed before anything else (crash-safe); the cache's first answer is used, in
                # case another run sharing the cache answered this question meanwhile
                res = self.cache.put(req.key, res) or res
                results[req.key] = res
                if res.ok:
                    self.stats.new_tokens_in += res.tokens_in
                    self.stats.new_tokens_out += res.tokens_out
                else:
                    self.stats.llm_failures += 1
                    self.stats.first_error = self.stats.first_error or res.error
                    stop = stop or too_many_failures(self.stats.llm_failures, self.stats.llm_requests + later,
                                                     self.max_failed_fraction)
                answered += 1
                elapsed = max(time.perf_counter() - start, 1e-9)
                b.set_postfix(tok_s=f"{(self.stats.new_tokens_out - tokens_before) / elapsed:.1f}", refresh=False)
                b.update(1)
                return stop  # True: start no new request

            pending = list(todo.values())
            # In slices: before each slice after the first, questions another run sharing the
            # cache has answered meanwhile (`dvc queue start -j 2` over overlapping params) are
            # served from it, and the rest are claimed (`tripleforge.claims`): a question another
            # live run is asking is left to it and looked at again at the end. A backend that
            # answers a slice as one batch (vLLM) has each slice's answers cached before the next.
            step = getattr(self.backend, "recheck_every", 0) or len(pending)
            with closing(claimed_slices(self.cache.claims, pending, lambda r: r.key, step)) as slices:
                for part in slices:
                    asked = len(part)
                    part = self._not_cached_yet(part, results, b)
                    answered += asked - len(part)
                    if part:
                        self.backend.generate(part, on_result)
                    if stop:
                        break
        self.stats.llm_seconds += time.perf_counter() - start
        if stop:  # the verdict is certain: fail now, without the remaining requests and rounds
            check_failures(self.stats, self.max_failed_fraction, unsent=len(todo) - answered)
        return results

    def _not_cached_yet(self, part: list[ChatRequest], results: dict[str, ChatResult], b: Any) -> list[ChatRequest]:
        """The requests of `part` the cache still has no answer for; the others are served from it
        (and counted as cache hits, not misses)."""
        left = []
        for r in part:
            hit = self.cache.get(r.key)
            if hit is None:
                left.append(r)
                continue
            results[r.key] = hit
            self.stats.cache_hits += 1
            self.stats.cache_misses -= 1
            b.update(1)
        return left


def _take(job: Job, res: ChatResult, is_code: bool, source: str, text_lang: str | None,
          params: GenerateParams, quote_source: str = "", max_words: int | None = None,
          code_language: str | None = None) -> str | None:
    """Account tokens, clean and check one reply; sets job.reason on rejection. `quote_source`: code
    the (text) reply must not quote a line of (see `_quote_source`); `max_words`: the words the
    reply's instruction allowed (the task's final step only); `code_language`: the language a code
    reply was asked in (its fence may not name another: `wrong_code_language`)."""
    job.tokens_in += res.tokens_in
    job.tokens_out += res.tokens_out
    if not res.ok or not res.texts:
        job.reason = "llm_error"
        return None
    text = clean_reply(res.texts[0], is_code)
    reason = check_output(text, res.finish_reasons[0] if res.finish_reasons else "stop", source, text_lang,
                          params.max_output_chars, quote_source, max_words)
    if reason is None and is_code and code_language and wrong_code_language(res.texts[0], code_language):
        reason = "wrong_code_language"
    if reason is None and not is_code and not job.task.cites_code and code_not_text(text):
        reason = "code_not_text"  # tasks that cite code may hold a block of it in their prose
    if reason:
        job.reason = reason
        return None
    return text


def _context_cut(job: Job, seed: int) -> None:
    """Prefix -> suffix at a seeded 40-70% point of the whitespace tokens; query+pos == text.

    The cut goes to the start of a line when a line starts within the 40-70% range (the one
    nearest the seeded point), and then the continuation starts with that whole line, its
    indentation included: cut before the token, the query ended in the line break and the
    indentation, and the positive's first line was dedented (26 of 27 in an audit), code nobody
    writes. Only a document with no line starting in the range is cut inside a line."""
    starts = [m.start() for m in re.finditer(r"\S+", job.text)]
    if len(starts) < 4:
        job.reason = "too_short"
        return
    n = len(starts)
    frac = random.Random(job.seed(seed, "cut")).uniform(0.4, 0.7)
    cut = min(n - 1, max(1, int(n * frac)))
    lo, hi = max(1, int(n * 0.4)), min(n - 1, int(n * 0.7))
    line_starts = [i for i in range(lo, hi + 1) if "\n" in job.text[starts[i - 1]: starts[i]]]
    if line_starts:
        i = min(line_starts, key=lambda k: (abs(k - cut), k))
        at = job.text.rfind("\n", 0, starts[i]) + 1
    else:
        at = starts[cut]
    job.query, job.pos = job.text[:at], job.text[at:]
    job.qc = "n/a"


def _assemble(job: Job) -> None:
    """Query and positive from the step outputs, per flow."""
    f, out = job.task.flow, job.outputs
    if f in ("single", "translate"):
        job.query, job.pos = (out[0], job.text) if job.task.query_is_output else (job.text, out[0])
    elif f == "bug_desc":
        job.query, job.pos = out[1], job.text
    elif f == "two_step_fresh":
        job.query, job.pos = out[0], out[1]
    elif f == "two_step_reuse":
        job.query, job.pos = _reuse_query(job), out[1]
    elif f == "similar_modify":
        job.query, job.pos = f"{out[1]}\n\n```\n{job.text.rstrip()}\n```", job.similar or ""
    elif f == "similar_compare":
        job.query, job.pos = _similar_query(job), out[1]


def _load_seen(paths: list[str]) -> tuple[set[str], set[str]]:
    """Query and first-positive hashes of earlier pairs files (cross-run dedup): `.parquet` with
    columns `query` (str) and `pos` (list of str), or JSON Lines records with the same fields (any
    other suffix). Null queries and positives are passed over; a file that cannot be read, or a
    record of another shape, is a UserError naming the key and `file` or `file:line`."""
    queries: set[str] = set()
    positives: set[str] = set()
    for p in paths:
        path = Path(p)  # existence checked by check_input_paths
        label = f"{PARAMS_LABEL}generate.dedup_against: "
        try:
            rows = _parquet_pairs(path) if path.suffix == ".parquet" else _jsonl_pairs(path)
        except UserError as exc:  # a reader's `file:line: reason`: say which params key named the file
            raise UserError(f"{label}{exc}") from None
        if not rows:
            log(f"warning: generate.dedup_against: {path} holds no pairs")
        for query, pos in rows:
            if query is not None:
                queries.add(_h(query))
            if pos is not None:
                positives.add(_h(pos))
    return queries, positives


def _parquet_pairs(path: Path) -> list[tuple[str | None, str | None]]:
    """(query, first positive) of each row of a pairs Parquet file."""
    try:
        df = pl.read_parquet(path)
    except PARQUET_READ_ERRORS as exc:  # any reader error is a bad input file
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path}: not a readable Parquet file ({first})") from None
    if "query" not in df.columns or "pos" not in df.columns:
        raise UserError(f"{path}: expected columns 'query' and 'pos'")
    df = check_dtypes(df, {"query": pl.String(), "pos": pl.List(pl.String())}, str(path))
    return list(zip(df["query"].to_list(), df["pos"].list.first().to_list()))


def _jsonl_pairs(path: Path) -> list[tuple[str | None, str | None]]:
    """(query, first positive) of each record of a pairs JSON Lines file (`{query, pos, ...}`)."""
    rows: list[tuple[str | None, str | None]] = []
    for no, obj in iter_jsonl(path):
        query, pos = obj.get("query"), obj.get("pos")
        if "query" not in obj or "pos" not in obj:
            raise UserError(f"{path}:{no}: expected fields 'query' and 'pos'")
        if query is not None and not isinstance(query, str):
            raise UserError(f"{path}:{no}: 'query' must be a string, got {type(query).__name__}")
        if pos is not None and not (isinstance(pos, list) and all(isinstance(x, str | None) for x in pos)):
            raise UserError(f"{path}:{no}: 'pos' must be a list of strings")
        rows.append((query, pos[0] if pos else None))
    return rows


def _h(text: str) -> str:
    return sha256_hex(normalize_text(text))


def _dedup(jobs: list[Job], seen_q: set[str], seen_p: set[str]) -> None:
    """Within a (task, language, code, target) group: drop a pair whose query or positive was already
    produced for another document, or that repeats a candidate of the same document exactly."""
    by_group: dict[tuple[Any, ...], tuple[dict[str, str], dict[str, str], set[tuple[str, str]]]] = defaultdict(
        lambda: ({}, {}, set()))
    for job in jobs:  # pair_id order
        if job.reason:
            continue
        q, p = _h(job.query), _h(job.pos)
        if q in seen_q:
            job.reason = "duplicate_query"
            continue
        if p in seen_p:
            job.reason = "duplicate_pos"
            continue
        qs, ps, pairs = by_group[(job.task.name, job.language, job.code_language, job.tgt)]
        if qs.get(q, job.doc_id) != job.doc_id:
            job.reason = "duplicate_query"
        elif ps.get(p, job.doc_id) != job.doc_id:
            job.reason = "duplicate_pos"
        elif (q, p) in pairs:
            job.reason = "duplicate_pair"
        else:
            qs.setdefault(q, job.doc_id)
            ps.setdefault(p, job.doc_id)
            pairs.add((q, p))


def too_many_failures(failures: int, requests: int, max_failed_fraction: float) -> bool:
    return failures > 0 and failures > max_failed_fraction * requests


def check_failures(stats: RunStats, max_failed_fraction: float, unsent: int = 0) -> None:
    """Raise `LLMFailures` when more than `max_failed_fraction` of this run's LLM requests failed.

    The fraction is of every request the pairs needed, cached or not, so the verdict does not depend
    on how much a previous run already paid for. Successful answers are in the cache already, so the
    re-run the error asks for sends only the failed requests, and the `unsent` ones an early stop
    (`Runner`) did not send."""
    if not too_many_failures(stats.llm_failures, stats.llm_requests, max_failed_fraction):
        return
    reason = " ".join((stats.first_error or "unknown error").split())[:300]
    ok = stats.llm_requests - stats.llm_failures - unsent
    stopped = f" Stopped early: the remaining {unsent} request{'s were' if unsent != 1 else ' was'} not sent." \
        if unsent else ""
    raise LLMFailures(
        f"generate: {stats.llm_failures} of {stats.llm_requests} LLM requests failed (generate.max_failed_fraction="
        f"{max_failed_fraction:g}); first failure: {reason}.{stopped} Nothing written; the {ok} answers are cached, "
        f"so re-running asks only for the failed {'and unsent ' if unsent else ''}ones")


def _later_requests(jobs: list[Job], params: GenerateParams, after: int) -> int:
    """At most how many LLM requests the rounds after round `after` (0, 1: generation steps; 2: QC;
    3: LLM negatives) can need, from the jobs not rejected yet. Added to the requests counted so
    far, it bounds the run's total, so the early stop fails only runs the final check would fail."""
    live = [j for j in jobs if not j.reason]
    n = 0
    if after < 1:
        n += sum(1 for j in live if j.task.uses_llm and len(j.task.steps) > 1)
    if after < 2 and params.qc:
        n += sum(1 for j in live if j.task.uses_llm)
    if after < 3:
        n += params.gen_hard_neg * len(live)
    return n


def generate_pairs(docs: pl.DataFrame, params: GenerateParams, backend: Backend | None,
                   cache: ResponseCache) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Run every flow over `docs`; returns (pairs sorted by pair_id, metrics). Documents with null
    or blank text are skipped, counted in metrics `docs_empty_text`. Raises `LLMFailures`
    (each answer received cached) when too many LLM requests failed: as soon as that is certain,
    without sending the remaining requests (see `Runner`), or at the end."""
    t0 = time.perf_counter()
    stats = RunStats()
    runner = Runner(backend, cache, stats, params.max_failed_fraction)
    fp = backend.fingerprint() if backend is not None else ""
    check_input_paths(params)
    seen_q, seen_p = _load_seen(params.dedup_against)  # bad files fail before any LLM call
    # as pair-similar does: a document without text has nothing to write a query from (and a null
    # one broke len()); skipped and counted, not an error, since the rest is still a useful run
    docs, docs_empty_text = drop_blank_text(check_dtypes(docs, {"text": pl.String()}, "docs"))
    if docs_empty_text:
        log(f"warning: generate: skipped {docs_empty_text} document(s) with null or blank text "
            f"(metrics: docs_empty_text)")
    jobs = expand_jobs(docs, params)
    for job in jobs:
        if job.task.uses_llm and len(job.text) > params.max_input_chars:
            job.reason = "input_too_long"
        elif job.task.needs_similar and not job.similar:
            job.reason = "no_similar"
        elif not job.task.uses_llm:
            _context_cut(job, params.seed)

    # generation steps (0, then 1 for the two-step flows)
    for step in (0, 1):
        active = [j for j in jobs if not j.reason and j.task.uses_llm and len(j.task.steps) > step]
        reqs = {}
        for j in active:
            examples = j.examples if (step == 1 or not j.task.multi_step) else []
            msgs = generation_messages(j.task, step, _step_inputs(j, step), j.language, j.code_language, j.tgt, examples)
            reqs[j.pair_id] = _request(fp, msgs, _sampling(params, j.seed(params.seed, f"step{step}")))
        results = (runner.run(list(reqs.values()), f"generate step {step + 1}", _later_requests(jobs, params, step))
                   if reqs else {})
        for j in active:
            is_code = not _step_is_text(j.task, step)
            source = "\n".join(t for _, t in _step_inputs(j, step))
            lang = None if is_code else j.language
            final = step == len(j.task.steps) - 1
            text = _take(j, results[reqs[j.pair_id].key], is_code, source, lang, params,
                         _quote_source(j.task, step, source, j.similar), j.task.max_words if final else None,
                         j.tgt if j.task.flow == "translate" else j.code_language)
            if text is not None and j.task.first_step_adds_a_note and step == 0:
                # the bug's description follows the buggy code; the query holds both, and step 1
                # fixes "the bug described after the code"
                note = note_after_code(results[reqs[j.pair_id].key].texts[0])
                if not note:
                    j.reason, text = "no_description", None
                else:
                    text = f"{text}\n\n{note}"
            if text is not None:
                j.outputs.append(text)
    for j in jobs:
        if not j.reason and j.task.uses_llm:
            _assemble(j)
            j.qc = "off"

    _dedup(jobs, seen_q, seen_p)

    if params.qc:
        judged = [j for j in jobs if not j.reason and j.task.uses_llm]
        reqs = {j.pair_id: _request(fp, qc_messages(j.task, retrieval_instruction(j.task, j.code_language, j.tgt),
                                                    j.query, j.pos),
                                    _sampling(params, j.seed(params.seed, "qc"), greedy=True)) for j in judged}
        results = runner.run(list(reqs.values()), "quality check", _later_requests(jobs, params, 2)) if reqs else {}
        for j in judged:
            res = results[reqs[j.pair_id].key]
            j.tokens_in += res.tokens_in
            j.tokens_out += res.tokens_out
            verdict = parse_verdict(res.texts[0]) if res.ok and res.texts else None
            if verdict is None:
                j.reason = "qc_unparseable" if res.ok else "llm_error"
            elif verdict != "1":
                j.reason = "qc_rejected"
            j.qc = f"judge:{verdict}" if verdict is not None else "judge:?"

    neg_rejected: Counter[str] = Counter()
    if params.gen_hard_neg:
        kept = [j for j in jobs if not j.reason]
        reqs_n = {}
        for j in kept:
            instr = retrieval_instruction(j.task, j.code_language, j.tgt)
            pos_is_code = j.task.positive_is_code
            msgs = hard_negative_messages(instr, j.query, j.pos, pos_is_code)
            reqs_n[j.pair_id] = [_request(fp, msgs, _sampling(params, j.seed(params.seed, f"neg{i}")))
                                 for i in range(params.gen_hard_neg)]
        flat = [r for rs in reqs_n.values() for r in rs]
        results = runner.run(flat, "hard negatives") if flat else {}
        for j in kept:
            seen = {_h(j.pos), _h(j.query)}
            pos_is_code = j.task.positive_is_code
            for r in reqs_n[j.pair_id]:
                res = results[r.key]
                j.tokens_in += res.tokens_in
                j.tokens_out += res.tokens_out
                if not res.ok or not res.texts:
                    neg_rejected["llm_error"] += 1
                    continue
                text = clean_reply(res.texts[0], pos_is_code)
                # a prose negative must be in the pair's language, as the prose positive is
                reason = check_output(text, res.finish_reasons[0] if res.finish_reasons else "stop", j.pos,
                                      None if pos_is_code else j.language, params.max_output_chars)
                if reason is None and _h(text) in seen:
                    reason = "duplicate"
                if reason is not None:
                    neg_rejected[reason] += 1
                    continue
                seen.add(_h(text))
                j.neg.append(text)

    check_failures(stats, params.max_failed_fraction)
    model_name = fp
    pairs = _frame([j for j in jobs if not j.reason], model_name)
    metrics = {**_metrics(jobs, stats), "docs_empty_text": docs_empty_text}
    log(timing_summary(time.perf_counter() - t0, stats))
    metrics["llm_retries"] = int(getattr(backend, "retries", 0))
    if params.gen_hard_neg:
        written = int(pairs["neg"].list.len().sum()) if pairs.height else 0
        metrics["hard_negatives"] = {"kept": written, "rejected": dict(sorted(neg_rejected.items()))}
    return pairs, metrics


SCHEMA = {
    "pair_id": pl.String, "doc_id": pl.String, "task": pl.String, "language": pl.String,
    "code_language": pl.String, "tgt_code_language": pl.String, "prompt": pl.String, "query": pl.String,
    "pos": pl.List(pl.String), "neg": pl.List(pl.String), "model": pl.String, "candidate_idx": pl.Int64,
    "qc": pl.String, "tokens_in": pl.Int64, "tokens_out": pl.Int64,
}


def _frame(kept: list[Job], model: str) -> pl.DataFrame:
    rows = [{
        "pair_id": j.pair_id, "doc_id": j.doc_id, "task": j.task.name, "language": j.language,
        "code_language": j.code_language, "tgt_code_language": j.tgt,
        "prompt": retrieval_instruction(j.task, j.code_language, j.tgt), "query": j.query, "pos": [j.pos],
        "neg": j.neg, "model": model if j.task.uses_llm else CONTEXT_MODEL, "candidate_idx": j.cand,
        "qc": j.qc, "tokens_in": j.tokens_in, "tokens_out": j.tokens_out,
    } for j in kept]
    return pl.DataFrame(rows, schema=SCHEMA).sort("pair_id", maintain_order=True)


def timing_summary(seconds: float, stats: RunStats) -> str:
    """The run's wall-clock figures, for stderr only: they differ from run to run, so they stay out
    of the metrics file, which DVC tracks and which must be byte-identical for the same inputs."""
    if not stats.cache_misses:
        return f"generate: {seconds:.2f} s, no new LLM calls ({stats.cache_hits} cached answers)"
    rate = stats.new_tokens_out / stats.llm_seconds if stats.llm_seconds else 0.0
    calls = f"{stats.cache_misses} new LLM call{'s' if stats.cache_misses != 1 else ''}"
    return (f"generate: {seconds:.2f} s, {stats.llm_seconds:.2f} s in {calls}, "
            f"{stats.new_tokens_out} new tokens out at {rate:.1f} tokens/s ({stats.cache_hits} cached answers)")


def _metrics(jobs: list[Job], stats: RunStats) -> dict[str, Any]:
    """Counts only (deterministic for the same inputs, params and cache state): no wall-clock
    figures, see `timing_summary`."""
    per_task: dict[str, dict[str, Any]] = {}
    for j in jobs:
        t = per_task.setdefault(j.task.name, {"requested": 0, "kept": 0, "rejected": Counter()})
        t["requested"] += 1
        if j.reason:
            t["rejected"][j.reason] += 1
        else:
            t["kept"] += 1
    kept = sum(t["kept"] for t in per_task.values())
    return {
        "requested": len(jobs),
        "kept": kept,
        "rejected": len(jobs) - kept,
        "rejected_by_reason": dict(sorted(Counter(j.reason for j in jobs if j.reason).items())),
        "per_task": {k: {**v, "rejected": dict(sorted(v["rejected"].items()))} for k, v in sorted(per_task.items())},
        "cache_hits": stats.cache_hits,
        "cache_misses": stats.cache_misses,
        "llm_calls": stats.cache_misses,
        "llm_requests": stats.llm_requests,
        "llm_failures": stats.llm_failures,
        "tokens_in": sum(j.tokens_in for j in jobs),
        "tokens_out": sum(j.tokens_out for j in jobs),
        "new_tokens_in": stats.new_tokens_in,
        "new_tokens_out": stats.new_tokens_out,
    }


def jsonl_path(root: Path, language: str, task: str, code: str, tgt: str | None) -> Path:
    """The original's layout: <lang>/<task>/<lang>-<code>[-to-<tgt>]-triplets.jsonl."""
    suffix = f"-to-{tgt}" if tgt else ""
    return root / language / task / f"{language}-{code}{suffix}-triplets.jsonl"


def jsonl_groups(pairs: pl.DataFrame, root: Path) -> dict[Path, list[dict[str, Any]]]:
    """FlagEmbedding records `{prompt, query, pos, neg}` grouped by output file, in pair_id order."""
    out: dict[Path, list[dict[str, Any]]] = defaultdict(list)
    for r in pairs.iter_rows(named=True):
        path = jsonl_path(root, r["language"], r["task"], r["code_language"], r["tgt_code_language"])
        out[path].append({"prompt": r["prompt"], "query": r["query"], "pos": r["pos"], "neg": r["neg"]})
    return dict(sorted(out.items()))


def make_backend(params: GenerateParams) -> Backend | None:
    """The configured backend, checked before any LLM call (model file, API key, endpoint probe).
    None when no requested task needs an LLM."""
    if not any(TASKS[t].uses_llm for t in params.tasks):
        return None
    if params.backend == "llama-cpp":
        from tripleforge.llm.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(params.model_path, n_ctx=params.n_ctx, n_threads=params.n_threads)
    if params.backend == "openai":
        from tripleforge.llm.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(params.base_urls, model=params.model, api_key_env=params.api_key_env,
                                   concurrency=params.concurrency, timeout_s=params.timeout_s,
                                   max_retries=params.max_retries)
    from tripleforge.llm.vllm_backend import VllmBackend

    return VllmBackend(params.model or params.model_path)
