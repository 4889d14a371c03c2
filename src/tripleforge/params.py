"""Typed params: each stage reads exactly its own `params.yaml` section into a pydantic model.

Unknown keys and wrong types fail before any work, with one line naming `file: section.key`.
CLI `--set key=value` overrides (value parsed as YAML) let every stage run standalone.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tripleforge.errors import UserError


class StageParams(BaseModel):
    """Base for every params section: no unknown keys, no silent coercion of strings to numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)  # .nan would pass every bound


P = TypeVar("P", bound=StageParams)


def require_known(values: Iterable[str], known: Iterable[str], what: str, hint: str = "") -> None:
    """For field validators: the first value not in `known` raises, naming it and the choices."""
    allowed = list(known)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {bad[0]!r}; known: {hint or ' '.join(allowed)}")


def _format_error(source: str, section: str, err: ValidationError, overridden: frozenset[str] = frozenset()) -> str:
    """One line per error, naming where the bad value came from: the params file, or `--set`
    for a key (or a parent of it) given on the command line."""
    parts = []
    for e in err.errors():
        loc = [str(x) for x in e["loc"]]
        key = ".".join([section, *loc])
        from_cli = any(".".join(loc[:i]) in overridden for i in range(1, len(loc) + 1))
        where = "--set" if from_cli else source
        if e["type"] == "extra_forbidden":
            hint = ""
            if loc and loc[0] == section:
                hint = f" (keys are relative to the '{section}' section: drop the '{section}.' prefix)"
            parts.append(f"{where}: unknown params key '{key}'{hint}")
        elif e["type"] == "missing":
            parts.append(f"{where}: missing params key '{key}'")
        else:
            got = e.get("input")
            parts.append(f"{where}: params key '{key}': {e['msg']} (got {got!r})")
    return "; ".join(parts)


def dotted_keys(tree: dict[str, Any], prefix: str = "") -> frozenset[str]:
    """Every key path of a nested dict: {"a": {"b": 1}} -> {"a", "a.b"}."""
    keys: set[str] = set()
    for k, v in tree.items():
        path = f"{prefix}{k}"
        keys.add(path)
        if isinstance(v, dict):
            keys |= dotted_keys(v, f"{path}.")
    return frozenset(keys)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["a=1", "b.c=[x, y]"]` -> nested dict; values are YAML scalars or flow collections."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise UserError(f"--set {key}: value is not valid YAML: {exc.problem}") from exc
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def read_section(path: str | Path, section: str) -> dict[str, Any]:
    """The raw dict of one section; a missing file is an error, a missing section is empty."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"params file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{p}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{p}: top level must be a mapping of sections")
    raw = data.get(section, {})
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{p}: params section '{section}' must be a mapping, got {type(raw).__name__}")
    return raw


def load_params(
    model: type[P],
    section: str,
    path: str | Path = "params.yaml",
    overrides: list[str] | None = None,
) -> P:
    """Validate `section` of the params file (plus `--set` overrides) into `model`."""
    cli = parse_overrides(overrides or [])
    raw = _merge(read_section(path, section), cli)
    return validate_params(model, section, raw, source=str(path), overridden=dotted_keys(cli))


def validate_params(
    model: type[P], section: str, raw: dict[str, Any], source: str = "params", overridden: frozenset[str] = frozenset()
) -> P:
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise UserError(_format_error(source, section, err, overridden)) from None
