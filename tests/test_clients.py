"""Real clients read our outputs: FlagEmbedding's own training dataset class, and
sentence-transformers' trainer running a few steps of the bundled MiniLM on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from formats_data import mined_frame

from tripleforge.convert import ConvertFormatsParams, convert_all
from tripleforge.embed import bundled_minilm_dir
from tripleforge.train_outputs import write_train_dir
from tripleforge.training import TrainDataParams


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    grouped = convert_all(mined_frame(n_docs=10, n_neg=4, eval_every=100), "mined.parquet", ConvertFormatsParams()).grouped
    out = tmp_path_factory.mktemp("train") / "train"
    params = TrainDataParams(train_group_size=3, tokenizer={"enabled": False}, st_ntuple_negatives=2)  # type: ignore[arg-type]
    write_train_dir(grouped, params, out)
    return out


def test_flagembedding_train_dataset_reads_our_embedder_files(train_dir: Path, tmp_path: Path) -> None:
    from FlagEmbedding.abc.finetune.embedder import (
        AbsEmbedderCollator,
        AbsEmbedderDataArguments,
        AbsEmbedderTrainDataset,
    )
    from transformers import AutoTokenizer

    ds_dir = train_dir / "embedder" / "en"
    args = AbsEmbedderDataArguments(
        train_data=[str(ds_dir)], cache_path=str(tmp_path / "hf"), train_group_size=3,
        query_max_len=16, passage_max_len=32, knowledge_distillation=True,
        query_instruction_for_retrieval="",  # makes FlagEmbedding use each row's `prompt`
        query_instruction_format="{} {}",  # as docs/formats.md says: the join of our embedders and shards
    )
    tok = AutoTokenizer.from_pretrained(str(bundled_minilm_dir()))
    ds = AbsEmbedderTrainDataset(args, tok)
    rows = [json.loads(x) for f in sorted(ds_dir.glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert len(ds) == len(rows) == 9  # doc 0 is in the eval split
    query, passages, scores = ds[0]
    match = [r for r in rows if query == f"{r['prompt']} {r['query']}"]
    assert match, query  # the per-sample prompt was applied, not the string "None"
    assert len(passages) == 3 and len(scores) == 3 and passages[0] in match[0]["pos"]
    batch = AbsEmbedderCollator(tokenizer=tok, query_max_len=16, passage_max_len=32)([ds[i] for i in range(4)])
    assert batch["queries"]["input_ids"].shape[0] == 4
    assert batch["passages"]["input_ids"].shape[0] == 12
    assert batch["teacher_scores"] is not None and len(batch["teacher_scores"]) == 12


def test_flagembedding_reads_mixed_sources_without_none_prompts_or_mixed_types(tmp_path: Path) -> None:
    """External-like rows (no prompt; the spec's query class `type`, or FlagEmbedding's own
    `only_1neg`) beside mined rows with prompts, all files given to FlagEmbedding at once, as it
    concatenates them: no query reads "None ...", and same-dataset batches never mix types."""
    import polars as pl
    from FlagEmbedding.abc.finetune.embedder import (
        AbsEmbedderDataArguments,
        AbsEmbedderSameDatasetTrainDataset,
        AbsEmbedderTrainDataset,
    )
    from transformers import AutoTokenizer

    mined = convert_all(mined_frame(n_docs=10, n_neg=4, eval_every=100), "mined.parquet", ConvertFormatsParams()).grouped
    external = mined.with_columns(
        qid=pl.lit("x") + pl.col("qid"), query=pl.lit("external ") + pl.col("query"), language=pl.lit(None, pl.String),
        task=pl.lit(None, pl.String), prompt=pl.lit(None, pl.String),
        type=pl.when(pl.int_range(pl.len()) % 3 == 0).then(pl.lit("only_1neg")).otherwise(pl.lit("definition")))
    out = tmp_path / "train"
    write_train_dir(pl.concat([mined, external]), TrainDataParams(train_group_size=3, tokenizer={"enabled": False}),  # type: ignore[arg-type]
                    out)
    files = sorted((out / "embedder").rglob("*.jsonl"))
    assert [f.relative_to(out / "embedder").as_posix() for f in files] == [
        "any/default.jsonl", "any/default.only_1neg.jsonl", "en/code2code.jsonl", "en/text2code.jsonl"]
    rows = {f.name: [json.loads(x) for x in f.read_text().splitlines()] for f in files}
    assert all("prompt" in r for rs in rows.values() for r in rs)
    assert {r.get("type") for r in rows["default.only_1neg.jsonl"]} == {"only_1neg"}
    assert all("type" not in r for r in rows["default.jsonl"])  # "definition" is no FlagEmbedding mode
    dirs = [str(out / "embedder" / "en"), str(out / "embedder" / "any")]
    tok = AutoTokenizer.from_pretrained(str(bundled_minilm_dir()))
    args = AbsEmbedderDataArguments(
        train_data=dirs, cache_path=str(tmp_path / "hf"), train_group_size=3, query_max_len=16, passage_max_len=32,
        query_instruction_for_retrieval="", query_instruction_format="{} {}", same_dataset_within_batch=True)
    plain = AbsEmbedderTrainDataset(args, tok)
    queries = [plain[i][0] for i in range(len(plain))]
    assert len(queries) == 18 and not [q for q in queries if q.startswith("None")]
    for seed in range(4):  # batches are drawn at random; each seed's plan is read in full
        same = AbsEmbedderSameDatasetTrainDataset(args, default_batch_size=2, seed=seed, tokenizer=tok)
        for _ in range(len(same)):
            same[0]  # raises "Data type is not consistent in the same batch" on a mixed batch


def test_flagembedding_epoch_figures_match_its_sampler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """FlagEmbedding's same-dataset sampler drops each file's last partial batch, so a file smaller
    than one batch never trains; the stage said 0 rows left out (its own plan's figure) while the
    documented command trained 4 of 9 rows of such a set. The metrics now give what one epoch of
    FlagEmbedding reads, with and without --small_threshold, counted here on FlagEmbedding itself."""
    import polars as pl
    from FlagEmbedding.abc.finetune.embedder import AbsEmbedderDataArguments, AbsEmbedderSameDatasetTrainDataset
    from transformers import AutoTokenizer

    mined = convert_all(mined_frame(n_docs=12, n_neg=4, eval_every=100), "mined.parquet", ConvertFormatsParams()).grouped
    # en/ datasets of 3, 3 and 2 rows (normal: batch 4), and 4 rows of symmetric_class (batch 2)
    tasks = ["a"] * 3 + ["b"] * 3 + ["c"] * 2 + ["e"] * 4
    types = [None] * 8 + ["symmetric_class"] * 4
    grouped = mined.with_columns(task=pl.Series(tasks), type=pl.Series(types, dtype=pl.String), split=pl.lit("train"))
    out = tmp_path / "train"
    m = write_train_dir(grouped, TrainDataParams(train_group_size=3, tokenizer={"enabled": False},  # type: ignore[arg-type]
                                                 batch={"batch_size": 4}), out)
    flag = m["flagembedding_same_dataset"]
    assert m["batch_plan"]["rows_left_out_per_epoch"] == 0  # our own plan trains every row
    assert flag["datasets_never_trained"] == ["en/a", "en/b", "en/c"] and flag["rows_never_trained"] == 8
    assert flag["largest_batch_size_reading_every_dataset"] == 2
    assert "never trains 8 of 12 rows" in capsys.readouterr().err
    tok = AutoTokenizer.from_pretrained(str(bundled_minilm_dir()))
    folders = sorted(str(d) for d in (out / "embedder").iterdir())  # as docs/formats.md passes them
    for threshold, batch_size, expected in ((0, 4, flag["rows_in_epoch"]), (4, 4, flag["with_small_threshold"]["rows_in_epoch"]),
                                            (0, 2, 2 + 2 + 2 + 4)):  # every dataset, less its partial batch
        args = AbsEmbedderDataArguments(
            train_data=folders, cache_path=str(tmp_path / "hf"), train_group_size=3, query_max_len=16,
            passage_max_len=32, query_instruction_for_retrieval="", query_instruction_format="{} {}",
            same_dataset_within_batch=True, small_threshold=threshold)
        same = AbsEmbedderSameDatasetTrainDataset(args, default_batch_size=batch_size, seed=0, tokenizer=tok)
        read = sum(len(same[0][0]) for _ in range(len(same)))
        assert read == expected
    assert (flag["rows_in_epoch"], flag["with_small_threshold"]["rows_in_epoch"]) == (4, 12)
    # batch size 1: the symmetric dataset's batch is 0 and FlagEmbedding trains nothing at all
    one = write_train_dir(grouped, TrainDataParams(train_group_size=3, tokenizer={"enabled": False},  # type: ignore[arg-type]
                                                   batch={"batch_size": 1}), tmp_path / "one")["flagembedding_same_dataset"]
    assert (one["rows_in_epoch"], one["rows_never_trained"], one["with_small_threshold"]["rows_in_epoch"]) == (0, 12, 0)
    args = AbsEmbedderDataArguments(
        train_data=sorted(str(d) for d in (tmp_path / "one" / "embedder").iterdir()), cache_path=str(tmp_path / "hf"),
        train_group_size=3, query_max_len=16, passage_max_len=32, query_instruction_for_retrieval="",
        query_instruction_format="{} {}", same_dataset_within_batch=True)
    with pytest.raises(ValueError, match="must not be zero"):
        AbsEmbedderSameDatasetTrainDataset(args, default_batch_size=1, seed=0, tokenizer=tok)


def test_flagembedding_trains_class_and_cluster_rows_without_in_batch_negatives(tmp_path: Path) -> None:
    """Classification rows share their label texts, so in-batch negatives give a query its own
    label as a negative. FlagEmbedding switches them off only for a folder or file whose name
    ends in `no_in_batch_neg`; our `<task>.symmetric_class.jsonl` in `en/` had neither."""
    import polars as pl
    from FlagEmbedding.abc.finetune.embedder import AbsEmbedderDataArguments, AbsEmbedderSameDatasetTrainDataset
    from transformers import AutoTokenizer

    mined = convert_all(mined_frame(n_docs=12, n_neg=4, eval_every=100), "mined.parquet", ConvertFormatsParams()).grouped
    modes = pl.Series([None, "symmetric_class", "symmetric_clustering"] * (mined.height // 3 + 1))[: mined.height]
    out = tmp_path / "train"
    m = write_train_dir(mined.with_columns(type=modes), TrainDataParams(train_group_size=3, tokenizer={"enabled": False}),  # type: ignore[arg-type]
                        out)
    assert sorted(m["datasets"]) == [
        "en-no_in_batch_neg/code2code.symmetric_class-no_in_batch_neg",
        "en-no_in_batch_neg/code2code.symmetric_clustering-no_in_batch_neg",
        "en-no_in_batch_neg/text2code.symmetric_class-no_in_batch_neg",
        "en-no_in_batch_neg/text2code.symmetric_clustering-no_in_batch_neg",
        "en/code2code", "en/text2code"]
    tok = AutoTokenizer.from_pretrained(str(bundled_minilm_dir()))
    folders = sorted(str(d) for d in (out / "embedder").iterdir())  # as docs/formats.md passes them
    files = sorted(str(f) for f in (out / "embedder").rglob("*.jsonl"))  # or file by file
    for paths in (folders, files):
        args = AbsEmbedderDataArguments(
            train_data=paths, cache_path=str(tmp_path / "hf"), train_group_size=3, query_max_len=16,
            passage_max_len=32, query_instruction_for_retrieval="", query_instruction_format="{} {}",
            same_dataset_within_batch=True)
        same = AbsEmbedderSameDatasetTrainDataset(args, default_batch_size=2, seed=0, tokenizer=tok)
        types = [same.dataset[int(ix[0])].get("type") or "normal" for ix in same.each_data_idxs]
        assert sorted(types) == ["normal"] * 2 + ["symmetric_class"] * 2 + ["symmetric_clustering"] * 2
        assert [flag for t, flag in zip(types, same.no_in_batch_neg_flags, strict=True)] == [t != "normal" for t in types]


def _st_datasets(layout_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A layout's files as one DatasetDict, a dataset per file, as docs/formats.md loads them."""
    from datasets import DatasetDict, load_dataset

    return DatasetDict({str(f.relative_to(layout_dir).with_suffix("")): load_dataset(
        "json", data_files=str(f), split="train", cache_dir=str(tmp_path / "hf"))
        for f in sorted(layout_dir.rglob("*.jsonl"))})


def _trainer(data, loss_name: str, tmp_path: Path, steps: int = 2):  # type: ignore[no-untyped-def]
    import torch
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )

    torch.manual_seed(0)
    model = SentenceTransformer(str(bundled_minilm_dir()), device="cpu")
    model.max_seq_length = 32
    loss = losses.MultipleNegativesRankingLoss(model) if loss_name == "mnrl" else losses.CoSENTLoss(model)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=4, learning_rate=1e-3,
        report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, dataloader_num_workers=0, seed=0,
    )
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)


