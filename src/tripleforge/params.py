"""Typed params: each stage reads exactly its own `params.yaml` section into a pydantic model.

Unknown keys and wrong types fail before any work, with one line naming `file: section.key`.
CLI `--set key=value` overrides (value parsed as YAML) let every stage run standalone.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from tripleforge.errors import UserError

# Leads a library error about a validated params value: `params.yaml: <section>.<key>: ...`. The
# stage (stage.relabel_params_error) replaces it with the file it actually read, or `--set`.
PARAMS_LABEL = "params.yaml: "

# In a validated model's __dict__ (not a field: pydantic's ==, hash and dumps see fields only, as
# for a cached_property): the params key of the model itself, e.g. `mine_negatives.embedder`.
_WHERE = "_params_where"

_SECTIONS_READ: set[str] = set()


class CrossFieldError(ValueError):
    """Raised by a field validator whose rule involves earlier fields too (`others`, names in the
    same model): the error then names every key of the rule, and says `--set` when any of them
    came from there, not only the field pydantic reports it on."""

    def __init__(self, others: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.others = others


class StageParams(BaseModel):
    """Base for every params section: no unknown keys, no silent coercion of strings to numbers.
    A validator whose rule reads other fields raises `CrossFieldError`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)  # .nan would pass every bound
    # Fields whose values may hold a credential (a password in a URL, a pasted API key): their
    # errors never add `(got <value>)`, since error lines reach stderr and CI logs; their own
    # validators repeat a value only when it cannot hold one.
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _fits_int64(cls, v: Any) -> Any:
        # numpy, Polars and FAISS take 64-bit integers: a larger one (a typo of many digits) was
        # an OverflowError traceback from inside them, after the stage had read its inputs
        if type(v) is int and not -(2**63) <= v < 2**63:
            raise ValueError(f"does not fit a 64-bit integer (at most {2**63 - 1})")
        return v

    @property
    def params_where(self) -> str:
        """The params key of this model, e.g. `mine_negatives.embedder` or `evaluate.models.0`,
        when it was read by `load_params`/`validate_params` ("" for one built in code)."""
        return str(self.__dict__.get(_WHERE, ""))

    def params_key(self, field: str) -> str:
        """The full params key of `field` (`mine_negatives.embedder.device`), for errors a library
        raises about a validated value; "" when this model's place in the params is unknown."""
        return f"{self.params_where}.{field}" if self.params_where else ""


P = TypeVar("P", bound=StageParams)


def require_known(values: Iterable[str], known: Iterable[str], what: str, hint: str = "") -> None:
    """For field validators: the first value not in `known` raises, naming it and the choices."""
    allowed = list(known)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {bad[0]!r}; known: {hint or ' '.join(allowed)}")


def given(loc: list[str], overridden: Iterable[str]) -> bool:
    """Whether the key at `loc` (relative to the section) was given with --set: itself, a parent set
    to a whole value (`models=[...]` gives `models.0.device`), or a mapping --set wrote into
    (`demo.num_samples=3` gives `demo`); not a sibling (`embedder.max_length=64` leaves
    `embedder.device` to the file). `overridden`: `given_keys` of the overrides."""
    path = ".".join(loc)
    return any(".".join(loc[:i]) in overridden for i in range(1, len(loc) + 1)) or any(
        k.startswith(f"{path}.") for k in overridden)


