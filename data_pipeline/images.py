"""Decode image files by content into RGB uint8 arrays, or say why a file cannot be used.

One pass per file, in parallel threads (the decoders and the resize release the GIL): read the
bytes, optionally hash them (the cache key, see ``cache.py``), decode, resize. JPEGs (nearly
every file of Dogs vs Cats) go through libjpeg-turbo (simplejpeg), at the smallest DCT scale
(1/2, 1/4, 1/8) that still covers the target size; a truncated or corrupt stream is an error,
never half an image. Everything else (PNG, GIF, BMP, WebP, any JPEG libjpeg-turbo refuses) goes
through Pillow, which also names the reason when a file cannot be decoded at all.
The resize is OpenCV's bilinear on uint8 (half-pixel centres, no antialiasing: the geometry of
``tf.image.resize`` that the blog used), about twice as fast as TensorFlow's float resize.

One decoder contract with the export's in-graph decoder (``search.serving``): every file this
module accepts decodes to the same pixels there (within one grey level after the resize), so a
served model sees what the trained one saw. Hence CMYK JPEGs convert as TensorFlow's decoder
does, 16-bit greys keep their high byte, transparency (an alpha channel or a ``tRNS`` colour) is
composited on white, and the files TensorFlow cannot read as Pillow does are refused with the
reason and the fix: TIFF, BMPs of under 24 bits per pixel, animated WebP.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

# What Pillow may report for the formats we accept (MPO is the JPEG variant some cameras write).
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP"})
# Formats Pillow reads and the served model cannot: refused, with what to do instead.
_UNSERVABLE = {
    "TIFF": "TIFF is not servable (the SavedModel reads JPEG, PNG, GIF, BMP and WebP): "
    "convert it to PNG",
}
_JPEG_MAGIC = b"\xff\xd8\xff"
DIGEST = "sha256"  # per-file content hash (hardware-accelerated on current x86 and ARM CPUs)
_CHUNK = 16  # files per task: enough to amortise the thread pool, small enough to balance


@dataclass(frozen=True)
class Decoded:
    """Original size of a decoded image (or the reason it was rejected), and its bytes' digest."""

    width: int = 0
    height: int = 0
    error: str | None = None
    digest: str | None = None


def _unservable(img: Image.Image, data: bytes) -> str | None:
    """Why the served model could not decode this image as training does, or None."""
    if img.format in _UNSERVABLE:
        return _UNSERVABLE[img.format]
    if img.format == "WEBP" and getattr(img, "is_animated", False):
        return "an animated WebP is not servable (TensorFlow decodes still WebP only): use a GIF"
    if img.format == "BMP" and int.from_bytes(data[28:30], "little") not in (24, 32):
        # TensorFlow's BMP decoder reads 8-bit pixels as grey levels, ignoring the palette
        return "a BMP of under 24 bits per pixel is not servable as trained: convert it to PNG"
    return None


def _to_rgb(img: Image.Image) -> np.ndarray:
    """RGB uint8 pixels, as TensorFlow's decoders make them: grey, palette and 16-bit greys
    (their high byte) become RGB; an alpha channel or a transparent colour (``tRNS``) is
    composited on white; a BMP's alpha is dropped, as ``decode_bmp`` drops it."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # a 16-bit grey PNG
        wide = np.asarray(img).astype(np.uint32)
        grey = Image.fromarray((wide >> 8).astype(np.uint8), "L")
        key = img.info.get("transparency")
        if isinstance(key, int):
            alpha = np.where(wide == key, 0, 255).astype(np.uint8)
            grey = Image.merge("LA", (grey, Image.fromarray(alpha, "L")))
        img = grey
    elif "transparency" in img.info and img.format != "BMP":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") and img.format != "BMP":
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB") if img.mode != "RGB" else img, dtype=np.uint8)


# Pillow refuses an image declaring more than twice MAX_IMAGE_PIXELS (a decompression bomb);
# the in-graph decoder of the export applies the same bound (search.serving).
MAX_DECLARED_PIXELS = 2 * int(Image.MAX_IMAGE_PIXELS or 89_478_485)


def pil_decode(data: bytes) -> tuple[Decoded, np.ndarray | None]:
    """Decode ``data`` fully with Pillow into full-size RGB pixels, or give the reason it fails."""
    if not data:
        return Decoded(error="empty file"), None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's EXIF / palette chatter, per file
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in ACCEPTED_FORMATS and img.format not in _UNSERVABLE:
                    return Decoded(error=f"unsupported image format {img.format}"), None
                if reason := _unservable(img, data):
                    return Decoded(error=reason), None
                img.seek(0)  # GIF: the first frame
                img.load()
                pixels = _to_rgb(img)
                return Decoded(width=img.size[0], height=img.size[1]), pixels
    except UnidentifiedImageError:
        return Decoded(error="not an image (content not recognised)"), None
    except Image.DecompressionBombError as exc:
        return Decoded(error=f"image too large: {exc}"), None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return Decoded(error=f"corrupt or truncated: {exc}"), None


def dct_factor(height: int, width: int, size: int | None) -> int:
    """The largest JPEG DCT scale-down (1, 2, 4 or 8) that keeps the short side >= ``size``;
    validation only (``size`` None) decodes at 1/8, which still reads the whole stream."""
    if size is None:
        return 8
    room = min(height, width) // size
    return max((k for k in (8, 4, 2, 1) if k <= room), default=1)


def _saw_adobe_marker(data: bytes) -> bool:
    """Whether the JPEG has an Adobe APP14 segment before its scan: its CMYK is stored
    inverted (libjpeg's ``saw_Adobe_marker``, which TensorFlow's conversion follows)."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # start of scan: no more header segments
            return False
        if marker == 0xEE and data[i + 4 : i + 9] == b"Adobe":
            return True
        i += 2 + length
    return False


