"""The `tripleforge` console script: helpers around the pipeline (the stages live in `stages/`)."""

from __future__ import annotations

import typer

from tripleforge.languages import CODE_LANGUAGE_NAMES
from tripleforge.stage import fail
from tripleforge.tasks import GROUPS, LANGUAGES, TRANSLATION_PAIRS, catalog_rows

app = typer.Typer(help="tripleforge: versioned training data for code embedding and reranker models.",
                  add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)


@app.callback()
def _root() -> None:
    """tripleforge helpers (run the pipeline with `dvc repro`)."""


@app.command()
def tasks(group: str = typer.Option("", help=f"show only this group: {' '.join(GROUPS)}")) -> None:
    """Print the task catalog (identifiers as in BGE-Coder), languages and translation pairs."""
    from rich.console import Console
    from rich.table import Table

    if group and group not in GROUPS:  # else every task is filtered out: an empty table, exit 0
        fail(f"--group: unknown group '{group}'; known: {' '.join(GROUPS)}")
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
    console.print(f"translation pairs ({len(TRANSLATION_PAIRS)}, both directions; the targets when "
                  f"generate.tgt_code_languages is []): "
                  + " ".join(f"{a}<->{b}" for a, b in TRANSLATION_PAIRS))


def _get(d: dict, path: str) -> object:
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


# (metrics file, label, key path) for the headline numbers of each stage
HEADLINES: tuple[tuple[str, str, str], ...] = (
    ("sample", "documents / pool", "docs|pool"),
    ("sample", "files read / duplicates removed", "files_read|duplicates_removed"),
    ("pair_similar", "paired / no candidate", "paired|no_candidate"),
    ("generate", "pairs kept / rejected", "kept|rejected"),
    ("generate", "LLM calls / cache hits", "cache_misses|cache_hits"),
    ("mine_negatives", "pairs / short of negatives", "pairs|short_of_negatives"),
    ("mine_negatives", "negatives per pair (mean)", "negatives_mean"),
    ("mine_negatives", "positive rank median (1 = top hit)", "pos_rank.median"),
    ("convert_formats", "eval queries / corpus", "eval.queries|eval.corpus"),
    ("train_data", "embedder rows / dropped", "embedder_rows|dropped_total"),
    ("evaluate", "too-easy share (positive already top-1)", "quality.too_easy_share"),
)


@app.command()
def summary(metrics_dir: str = typer.Option("metrics", help="directory of the stages' metrics files")) -> None:
    """Print the headline numbers of every stage (all of them: `dvc metrics show`)."""
    import json
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    root = Path(metrics_dir)
    if not root.is_dir():
        fail(f"--metrics-dir: {root} is not a directory (run from the project root, or `dvc repro` first)")
    loaded = {}
    for f in sorted(root.glob("*.json")):
        try:
            loaded[f.stem] = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
            fail(f"{f}{where}: not a metrics file (invalid JSON: {getattr(exc, 'msg', exc)})")
    if not any(stage in loaded for stage, _, _ in HEADLINES):
        fail(f"--metrics-dir: no stage metrics in {root} (expected e.g. {root / 'sample.json'}; run `dvc repro`)")
    table = Table(title="tripleforge summary", show_header=True)
    for col in ("stage", "what", "value"):
        table.add_column(col)
    for stage, label, keys in HEADLINES:
        if stage in loaded:
            values = [_get(loaded[stage], k) for k in keys.split("|")]
            table.add_row(stage, label, " / ".join("-" if v is None else str(v) for v in values))
    # the configured main metric first, then nDCG / recall / MRR at its k
    main = str(_get(loaded.get("evaluate", {}), "main_metric") or "ndcg_at_10")
    k = main.rsplit("_at_", 1)[-1]
    shown = [main, *(m for m in (f"ndcg_at_{k}", f"recall_at_{k}", f"mrr_at_{k}") if m != main)][:3]
    models = _get(loaded.get("evaluate", {}), "models")
    # a metrics file of another layout (hand-edited, another version) shows "-", never a traceback
    for model, per_ds in models.items() if isinstance(models, dict) else ():
        for ds, res in per_ds.items() if isinstance(per_ds, dict) else ():
            o = _get(res, "overall")
            o = o if isinstance(o, dict) else {}
            table.add_row("evaluate", f"{model} on {ds}: " + " / ".join(m.replace("_at_", "@") for m in shown),
                          " / ".join(str(o.get(m, "-")) for m in shown))
    Console(width=120).print(table)


@app.command()
def check(
    files: list[str] = typer.Argument(..., help="JSONL or Parquet files in any of the four record formats"),
    format_: str = typer.Option("", "--format", help="force a format: triplets, pairs, candidates or legacy_nested"),
    lenient: bool = typer.Option(False, "--lenient", help="drop and count bad lines (strict: false), not stop at the first"),
    label_threshold: float = typer.Option(0.5, help="candidates: score >= threshold -> label 1"),
) -> None:
    """Read record files as convert-formats would (`convert_formats.external`) and print what
    each holds: format, records, triplets, pairs and what would be dropped. Several files are
    read together, as the stage reads its list: a qid that names another query in an earlier
    file, a record copied from one, or a negative another file gives as a positive is caught too.
    A bad line is an error `file:line: reason` (exit 2) unless --lenient."""
    import json
    import math

    from pydantic import ValidationError

    from tripleforge.convert import ConvertFormatsParams, convert_all
    from tripleforge.errors import UserError
    from tripleforge.inputs import path_problem

    if not math.isfinite(label_threshold):  # as convert_formats.label_threshold: NaN would label every candidate 0
        fail(f"--label-threshold: {label_threshold} is not a finite number")
    for path in files:
        if problem := path_problem(path):
            fail(problem)
    try:
        params = ConvertFormatsParams(include_mined=False, external=files, strict=not lenient,
                                      label_threshold=label_threshold,
                                      format_override={f: format_ for f in files} if format_ else {})
    except ValidationError as exc:  # the params keys are this command's arguments here
        option = {"external": "files", "format_override": "--format", "label_threshold": "--label-threshold"}
        fail("; ".join(f"{option.get(str(e['loc'][0]), e['loc'][0])}: {e['msg'].removeprefix('Value error, ')}"
                       for e in exc.errors()))
    try:
        sources = convert_all(None, "", params).sources
    except UserError as exc:  # the stage's advice names its params key; here the switch is --format
        fail(str(exc).replace("set convert_formats.format_override to", "use --format to"))
    for path, src in sources.items():
        dropped = json.dumps(src["dropped"]) if src["dropped"] else "nothing"
        kept = f"; kept without scores: {json.dumps(src['scores_removed'])}" if src["scores_removed"] else ""
        n = src["rows_read"]
        fmt = src["format"] if src["format"] != "none" else "no usable records"
        typer.echo(f"{path}: {fmt}, {n} record{'' if n == 1 else 's'} -> "
                   f"{src['triplets']} triplets, {src['pairs']} pairs; dropped: {dropped}{kept}")


if __name__ == "__main__":
    app()
