"""Task catalog: identifiers and counts as in BGE-Coder, every text fills its placeholders."""

from __future__ import annotations

import string
from collections import Counter

import polars as pl
import pytest
from gen_fixtures import docs_frame
from typer.testing import CliRunner

from tripleforge.cli import app
from tripleforge.generate import GenerateParams, expand_jobs
from tripleforge.prompts import fill
from tripleforge.languages import CODE_LANGUAGES
from tripleforge.tasks import (
    LANGUAGES,
    TASKS,
    TRANSLATION_PAIRS,
    get_task,
    retrieval_instruction,
    translation_targets,
)


def test_counts_match_the_original_catalog() -> None:
    assert len(TASKS) == 47
    assert Counter(t.group for t in TASKS.values()) == {"text2code": 10, "code2text": 10, "code2code": 18, "hybrid": 9}
    assert len(LANGUAGES) == 22 and {"en", "zh", "zh_tw", "yo"} <= set(LANGUAGES)
    assert len(CODE_LANGUAGES) == 20
    assert len(TRANSLATION_PAIRS) == 16 and len({frozenset(p) for p in TRANSLATION_PAIRS}) == 16


def test_special_task_sets() -> None:
    multi = {n for n, t in TASKS.items() if t.multi_step}
    assert len(multi) == 12
    assert {n for n, t in TASKS.items() if t.group == "hybrid"} <= multi
    assert {"bug_desc_retrieval", "code_issue_discussion_retrieval", "code_version_update_retrieval"} <= multi
    assert {n for n, t in TASKS.items() if t.needs_similar} == {"code_modification_retrieval", "code_comparison_retrieval"}
    assert {n for n, t in TASKS.items() if t.needs_target} == {"code_translation_retrieval"}
    assert {n for n, t in TASKS.items() if not t.uses_llm} == {"code_context_retrieval"}
    assert get_task("code_context_retrieval").steps == ()


def test_unknown_task_is_a_clear_key_error() -> None:
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        get_task("nope")


def test_translation_targets_are_symmetric() -> None:
    assert translation_targets("python") == ["cplusplus", "perl", "ruby"]
    for a, b in TRANSLATION_PAIRS:
        assert b in translation_targets(a) and a in translation_targets(b)
    assert sum(len(translation_targets(c)) for c in CODE_LANGUAGES) == 32


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_text_fills_and_uses_known_placeholders(name: str) -> None:
    task = TASKS[name]
    allowed = {"language", "code_language", "tgt_code_language"}
    for text in (task.instruction, task.output, *task.steps):
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f}
        assert fields <= allowed, (name, fields)
        filled = fill(text, "zh", "cplusplus", "csharp")
        assert "{" not in filled
    instr = retrieval_instruction(task, "cplusplus", "csharp")
    assert instr.startswith("Given ") and instr.endswith(".") and instr.count(". ") == 0


def test_translation_instruction_names_both_languages() -> None:
    instr = retrieval_instruction(get_task("code_translation_retrieval"), "cplusplus", "csharp")
    assert "C++" in instr and "C#" in instr


def test_cli_prints_the_catalog_table() -> None:
    result = CliRunner().invoke(app, ["tasks"])
    assert result.exit_code == 0, result.output
    for name in TASKS:
        assert name in result.output
    assert "47 tasks" in result.output and "python<->ruby" in result.output
    hybrid = CliRunner().invoke(app, ["tasks", "--group", "hybrid"])
    assert "9 tasks" in hybrid.output and "web_code_retrieval" not in hybrid.output


def test_generation_translates_along_the_pairs_the_cli_prints() -> None:
    # `tripleforge tasks` lists 16 pairs "both directions"; with tgt_code_languages [] (the default)
    # generation makes exactly those 32 (source, target) jobs over one document per code language
    out = " ".join(CliRunner().invoke(app, ["tasks"]).output.split())
    printed = out.split("translation pairs (16, both directions; the targets when generate.tgt_code_languages is []): ",
                        1)[1].split()
    pairs = {tuple(p.split("<->")) for p in printed}
    assert len(pairs) == 16
    docs = pl.concat([docs_frame([f"x = {i}  # {c}\n"], code_language=c, similar=False)
                      for i, c in enumerate(CODE_LANGUAGES)])
    jobs = expand_jobs(docs, GenerateParams(tasks=["code_translation_retrieval"]))
    assert {(j.code_language, j.tgt) for j in jobs} == pairs | {(b, a) for a, b in pairs}
    assert len(jobs) == 32


def test_cli_unknown_group_names_the_known_ones() -> None:
    result = CliRunner().invoke(app, ["tasks", "--group", "nosuch"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --group: unknown group 'nosuch'; known: text2code code2text code2code hybrid"