def _cmyk_to_rgb(cmyk: np.ndarray, adobe: bool) -> np.ndarray:
    """TensorFlow's ``decode_jpeg`` conversion, integer for integer."""
    c, m, y, k = (cmyk[..., i].astype(np.uint32) for i in range(4))
    if not adobe:
        c, m, y, k = 255 - c, 255 - m, 255 - y, 255 - k
    return np.stack([k * c // 255, k * m // 255, k * y // 255], axis=-1).astype(np.uint8)


def _jpeg_decode(data: bytes, size: int | None) -> tuple[Decoded, np.ndarray] | None:
    """libjpeg-turbo's decode at the right DCT scale; None hands the file over to Pillow."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        limit = Image.MAX_IMAGE_PIXELS
        if limit and height * width > 2 * limit:
            return None  # Pillow names a decompression bomb
        k = dct_factor(height, width, size)
        cmyk = colorspace in ("CMYK", "YCCK")
        pixels = simplejpeg.decode_jpeg(
            data,
            colorspace="CMYK" if cmyk else "RGB",
            fastdct=True,  # the IDCT TensorFlow's decode_jpeg uses by default
            fastupsample=True,  # 6% faster; chroma detail below the resize's scale anyway
            min_height=-(-height // k),
            min_width=-(-width // k),
            min_factor=k,
        )
    except ValueError:
        return None
    if cmyk:
        pixels = _cmyk_to_rgb(pixels, _saw_adobe_marker(data))
    return Decoded(width=width, height=height), pixels


def resize(pixels: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear resize of one RGB uint8 image to ``size`` x ``size`` (into ``out`` if given)."""
    if pixels.shape[:2] == (size, size):
        resized = pixels.copy() if out is None else pixels
    else:
        resized = cv2.resize(pixels, (size, size), dst=out, interpolation=cv2.INTER_LINEAR)
    if out is None:
        return resized
    if resized.ctypes.data != out.ctypes.data:  # OpenCV allocates anew rather than fail
        out[...] = resized
    return out


def decode_one(
    path: Path, size: int | None, out: np.ndarray | None = None, *, digest: bool = False
) -> Decoded:
    """Read, (hash,) decode and resize one file; pixels go to ``out`` when it is given."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # it could not be named in a CSV, a report or a JSON file
        return Decoded(error="file name is not valid UTF-8: rename it to use it")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return Decoded(error=f"unreadable: {exc.strerror or exc}")
    hexdigest = hashlib.new(DIGEST, data).hexdigest() if digest else None
    decoded = _jpeg_decode(data, size) if data[:3] == _JPEG_MAGIC else None
    if decoded is None:
        meta, pixels = pil_decode(data)
    else:
        meta, pixels = decoded
    if pixels is not None and size is not None and out is not None:
        try:
            resize(pixels, size, out)
        except cv2.error as exc:
            return Decoded(error=f"cannot resize {meta.width}x{meta.height}: {exc}")
    return Decoded(meta.width, meta.height, meta.error, hexdigest)


RowSink = Callable[[int, np.ndarray], None]
"""``sink(i, pixels)`` stores the resized pixels of file ``i``; ``pixels`` is reused afterwards."""


def decode_files(
    paths: Sequence[Path],
    size: int | None,
    *,
    out: np.ndarray | None = None,
    sink: RowSink | None = None,
    digests: bool = False,
    advance: Callable[[int], None] = lambda n: None,
    workers: int | None = None,
) -> list[Decoded]:
    """Decode every file once, resizing to ``size`` into ``out[i]`` or through ``sink``.

    A sink receives each image in a small per-thread buffer that stays in the CPU caches and
    in memory already touched, which is what writing the cache file needs (``cache.py``).
    Returns, per path, its original size or the reason it was rejected, and (with ``digests``)
    the hex digest of its bytes, hashed while they are in memory anyway.
    """
    if out is not None:
        if size is None or out.shape[1:] != (size, size, 3):
            raise ValueError(f"out must have shape (n, {size}, {size}, 3), not {out.shape}")
        sink = out.__setitem__
    if sink is not None and size is None:
        raise ValueError("a sink needs an image size to resize to")
    cv2.setNumThreads(1)  # our threads are the parallelism; nested pools only contend
    results: list[Decoded] = [Decoded(error="not decoded")] * len(paths)
    lock = threading.Lock()
    local = threading.local()

    def task(start: int) -> None:
        stop = min(start + _CHUNK, len(paths))
        for i in range(start, stop):
            if sink is not None and size is not None:
                if not hasattr(local, "buffer"):
                    local.buffer = np.empty((size, size, 3), dtype=np.uint8)
                results[i] = decode_one(paths[i], size, local.buffer, digest=digests)
                if results[i].error is None:
                    sink(i, local.buffer)
            else:
                results[i] = decode_one(paths[i], size, None, digest=digests)
        with lock:
            advance(stop - start)

    with ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        list(pool.map(task, range(0, len(paths), _CHUNK)))
    return results
