"""The `tripleforge` console script: helpers around the pipeline (the stages live in `stages/`)."""

from __future__ import annotations

import typer

from tripleforge.languages import CODE_LANGUAGE_NAMES
from tripleforge.tasks import LANGUAGES, TRANSLATION_PAIRS, catalog_rows

app = typer.Typer(help="tripleforge: versioned training data for code embedding and reranker models.",
                  add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)


@app.callback()
def _root() -> None:
    """tripleforge helpers (run the pipeline with `dvc repro`)."""


@app.command()
def tasks(group: str = typer.Option("", help="show only this group: text2code code2text code2code hybrid")) -> None:
    """Print the task catalog (identifiers as in BGE-Coder), languages and translation pairs."""
    from rich.console import Console
    from rich.table import Table

    rows = [r for r in catalog_rows() if not group or r["group"] == group]
    table = Table(title=f"{len(rows)} tasks", show_lines=False)
    for col in ("task", "group", "flow", "tags", "instruction"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["task"], r["group"], r["flow"], r["tags"], r["instruction"])
    console = Console(width=160)
    console.print(table)
    console.print(f"languages ({len(LANGUAGES)}): " + " ".join(LANGUAGES))
    console.print(f"code languages ({len(CODE_LANGUAGE_NAMES)}): "
                  + " ".join(f"{k}={v[0]}" for k, v in CODE_LANGUAGE_NAMES.items()))
    console.print(f"translation pairs ({len(TRANSLATION_PAIRS)}, both directions): "
                  + " ".join(f"{a}<->{b}" for a, b in TRANSLATION_PAIRS))


if __name__ == "__main__":
    app()
