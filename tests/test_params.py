"""The params loader: strict types, unknown keys, overrides, one-line messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationInfo, field_validator

from tripleforge.errors import UserError
from tripleforge.params import CrossFieldError, StageParams, load_params, parse_overrides, validate_params


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


def test_a_misspelled_section_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    """`sampel:` in a params file given to a stage script ran the defaults (the whole default
    corpus) with exit 0, the user's settings unread."""
    with pytest.raises(UserError) as exc:
        load_params(Demo, "sample", write(tmp_path, "sampel: {num_samples: 2}\n"))
    assert str(exc.value) == (f"{tmp_path / 'params.yaml'}: no params section 'sample', but a section 'sampel' "
                              "(misspelled?); rename it to 'sample', or add an empty 'sample:' section if 'sampel' "
                              "is another one")
    for section, slip in [("pair_similar", "pair-similar"), ("train_data", "trainData"), ("sample", "samples"),
                          ("mine_negatives", "mine_negative"), ("evaluate", "evalute")]:
        with pytest.raises(UserError, match=f"but a section '{slip}'"):
            load_params(Demo, section, write(tmp_path, f"{slip}: {{}}\n"))
    # another stage's section, or a section of the user's own, is not a misspelling
    for section, other in [("train_data", "train"), ("evaluate", "validate"), ("evaluate", "evaluation"),
                           ("generate", "generation"), ("sample", "subsample"), ("evaluate", "generate")]:
        assert load_params(Demo, section, write(tmp_path, f"{other}: {{}}\nmy_stage: {{}}\n")) == Demo()


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


class Window(StageParams):
    lo: int = 0
    hi: int = 10
    step: int = 1

    @field_validator("hi")
    @classmethod
    def _above_lo(cls, v: int, info: ValidationInfo) -> int:
        lo = info.data.get("lo")
        if lo is not None and v <= lo:
            raise CrossFieldError(("lo",), f"must be greater than lo ({lo})")
        return v


class Ranged(StageParams):
    window: Window = Window()
    inner: Inner = Inner()
    items: list[Inner] = []


class MoreRanged(Window):
    extra: int = 0  # an inherited cross-field validator works the same


def test_a_rule_over_two_keys_names_both_and_says_set_if_either_came_from_there(tmp_path: Path) -> None:
    """`--set lo=700` against hi from the file once read `params.yaml: params key 'demo.hi'`: the
    wrong key and the wrong source."""
    p = write(tmp_path, "demo:\n  window: {hi: 100}\n")
    for overrides in (["window.lo=700"], ["window={lo: 700}"], ["window.hi=100", "window.lo=700"]):
        with pytest.raises(UserError) as exc:
            load_params(Ranged, "demo", p, overrides)
        assert str(exc.value) == ("--set: params keys 'demo.window.lo' and 'demo.window.hi': Value error, must be "
                                  "greater than lo (700) (got hi=100)"), overrides
    with pytest.raises(UserError) as exc:  # both in the file: the file, still both keys
        load_params(Ranged, "demo", write(tmp_path, "demo:\n  window: {lo: 700, hi: 100}\n"), ["inner.max_length=3"])
    assert str(exc.value).startswith(f"{p}: params keys 'demo.window.lo' and 'demo.window.hi': ")
    with pytest.raises(UserError, match=r"^--set: params keys 'demo\.lo' and 'demo\.hi': .*\(got hi=1\)$"):
        load_params(MoreRanged, "demo", write(tmp_path, "demo: {hi: 1}\n"), ["lo=5"])
    # a one-key error next to it keeps its own source and form
    with pytest.raises(UserError) as exc:
        load_params(Ranged, "demo", write(tmp_path, "demo:\n  window: {lo: 5, hi: 1, step: x}\n"), ["window.lo=6"])
    assert str(exc.value) == (
        "--set: params keys 'demo.window.lo' and 'demo.window.hi': Value error, must be greater than lo (6) "
        f"(got hi=1); {p}: params key 'demo.window.step': Input should be a valid integer (got 'x')")
    assert validate_params(Ranged, "demo", {"window": {"lo": 1, "hi": 2}}).window.hi == 2


def test_setting_one_nested_key_leaves_its_siblings_to_the_file(tmp_path: Path) -> None:
    """`--set inner.max_length=...` merges into `inner`: a bad sibling still comes from the file."""
    p = write(tmp_path, "demo:\n  window: {step: x}\n")
    with pytest.raises(UserError, match=rf"^{p}: params key 'demo\.window\.step'"):
        load_params(Ranged, "demo", p, ["window.lo=1"])
    with pytest.raises(UserError, match=r"^--set: params key 'demo\.items\.0\.max_length'"):
        load_params(Ranged, "demo", p, ["window.step=1", "items=[{max_length: x}]"])  # a list is given whole


