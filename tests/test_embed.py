"""Encoders and the embedding cache, with the real bundled MiniLM."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from tripleforge import embed
from tripleforge.embed import EmbedderConfig, encode_documents, encode_queries, format_queries
from tripleforge.embed_cache import EmbeddingCache
from tripleforge.errors import UserError

DOCS = ["def add(a, b):\n    return a + b", "class Stack:\n    def push(self, x): ...", "import os\nprint(os.getcwd())"]


def test_encode_shapes_normalised_and_ranked(tmp_path):
    cfg = EmbedderConfig()
    d = encode_documents(DOCS, cfg, cache_dir=str(tmp_path))
    q = encode_queries(["add two numbers"], cfg, cache_dir=str(tmp_path))
    assert d.shape == (3, 384) and q.shape == (1, 384) and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    assert int(np.argmax(d @ q[0])) == 0  # the adder is the best match for "add two numbers"


def test_second_encode_hits_cache_only(tmp_path):
    cfg = EmbedderConfig()
    texts = [f"def f{i}(x): return x * {i}" for i in range(5)]
    before = dict(embed.ENCODE_STATS)
    first = encode_documents(texts, cfg, cache_dir=str(tmp_path))
    mid = dict(embed.ENCODE_STATS)
    assert mid["encoded"] - before["encoded"] == 5
    second = encode_documents(texts + texts[:2], cfg, cache_dir=str(tmp_path))
    after = dict(embed.ENCODE_STATS)
    assert after["encoded"] == mid["encoded"]  # nothing reached the model
    np.testing.assert_array_equal(second[:5], first)
    np.testing.assert_array_equal(second[5:], first[:2])


def test_cache_key_depends_on_the_kernels(monkeypatch):
    """A cache filled under AVX2 kernels once gave an AVX-512 machine those vectors (outputs then
    depended on which machine filled the cache first)."""
    import subprocess
    import sys

    here = embed.config_key(EmbedderConfig())
    assert "torch " in here[1] and " cpu " in here[1]
    code = "from tripleforge import embed; from tripleforge.embed import EmbedderConfig; print(embed.config_key(EmbedderConfig())[0])"
    env = {k: v for k, v in __import__("os").environ.items() if k != "ATEN_CPU_CAPABILITY"}
    same = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()
    avx2 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "ATEN_CPU_CAPABILITY": "avx2"}, check=True).stdout.strip()
    assert same == here[0]
    assert (avx2 != here[0]) == (embed.compute_kernels("cpu").split(" cpu ")[1].split()[0] != "AVX2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert embed.config_key(EmbedderConfig())[0] != here[0]


def test_cache_key_depends_on_the_threads_a_batch_runs_on():
    """fp32 vectors from one thread and from two differed in the last bit on an Intel Xeon: a
    machine whose batches run on other thread counts must compute its own."""
    import torch

    before = torch.get_num_threads()
    try:
        keys = {}
        for threads in (1, 2, 6):  # batches of 1, 1 and 2 threads (2 and 3 streams side by side)
            torch.set_num_threads(threads)
            keys[threads] = embed.config_key(EmbedderConfig(dtype="float32"))
        assert keys[1] == keys[2] != keys[6] and keys[6][1].endswith(" x2")
        int8 = [embed.config_key(EmbedderConfig(quantize="int8"))[0]]  # ONNX Runtime: one thread per text
        torch.set_num_threads(1)
        assert embed.config_key(EmbedderConfig(quantize="int8"))[0] == int8[0]
    finally:
        torch.set_num_threads(before)


def test_cache_key_depends_on_max_length_and_instruction(tmp_path):
    k64, _ = embed.config_key(EmbedderConfig(max_length=64))
    k256, _ = embed.config_key(EmbedderConfig(max_length=256))
    assert k64 != k256
    assert embed.config_key(EmbedderConfig(quantize="int8"))[0] != k256
    # the instruction is part of the model input string, hence of the text key
    a, b = format_queries(["q"], EmbedderConfig(), ["Find code."]), format_queries(["q"], EmbedderConfig())
    assert a == ["Find code. q"] and b == ["q"]  # one space: instructions are sentences
    before = embed.ENCODE_STATS["encoded"]
    encode_documents(["x = 1"], EmbedderConfig(max_length=64), cache_dir=str(tmp_path))
    encode_documents(["x = 1"], EmbedderConfig(max_length=256), cache_dir=str(tmp_path))
    assert embed.ENCODE_STATS["encoded"] - before == 2


def test_wrong_dimension_entry_is_reencoded(tmp_path):
    cfg = EmbedderConfig()
    good = encode_documents(["y = 2"], cfg, cache_dir=str(tmp_path))
    key, _ = embed.config_key(cfg)
    db = tmp_path / "embeddings.sqlite"
    unit7 = np.full(7, 7 ** -0.5, np.float32)  # of unit length: only its dimension is wrong
    with sqlite3.connect(db) as conn:  # corrupt the entry: a 7-dim vector under the 384-dim config
        conn.execute("UPDATE embeddings SET dim=7, vec=? WHERE config_key=?", (unit7.tobytes(), key))
    before = dict(embed.ENCODE_STATS)
    again = encode_documents(["y = 2"], cfg, cache_dir=str(tmp_path))
    assert again.shape == (1, 384)
    np.testing.assert_allclose(again, good, atol=1e-6)
    assert embed.ENCODE_STATS["rejected"] - before["rejected"] == 1
    assert embed.ENCODE_STATS["encoded"] - before["encoded"] == 1
    cache = EmbeddingCache(db)
    found, stats = cache.get_many(key, list(cache_keys(["y = 2"])), 384)
    assert stats.hits == 1 and next(iter(found.values())).shape == (384,)
    cache.close()
    with sqlite3.connect(db) as conn:  # right dimension, finite, but all zeros: no encoder writes that
        conn.execute("UPDATE embeddings SET vec=? WHERE config_key=?", (np.zeros(384, np.float32).tobytes(), key))
    before = dict(embed.ENCODE_STATS)
    np.testing.assert_allclose(encode_documents(["y = 2"], cfg, cache_dir=str(tmp_path)), good, atol=1e-6)
    assert embed.ENCODE_STATS["rejected"] - before["rejected"] == 1


def cache_keys(texts):
    from tripleforge.hashing import sha256_hex

    return [sha256_hex(t) for t in texts]


def test_decoder_last_token_left_padding_matches_single(tmp_path):
    """Batched left-padded encoding equals one-at-a-time encoding (pooling reads the real last token)."""
    cfg = EmbedderConfig(kind="decoder", batch_size=8)
    texts = ["short", "a considerably longer piece of text", "def f(x): return x", "longer " * 30]
    enc = embed.get_encoder(cfg)
    lengths = [len(ids) for ids in enc.tok(texts)["input_ids"]]
    batches = embed.length_bucket_batches(lengths, 8, enc.batch_tokens, cfg.max_length)
    assert any(len({lengths[i] for i in b}) > 1 for _, b in batches)  # some row really is left-padded
    batched = enc.encode(texts, 8)
    single = np.stack([enc.encode([t], 1)[0] for t in texts])
    assert np.array_equal(batched, single)
    q = format_queries(["sort a list"], cfg, ["Retrieve code"])
    assert q == ["<instruct>Retrieve code\n<query>sort a list"]


def test_missing_model_dir_is_user_error():
    with pytest.raises(UserError, match="embedder.model"):
        embed.config_key(EmbedderConfig(model="/nonexistent/model"))


def test_bad_embedder_settings_are_user_errors_before_any_work():
    from pydantic import ValidationError

    for bad in ({"device": "banana"}, {"max_length": 0}, {"batch_size": 0}, {"batch_tokens": -1}):
        with pytest.raises(ValidationError):
            EmbedderConfig(**bad)
    with pytest.raises(UserError, match="max_length: 1024 exceeds the 512 positions of model 'minilm'"):
        embed.config_key(EmbedderConfig(max_length=1024))
    if not __import__("torch").cuda.is_available():
        with pytest.raises(UserError, match="embedder.device: 'cuda:1' asked for, but torch.cuda.is_available"):
            embed.config_key(EmbedderConfig(device="cuda:1"))


def test_int8_quantized_agrees_with_fp32(tmp_path):
    texts = [f"def handler_{i}(request):\n    return request.json()['{i}']" for i in range(6)]
    fp32 = encode_documents(texts, EmbedderConfig(dtype="float32"), cache_dir=str(tmp_path))
    int8 = encode_documents(texts, EmbedderConfig(quantize="int8"), cache_dir=str(tmp_path))
    cos = (fp32 * int8).sum(axis=1)
    # ONNX Runtime int8: 0.993 worst case here (torch's fbgemm int8 gave 0.93); the benchmark
    # reports ranking agreement on 400 functions
    assert cos.min() > 0.985
    assert embed.get_encoder(EmbedderConfig(quantize="int8")).onnx is not None



@pytest.mark.parametrize("kind", ["sentence-transformers", "decoder"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_int8_with_half_precision_on_cpu_is_a_params_error(tmp_path, kind, dtype):
    """The decoder's int8 Linear under a bf16 autocast was a RuntimeError traceback mid-encode; the
    ONNX path ignored the dtype while the cache keyed the same vectors by it."""
    cfg = EmbedderConfig(kind=kind, quantize="int8", dtype=dtype, device="cpu")
    with pytest.raises(UserError, match=rf"embedder.dtype: {dtype} does not combine with quantize: int8 on CPU"):
        encode_documents(DOCS, cfg, cache_dir=str(tmp_path))
    assert embed.resolve_dtype(EmbedderConfig(quantize="int8", dtype="float32"), "cpu") == "float32"


def test_int8_load_says_int8_and_logs_no_library_advice(tmp_path, capfd):
    """The ONNX quantizer logged advice on model pre-processing (WARNING:root:...) in every stage;
    the load line did not say the encoder was int8."""
    cfg = EmbedderConfig(quantize="int8", max_length=200)  # a config no other test loads: a fresh export
    encode_documents(DOCS, cfg, cache_dir=str(tmp_path))
    err = capfd.readouterr().err
    assert "float32, int8)" in err and "WARNING" not in err and "pre-processing" not in err


def test_int8_runs_on_several_threads_give_the_one_thread_vectors():
    """Texts run side by side, one thread each: each vector is the one a lone run gives, in the
    caller's order, and an error in one run reaches the caller."""
    from tripleforge.onnx_int8 import run_all

    enc = embed.get_encoder(EmbedderConfig(quantize="int8"))
    session, names = enc.onnx
    texts = [f"def f{i}(x):\n    return x * {i}" + "  # pad" * i for i in range(12)]
    features = enc.model.preprocess(texts)
    widths = features["attention_mask"].sum(dim=1).tolist()
    serial = run_all(session, names, features, widths, False, 1)
    parallel = run_all(session, names, features, widths, False, 3)
    assert serial.shape == (12, 384) and np.array_equal(serial, parallel)
    assert len({v.tobytes() for v in serial}) == 12  # each row is its own text's vector
    with pytest.raises(Exception, match="out of data bounds"):
        run_all(session, names, {**features, "input_ids": features["input_ids"][:, :1] * 10**9}, widths, False, 2)


