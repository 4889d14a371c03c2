"""Shared plumbing for the Typer scripts in `stages/`: one-line errors and consistent exits."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from tripleforge.errors import UserError
from tripleforge.params import PARAMS_LABEL, given, given_keys, parse_overrides, sections_read
from tripleforge.progress import close_open_bars, set_relabel

F = TypeVar("F", bound=Callable[..., Any])

PARAMS_OPTION = typer.Option("params.yaml", "--params", help="params file to read this stage's section from")
SET_OPTION = typer.Option(
    [], "--set", "-S", help="override a params key of this stage, e.g. --set num_samples=10 (repeatable)"
)


def new_app(help_text: str) -> typer.Typer:
    """A Typer app for one stage; `--min_len` and `--min-len` both parse."""
    return typer.Typer(
        help=help_text,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"token_normalize_func": lambda s: s.replace("_", "-")},
    )


def fail(message: str, code: int = 2) -> None:
    close_open_bars()  # their last lines before the error, which must be the last line
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


# a params key leading a message: `mine_negatives.search.device` (section first, then its path)
_KEY = re.compile(r"[A-Za-z_]\w*(?:\.[\w-]+)+")
# ... unless it is a file name that happens to start with a section's name (`train_data.jsonl: ...`)
_FILE_NAME = re.compile(r"\.(?:jsonl|ndjson|json|parquet|ya?ml|csv|tsv|txt|py)$")


def relabel_params_error(message: str, params_path: Any, overrides: list[str],
                         sections: frozenset[str] | set[str] = frozenset()) -> str:
    """`params.yaml: <section>.<key>...` -> the params file the stage actually read, or `--set`
    when that key (or a parent of it) was given on the command line. Library code checks a
    validated value (a file that does not exist, a name not among the models) without knowing
    where the value came from; the stage does.

    A message that starts with a key of one of `sections` (the ones the stage read) but no
    file, `mine_negatives.search.device: ...`, gets one the same way. Every other key of that
    section the message names (`sample.corpus_kind: ... needs sample.corpus to be ...`) counts
    too: `--set` when any of them was given there."""
    for label in (PARAMS_LABEL, f"{params_path}: "):  # the stage itself may name the file it read
        if message.startswith(label):
            rest = message[len(label):]
            break
    else:
        lead = _KEY.match(message)
        if lead is None or lead.group(0).split(".")[0] not in sections or _FILE_NAME.search(lead.group(0)):
            return message
        rest = message
    key = re.split(r"[:\s]", rest, maxsplit=1)[0]
    section = key.split(".")[0]
    keys = [key]
    if "." in key:  # other keys of the section named further on
        keys += re.findall(rf"(?<![\w./-]){re.escape(section)}\.[\w.-]*\w", rest[len(key):])
    try:
        cli = given_keys(parse_overrides(overrides))
    except UserError:
        cli = frozenset()
    from_cli = any(given(k.split(".")[1:], cli) for k in keys)  # relative to the section, as --set keys are
    return f"{'--set' if from_cli else params_path}: {rest}"


def user_errors(fn: F) -> F:
    """Turn `UserError` into `error: <one line>` on stderr and a non-zero exit (no traceback); a
    Ctrl-C likewise."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        params, overrides = kwargs.get("params", "params.yaml"), kwargs.get("set_") or []

        def relabel_warning(line: str) -> str:
            # a warning names a params key after its own lead (`warning: generate: params.yaml: ...`)
            at = line.find(PARAMS_LABEL)
            return line if at < 0 else line[:at] + relabel_params_error(line[at:], params, overrides, sections_read())

        set_relabel(relabel_warning)
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            fail(relabel_params_error(str(exc), params, overrides, sections_read()), exc.exit_code)
        except KeyboardInterrupt:
            # each output is written whole or not at all, so a traceback adds nothing; 130 = 128 + SIGINT
            fail("interrupted", 130)
        finally:
            set_relabel(None)

    return wrapper  # type: ignore[return-value]


def name_input_file(message: str, files: dict[str, Any]) -> str:
    """`pool: ...` -> `<pool path>: ...`: library errors name an input by role, the stage knows its
    path. Only a leading label is replaced, so the same word inside the text stays."""
    for label, path in files.items():
        if message.startswith(label):
            return f"{path}:{message[len(label):]}"
    return message
