"""Pre-tokenized shards with the bundled MiniLM tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripleforge.errors import UserError
from tripleforge.tokenized import build_tokenized, load_tokenized, load_tokenizer

RECS = [
    {"query": "sort a list", "prompt": "Find code: ", "pos": ["def s(x): return sorted(x)"], "neg": ["def f(): pass", "x = 1"]},
    {"query": "add numbers", "pos": ["def add(a, b): return a + b"], "neg": ["print('hi')"]},
    {"query": "third", "pos": ["p"], "neg": ["n"]},
]


def test_shards_equal_direct_tokenization(tmp_path: Path) -> None:
    man = build_tokenized({"en/t": RECS}, tmp_path, "minilm", 16, 24, shard_rows=2)
    assert man["datasets"]["en/t"] == {"rows": 3, "shards": ["shard-00000.arrow", "shard-00001.arrow"]}
    df = load_tokenized(tmp_path, "en/t", expect_tokenizer="minilm")
    tok = load_tokenizer("minilm")
    assert df["query_ids"].to_list()[0] == tok("Find code: sort a list", truncation=True, max_length=16)["input_ids"]
    assert df["passage_ids"].to_list()[1] == [tok(t, truncation=True, max_length=24)["input_ids"]
                                              for t in RECS[1]["pos"] + RECS[1]["neg"]]
    assert all(len(q) <= 16 for q in df["query_ids"].to_list())


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
    with pytest.raises(UserError, match="not a local directory"):
        load_tokenized(tmp_path, "en/t", expect_tokenizer="/nonexistent/tok")


@pytest.mark.parametrize(("query_max_len", "passage_max_len", "key"), [(1, 24, "query_max_len"), (16, 2, "passage_max_len")])
def test_max_len_must_leave_room_past_special_tokens(tmp_path: Path, query_max_len: int, passage_max_len: int,
                                                     key: str) -> None:
    # MiniLM adds [CLS] and [SEP]: 1 would not truncate at all, 2 would keep no text
    with pytest.raises(UserError, match=rf"train_data.tokenizer.{key}: .* 2 special tokens \(use at least 3\)"):
        build_tokenized({"en/t": RECS}, tmp_path, "minilm", query_max_len, passage_max_len, shard_rows=10)
    assert not (tmp_path / "manifest.json").exists()
