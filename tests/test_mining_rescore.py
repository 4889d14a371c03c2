"""`mine_negatives.rescore_model`: only a trained cross-encoder is accepted, checked before any
encoding, loaded once; its teacher scores are the cross-encoder's and the same on every run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

from test_mining import ROOT, _no_encoding, make_pairs, make_pool
from tripleforge.embed import bundled_minilm_dir
from tripleforge.errors import UserError
from tripleforge.io import write_parquet
from tripleforge.mining import MineParams, mine_negatives, resolve_rescore_model


def _tiny_bert(folder: Path, head: bool, num_labels: int = 1) -> Path:
    """A 2-layer BERT with the MiniLM tokenizer, random weights from a fixed seed, saved offline:
    with `head` a BertForSequenceClassification (a cross-encoder, untrained but fixed), without
    it the bare BertModel saved under a config that claims the classification head."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    tok = AutoTokenizer.from_pretrained(str(bundled_minilm_dir()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, num_labels=num_labels)
    torch.manual_seed(0)
    (BertForSequenceClassification(cfg) if head else BertModel(cfg)).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    if not head:
        config = json.loads((folder / "config.json").read_text())
        config["architectures"] = ["BertForSequenceClassification"]
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory) -> Path:
    return _tiny_bert(tmp_path_factory.mktemp("tiny_ce"), head=True)


def _params(tmp_path, model) -> MineParams:
    return MineParams(num_negatives=2, range_max=10, relative_margin=None, rescore_model=str(model),
                      cache_dir=str(tmp_path / "cache"))


def test_a_bi_encoder_folder_is_refused_before_any_encoding(monkeypatch, tmp_path):
    """The bundled MiniLM by its path (not the literal `minilm`) once gave random teacher scores."""
    _no_encoding(monkeypatch)
    md = bundled_minilm_dir()
    with pytest.raises(UserError) as err:
        mine_negatives(make_pairs(), make_pool(), _params(tmp_path, md))
    msg = str(err.value)
    assert msg.startswith(f"mine_negatives.rescore_model: '{md}' is not a cross-encoder: config.json "
                          "architectures ['BertModel'] has no *ForSequenceClassification")
    assert "\n" not in msg
    # a newer sentence-transformers bi-encoder says what it is in its own config
    st = tmp_path / "st_bi"
    shutil.copytree(md, st)
    (st / "config_sentence_transformers.json").write_text(json.dumps({"model_type": "SentenceTransformer"}))
    with pytest.raises(UserError, match=r"^mine_negatives.rescore_model: '.*' is a sentence-transformers "
                                        r"SentenceTransformer \(a bi-encoder\), not a CrossEncoder"):
        resolve_rescore_model(str(st))
    (st / "config.json").unlink()
    (st / "config_sentence_transformers.json").unlink()
    with pytest.raises(UserError, match=r"has no readable config.json"):
        resolve_rescore_model(str(st))


def test_missing_head_weights_are_refused_before_any_encoding(monkeypatch, tmp_path):
    """A config claiming *ForSequenceClassification over weights without the head loads with a
    newly initialised (random, unseeded) classifier: refused once loading shows it."""
    headless = _tiny_bert(tmp_path / "headless", head=False)
    assert resolve_rescore_model(str(headless)) == headless.resolve()  # the config alone looks fine
    _no_encoding(monkeypatch)
    with pytest.raises(UserError) as err:
        mine_negatives(make_pairs(), make_pool(), _params(tmp_path, headless))
    msg = str(err.value)
    assert msg == (f"mine_negatives.rescore_model: '{headless}' is not a trained cross-encoder: loading it left 2 "
                   "weight(s) newly initialised (classifier.bias, classifier.weight), so its scores would be random")


def test_a_classifier_with_several_outputs_is_refused(monkeypatch, tmp_path):
    three = _tiny_bert(tmp_path / "three", head=True, num_labels=3)
    _no_encoding(monkeypatch)
    with pytest.raises(UserError, match=r"^mine_negatives.rescore_model: '.*' gives 3 scores per pair; rescoring "
                                        r"needs a reranker with one \(num_labels 1\)$"):
        mine_negatives(make_pairs(), make_pool(), _params(tmp_path, three))


