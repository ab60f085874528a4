"""--space files: any text, any bytes, any path gives a valid space or a SpaceError; a space's
TOML form reads back as the same space."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.space import PARAM_NAMES, SpaceError, load_space, parse_space, to_toml

VALUES = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
)


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(v, "nan" if v != v else repr(v))
    if isinstance(v, str):
        return '"' + v.replace("\\\\", "\\\\\\\\").replace('"', '\\\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*PARAM_NAMES, "momentum"]),
        st.dictionaries(st.sampled_from(["low", "high", "log", "step", "value", "x"]), VALUES),
        max_size=4,
    )
)
def test_any_table_of_overrides_is_a_space_or_a_clean_error(doc: dict) -> None:
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items())
        for name, table in doc.items()
    )
    try:
        space = parse_space(text)
    except SpaceError:
        return
    assert [p.name for p in space] == list(PARAM_NAMES)
    assert parse_space(to_toml(space)) == space  # the space's TOML form gives it back


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_space_or_a_clean_error(text: str) -> None:
    with contextlib.suppress(SpaceError):
        parse_space(text)


def test_a_folder_binary_or_missing_file_names_the_option(tmp_path: Path) -> None:
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00[lrn]\x80")
    for path, words in (
        (tmp_path, "is not a file"),
        (tmp_path / "bin.toml", "not UTF-8"),
        (tmp_path / "missing.toml", "does not exist"),
    ):
        with pytest.raises(SpaceError, match=words) as err:
            load_space(path)
        assert "--space" in str(err.value)
