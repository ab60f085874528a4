"""Parsers of user input on arbitrary input: a clean error or a valid result, never a traceback."""

from __future__ import annotations

import functools
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


_NAME_BYTES = st.binary(min_size=1, max_size=24).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_NAME_BYTES, min_size=1, max_size=4, unique=True))
def test_any_file_name_bytes_are_found_or_rejected_with_a_reason(names: list[bytes]) -> None:
    """File names of any bytes (not UTF-8, control characters, spaces, a leading dot) beside
    good images: discovery and decoding list each as an image, a reject with its reason, or
    nothing, and never raise."""
    import os

    from data_pipeline.cache import printable
    from data_pipeline.images import decode_one

    root = Path(tempfile.mkdtemp())
    try:
        for i in range(6):
            for label in ("cat", "dog"):
                (root / f"{label}.{i}.jpg").write_bytes(jpeg_bytes(i))
        for name in names:
            for full in (b"cat." + name + b".jpg", name):
                with open(os.path.join(os.fsencode(root), full), "wb") as fh:
                    fh.write(jpeg_bytes(99))
        found = discover(root)
        for f in found.files:
            decoded = decode_one(root / f.path, 16)
            try:
                f.path.encode("utf-8")
            except UnicodeEncodeError:
                assert decoded.error and "not valid UTF-8" in decoded.error
                printable(f.path).encode("utf-8")  # what reports and JSON show
            else:
                assert decoded.error is None, (f.path, decoded.error)
    except DataError:
        pass  # e.g. too few images per split once odd names are counted: a clean message
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _small_files() -> list[bytes]:
    """One tiny real file of each format both decoders read, transparency included."""
    import io

    import numpy as np
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    files = []
    for fmt, image, kwargs in [
        ("PNG", Image.fromarray(rgb).convert("P"), {"transparency": 1, "bits": 4}),
        ("GIF", Image.fromarray(rgb).convert("P"), {"transparency": 2}),
        ("WEBP", Image.fromarray(rgb).convert("RGBA"), {"lossless": True}),
        ("WEBP", Image.fromarray(rgb), {"quality": 80}),
        ("BMP", Image.fromarray(rgb), {}),
    ]:
        out = io.BytesIO()
        image.save(out, fmt, **kwargs)
        files.append(out.getvalue())
    return files


SMALL_FILES = _small_files()


def _mutated(which: int, edits: list[tuple[int, int]], cut: int) -> bytes:
    data = bytearray(SMALL_FILES[which % len(SMALL_FILES)])
    for at, value in edits:
        data[at % len(data)] = value
    return bytes(data[: max(cut, 1)])


@functools.cache
def _graph_decoder():
    """``decode_batch`` traced once, as in the exported signature (eager, each call would
    build its ops again)."""
    import tensorflow as tf

    from search.serving import decode_batch

    return tf.function(
        lambda data: decode_batch(data, 16), input_signature=[tf.TensorSpec([None], tf.string)]
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        # a real image's head followed by garbage: past the magic numbers, into the decoders
        st.builds(
            lambda n, tail: jpeg_bytes(1)[:n] + tail, st.integers(0, 400), st.binary(max_size=64)
        ),
        st.builds(lambda tail: b"\x89PNG\r\n\x1a\n" + tail, st.binary(max_size=64)),
        st.builds(lambda tail: b"GIF89a" + tail, st.binary(max_size=64)),
        st.builds(lambda tail: b"BM" + tail, st.binary(max_size=64)),
        st.builds(lambda tail: b"RIFF\x10\x00\x00\x00WEBPVP8X" + tail, st.binary(max_size=64)),
        # real PNG, GIF, WebP and BMP files with bytes changed and their ends cut
        st.builds(
            _mutated,
            st.integers(0, 100),
            st.lists(st.tuples(st.integers(0, 10**4), st.integers(0, 255)), max_size=4),
            st.integers(1, 400),
        ),
    )
)
def test_both_decoders_take_any_bytes(data: bytes) -> None:
    """The training decoder and the export's in-graph decoder on arbitrary bytes: pixels or a
    refusal, never an exception; an element the graph cannot decode is flagged, not raised."""
    import tensorflow as tf

    from data_pipeline.images import pil_decode

    meta, pixels = pil_decode(data)
    assert (pixels is None) == (meta.error is not None)
    images, ok = _graph_decoder()(tf.constant([data, jpeg_bytes(2)]))
    assert images.shape == (2, 16, 16, 3) and bool(ok.numpy()[1])