CODE = [
    "def add(a, b):\n    return a + b",
    "class LRU:\n    def __init__(self, n):\n        self.n = n\n        self.d = {}\n" * 12,
    "import json\n\ndef load(path):\n    with open(path) as fh:\n        return json.load(fh)",
    "SELECT id, name FROM users WHERE active = 1 ORDER BY name",
    "fn main() { println!(\"hello\"); }",
] + [f"def f{i}(x):\n    return x ** {i} + {i}" for i in range(20)]


def test_padded_width_is_the_next_multiple_of_the_step_within_max_length():
    assert [embed.padded_width(n, 256) for n in (0, 1, 16, 17, 250, 256)] == [0, 16, 16, 32, 256, 256]
    assert embed.padded_width(100, 100) == 100 and embed.padded_width(99, 100) == 100
    assert embed.padded_width(5, 256, step=1) == 5


def test_length_bucket_batches_cover_every_index_once_within_limits():
    lengths = [5, 256, 40, 40, 7, 250, 1, 33, 0, 120, 48, 36, 16]
    batches = embed.length_bucket_batches(lengths, max_rows=3, max_tokens=256, max_length=256)
    flat = [i for _, b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    widths = [w for w, _ in batches]
    assert widths == sorted(widths, reverse=True)  # widest first
    for width, b in batches:
        assert {embed.padded_width(lengths[i], 256) for i in b} == {width}
        # a batch is either all exact (no padding at all) or padded in every row
        assert len({lengths[i] == width for i in b}) == 1
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * width <= 256  # an over-wide row goes alone
    # width 48: the padded rows in input order, three at most, then the exact 48 apart
    assert [b for w, b in batches if w == 48] == [[2, 3, 7], [11], [10]]
    assert [b for w, b in batches if w == 256] == [[5], [1]]
    assert [b for w, b in batches if w == 16] == [[0, 4, 6], [12]]
    assert embed.length_bucket_batches([9, 9, 9, 9, 9, 2], 4, 0, 256) == [(16, [0, 1, 2, 3]), (16, [4, 5])]
    assert embed.length_bucket_batches([], 4, 256, 256) == []


@pytest.mark.parametrize("option", [{"dtype": "auto"}, {"dtype": "float32"}, {"quantize": "int8"}])
def test_a_vector_does_not_depend_on_the_texts_encoded_with_it(tmp_path, option):
    """The same text gets the same bits whether encoded alone, with others, or after others were
    cached: otherwise a warm cache would change the mined negatives (measured before the fix:
    up to 7e-4 apart in bf16 when padded into a batch; cosine 0.96 in int8, whose input range
    was the batch's)."""
    texts = CODE + [t.replace("return", "yield") for t in CODE[5:]]  # shared lengths, different texts
    cfg = EmbedderConfig(**option)
    together = encode_documents(texts, cfg, cache_dir=str(tmp_path / "a"))
    # warm cache: half the texts first, then all of them (the rest is encoded in other batches)
    encode_documents(texts[::2], cfg, cache_dir=str(tmp_path / "b"))
    staggered = encode_documents(texts, cfg, cache_dir=str(tmp_path / "b"))
    enc = embed.get_encoder(cfg)
    alone = np.stack([enc.encode([t], 1)[0] for t in texts])
    assert np.array_equal(together, staggered) and np.array_equal(together, alone)


def test_fp32_matches_plain_sentence_transformers_encode(tmp_path):
    """Token-budget batching changes batch shapes, not vectors: fp32 equals ST's own encode."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(embed.bundled_minilm_dir()), device="cpu")
    st.max_seq_length = 256
    ref = st.encode(CODE, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    ours = encode_documents(CODE, EmbedderConfig(device="cpu", dtype="float32", batch_tokens=64), cache_dir=str(tmp_path))
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_cpu_auto_dtype_is_bf16_autocast_only_with_native_bf16(tmp_path):
    auto, fp32 = EmbedderConfig(device="cpu"), EmbedderConfig(device="cpu", dtype="float32")
    native = embed.cpu_has_native_bf16()
    assert embed.resolve_dtype(auto, "cpu") == ("bfloat16" if native else "float32")
    assert embed.resolve_dtype(EmbedderConfig(device="cpu", quantize="int8"), "cpu") == "float32"
    assert (embed.config_key(auto)[0] != embed.config_key(fp32)[0]) == native  # the cache keeps them apart
    half = encode_documents(CODE, EmbedderConfig(device="cpu", dtype="bfloat16"), cache_dir=str(tmp_path))
    full = encode_documents(CODE, fp32, cache_dir=str(tmp_path))
    cos = (half * full).sum(axis=1)
    assert cos.min() > 0.999  # autocast keeps norms, softmax and pooling in fp32; measured >= 0.99997
    assert not np.array_equal(half, full)  # it really ran in bf16
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-5)


def test_bf16_linear_weights_give_the_vectors_of_autocast_over_fp32_weights():
    """The bf16 path stores Linear weights in bf16; autocast casts them to bf16 anyway, so the
    vectors must equal plain autocast over the fp32 model, batch for batch."""
    import torch
    from sentence_transformers import SentenceTransformer

    cfg = EmbedderConfig(device="cpu", dtype="bfloat16", batch_tokens=128)
    enc = embed.get_encoder(cfg)
    linear = [m for m in enc.model.modules() if isinstance(m, torch.nn.Linear)]
    norms = [m for m in enc.model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert linear and all(m.weight.dtype == torch.bfloat16 for m in linear)
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)

    st = SentenceTransformer(str(embed.bundled_minilm_dir()), device="cpu")
    st.max_seq_length = cfg.max_length
    over_fp32 = object.__new__(embed._STEncoder)  # the same encoder, fp32 weights, same batches
    over_fp32.__dict__.update({**enc.__dict__, "model": st.eval()})
    assert all(m.weight.dtype == torch.float32 for m in st.modules() if isinstance(m, torch.nn.Linear))
    np.testing.assert_allclose(enc.encode(CODE, cfg.batch_size), over_fp32.encode(CODE, cfg.batch_size), atol=1e-7)


def test_errors_of_an_embedder_from_the_params_name_its_full_key(monkeypatch):
    """`embedder.device: ...` named no section; a config read from params now names its own key
    (`params.yaml: ` is replaced by the stage with the file read, or --set)."""
    import torch

    from tripleforge.evaluation import EvaluateParams
    from tripleforge.mining import MineParams
    from tripleforge.params import validate_params

    mine = validate_params(MineParams, "mine_negatives", {"embedder": {"max_length": 100000}}).embedder
    with pytest.raises(UserError) as err:
        embed.config_key(mine)
    assert str(err.value) == ("params.yaml: mine_negatives.embedder.max_length: 100000 exceeds the 512 positions of "
                              "model 'minilm' (mine_negatives.embedder.model)")
    evaluate = validate_params(EvaluateParams, "evaluate", {"models": [{"name": "a"}, {"name": "b", "model": "/no"}]})
    with pytest.raises(UserError, match=r"^params.yaml: evaluate.models.1.model: '/no' is not a local model directory"):
        embed.config_key(evaluate.models[1].embedder())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cuda = validate_params(MineParams, "mine_negatives", {"embedder": {"device": "cuda"}}).embedder
    for call in (embed.config_key, embed.get_encoder):
        with pytest.raises(UserError, match=r"^params.yaml: mine_negatives.embedder.device: 'cuda' asked for"):
            call(cuda)
    # a config built in code keeps the short form
    with pytest.raises(UserError, match=r"^embedder.device: 'cuda' asked for"):
        embed.config_key(EmbedderConfig(device="cuda"))


def test_no_progress_also_silences_the_model_loading_bar(tmp_path):
    """TRIPLEFORGE_NO_PROGRESS=1 left transformers' "Loading weights" bar on stderr."""
    import os
    import subprocess
    import sys

    code = "from tripleforge.embed import EmbedderConfig, get_encoder; get_encoder(EmbedderConfig(device='cpu'))"
    # an earlier test that loaded a model under TRIPLEFORGE_NO_PROGRESS=1 left this in os.environ
    # (quiet_library_bars), and it would hide the bar of the second run as well
    env = {**{k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}, "HF_HUB_OFFLINE": "1"}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                           env={**env, "TRIPLEFORGE_NO_PROGRESS": "1"}, cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert "Loading weights" not in quiet.stderr and quiet.stderr.startswith("loading embedder ")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                           env={**env, "TRIPLEFORGE_NO_PROGRESS": "0"}, cwd=tmp_path)
    assert "Loading weights" in shown.stderr  # the check above can fail: the bar exists


