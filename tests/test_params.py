"""The params loader: strict types, unknown keys, overrides, one-line messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripleforge.errors import UserError
from tripleforge.params import StageParams, load_params, parse_overrides


class Inner(StageParams):
    max_length: int = 256


class Demo(StageParams):
    num_samples: int = 10
    ratio: float = 0.5
    names: list[str] = []
    inner: Inner = Inner()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_defaults_and_values(tmp_path: Path) -> None:
    p = write(tmp_path, "demo:\n  num_samples: 3\n  ratio: 1\n  inner: {max_length: 64}\nother: {x: 1}\n")
    got = load_params(Demo, "demo", p)
    assert got.num_samples == 3 and got.ratio == 1.0 and got.inner.max_length == 64 and got.names == []


def test_missing_section_gives_defaults(tmp_path: Path) -> None:
    assert load_params(Demo, "demo", write(tmp_path, "other: {}\n")) == Demo()


def test_unknown_key_names_section_and_key(tmp_path: Path) -> None:
    p = write(tmp_path, "demo:\n  num_sample: 3\n")
    with pytest.raises(UserError) as exc:
        load_params(Demo, "demo", p)
    msg = str(exc.value)
    assert "demo.num_sample" in msg and "unknown" in msg and "\n" not in msg


def test_wrong_type_is_not_coerced(tmp_path: Path) -> None:
    p = write(tmp_path, "demo:\n  num_samples: '3'\n")
    with pytest.raises(UserError, match=r"demo\.num_samples"):
        load_params(Demo, "demo", p)


def test_nested_unknown_key(tmp_path: Path) -> None:
    p = write(tmp_path, "demo:\n  inner: {max_len: 3}\n")
    with pytest.raises(UserError, match=r"demo\.inner\.max_len"):
        load_params(Demo, "demo", p)


def test_overrides_parse_yaml_and_nest(tmp_path: Path) -> None:
    p = write(tmp_path, "demo:\n  num_samples: 3\n")
    got = load_params(Demo, "demo", p, ["num_samples=7", "names=[a, b]", "inner.max_length=32"])
    assert (got.num_samples, got.names, got.inner.max_length) == (7, ["a", "b"], 32)
    assert parse_overrides(["a.b=x"]) == {"a": {"b": "x"}}
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["oops"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_params(Demo, "demo", tmp_path / "nope.yaml")
    with pytest.raises(UserError, match=r"params\.yaml:\d+"):
        load_params(Demo, "demo", write(tmp_path, "demo:\n  a: [1,\n  b: 2\n"))


def test_errors_name_where_the_bad_value_came_from(tmp_path: Path) -> None:
    """A value given with --set is reported as such, not as if params.yaml held it."""
    p = write(tmp_path, "demo:\n  ratio: 'x'\n")
    with pytest.raises(UserError) as exc:
        load_params(Demo, "demo", p, ["num_samples=oops"])
    msg = str(exc.value)
    assert "--set: params key 'demo.num_samples'" in msg and f"{p}: params key 'demo.ratio'" in msg
    with pytest.raises(UserError, match=r"^--set: params key 'demo\.inner\.max_length'"):
        load_params(Demo, "demo", write(tmp_path, "demo: {}\n"), ["inner={max_length: x}"])


def test_a_section_prefixed_override_gets_a_hint(tmp_path: Path) -> None:
    """`dvc exp run -S demo.num_samples=3` spells the section; a stage's --set does not."""
    with pytest.raises(UserError) as exc:
        load_params(Demo, "demo", write(tmp_path, "demo: {}\n"), ["demo.num_samples=3"])
    assert str(exc.value) == (
        "--set: unknown params key 'demo.demo' (keys are relative to the 'demo' section: drop the 'demo.' prefix)"
    )
