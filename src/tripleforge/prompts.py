"""Chat prompts for generation, the QC judge and LLM-written negatives; few-shot example pools.

Every prompt is a list of chat messages (`{"role", "content"}`); the response cache keys on the
full messages plus `PROMPT_VERSION`, so editing any text here re-generates instead of serving
answers to an older prompt.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TypedDict

from tripleforge.errors import UserError
from tripleforge.io import iter_jsonl
from tripleforge.tasks import LANGUAGES, Task, code_display, code_fence

# Bump whenever a text below changes in a way that should invalidate cached answers.
PROMPT_VERSION = "tf-prompts-1"

SYSTEM = "You write training data for code search systems. Reply with the requested output only."


class Example(TypedDict):
    input: str
    output: str


Messages = list[dict[str, str]]


def fenced(text: str, fence: str = "") -> str:
    # A longer fence when the text itself contains ``` keeps the block well-formed.
    ticks = "````" if "```" in text else "```"
    return f"{ticks}{fence}\n{text.rstrip()}\n{ticks}"


def fill(template: str, language: str, code_language: str, tgt_code_language: str | None) -> str:
    return template.format(
        language=LANGUAGES[language],
        code_language=code_display(code_language),
        tgt_code_language=code_display(tgt_code_language) if tgt_code_language else "",
    )


def _rules(descriptor: str) -> str:
    return (
        "Rules:\n"
        f"- Reply with {descriptor} and nothing else: no preamble, no explanation.\n"
        "- The reply must make sense on its own: never refer to \"the code above\", \"this snippet\", "
        "\"the given function\" or similar."
    )


def generation_messages(
    task: Task,
    step: int,
    inputs: list[tuple[str, str]],
    language: str,
    code_language: str,
    tgt_code_language: str | None = None,
    examples: list[Example] | None = None,
) -> Messages:
    """Prompt for step `step` of `task`. `inputs` are (label, text) blocks shown fenced, e.g.
    [("Code", doc)] or [("Input code", a), ("Output code", b)] for the similar-code tasks."""
    instruction = fill(task.steps[step], language, code_language, tgt_code_language)
    last = step == len(task.steps) - 1
    if last:
        descriptor = fill(task.output, language, code_language, tgt_code_language)
    elif task.first_step_adds_a_note and step == 0:
        descriptor = (f"the {code_display(code_language)} code in one fenced block, then one sentence in "
                      f"{LANGUAGES[language]} after it")
    elif task.flow in ("bug_desc", "two_step_fresh") and step == 0:
        descriptor = f"{code_display(code_language)} code"
    else:
        descriptor = f"the requested text in {LANGUAGES[language]}"
    fence = code_fence(code_language)
    parts = [instruction, ""]
    for label, text in inputs:
        parts += [f"{label}:", fenced(text, fence), ""]
    parts.append(_rules(descriptor))
    if examples:
        parts += ["", "Examples of good replies:"]
        for i, ex in enumerate(examples, 1):
            parts += [f"Example {i} input:", fenced(ex["input"], fence), f"Example {i} reply:", ex["output"].strip(), ""]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(parts).rstrip()}]


def qc_messages(task: Task, retrieval_instruction: str, query: str, positive: str) -> Messages:
    """Judge prompt: reply with exactly one digit. 1 = a correct pair for the task, 0 = the pair is
    the wrong kind (text/code mix-up), 2 = right kind but the positive does not answer the query."""
    body = "\n".join([
        f"Task ({task.group}): {retrieval_instruction}",
        "",
        "Query:",
        fenced(query),
        "",
        "Candidate:",
        fenced(positive),
        "",
        "Is the candidate a correct result for the query under this task?",
        "Reply with exactly one digit:",
        "1 = yes, the candidate answers the query for this task;",
        "2 = the query and candidate have the right form, but the candidate does not answer the query;",
        "0 = the query or candidate has the wrong form for this task (code where text is expected, or the reverse).",
    ])
    return [{"role": "system", "content": "You are a strict judge. Reply with one digit only."},
            {"role": "user", "content": body}]


def hard_negative_messages(retrieval_instruction: str, query: str, positive: str, positive_is_code: bool) -> Messages:
    """Ask for one look-alike document that does NOT answer the query."""
    kind = "code" if positive_is_code else "text"
    body = "\n".join([
        f"Task: {retrieval_instruction}",
        "",
        "Query:",
        fenced(query),
        "",
        "Correct result:",
        fenced(positive),
        "",
        f"Write one {kind} result that looks relevant to the query, has the same form as the correct "
        "result, but does not actually answer the query. Reply with that result only.",
    ])
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


def load_examples(examples_dir: str | Path | None, task: str, code_language: str) -> list[Example]:
    """Rows `{input, output}` from `<examples_dir>/<task>/<code_language>.jsonl` ([] when absent).
    A malformed line is an error naming file:line."""
    if not examples_dir:
        return []
    path = Path(examples_dir) / task / f"{code_language}.jsonl"
    if not path.is_file():
        return []
    rows: list[Example] = []
    for lineno, obj in iter_jsonl(path):
        if not (isinstance(obj.get("input"), str) and isinstance(obj.get("output"), str)):
            raise UserError(f"{path}:{lineno}: expected an object with string fields 'input' and 'output'")
        rows.append({"input": obj["input"], "output": obj["output"]})
    return rows


def choose_examples(pool: list[Example], k: int, seed: int) -> list[Example]:
    """`k` examples drawn without replacement with a private seeded RNG (pool order preserved)."""
    if k <= 0 or not pool:
        return []
    rng = random.Random(seed)
    idx = sorted(rng.sample(range(len(pool)), min(k, len(pool))))
    return [pool[i] for i in idx]
