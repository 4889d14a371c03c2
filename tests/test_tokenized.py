"""Pre-tokenized shards with the bundled MiniLM tokenizer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tripleforge.errors import UserError
from tripleforge.tokenized import (
    build_tokenized,
    load_tokenized,
    load_tokenizer,
    model_max_positions,
    resolve_tokenizer_dir,
    tokenize_truncated,
)

RECS = [
    {"query": "sort a list", "prompt": "Find code.", "pos": ["def s(x): return sorted(x)"], "neg": ["def f(): pass", "x = 1"]},
    {"query": "add numbers", "pos": ["def add(a, b): return a + b"], "neg": ["print('hi')"]},
    {"query": "third", "pos": ["p"], "neg": ["n"]},
]


def test_shards_equal_direct_tokenization(tmp_path: Path) -> None:
    man = build_tokenized({"en/t": RECS}, tmp_path, "minilm", 16, 24, shard_rows=2)
    assert man["datasets"]["en/t"] == {"rows": 3, "shards": ["shard-00000.arrow", "shard-00001.arrow"], "passages": 7,
                                       "queries_truncated": 0, "passages_truncated": 0}
    df = load_tokenized(tmp_path, "en/t", expect_tokenizer="minilm")
    tok = load_tokenizer("minilm")
    assert df["query_ids"].to_list()[0] == tok("Find code. sort a list", truncation=True, max_length=16)["input_ids"]
    assert df["passage_ids"].to_list()[1] == [tok(t, truncation=True, max_length=24)["input_ids"]
                                              for t in RECS[1]["pos"] + RECS[1]["neg"]]
    assert all(len(q) <= 16 for q in df["query_ids"].to_list())


# MiniLM ids are [CLS] + one token per single letter + [SEP]. Queries at query_max_len=6: the prompt
# counts ("p q a b c": 7 ids, cut), a query of exactly 6 ids is not cut, 7 ids are. Passages at
# passage_max_len=5: "x y z w" (6) and "u v w x y z" (8) are cut, "x y z" (5, the limit) is not.
LONG = [
    {"query": "a b c", "prompt": "p q", "pos": ["x y z"], "neg": ["x y z w"]},
    {"query": "a b c d", "pos": ["x"], "neg": ["u v w x y z"]},
    {"query": "a b c d e", "pos": ["q"], "neg": ["q r"]},
]


def test_truncated_texts_are_counted(tmp_path: Path) -> None:
    tok = load_tokenizer("minilm")
    assert [len(tok(t)["input_ids"]) for t in ("p q a b c", "a b c d", "a b c d e")] == [7, 6, 7]
    man = build_tokenized({"en/long": LONG, "en/t": RECS}, tmp_path, "minilm", 6, 5, shard_rows=10)
    assert man["datasets"]["en/long"] == {"rows": 3, "shards": ["shard-00000.arrow"], "passages": 6,
                                          "queries_truncated": 2, "passages_truncated": 2}
    # RECS: "Find code. sort a list" (8 ids) of the queries; of the passages the 4 code ones but
    # "x = 1" (5 ids): the same as counting the untruncated ids
    assert man["datasets"]["en/t"]["queries_truncated"] == 1 and man["datasets"]["en/t"]["passages_truncated"] == 4
    assert sum(len(tok(t)["input_ids"]) > 5 for r in RECS for t in r["pos"] + r["neg"]) == 4
    # at lengths nothing reaches, nothing is counted
    man = build_tokenized({"en/long": LONG}, tmp_path, "minilm", 7, 8, shard_rows=10)
    assert (man["datasets"]["en/long"]["queries_truncated"], man["datasets"]["en/long"]["passages_truncated"]) == (0, 0)


class _NoOverflowInfo:
    """A tokenizer whose output has no per-text encodings (as a non-Rust tokenizer's)."""

    def __init__(self, tok: object) -> None:
        self.tok = tok

    def __call__(self, texts: list[str], **kwargs: object) -> dict:
        return dict(self.tok(texts, **kwargs))  # type: ignore[operator]


def test_truncation_count_without_overflow_info() -> None:
    tok = load_tokenizer("minilm")
    texts = ["a b c", "a b c d", "a b c d e", "u v w x y z", ""]
    fast = tokenize_truncated(texts, tok, 6)
    assert fast[1] == 2
    assert tokenize_truncated(texts, _NoOverflowInfo(tok), 6) == fast
    assert tokenize_truncated([], tok, 6) == ([], 0)


def test_shards_are_byte_identical_across_runs(tmp_path: Path) -> None:
    build_tokenized({"en/t": RECS}, tmp_path / "a", "minilm", 16, 24, shard_rows=10)
    build_tokenized({"en/t": RECS}, tmp_path / "b", "minilm", 16, 24, shard_rows=10)
    for rel in ("manifest.json", "en/t/shard-00000.arrow"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="manifest.json: not found"):
        load_tokenized(tmp_path, "en/t")
    build_tokenized({"en/t": RECS}, tmp_path, "minilm", 8, 8, shard_rows=10)
    with pytest.raises(UserError, match="no dataset 'zh/t'"):
        load_tokenized(tmp_path, "zh/t")
    # the path came from the argument, not from params.yaml: the error says so
    with pytest.raises(UserError, match=r"^load_tokenized\(expect_tokenizer=\.\.\.\): '/nonexistent/tok' is not a local"):
        load_tokenized(tmp_path, "en/t", expect_tokenizer="/nonexistent/tok")


def _resaved(root: Path, **kwargs: object) -> Path:
    """The bundled MiniLM tokenizer as a fine-tuning run saves it (``kwargs`` go to from_pretrained)."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(resolve_tokenizer_dir("minilm")), **kwargs).save_pretrained(root)
    return root


def test_a_resaved_tokenizer_is_accepted(tmp_path: Path) -> None:
    """save_pretrained rewrites tokenizer.json with other bytes and drops vocab.txt and
    special_tokens_map.json, but gives the same ids: the shards suit the fine-tuned model's tokenizer."""
    build_tokenized({"en/t": RECS}, tmp_path / "out", "minilm", 16, 24, shard_rows=10)
    once = _resaved(tmp_path / "once")
    assert (once / "tokenizer.json").read_bytes() != (resolve_tokenizer_dir("minilm") / "tokenizer.json").read_bytes()
    assert not (once / "vocab.txt").exists() and not (once / "special_tokens_map.json").exists()
    twice = tmp_path / "twice"
    load_tokenizer(str(once)).save_pretrained(twice)
    expected = load_tokenized(tmp_path / "out", "en/t", expect_tokenizer="minilm")
    for folder in (once, twice):
        assert load_tokenized(tmp_path / "out", "en/t", expect_tokenizer=str(folder)).equals(expected)


def _added_token(root: Path) -> Path:
    tok = load_tokenizer("minilm")
    tok.add_tokens(["tripleforge"])
    tok.save_pretrained(root)
    return root


def _cut_at_the_start(root: Path) -> Path:
    tok = load_tokenizer("minilm")
    tok.truncation_side = "left"
    tok.save_pretrained(root)
    return root


def _swapped_ids(root: Path) -> Path:
    """A vocab.txt-only folder with the ids of 'the' and 'of' swapped: the same tokens, other ids."""
    src = resolve_tokenizer_dir("minilm")
    lines = (src / "vocab.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    i, j = lines.index("the\n"), lines.index("of\n")
    lines[i], lines[j] = lines[j], lines[i]
    root.mkdir()
    (root / "vocab.txt").write_text("".join(lines), encoding="utf-8")
    (root / "tokenizer_config.json").write_text((src / "tokenizer_config.json").read_text())
    return root


@pytest.mark.parametrize("make", [_added_token, _cut_at_the_start, _swapped_ids,
                                  lambda root: _resaved(root, do_lower_case=False)],
                         ids=["added token", "truncation side", "swapped ids", "cased"])
def test_another_tokenizer_is_refused(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    build_tokenized({"en/t": RECS}, tmp_path / "out", "minilm", 16, 24, shard_rows=10)
    other = make(tmp_path / "other")
    with pytest.raises(UserError, match=r"^\S*manifest.json: shards were made by another tokenizer than '\S*other'$"):
        load_tokenized(tmp_path / "out", "en/t", expect_tokenizer=str(other))


def _file_hash(model_dir: Path) -> str:
    """The fingerprint manifests held before fingerprints by ids: a hash of the tokenizer files."""
    h = hashlib.sha256()
    for name in ("special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if (model_dir / name).is_file():
            h.update(name.encode())
            h.update((model_dir / name).read_bytes())
    return h.hexdigest()[:16]


def test_shards_from_before_fingerprints_by_ids(tmp_path: Path) -> None:
    """Such shards still load with the files that made them; otherwise the error says to rebuild them
    (a re-saved copy of their tokenizer cannot be told from another one by file bytes)."""
    build_tokenized({"en/t": RECS}, tmp_path / "out", "minilm", 16, 24, shard_rows=10)
    man_path = tmp_path / "out" / "manifest.json"
    man = json.loads(man_path.read_text())
    man["tokenizer_fingerprint"] = _file_hash(resolve_tokenizer_dir("minilm"))
    man_path.write_text(json.dumps(man))
    assert load_tokenized(tmp_path / "out", "en/t", expect_tokenizer="minilm").height == 3
    with pytest.raises(UserError, match=r"^\S*manifest.json: shards predate .* than '\S*resaved' "
                                        r"\(rebuild them: dvc repro train-data\)$"):
        load_tokenized(tmp_path / "out", "en/t", expect_tokenizer=str(_resaved(tmp_path / "resaved")))


@pytest.mark.parametrize(("query_max_len", "passage_max_len", "key"), [(1, 24, "query_max_len"), (16, 2, "passage_max_len")])
def test_max_len_must_leave_room_past_special_tokens(tmp_path: Path, query_max_len: int, passage_max_len: int,
                                                     key: str) -> None:
    # MiniLM adds [CLS] and [SEP]: 1 would not truncate at all, 2 would keep no text
    with pytest.raises(UserError, match=rf"train_data.tokenizer.{key}: .* 2 special tokens \(use at least 3\)"):
        build_tokenized({"en/t": RECS}, tmp_path, "minilm", query_max_len, passage_max_len, shard_rows=10)
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.parametrize(("query_max_len", "passage_max_len", "key"),
                         [(513, 24, "query_max_len"), (16, 100000, "passage_max_len")])
def test_max_len_must_fit_the_model_positions(tmp_path: Path, query_max_len: int, passage_max_len: int,
                                              key: str) -> None:
    # MiniLM has 512 positions: longer ids would make the trainer index out of range
    with pytest.raises(UserError, match=rf"^params.yaml: train_data.tokenizer.{key}: {max(query_max_len, passage_max_len)} "
                                        r"is more than the model's 512 positions .*use at most 512\)$"):
        build_tokenized({"en/t": RECS}, tmp_path, "minilm", query_max_len, passage_max_len, shard_rows=10)
    assert not (tmp_path / "manifest.json").exists()
    build_tokenized({"en/t": RECS}, tmp_path, "minilm", 512, 512, shard_rows=10)  # the limit itself is fine


def _tokenizer_copy(root: Path, config: dict | None, model_max_length: int | None) -> Path:
    """The MiniLM tokenizer files with another config.json / model_max_length."""
    import json
    import shutil

    src = resolve_tokenizer_dir("minilm")
    root.mkdir()
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, root / name)
    tcfg = json.loads((src / "tokenizer_config.json").read_text())
    tcfg.pop("model_max_length")
    if model_max_length is not None:
        tcfg["model_max_length"] = model_max_length
    (root / "tokenizer_config.json").write_text(json.dumps(tcfg))
    if config is not None:
        (root / "config.json").write_text(json.dumps(config))
    return root


def test_model_limit_sources(tmp_path: Path) -> None:
    # no model_max_length (the 1e30 sentinel): the config's positions are the limit
    cfg_only = _tokenizer_copy(tmp_path / "a", {"max_position_embeddings": 64}, None)
    assert load_tokenizer(str(cfg_only)).model_max_length > 10**20
    assert model_max_positions(load_tokenizer(str(cfg_only)), cfg_only) == (64, "max_position_embeddings in config.json")
    with pytest.raises(UserError, match=r"passage_max_len: 65 is more than the model's 64 positions"):
        build_tokenized({"en/t": RECS}, tmp_path / "out", str(cfg_only), 16, 65, shard_rows=10)
    # RoBERTa-style: 2 of the config's positions are padding; the tokenizer's limit is the real one
    both = _tokenizer_copy(tmp_path / "b", {"max_position_embeddings": 514}, 512)
    assert model_max_positions(load_tokenizer(str(both)), both) == (512, "the tokenizer's model_max_length")
    # neither says: no upper bound is enforced
    neither = _tokenizer_copy(tmp_path / "c", None, None)
    assert model_max_positions(load_tokenizer(str(neither)), neither) is None
    build_tokenized({"en/t": RECS}, tmp_path / "out", str(neither), 16, 4096, shard_rows=10)


def test_a_folder_that_is_not_a_tokenizer_names_the_key(tmp_path: Path) -> None:
    """An existing folder without tokenizer files made transformers raise a multi-line traceback about
    sentencepiece/tiktoken; a broken tokenizer.json a JSONDecodeError."""
    with pytest.raises(UserError, match=r"^params.yaml: train_data.tokenizer.model: '.*' is not a tokenizer folder "
                                        r"\(none of tokenizer.json, "):
        load_tokenizer(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("not json")
    with pytest.raises(UserError, match=r"^params.yaml: train_data.tokenizer.model: '.*' could not be loaded as a "
                                        r"tokenizer \(JSONDecodeError: [^\n]*\)$"):
        load_tokenizer(str(tmp_path))
