"""One decoder contract: every file the training decoder accepts, the export's in-graph decoder
(``serve_bytes``) decodes to the same pixels, within one grey level after the resize; every file
it refuses, the served model refuses too. Odd formats included: CMYK, 16-bit, 1-, 2- and 4-bit,
palettes, transparency of every kind, WebP, and the ones TensorFlow cannot read (TIFF,
animated WebP, palette BMP)."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from data_pipeline.images import decode_one
from search.serving import decode_batch

SIZES = (16, 67)


def _smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            127 + 110 * np.sin(x / rng.uniform(3, 30) + c) * np.cos(y / rng.uniform(3, 30))
            for c in range(3)
        ],
        axis=-1,
    )
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def _rgba(rgb: np.ndarray, rng: np.random.Generator) -> Image.Image:
    alpha = rng.integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    alpha[: rgb.shape[0] // 2] = 255
    return Image.fromarray(np.concatenate([rgb, alpha[..., None]], axis=-1), "RGBA")


def _palette(rgb: np.ndarray, colours: int = 256) -> Image.Image:
    return Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=colours)


# name -> how to encode an RGB picture (and a generator) as that kind of file
ODD: dict[str, Callable[[np.ndarray, np.random.Generator], bytes]] = {
    "jpeg": lambda a, r: _encode(Image.fromarray(a), "JPEG", quality=90),
    "jpeg grey": lambda a, r: _encode(Image.fromarray(a[..., 0], "L"), "JPEG", quality=85),
    "jpeg cmyk": lambda a, r: _encode(Image.fromarray(a).convert("CMYK"), "JPEG", quality=90),
    "jpeg progressive 4:2:0": lambda a, r: _encode(
        Image.fromarray(a), "JPEG", quality=80, progressive=True, subsampling=2
    ),
    "png": lambda a, r: _encode(Image.fromarray(a), "PNG"),
    "png 16-bit grey": lambda a, r: _encode(
        Image.fromarray(
            np.minimum(a[..., 0].astype(np.int64) * 257 + r.integers(0, 257), 65535).astype(
                np.uint16
            )
        ),
        "PNG",
    ),
    "png 16-bit grey tRNS": lambda a, r: _encode(
        Image.fromarray(a[..., 0].astype(np.uint16) * 257),
        "PNG",
        transparency=int(a[0, 0, 0]) * 257,
    ),
    "png 1-bit": lambda a, r: _encode(Image.fromarray(a[..., 0] > 127).convert("1"), "PNG"),
    "png 1-bit black": lambda a, r: _encode(Image.new("1", a.shape[1::-1], 0), "PNG"),
    "png 1-bit tRNS": lambda a, r: _encode(
        Image.fromarray(a[..., 0] > 127).convert("1"), "PNG", transparency=0
    ),
    "png 2-bit grey": lambda a, r: _encode(Image.fromarray(a[..., 0], "L"), "PNG", bits=2),
    "png 4-bit palette": lambda a, r: _encode(_palette(a, 16), "PNG", bits=4),
    "png 4-bit palette tRNS": lambda a, r: _encode(_palette(a, 16), "PNG", bits=4, transparency=1),
    "png palette tRNS": lambda a, r: _encode(_palette(a), "PNG", transparency=0),
    "png grey tRNS": lambda a, r: _encode(
        Image.fromarray(a[..., 0], "L"), "PNG", transparency=int(a[0, 0, 0])
    ),
    "png rgb tRNS": lambda a, r: _encode(
        Image.fromarray(a), "PNG", transparency=tuple(int(v) for v in a[0, 0])
    ),
    "png rgba": lambda a, r: _encode(_rgba(a, r), "PNG"),
    "png grey+alpha": lambda a, r: _encode(_rgba(a, r).convert("LA"), "PNG"),
    "gif": lambda a, r: _encode(_palette(a), "GIF"),
    "gif transparent": lambda a, r: _encode(_palette(a), "GIF", transparency=int(r.integers(0, 8))),
    "gif animated, transparent": lambda a, r: _encode(
        _palette(a), "GIF", save_all=True, append_images=[_palette(255 - a)], transparency=2
    ),
    "bmp": lambda a, r: _encode(Image.fromarray(a), "BMP"),
    "bmp 32-bit": lambda a, r: _encode(_rgba(a, r), "BMP"),
    "webp": lambda a, r: _encode(Image.fromarray(a), "WEBP", quality=90),
    "webp lossless rgba": lambda a, r: _encode(_rgba(a, r), "WEBP", lossless=True),
    "webp rgba": lambda a, r: _encode(_rgba(a, r), "WEBP", quality=90),
    # what TensorFlow cannot read as Pillow does: refused by both
    "tiff": lambda a, r: _encode(Image.fromarray(a), "TIFF"),
    "bmp palette": lambda a, r: _encode(_palette(a), "BMP"),
    "bmp grey": lambda a, r: _encode(Image.fromarray(a[..., 0], "L"), "BMP"),
    "webp animated": lambda a, r: _encode(
        Image.fromarray(a), "WEBP", save_all=True, append_images=[Image.fromarray(255 - a)]
    ),
}
REFUSED = {"tiff", "bmp palette", "bmp grey", "webp animated"}


@functools.cache
def _served(size: int) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """``decode_batch`` traced once per size, as the SavedModel holds it."""
    return tf.function(
        lambda data: decode_batch(data, size), input_signature=[tf.TensorSpec([None], tf.string)]
    )


def _both_paths(
    tmp_path, data: bytes, size: int
) -> tuple[str | None, np.ndarray, bool, np.ndarray]:
    path = tmp_path / "image"
    path.write_bytes(data)
    trained = np.zeros((size, size, 3), np.uint8)
    meta = decode_one(path, size, trained)
    served, ok = _served(size)(tf.constant([data]))
    return meta.error, trained, bool(ok.numpy()[0]), served.numpy()[0]


@pytest.mark.parametrize("kind", sorted(ODD))
def test_each_odd_format_decodes_alike_or_is_refused_by_both(tmp_path, kind: str) -> None:
    rng = np.random.default_rng(sorted(ODD).index(kind))
    data = ODD[kind](_smooth(rng, 90, 130), rng)
    for size in SIZES:
        error, trained, ok, served = _both_paths(tmp_path, data, size)
        if kind in REFUSED:
            assert error is not None and "not servable" in error
            assert not ok, f"{kind}: served although training refuses it"
            continue
        assert error is None and ok, (kind, error)
        diff = np.abs(trained.astype(int) - served.astype(int))
        assert diff.max() <= 1, f"{kind} at {size}px: {diff.max()} grey levels apart"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(sorted(ODD)),
    height=st.integers(1, 160),
    width=st.integers(1, 160),
    size=st.sampled_from(SIZES),
    seed=st.integers(0, 2**32 - 1),
    noisy=st.booleans(),
)
def test_any_picture_in_any_format_decodes_alike(
    tmp_path, kind: str, height: int, width: int, size: int, seed: int, noisy: bool
) -> None:
    rng = np.random.default_rng(seed)
    picture = (
        rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        if noisy
        else _smooth(rng, height, width)
    )
    data = ODD[kind](picture, rng)
    error, trained, ok, served = _both_paths(tmp_path, data, size)
    assert (error is None) == ok, (kind, error, ok)
    if ok:
        assert np.abs(trained.astype(int) - served.astype(int)).max() <= 1