@pytest.mark.slow
@pytest.mark.parametrize(("layout", "loss"), [("triplet", "mnrl"), ("ntuple", "mnrl"), ("labeled_pair", "cosent")])
def test_sentence_transformers_trainer_trains_on_our_layouts(train_dir: Path, tmp_path: Path, layout: str, loss: str) -> None:
    data = _st_datasets(train_dir / "sentence_transformers" / layout, tmp_path)
    assert sorted(data) == ["en/code2code", "en/text2code"]
    trainer = _trainer(data, loss, tmp_path)
    before = next(trainer.model.parameters()).detach().clone()
    assert trainer.train().global_step == 2
    assert float((next(trainer.model.parameters()).detach() - before).abs().max()) > 0.0  # it really stepped


def test_sentence_transformers_batches_hold_one_dataset_each(train_dir: Path, tmp_path: Path) -> None:
    """Loaded per dataset, every batch the trainer draws comes from one task's file: rows of one
    document in two tasks never meet as in-batch negatives."""
    data = _st_datasets(train_dir / "sentence_transformers" / "triplet", tmp_path)
    assert len(data) == 2  # text2code, code2code
    ends, total = {}, 0
    for name, ds in data.items():
        total += len(ds)
        ends[name] = total
    batches = list(_trainer(data, "mnrl", tmp_path).get_train_dataloader().batch_sampler)
    assert len(batches) >= 2 and sum(map(len, batches)) <= total
    for batch in batches:
        owners = {next(name for name, end in ends.items() if i < end) for i in batch}
        assert len(owners) == 1, batch


def test_flagembedding_gives_an_empty_prompt_a_leading_space(tmp_path: Path) -> None:
    """What docs/formats.md says of an empty prompt under the documented flags: FlagEmbedding
    trains on " " + query, which the bundled WordPiece tokenizer reads like the bare query."""
    from FlagEmbedding.abc.finetune.embedder import (
        AbsEmbedderDataArguments,
        AbsEmbedderTrainDataset,
    )
    from transformers import AutoTokenizer

    ds_dir = tmp_path / "ds"
    ds_dir.mkdir()
    row = {"query": "find x", "pos": ["def find(x): ..."], "neg": ["def lose(y): ..."], "prompt": ""}
    (ds_dir / "a.jsonl").write_text(json.dumps(row) + "\n")
    args = AbsEmbedderDataArguments(
        train_data=[str(ds_dir)], cache_path=str(tmp_path / "hf"), train_group_size=2, query_max_len=16,
        passage_max_len=32, query_instruction_for_retrieval="", query_instruction_format="{} {}")
    tok = AutoTokenizer.from_pretrained(str(bundled_minilm_dir()))
    query = AbsEmbedderTrainDataset(args, tok)[0][0]
    assert query == " find x"
    assert tok(query)["input_ids"] == tok("find x")["input_ids"]
