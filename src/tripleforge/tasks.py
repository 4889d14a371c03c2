"""Task catalog for synthetic code-retrieval data: 47 task types in four groups, 22 natural
languages, 20 code languages and the 16 translation pairs (used in both directions: the targets
of `code_translation_retrieval` unless `generate.tgt_code_languages` names others).

Identifiers match BGE-Coder / CodeR (FlagEmbedding `research/BGE_Coder`) so users of the original
can switch; every text (retrieval instructions, generation instructions, output descriptors) is
our own.

Placeholders filled by `tripleforge.prompts`: `{language}` (natural-language display name),
`{code_language}` and `{tgt_code_language}` (code display names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tripleforge.languages import CODE_LANGUAGE_NAMES

Group = Literal["text2code", "code2text", "code2code", "hybrid"]
# How a task turns one document into (query, positive); see `tripleforge.generate`.
Flow = Literal[
    "single",          # one LLM call; the group decides which side is the LLM output
    "translate",       # single call with a target code language
    "context",         # no LLM: prefix -> suffix at a seeded 40-70% cut
    "bug_desc",        # step 0 injects bugs, step 1 describes them; query = description, pos = original
    "two_step_fresh",  # step 0 on doc -> X, step 1 on X -> Y; query = X, pos = Y (doc not in the pair)
    "two_step_reuse",  # step 0 writes a request; query = request + doc; step 1 answers the query
    "similar_modify",  # step 0 diffs doc and its similar doc, step 1 writes an instruction; pos = similar doc
    "similar_compare", # step 0 asks about doc vs similar doc; query = question + both; step 1 answers
]

LANGUAGES: dict[str, str] = {
    "en": "English", "zh": "Simplified Chinese", "ar": "Arabic", "bn": "Bengali", "es": "Spanish",
    "fa": "Persian", "fi": "Finnish", "fr": "French", "hi": "Hindi", "id": "Indonesian",
    "ja": "Japanese", "ko": "Korean", "ru": "Russian", "sw": "Swahili", "te": "Telugu", "th": "Thai",
    "de": "German", "yo": "Yoruba", "it": "Italian", "pt": "Portuguese", "vi": "Vietnamese",
    "zh_tw": "Traditional Chinese",
}

# Unordered pairs; `translation_targets` uses them in both directions. They are the default targets
# of code_translation_retrieval: generate.tgt_code_languages, when set, replaces them.
TRANSLATION_PAIRS: tuple[tuple[str, str], ...] = (
    ("c", "cplusplus"), ("c", "csharp"), ("c", "java"), ("cplusplus", "csharp"), ("cplusplus", "java"),
    ("csharp", "java"),
    ("python", "ruby"), ("python", "perl"), ("ruby", "perl"),
    ("javascript", "typescript"), ("javascript", "php"), ("typescript", "php"),
    ("rust", "go"), ("rust", "cplusplus"), ("go", "cplusplus"),
    ("python", "cplusplus"),
)


_CODE_CITING = frozenset({
    "api_reference_retrieval", "code_walkthrough_retrieval", "code_review_retrieval", "tutorial_retrieval",
    "code_optimization_retrieval", "code_issue_discussion_retrieval", "code_error_explanation_retrieval",
    "error_message_retrieval",
})


@dataclass(frozen=True)
class Task:
    name: str
    group: Group
    flow: Flow
    instruction: str            # one-sentence retrieval instruction -> the `prompt` column
    steps: tuple[str, ...]      # generation instruction per LLM step (empty for `context`)
    output: str                 # descriptor of what the final LLM step must return
    output_is_code: bool        # the final LLM output is code (no natural-language check)
    # Words the final LLM output may have, as its generation instruction asks (None: no limit);
    # `tripleforge.quality.too_many_words` enforces it with some slack.
    max_words: int | None = None

    @property
    def multi_step(self) -> bool:
        return len(self.steps) == 2

    @property
    def needs_similar(self) -> bool:
        return self.flow in ("similar_modify", "similar_compare")

    @property
    def needs_target(self) -> bool:
        return self.flow == "translate"

    @property
    def uses_llm(self) -> bool:
        return self.flow != "context"

    @property
    def text_free(self) -> bool:
        """Both sides are code: generated once, in English, whatever `languages` lists."""
        return self.group == "code2code"

    @property
    def positive_is_code(self) -> bool:
        """The positive is the document (text2code), the similar document, or an LLM output that
        is code; otherwise it is prose written by the LLM (a summary, a review, an answer)."""
        return self.group == "text2code" or self.flow == "similar_modify" or self.output_is_code

    @property
    def first_step_adds_a_note(self) -> bool:
        """Step 0 returns code followed by a sentence about it (the bug a bug-fix example introduced):
        both go into the query, where other code steps keep the code only."""
        return self.name == "code_bug_fix_example_retrieval"

    @property
    def cites_code(self) -> bool:
        """The task's text output is meant to quote the code it is written from (API entries with
        signatures, walkthroughs, reviews, tutorials, issue threads, error reports): a verbatim
        line there is content, not a copy (generate's `quotes_input` check skips it)."""
        return self.name in _CODE_CITING

    @property
    def query_is_output(self) -> bool:
        """Single-step tasks: text2code queries are written by the LLM; others use the document."""
        return self.group in ("text2code", "hybrid")


def _t2c(name: str, instruction: str, gen: str, output: str, max_words: int | None = None) -> Task:
    return Task(name, "text2code", "single", instruction, (gen,), output, False, max_words)


def _c2t(name: str, instruction: str, gen: str, output: str) -> Task:
    return Task(name, "code2text", "single", instruction, (gen,), output, False)


def _c2c(name: str, instruction: str, gen: str, output: str) -> Task:
    return Task(name, "code2code", "single", instruction, (gen,), output, True)


_TASKS: tuple[Task, ...] = (
    # ---- text2code: the LLM writes the text query, the document is the positive
    _t2c("web_code_retrieval",
         "Given a web search query, retrieve the code that answers it.",
         "Write the short query (at most 12 words) a developer would type into a web search engine, in "
         "{language}, when looking for {code_language} code like the following.",
         "one search query of at most 12 words in {language}", max_words=12),
    _t2c("code_contest_retrieval",
         "Given a programming contest problem, retrieve code that solves it.",
         "Write a programming contest problem statement, in {language}, that the following "
         "{code_language} code solves. State the input and output clearly.",
         "a contest problem statement in {language}"),
    _t2c("text2sql_retrieval",
         "Given a question about data in natural language, retrieve the SQL query that answers it.",
         "Write the question, in {language}, that a user asks about their data and that the following "
         "{code_language} code answers.",
         "a data question in {language}"),
    _t2c("error_message_retrieval",
         "Given an error message or failure description, retrieve code that deals with it.",
         "Write an error message or failure report, in {language}, that a developer might see and that "
         "the following {code_language} code handles, prevents or raises.",
         "an error message or failure report in {language}"),
    _t2c("code_explanation_retrieval",
         "Given an explanation of what a piece of code does, retrieve that code.",
         "Explain in {language}, in a few sentences, what the following {code_language} code does "
         "and how, without quoting it.",
         "an explanation in {language}"),
    _t2c("api_usage_retrieval",
         "Given a question about how to use an API, retrieve code that shows that usage.",
         "Write a question, in {language}, asking how to use the library calls or interfaces that the "
         "following {code_language} code demonstrates.",
         "an API usage question in {language}"),
    Task("bug_desc_retrieval", "text2code", "bug_desc",
         "Given a description of a bug, retrieve the correct code that does not have it.",
         ("Introduce one or two realistic bugs into the following {code_language} code. Keep everything "
          "else unchanged and return the complete modified code.",
          "Describe, in {language}, the wrong behaviour a user would observe when running the following "
          "{code_language} code, as a bug report. Do not explain how to fix it."),
         "a bug report in {language}", False),
    _t2c("pseudocode_retrieval",
         "Given pseudocode, retrieve the code that implements it.",
         "Write language-neutral pseudocode, with {language} comments where useful, for the logic of the "
         "following {code_language} code.",
         "pseudocode"),
    _t2c("tutorial_query_retrieval",
         "Given a learner's question, retrieve code that serves as a tutorial answer.",
         "Write the question, in {language}, that a learner asks and that the following "
         "{code_language} code would answer as a tutorial example.",
         "a learner's question in {language}"),
    _t2c("algorithm_desc_retrieval",
         "Given a description of an algorithm, retrieve code that implements it.",
         "Describe, in {language}, the algorithm that the following {code_language} code implements: "
         "its idea, steps and complexity.",
         "an algorithm description in {language}"),
    # ---- code2text: the document is the query, the LLM writes the text positive
    _c2t("code_summary_retrieval",
         "Given a piece of code, retrieve a short summary of what it does.",
         "Summarize in one sentence, in {language}, what the following {code_language} code does.",
         "a one-sentence summary in {language}"),
    _c2t("code_review_retrieval",
         "Given a piece of code, retrieve a review of it.",
         "Write a concise code review, in {language}, of the following {code_language} code: what is good, "
         "what could break and what to improve.",
         "a code review in {language}"),
    _c2t("code_intent_retrieval",
         "Given a piece of code, retrieve a statement of the developer's intent behind it.",
         "State, in {language}, the goal the author of the following {code_language} code wanted to reach, "
         "as one or two sentences written before coding.",
         "a statement of intent in {language}"),
    _c2t("code_optimization_retrieval",
         "Given a piece of code, retrieve advice on how to make it faster or leaner.",
         "Give concrete advice, in {language}, on how the following {code_language} code could use less time "
         "or memory.",
         "optimization advice in {language}"),
    _c2t("tutorial_retrieval",
         "Given a piece of code, retrieve a tutorial that teaches the technique it uses.",
         "Write a short tutorial, in {language}, that teaches the technique used by the following "
         "{code_language} code, step by step.",
         "a short tutorial in {language}"),
    Task("code_issue_discussion_retrieval", "code2text", "two_step_fresh",
         "Given a piece of code with a problem, retrieve a discussion of that issue.",
         ("Change the following {code_language} code so that it contains a subtle defect a user could "
          "report. Return the complete changed code.",
          "Write, in {language}, the issue-tracker discussion about the defect in the following "
          "{code_language} code: the report and a maintainer's answer."),
         "an issue discussion in {language}", False),
    _c2t("api_reference_retrieval",
         "Given a piece of code, retrieve the API reference of the calls it makes.",
         "Write API reference entries, in {language}, for the main functions, classes or calls used in the "
         "following {code_language} code: signature, parameters and return value.",
         "API reference entries in {language}"),
    _c2t("code_walkthrough_retrieval",
         "Given a piece of code, retrieve a walkthrough explaining it step by step.",
         "Walk through the following {code_language} code step by step, in {language}, explaining what each "
         "part does.",
         "a step-by-step walkthrough in {language}"),
    _c2t("code_error_explanation_retrieval",
         "Given a piece of code, retrieve an explanation of the errors it can produce.",
         "Explain, in {language}, which errors or exceptions the following {code_language} code can produce "
         "and under which conditions.",
         "an explanation of possible errors in {language}"),
    _c2t("code_to_requirement_retrieval",
         "Given a piece of code, retrieve the requirement it fulfils.",
         "Write the software requirement, in {language}, that the following {code_language} code fulfils, "
         "as a product owner would phrase it.",
         "a requirement in {language}"),
    # ---- code2code: the document is the query, the LLM writes the code positive
    Task("code_context_retrieval", "code2code", "context",
         "Given the beginning of a piece of code, retrieve the code that continues it.",
         (), "the continuation of the code", True),
    _c2c("similar_code_retrieval",
         "Given a piece of code, retrieve code that does the same thing in a different way.",
         "Rewrite the following {code_language} code so that it behaves the same but uses different names, "
         "structure or idioms.",
         "{code_language} code"),
    Task("code_translation_retrieval", "code2code", "translate",
         "Given a piece of {code_language} code, retrieve the equivalent {tgt_code_language} code.",
         ("Translate the following {code_language} code into idiomatic {tgt_code_language} with the same "
          "behaviour.",),
         "{tgt_code_language} code", True),
    _c2c("code_refinement_retrieval",
         "Given a piece of code, retrieve a refined version of it.",
         "Improve the readability and robustness of the following {code_language} code without changing "
         "what it does.",
         "refined {code_language} code"),
    _c2c("secure_code_retrieval",
         "Given a piece of code, retrieve a more secure version of it.",
         "Rewrite the following {code_language} code so that it validates its inputs and avoids insecure "
         "practices, keeping its purpose.",
         "hardened {code_language} code"),
    Task("code_version_update_retrieval", "code2code", "two_step_fresh",
         "Given code written for an older version of a language or library, retrieve the updated code.",
         ("Rewrite the following {code_language} code as it would have been written for an older version "
          "of the language or its libraries. Return only code.",
          "Update the following {code_language} code to current language and library versions, keeping its "
          "behaviour."),
         "updated {code_language} code", True),
    _c2c("code_example_retrieval",
         "Given a piece of code, retrieve an example that shows how to use it.",
         "Write a short {code_language} example program that calls or uses the following code.",
         "{code_language} usage example"),
    _c2c("code_dependency_retrieval",
         "Given a piece of code, retrieve the code it depends on.",
         "Write the {code_language} helper functions, classes or definitions that the following code relies "
         "on but does not define.",
         "{code_language} code it depends on"),
    _c2c("code_pattern_retrieval",
         "Given a piece of code, retrieve other code that follows the same design pattern.",
         "Write a different {code_language} program, for another purpose, that uses the same design pattern "
         "as the following code.",
         "{code_language} code using the same pattern"),
    _c2c("code_history_retrieval",
         "Given a piece of code, retrieve an earlier version of it.",
         "Write a plausible earlier, simpler version of the following {code_language} code from before its "
         "latest changes.",
         "earlier {code_language} code"),
    _c2c("code_integration_retrieval",
         "Given a piece of code, retrieve code that integrates it into a larger system.",
         "Write {code_language} code that integrates the following code into a larger application, for "
         "example wiring it to input, output or a service.",
         "{code_language} integration code"),
    _c2c("optimized_code_retrieval",
         "Given a piece of code, retrieve a faster or leaner version of it.",
         "Rewrite the following {code_language} code so that it runs faster or uses less memory, with the "
         "same results.",
         "optimized {code_language} code"),
    _c2c("code_simplification_retrieval",
         "Given a piece of code, retrieve a simpler version of it.",
         "Rewrite the following {code_language} code in a simpler, shorter form with the same behaviour.",
         "simplified {code_language} code"),
    _c2c("code_modularization_retrieval",
         "Given a piece of code, retrieve a modular version of it.",
         "Split the following {code_language} code into small reusable functions or modules with the same "
         "behaviour.",
         "modular {code_language} code"),
    _c2c("code_augmentation_retrieval",
         "Given a piece of code, retrieve an extended version with added functionality.",
         "Extend the following {code_language} code with one useful additional feature, keeping the existing "
         "behaviour.",
         "extended {code_language} code"),
    _c2c("error_handling_code_retrieval",
         "Given a piece of code, retrieve a version with proper error handling.",
         "Add proper error handling to the following {code_language} code.",
         "{code_language} code with error handling"),
    _c2c("code_documentation_retrieval",
         "Given a piece of code, retrieve the same code with documentation added.",
         "Add docstrings and comments to the following {code_language} code without changing its logic.",
         "documented {code_language} code"),
    _c2c("library_adaptation_retrieval",
         "Given a piece of code, retrieve an equivalent that uses a different library.",
         "Rewrite the following {code_language} code so that it reaches the same result with a different "
         "library or framework.",
         "{code_language} code using another library"),
    # ---- hybrid (all two-step): mixed text and code on at least one side
    Task("code_modification_retrieval", "hybrid", "similar_modify",
         "Given a piece of code and a change request, retrieve the code after the change.",
         ("Describe, in {language}, the differences between the input code and the output code below, both "
          "in {code_language}.",
          "Turn the following list of differences into one instruction, in {language}, that asks a developer "
          "to change the first piece of code into the second."),
         "a change instruction in {language}", False),
    Task("code_bug_fix_example_retrieval", "hybrid", "two_step_fresh",
         "Given buggy code and a description of the bug, retrieve the fixed code.",
         ("Introduce a realistic bug into the following {code_language} code, then write below the code a "
          "short description of the bug in {language}.",
          "Fix the bug described after the following {code_language} code. Return only the corrected code."),
         "fixed {code_language} code", True),
    Task("code_refactoring_pattern_retrieval", "hybrid", "two_step_reuse",
         "Given a piece of code and a refactoring request, retrieve the refactored code.",
         ("Write a request, in {language}, asking to refactor the following {code_language} code with a "
          "named refactoring technique.",
          "Carry out the refactoring request with the code below and return the refactored "
          "{code_language} code."),
         "refactored {code_language} code", True),
    Task("code_style_guideline_example_retrieval", "hybrid", "two_step_reuse",
         "Given a piece of code and a style guideline, retrieve the code rewritten to follow it.",
         ("Write a request, in {language}, asking to make the following {code_language} code follow a "
          "specific style guideline.",
          "Apply the requested style guideline to the code below and return the restyled "
          "{code_language} code."),
         "restyled {code_language} code", True),
    Task("code_migration_retrieval", "hybrid", "two_step_reuse",
         "Given a piece of code and a migration request, retrieve the migrated code.",
         ("Write a request, in {language}, asking to migrate the following {code_language} code to another "
          "framework, platform or API version.",
          "Carry out the migration request with the code below and return the migrated code."),
         "migrated code", True),
    Task("code_optimization_hybrid_retrieval", "hybrid", "two_step_reuse",
         "Given a piece of code and a performance goal, retrieve the optimized code.",
         ("Write a request, in {language}, asking to make the following {code_language} code faster or "
          "leaner, naming the goal.",
          "Carry out the optimization request with the code below and return the optimized "
          "{code_language} code."),
         "optimized {code_language} code", True),
    Task("code_comparison_retrieval", "hybrid", "similar_compare",
         "Given two pieces of code and a question comparing them, retrieve the answer.",
         ("Ask one question, in {language}, about how the input code and the output code below, both in "
          "{code_language}, differ or resemble each other.",
          "Answer the question about the two pieces of code below, in {language}."),
         "an answer in {language}", False),
    Task("code_best_practices_retrieval", "hybrid", "two_step_reuse",
         "Given a piece of code and a question about best practices, retrieve the advice.",
         ("Write a question, in {language}, asking which best practices the following {code_language} code "
          "should follow.",
          "Answer the best-practices question about the code below, in {language}, with concrete advice."),
         "best-practice advice in {language}", False),
    Task("security_vulnerability_fix_retrieval", "hybrid", "two_step_reuse",
         "Given a piece of code and a security concern, retrieve the code with the vulnerability fixed.",
         ("Write a request, in {language}, that names a security weakness of the following {code_language} "
          "code and asks to fix it.",
          "Fix the security weakness named in the request for the code below and return the fixed "
          "{code_language} code."),
         "fixed {code_language} code", True),
)

TASKS: dict[str, Task] = {t.name: t for t in _TASKS}
GROUPS: tuple[Group, ...] = ("text2code", "code2text", "code2code", "hybrid")


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task '{name}'") from None


def code_display(code_language: str) -> str:
    return CODE_LANGUAGE_NAMES[code_language][0]


def code_fence(code_language: str) -> str:
    return CODE_LANGUAGE_NAMES[code_language][1]


def translation_targets(code_language: str) -> list[str]:
    """Catalog targets of `code_language` (pairs used both ways), sorted: what a document in it is
    translated into when `generate.tgt_code_languages` is `[]`."""
    out = {b for a, b in TRANSLATION_PAIRS if a == code_language}
    out |= {a for a, b in TRANSLATION_PAIRS if b == code_language}
    return sorted(out)


def retrieval_instruction(task: Task, code_language: str, tgt_code_language: str | None = None) -> str:
    """The `prompt` column: the task's one-sentence instruction with code-language names filled in."""
    return task.instruction.format(
        code_language=code_display(code_language),
        tgt_code_language=code_display(tgt_code_language) if tgt_code_language else "",
    )


def catalog_rows() -> list[dict[str, str]]:
    """One row per task for the `tripleforge tasks` table."""
    rows = []
    for t in _TASKS:
        tags = []
        if t.multi_step:
            tags.append("2-step")
        if t.needs_similar:
            tags.append("similar")
        if t.needs_target:
            tags.append("target")
        if not t.uses_llm:
            tags.append("no-LLM")
        rows.append({"task": t.name, "group": t.group, "flow": t.flow, "tags": ",".join(tags),
                     "instruction": t.instruction})
    return rows