def join_keys(keys: list[str]) -> str:
    """['a', 'b', 'c'] -> "'a', 'b' and 'c'"."""
    quoted = [f"'{k}'" for k in keys]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _format_error(source: str, section: str, err: ValidationError, overridden: frozenset[str] = frozenset(),
                  secret: frozenset[str] = frozenset()) -> str:
    """One line per error, naming where the bad value came from: the params file, or `--set`
    for a key (or a parent of it) given on the command line. A rule over several keys
    (`CrossFieldError`) names them all, and says `--set` when any of them was given there."""
    parts = []
    for e in err.errors():
        loc = [str(x) for x in e["loc"]]
        key = ".".join([section, *loc])
        # a rule over several fields names the others (siblings of the failing one)
        others = getattr((e.get("ctx") or {}).get("error"), "others", ()) if loc else ()
        locs = [[*loc[:-1], k] for k in others] + [loc]
        where = "--set" if any(given(x, overridden) for x in locs) else source
        if others:
            names = join_keys([".".join([section, *x]) for x in locs])
            parts.append(f"{where}: params keys {names}: {e['msg']} (got {loc[-1]}={e.get('input')!r})")
        elif e["type"] == "extra_forbidden":
            hint = ""
            if loc and loc[0] == section:
                hint = f" (keys are relative to the '{section}' section: drop the '{section}.' prefix)"
            parts.append(f"{where}: unknown params key '{key}'{hint}")
        elif e["type"] == "missing":
            parts.append(f"{where}: missing params key '{key}'")
        elif loc and loc[0] in secret:  # the value may hold a credential
            parts.append(f"{where}: params key '{key}': {e['msg']}")
        else:
            got = e.get("input")
            parts.append(f"{where}: params key '{key}': {e['msg']} (got {got!r})")
    return "; ".join(parts)


def given_keys(tree: dict[str, Any], prefix: str = "") -> frozenset[str]:
    """The key paths an overrides tree sets: {"a": {"b": 1}, "c": [2]} -> {"a.b", "c"}. Only leaves:
    `--set a.b=1` merges into section `a` and leaves its other keys to the file, while a list
    (or any other non-mapping) replaces the file's value with all it holds."""
    keys: set[str] = set()
    for k, v in tree.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            keys |= given_keys(v, f"{path}.")
        else:
            keys.add(path)
    return frozenset(keys)


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that rejects a key given twice in one mapping: PyYAML keeps the last one
    silently, so a second `num_samples:` further down a section would override the first unseen.
    Keys a merge (`<<: *base`) brings in may still be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports an unhashable key
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {first_line[key] + 1})", key_node.start_mark)
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, but a key repeated in one mapping is a `yaml.YAMLError` (see UniqueKeyLoader)."""
    return yaml.load(text, Loader=UniqueKeyLoader)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["a=1", "b.c=[x, y]"]` -> nested dict; values are YAML scalars or flow collections."""
    out: dict[str, Any] = {}
    for item in overrides:
        # a malformed item is named by its key only: the rest may be a credential (`api_key_env: sk-...`)
        if "=" not in item:
            key_part = item.replace(":", " ").split(maxsplit=1)[0] if item.strip() else ""
            shown = key_part + ("..." if key_part != item else "")
            raise UserError(f"--set expects key=value, got '{shown}'")
        key, raw = item.split("=", 1)
        # `=3` or `a..b=1` would otherwise reach validation as an unknown key named `sample.`
        if any(not part.strip() for part in key.split(".")):
            raise UserError(f"--set '{key}=...': empty key or key part (expected key=value, e.g. num_samples=10)")
        try:
            value = load_yaml(raw)
        except yaml.YAMLError as exc:
            raise UserError(f"--set {key}: value is not valid YAML: {getattr(exc, 'problem', exc)}") from exc
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


# The params sections of the pipeline's stages (dvc.yaml declares each stage's own).
STAGE_SECTIONS = ("sample", "pair_similar", "generate", "mine_negatives", "convert_formats", "train_data", "evaluate")