def test_validated_models_know_their_params_key(tmp_path: Path) -> None:
    got = load_params(Ranged, "demo", write(tmp_path, "demo:\n  items: [{max_length: 1}, {}]\n"))
    assert got.params_where == "demo" and got.window.params_key("hi") == "demo.window.hi"
    assert [i.params_key("max_length") for i in got.items] == ["demo.items.0.max_length", "demo.items.1.max_length"]
    # the default instance shared by every Ranged() is not the one that was placed
    assert Ranged().window.params_key("hi") == "" and Ranged.model_fields["window"].default.params_where == ""
    assert got.window == Window() and hash(got.window) == hash(Window()) and got.model_dump() == Ranged(
        items=[Inner(max_length=1), Inner()]).model_dump()


def test_a_params_file_that_is_not_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_bytes(b"demo:\n  names: [\xff\xfe]\n")
    with pytest.raises(UserError, match=r"^.*p\.yaml:2: not valid UTF-8 \(byte 0xff\); save the params file as UTF-8$"):
        load_params(Demo, "demo", p)


def test_a_key_given_twice_in_one_mapping_is_an_error_not_last_wins(tmp_path: Path) -> None:
    p = write(tmp_path, "demo:\n  num_samples: 3\n  ratio: 1.0\n  num_samples: 4\n")
    with pytest.raises(UserError, match=r"params\.yaml:4: invalid YAML: duplicate key 'num_samples' \(first on line 2\)$"):
        load_params(Demo, "demo", p)
    with pytest.raises(UserError, match=r"^--set inner: value is not valid YAML: duplicate key 'max_length'"):
        parse_overrides(["inner={max_length: 1, max_length: 2}"])
    # a key a merge brings in may still be overridden, as YAML intends
    p = write(tmp_path, "base: &b {num_samples: 3, ratio: 0.25}\ndemo:\n  <<: *b\n  num_samples: 4\n")
    got = load_params(Demo, "demo", p)
    assert (got.num_samples, got.ratio) == (4, 0.25)


@pytest.mark.parametrize("item", ["=3", " =3", "a..b=1", ".a=1", "a.=1"])
def test_an_empty_set_key_is_a_set_error(item: str) -> None:
    """`--set =3` once reached validation as the unknown key 'sample.'."""
    key = item.split("=", 1)[0]  # the value is not repeated: it may be a credential
    with pytest.raises(UserError, match=rf"^--set '{re.escape(key)}=...': empty key or key part \(expected key=value"):
        parse_overrides([item])


@pytest.mark.parametrize("item,shown", [
    ("api_key_env: sk-projABCDEFGHIJ0123456789", "api_key_env..."), ("api_key_env sk-projABC0123", "api_key_env..."),
    ("base_urls:[https://h/v1?apikey:S3cr3t]", "base_urls..."), ("num_samples", "num_samples"), ("", ""),
])
def test_a_malformed_set_item_is_named_by_its_key_only(item: str, shown: str) -> None:
    """A pasted key in `api_key_env: sk-...` (YAML style, no `=`) was echoed in full."""
    with pytest.raises(UserError) as exc:
        parse_overrides([item])
    assert str(exc.value) == f"--set expects key=value, got '{shown}'"


def test_an_integer_beyond_64_bits_is_a_params_error_naming_its_key(tmp_path: Path) -> None:
    # the tryout: 99999999999999999999 reached Polars and numpy, an OverflowError traceback
    p = write(tmp_path, "demo:\n  inner: {max_length: 99999999999999999999}\n")
    with pytest.raises(UserError, match=r"params key 'demo\.inner\.max_length': .*does not fit a 64-bit integer") as exc:
        load_params(Demo, "demo", p)
    assert "\n" not in str(exc.value)
    assert load_params(Demo, "demo", write(tmp_path, f"demo:\n  num_samples: {2**63 - 1}\n")).num_samples == 2**63 - 1


def test_stage_params_that_would_allocate_per_unit_have_a_ceiling(tmp_path: Path) -> None:
    from tripleforge.mining import MineParams
    from tripleforge.training import TrainDataParams

    for model, section, key in ((TrainDataParams, "train_data", "st_ntuple_negatives"),
                                (TrainDataParams, "train_data", "tokenizer.shard_rows"),
                                (MineParams, "mine_negatives", "histogram_bins")):
        inner, _, leaf = key.rpartition(".")
        value = {leaf: 10**12}
        p = write(tmp_path, f"{section}:\n  " + (f"{inner}: {value}\n" if inner else f"{leaf}: {10**12}\n"))
        with pytest.raises(UserError, match=rf"params key '{section}\.{re.escape(key)}': .*less than or equal"):
            load_params(model, section, p)
