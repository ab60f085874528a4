"""Tiny synthetic image fixtures, written into tmp_path by each test."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first, each file's in their order: with two test processes (``-n auto``)
    a minute-long test dealt out last keeps one core idle while the other finishes it, and
    the short tests dealt out after the slow ones fill in around them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def write_image(
    path: Path,
    *,
    fmt: str = "JPEG",
    mode: str = "RGB",
    size: int = 24,
    seed: int = 0,
    value: int | None = None,
) -> Path:
    """A small random image (or a flat one with ``value``) in the given format and mode."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "RGBA": 4, "CMYK": 4}[mode]
    if value is None:
        pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    else:
        pixels = np.full((size, size, channels), value, dtype=np.uint8)
    img = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


def jpeg_bytes(seed: int = 0, size: int = 24) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def make_blog_layout(
    root: Path, *, train: int = 6, test: int = 2, classes: tuple[str, ...] = ("cat", "dog")
) -> Path:
    """``root/train/cat.N.jpg`` ... and ``root/test/...``: ``train`` and ``test`` per class."""
    for split, n in (("train", train), ("test", test)):
        for c in classes:
            for i in range(n):
                write_image(root / split / f"{c}.{i}.jpg", seed=hash((split, c, i)) % 2**32)
    return root


def make_flat_layout(
    root: Path, *, per_class: int = 10, classes: tuple[str, ...] = ("cat", "dog")
) -> Path:
    for c in classes:
        for i in range(per_class):
            write_image(root / f"{c}.{i}.jpg", seed=i + 100 * classes.index(c))
    return root


def children_of(pid: int) -> list[int]:
    """Live processes started by ``pid`` as ours (their environment names it), wherever they
    were re-parented to."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if f"ALEXNET_TUNER_PARENT_PID={pid}".encode() in env.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "cache"