def test_a_folder_that_is_not_a_model_is_a_user_error_naming_its_key(tmp_path):
    """An existing folder that is no model made transformers raise "Unrecognized model" (a traceback)."""
    import json

    from tripleforge.evaluation import EvaluateParams
    from tripleforge.mining import MineParams
    from tripleforge.params import validate_params

    def mine(path):
        return validate_params(MineParams, "mine_negatives", {"embedder": {"model": str(path)}}).embedder

    with pytest.raises(UserError, match=r"^params.yaml: mine_negatives.embedder.model: '.*' is not a model folder "
                                        r"\(no config.json or modules.json in it\)$"):
        embed.config_key(mine(tmp_path))
    evaluate = validate_params(EvaluateParams, "evaluate", {"models": [{"name": "a", "model": str(tmp_path)}]})
    with pytest.raises(UserError, match=r"^params.yaml: evaluate.models.0.model: '.*' is not a model folder"):
        embed.get_encoder(evaluate.models[0].embedder())
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match=r"is not a model folder \(config.json is not readable JSON: "):
        embed.config_key(mine(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match=r"is not a model folder \(its config.json has no model_type\)$"):
        embed.config_key(mine(tmp_path))
    # passes the cheap check, but the loader refuses it (no weights): still one line naming the key
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    for kind in ("sentence-transformers", "decoder"):
        cfg = validate_params(MineParams, "mine_negatives", {"embedder": {"model": str(tmp_path), "kind": kind,
                                                                          "device": "cpu"}}).embedder
        with pytest.raises(UserError, match=rf"^params.yaml: mine_negatives.embedder.model: '.*' could not be loaded "
                                            rf"as a {kind} model \(OSError: [^\n]*\)$"):
            embed.get_encoder(cfg)


@pytest.mark.parametrize(("fmt", "message"), [
    ("{foo}", r"unknown placeholder \{foo\}"),
    ("{instruction} {query} {", "unpaired brace"),
    ("no placeholders", r"no \{query\} placeholder"),
    ("{instruction}", r"no \{query\} placeholder"),
    ("{} {}", "positional placeholder"),
])
def test_query_instruction_format_is_checked_when_params_are_read(fmt, message):
    """A bad format was a KeyError/ValueError at encode time; one without {query} embedded every
    query as the same string."""
    from tripleforge.pairing import PairSimilarParams
    from tripleforge.params import validate_params

    with pytest.raises(UserError, match=rf"^params: params key 'pair_similar.embedder.query_instruction_format': "
                                        rf".*{message}"):
        validate_params(PairSimilarParams, "pair_similar", {"embedder": {"query_instruction_format": fmt}})


def test_valid_query_instruction_formats_still_format():
    for fmt in ("{query}", "query: {query}", "{{literal}} {instruction}: {query}", embed.DECODER_QUERY_FORMAT):
        cfg = EmbedderConfig(query_instruction_format=fmt, query_instruction="Find")
        assert "sort" in format_queries(["sort"], cfg)[0]
    assert format_queries(["q"], EmbedderConfig(query_instruction_format="{{x}} {instruction}: {query}",
                                                 query_instruction="I")) == ["{x} I: q"]


def test_cache_dir_that_cannot_be_created_names_the_section_key(tmp_path, monkeypatch):
    """An existing file as `cache_dir` was a FileExistsError traceback."""
    from tripleforge.pairing import PairSimilarParams
    from tripleforge.params import validate_params

    afile = tmp_path / "afile.jsonl"
    afile.write_text("{}\n")
    cfg = validate_params(PairSimilarParams, "pair_similar", {}).embedder
    before = dict(embed.ENCODE_STATS)
    with pytest.raises(UserError, match=r"^params.yaml: pair_similar.cache_dir: '.*afile.jsonl' cannot be created as "
                                        r"a cache directory \(a file of that name is in the way\)$"):
        encode_documents(DOCS, cfg, cache_dir=str(afile))
    assert embed.ENCODE_STATS == before  # nothing encoded
    monkeypatch.setenv("TRIPLEFORGE_CACHE_DIR", str(afile))
    with pytest.raises(UserError, match=r"^\$TRIPLEFORGE_CACHE_DIR: '.*afile.jsonl' cannot be created"):
        encode_documents(DOCS, cfg)


def test_a_cross_encoder_folder_is_refused_as_an_embedder(tmp_path):
    """A FlagEmbedding reranker output loaded as an embedder dropped its head silently and was
    scored like an untrained bi-encoder (nDCG@10 0.658 for a reranker in a tryout)."""
    import shutil

    ce = tmp_path / "reranker"
    shutil.copytree(embed.bundled_minilm_dir(), ce)
    (ce / "modules.json").unlink()
    config = json.loads((ce / "config.json").read_text())
    config["architectures"] = ["BertForSequenceClassification"]
    (ce / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"^embedder.model: '.*reranker' is a cross-encoder \(reranker\), not an embedder"):
        embed.config_key(EmbedderConfig(model=str(ce)))
    st_ce = tmp_path / "st_ce"
    shutil.copytree(embed.bundled_minilm_dir(), st_ce)
    (st_ce / "config_sentence_transformers.json").write_text(json.dumps({"model_type": "CrossEncoder"}))
    with pytest.raises(UserError, match="is a cross-encoder"):
        embed.get_encoder(EmbedderConfig(model=str(st_ce)))


def test_pooling_auto_on_a_folder_without_modules_json_says_what_it_does(tmp_path, capsys):
    """FlagEmbedding saves no modules.json and trains with CLS pooling by default; sentence-
    transformers then pools by mean, and the model was scored with the wrong vectors in silence."""
    import shutil

    bare = tmp_path / "fe-output"
    shutil.copytree(embed.bundled_minilm_dir(), bare)
    for name in ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"):
        (bare / name).unlink()
    shutil.rmtree(bare / "1_Pooling")
    embed.get_encoder(EmbedderConfig(model=str(bare), max_length=64)).encode(["def f(): pass"], 1)
    err = capsys.readouterr().err
    assert "warning: embedder.pooling: auto, and" in err and "has no modules.json" in err and "pooled by mean" in err
    embed.get_encoder(EmbedderConfig(model=str(bare), max_length=64, pooling="cls"))
    assert "warning" not in capsys.readouterr().err


def test_a_bidirectional_encoder_loaded_as_decoder_is_named_in_a_warning(capsys):
    # the bundled MiniLM (BERT) as kind: decoder runs, but last-token pooling reads its [SEP]
    embed._DecoderEncoder(embed.bundled_minilm_dir(), EmbedderConfig(kind="decoder"), "cpu", "float32")
    err = capsys.readouterr().err
    assert "warning: embedder.kind: decoder, but 'minilm' is a bidirectional encoder (bert)" in err


_ENCODE_WHEN_TOLD = """
import sys, time
from pathlib import Path
from tripleforge import embed
embed._WRITE_CHUNK = 4
cfg = embed.EmbedderConfig()
embed.get_encoder(cfg)  # loaded before the start, so both runs encode at once
Path(sys.argv[3]).write_text("")
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
texts = [f"def f{i}(x):\\n    return x * {i} + {i * i}" for i in range(48)]
vecs = embed.encode_documents(texts, cfg, cache_dir=sys.argv[1])
print(embed.ENCODE_STATS["encoded"], float(vecs.sum()))
"""


def test_two_runs_encoding_one_pool_encode_each_text_once(tmp_path):
    """`dvc queue start -j 2` over two mining experiments: both runs found the pool missing from
    the cache and encoded all of it (the cache was read once, before the first chunk). Each chunk
    is now claimed first; a run leaves the other's chunks to it and reads them at the end."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRIPLEFORGE_NO_PROGRESS": "1"}
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    runs = [subprocess.Popen([sys.executable, "-c", _ENCODE_WHEN_TOLD, str(tmp_path / "cache"), str(go), str(r)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for r in ready]
    import time

    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and all(p.poll() is None for p in runs) and time.monotonic() < deadline:
        time.sleep(0.05)  # both have loaded the model
    go.write_text("")
    outs = [r.communicate(timeout=300) for r in runs]
    assert all(r.returncode == 0 for r in runs), outs
    encoded, sums = zip(*(o.split() for o, _ in outs))
    assert sum(map(int, encoded)) == 48 and len(set(sums)) == 1, outs  # each text once; equal vectors
