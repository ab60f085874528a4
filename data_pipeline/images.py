"""Decode image files by content into RGB uint8 arrays, or say why a file cannot be used.

JPEGs (nearly every file of Dogs vs Cats) go through TensorFlow's decoder in parallel C++
threads and are resized exactly as the blog's pipeline did (bilinear, no antialiasing), so the
cached pixels are the pixels the blog's model saw. Everything else (PNG, GIF, BMP, CMYK JPEGs,
and any JPEG that TensorFlow refuses) goes through Pillow, which also names the reason when a
file cannot be decoded at all.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# What Pillow may report for the formats we accept (MPO is the JPEG variant some cameras write).
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF"})
_JPEG_MAGIC = b"\xff\xd8\xff"

Sink = Callable[[np.ndarray, np.ndarray], None]
"""``sink(indices, pixels)`` receives decoded, resized images, a batch at a time."""


@dataclass(frozen=True)
class Decoded:
    """Original size of a decoded image, or the reason it was rejected."""

    width: int = 0
    height: int = 0
    error: str | None = None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK and RGBA all become RGB; transparency is composited on white."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def pil_decode(path: Path) -> tuple[Decoded, np.ndarray | None]:
    """Decode ``path`` fully with Pillow into full-size RGB pixels, or give the reason it fails."""
    try:
        if path.stat().st_size == 0:
            return Decoded(error="empty file"), None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's EXIF / palette chatter, per file
            with Image.open(path) as img:
                if img.format not in ACCEPTED_FORMATS:
                    return Decoded(error=f"unsupported image format {img.format}"), None
                img.seek(0)  # GIF: the first frame
                img.load()
                pixels = np.asarray(_to_rgb(img), dtype=np.uint8)
                return Decoded(width=img.size[0], height=img.size[1]), pixels
    except UnidentifiedImageError:
        return Decoded(error="not an image (content not recognised)"), None
    except Image.DecompressionBombError as exc:
        return Decoded(error=f"image too large: {exc}"), None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return Decoded(error=f"corrupt or truncated: {exc}"), None


def resize(pixels, size: int):
    """The blog's resize (bilinear, no antialiasing) of one or many images, to uint8."""
    import tensorflow as tf

    out = tf.image.resize(pixels, [size, size], method="bilinear", antialias=False)
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def _is_jpeg(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(3) == _JPEG_MAGIC
    except OSError:
        return False


def _tf_jpegs(paths: Sequence[Path], size: int | None):
    """Batches of (index, height, width, pixels) for every JPEG TensorFlow decodes; files it
    cannot decode are dropped here and retried with Pillow by the caller."""
    import tensorflow as tf

    def load(index, path):
        data = tf.io.read_file(path)
        shape = tf.image.extract_jpeg_shape(data)
        if size is None:  # validation only: DCT-scaled decode still reads the whole stream
            img = tf.io.decode_jpeg(data, channels=3, ratio=8)
            return index, shape[0], shape[1], tf.zeros_like(img[:0, :0])
        # Decode at the smallest DCT scale (1/2, 1/4, 1/8) that still covers the target size:
        # several times less work for big photos, and the same pixels after the resize.
        room = tf.minimum(shape[0], shape[1]) // size
        branch = tf.cast(
            tf.math.log(tf.cast(tf.clip_by_value(room, 1, 8), tf.float32)) / tf.math.log(2.0),
            tf.int32,
        )
        img = tf.switch_case(
            branch, [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r) for r in (1, 2, 4, 8)]
        )
        img.set_shape([None, None, 3])
        return index, shape[0], shape[1], resize(img, size)

    ds = tf.data.Dataset.from_tensor_slices(
        (np.arange(len(paths), dtype=np.int64), [str(p) for p in paths])
    )
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors().batch(64)
    return ds.prefetch(2)


def decode_files(
    paths: Sequence[Path],
    size: int | None,
    *,
    sink: Sink | None = None,
    advance: Callable[[int], None] = lambda n: None,
    workers: int | None = None,
) -> list[Decoded]:
    """Decode every file once (resizing to ``size`` unless None); pixels go to ``sink``.

    Returns, per path, its original size or the reason it was rejected.
    """
    results: list[Decoded | None] = [None] * len(paths)
    jpeg_idx = [i for i, p in enumerate(paths) if _is_jpeg(p)]
    if jpeg_idx:
        order = np.array(jpeg_idx)
        for idx, heights, widths, pixels in _tf_jpegs([paths[i] for i in jpeg_idx], size):
            rows = order[idx.numpy()]
            if sink is not None and size is not None:
                sink(rows, pixels.numpy())
            for i, w, h in zip(
                rows.tolist(), widths.numpy().tolist(), heights.numpy().tolist(), strict=True
            ):
                results[i] = Decoded(width=w, height=h)
            advance(len(rows))

    def fallback(i: int) -> None:
        meta, pixels = pil_decode(paths[i])
        results[i] = meta
        if pixels is not None and sink is not None and size is not None:
            sink(np.array([i]), resize(pixels[None], size).numpy())
        advance(1)

    rest = [i for i, r in enumerate(results) if r is None]
    with ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        list(pool.map(fallback, rest))
    return [r if r is not None else Decoded(error="not decoded") for r in results]
