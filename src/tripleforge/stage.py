"""Shared plumbing for the Typer scripts in `stages/`: one-line errors and consistent exits."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from tripleforge.errors import UserError

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


def user_errors(fn: F) -> F:
    """Turn `UserError` into `error: <one line>` on stderr and a non-zero exit (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            fail(str(exc), exc.exit_code)

    return wrapper  # type: ignore[return-value]


def name_input_file(message: str, files: dict[str, Any]) -> str:
    """`pool: ...` -> `<pool path>: ...`: library errors name an input by role, the stage knows its
    path. Only a leading label is replaced, so the same word inside the text stays."""
    for label, path in files.items():
        if message.startswith(label):
            return f"{path}:{message[len(label):]}"
    return message