def _typo_distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap of neighbours) between two names, ignoring case, `-`
    and `_`: `sampel`, `samples`, `pair-similar` and `trainData` are each at most one edit from a
    section name, while `validate` is three from `evaluate`."""
    a, b = (x.lower().replace("-", "").replace("_", "") for x in (a, b))
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def _check_misspelled_section(path: Path, data: dict[Any, Any], section: str) -> None:
    """A missing section means "all defaults", but not when the file has a section whose name is
    a slip of it (`sampel:`): the stage would run the defaults on the whole default corpus, exit 0,
    and leave the user's settings unread. Other unknown top-level keys are fine: a params file may
    hold sections of the user's own stages (one that happens to be a slip away, `simple:` for
    `sample`, is kept by adding an empty section for the stage)."""
    allowed = 1 if len(section) < 10 else 2
    for key in (str(k) for k in data if str(k) not in STAGE_SECTIONS):
        if _typo_distance(key, section) <= allowed:
            raise UserError(f"{path}: no params section '{section}', but a section '{key}' (misspelled?); "
                            f"rename it to '{section}', or add an empty '{section}:' section if '{key}' is "
                            "another one")


def read_section(path: str | Path, section: str) -> dict[str, Any]:
    """The raw dict of one section; a missing file is an error, a missing section is empty."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"params file not found: {p}")
    try:
        raw_bytes = p.read_bytes()
    except OSError as exc:  # e.g. permission denied
        raise UserError(f"{p}: cannot read the params file ({exc.strerror})") from None
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw_bytes[: exc.start].count(b"\n") + 1
        raise UserError(f"{p}:{line}: not valid UTF-8 (byte 0x{raw_bytes[exc.start]:02x}); save the params "
                        f"file as UTF-8") from None
    try:
        data = load_yaml(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{p}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{p}: top level must be a mapping of sections")
    if section not in data:
        _check_misspelled_section(p, data, section)
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
    _SECTIONS_READ.add(section)
    cli = parse_overrides(overrides or [])
    raw = _merge(read_section(path, section), cli)
    return validate_params(model, section, raw, source=str(path), overridden=given_keys(cli))


def validate_params(
    model: type[P], section: str, raw: dict[str, Any], source: str = "params", overridden: frozenset[str] = frozenset()
) -> P:
    try:
        validated = model.model_validate(raw)
    except ValidationError as err:
        raise UserError(_format_error(source, section, err, overridden, model.SECRET_FIELDS)) from None
    return place(validated, section)


def sections_read() -> frozenset[str]:
    """The params sections `load_params` has read in this process (a stage reads its own)."""
    return frozenset(_SECTIONS_READ)


def place(value: Any, where: str) -> Any:
    """`value` (a params model, or a list/dict holding them) with every model knowing its params
    key (`params_where`), so that errors raised after validation can name it in full. Models are
    copied first: a field default (`embedder: EmbedderConfig = EmbedderConfig()`) is one instance
    shared by every model that leaves the field out."""
    if isinstance(value, StageParams):
        value = value.model_copy()
        value.__dict__[_WHERE] = where
        for name in type(value).model_fields:
            value.__dict__[name] = place(value.__dict__[name], f"{where}.{name}")
        return value
    if isinstance(value, list) and any(isinstance(v, StageParams) for v in value):
        return [place(v, f"{where}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict) and any(isinstance(v, StageParams) for v in value.values()):
        return {k: place(v, f"{where}.{k}") for k, v in value.items()}
    return value


def check_template(text: str, fields: Collection[str]) -> str:
    """For field validators: `text` must format with (some of) the named `fields`, all strings, so
    a typo fails when params are read, not with a KeyError after the whole selection has run."""
    known = " ".join(f"{{{f}}}" for f in fields)
    try:
        list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"unpaired brace ({exc}); write a literal brace as {{{{ or }}}}") from None
    try:
        text.format(**{f: "x" for f in fields})
    except KeyError as exc:
        raise ValueError(f"unknown placeholder {{{exc.args[0]}}}; known: {known}") from None
    except IndexError:
        raise ValueError(f"positional placeholder {{}} or {{0}}; use the named ones: {known}") from None
    except (ValueError, AttributeError) as exc:  # a format spec or attribute a string does not have
        raise ValueError(f"not a valid template ({exc}); known placeholders: {known}") from None
    return text


def check_verbatim(text: str | None) -> str | None:
    """For field validators: instructions are used as written, so a `{name}` in one would reach
    the training data literally; reject it rather than let it pass for a filled-in field."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text or "") if name is not None]
    except ValueError:  # an unpaired brace: plain text, nothing that looks like a field
        return text
    if names:
        raise ValueError(f"placeholder {{{names[0]}}}: instructions are used verbatim and no field is filled in")
    return text
