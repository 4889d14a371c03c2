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
from tripleforge.params import dotted_keys, parse_overrides

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
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


PARAMS_LABEL = "params.yaml: "


def relabel_params_error(message: str, params_path: Any, overrides: list[str]) -> str:
    """`params.yaml: <section>.<key>...` -> the params file the stage actually read, or `--set`
    when that key (or a parent of it) was given on the command line. Library code checks a
    validated value (a file that does not exist, a name not among the models) without knowing
    where the value came from; the stage does."""
    if not message.startswith(PARAMS_LABEL):
        return message
    rest = message[len(PARAMS_LABEL):]
    key = re.split(r"[:\s]", rest, maxsplit=1)[0]
    parts = key.split(".")[1:]  # relative to the section, as --set keys are
    try:
        cli = dotted_keys(parse_overrides(overrides))
    except UserError:
        cli = frozenset()
    from_cli = any(".".join(parts[:i]) in cli for i in range(1, len(parts) + 1))
    return f"{'--set' if from_cli else params_path}: {rest}"


def user_errors(fn: F) -> F:
    """Turn `UserError` into `error: <one line>` on stderr and a non-zero exit (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            message = relabel_params_error(str(exc), kwargs.get("params", "params.yaml"), kwargs.get("set_") or [])
            fail(message, exc.exit_code)

    return wrapper  # type: ignore[return-value]


def name_input_file(message: str, files: dict[str, Any]) -> str:
    """`pool: ...` -> `<pool path>: ...`: library errors name an input by role, the stage knows its
    path. Only a leading label is replaced, so the same word inside the text stays."""
    for label, path in files.items():
        if message.startswith(label):
            return f"{path}:{message[len(label):]}"
    return message
