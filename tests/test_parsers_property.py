"""Parsers of user input on arbitrary input: a clean error or a valid result, never a traceback."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_pipeline.discover import SPLITS, discover
from data_pipeline.errors import DataError
from search.options import OptionError, parse_duration
from tests.conftest import jpeg_bytes


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_any_time_budget_text_is_seconds_or_a_clean_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except OptionError as exc:
        assert "--time-budget" in str(exc)
        return
    assert seconds >= 0


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["45m", "2h", "1h30m", "90s", "1.5h", "3600"]),
)
def test_known_budgets(text: str) -> None:
    assert (
        parse_duration(text)
        == {
            "45m": 2700,
            "2h": 7200,
            "1h30m": 5400,
            "90s": 90,
            "1.5h": 5400,
            "3600": 3600,
        }[text]
    )


NAMES = st.sampled_from(
    [
        "cat.1.jpg",
        "dog.2.jpg",
        "cat.x.png",
        "1234.jpg",
        "Dog.7.JPG",
        "notes.txt",
        ".hidden.jpg",
        "Thumbs.db",
        "cat.jpg",
        "bird.3.jpg",
    ]
)
FOLDERS = st.sampled_from(
    [
        "",
        "train",
        "test",
        "val",
        "test1",
        "validation",
        "train/Cat",
        "train/Dog",
        "PetImages/Cat",
        "PetImages/Dog",
        "deep/er/Cat",
        "__MACOSX",
        "Cat",
        "Dog",
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(FOLDERS, NAMES, st.booleans()), max_size=30))
def test_any_folder_tree_is_a_data_set_or_a_clean_error(files: list) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        for folder, name, real in files:
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg_bytes(len(name)) if real else b"not an image")
        try:
            found = discover(root, seed=1)
        except DataError:
            return
        splits = {f.split for f in found.files}
        assert splits == set(SPLITS)  # a data set always has all three splits
        assert len({f.path for f in found.files}) == len(found.files)  # each file once
        assert all(f.label in found.classes for f in found.files) and len(found.classes) >= 2
    finally:
        shutil.rmtree(root, ignore_errors=True)