def test_teacher_scores_come_from_one_load_and_repeat_exactly(monkeypatch, tmp_path, tiny_ce):
    import sentence_transformers
    from sentence_transformers import CrossEncoder

    loads = []

    class Counting(CrossEncoder):
        def __init__(self, *a, **k):
            loads.append(a[0] if a else k.get("model_name_or_path"))
            super().__init__(*a, **k)

    monkeypatch.setattr(sentence_transformers, "CrossEncoder", Counting)
    params = _params(tmp_path, tiny_ce)
    out, _ = mine_negatives(make_pairs(), make_pool(), params)
    assert loads == [str(tiny_ce.resolve())]  # positives and negatives scored by one model load
    again, _ = mine_negatives(make_pairs(), make_pool(), params)
    assert again.equals(out)
    monkeypatch.undo()

    ce = CrossEncoder(str(tiny_ce), device="cpu")
    for row in out.iter_rows(named=True):
        assert len(row["neg_scores"]) == len(row["neg"]) == 2 and len(row["pos_scores"]) == len(row["pos"])
        assert row["dense_neg_scores"] != row["neg_scores"]
        want = ce.predict([(row["query"], t) for t in row["pos"] + row["neg"]], activation_fn=torch.nn.Identity())
        assert row["pos_scores"] + row["neg_scores"] == pytest.approx([float(x) for x in want], abs=1e-5)


def test_stage_refuses_a_bi_encoder_with_one_line_and_writes_nothing(tmp_path):
    write_parquet(make_pairs(), tmp_path / "pairs.parquet")
    write_parquet(make_pool(), tmp_path / "pool.parquet")
    (tmp_path / "params.yaml").write_text(f"mine_negatives:\n  cache_dir: {tmp_path / 'cache'}\n")
    md = bundled_minilm_dir()
    run = subprocess.run(
        [sys.executable, str(ROOT / "stages/mine_negatives.py"), "--params", str(tmp_path / "params.yaml"),
         "--pairs", str(tmp_path / "pairs.parquet"), "--pool", str(tmp_path / "pool.parquet"),
         "--out", str(tmp_path / "out/t.parquet"), "--metrics", str(tmp_path / "out/m.json"),
         "--plot", str(tmp_path / "out/s.csv"), "--set", f"rescore_model={md}"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith(f"error: --set: mine_negatives.rescore_model: '{md}' is not a cross-encoder")
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # nothing encoded


def test_rescoring_keeps_llm_negatives_aligned(tmp_path, tiny_ce):
    """Kept LLM negatives are rescored with the rest: one teacher score per negative, in order."""
    params = _params(tmp_path, tiny_ce).model_copy(update={"keep_llm_negatives": True})
    out, report = mine_negatives(make_pairs(), make_pool(), params)
    p1 = out.filter(pl.col("pair_id") == "p1").row(0, named=True)
    assert p1["neg"][-1] == "def plus(x, y): return x + y" and report.llm_negatives["kept"] == 1
    assert len(p1["neg"]) == len(p1["neg_scores"]) == len(p1["dense_neg_scores"]) == len(p1["neg_ranks"]) == 2


def test_rescore_device_and_max_length(monkeypatch, tmp_path, tiny_ce):
    """Rescoring once ran on CPU at the model's full length, whatever the machine: both are params."""
    import torch
    from sentence_transformers import CrossEncoder

    if not torch.cuda.is_available():
        _no_encoding(monkeypatch)
        with pytest.raises(UserError, match=r"^mine_negatives.rescore_device: 'cuda' asked for, but "):
            mine_negatives(make_pairs(), make_pool(), _params(tmp_path, tiny_ce).model_copy(
                update={"rescore_device": "cuda"}))
        monkeypatch.undo()
    with pytest.raises(UserError, match=r"^mine_negatives.rescore_max_length: 4096 exceeds the 512 positions of "):
        mine_negatives(make_pairs(), make_pool(), _params(tmp_path, tiny_ce).model_copy(
            update={"rescore_max_length": 4096}))
    short = _params(tmp_path, tiny_ce).model_copy(update={"rescore_max_length": 8, "rescore_device": "cpu"})
    out, _ = mine_negatives(make_pairs(), make_pool(), short)
    full, _ = mine_negatives(make_pairs(), make_pool(), _params(tmp_path, tiny_ce))
    assert out.get_column("neg_scores").to_list() != full.get_column("neg_scores").to_list()
    ce = CrossEncoder(str(tiny_ce), device="cpu", max_length=8)
    row = out.row(0, named=True)
    want = ce.predict([(row["query"], t) for t in row["pos"] + row["neg"]], activation_fn=torch.nn.Identity())
    assert row["pos_scores"] + row["neg_scores"] == pytest.approx([float(x) for x in want], abs=1e-5)
