"""Decode and resize every image once, into a uint8 array on disk reused by every trial and run.

The cache folder is keyed by the data set's content fingerprint (relative paths and file bytes);
inside it ``images-<size>.npy`` holds one row per file and ``images-<size>.json`` says which row
is which file and which files were rejected. The JSON is written last, by an atomic rename, so a
crash mid-build leaves no half-valid cache behind.

Hashing every file before decoding would read the data set twice on a cold cache, so a second,
cheap key (paths, sizes and modification times) remembers which content key a folder had: when
it is unknown, the files are hashed during the decode pass itself; when it is known, the files
are hashed first and the content key, not the cheap one, decides whether the cache is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.discover import Discovery, ImageFile
from data_pipeline.files import file_digest, no_room, pid_alive, write_text_atomic
from data_pipeline.images import DIGEST, Decoded, decode_files

CACHE_ENV = "ALEXNET_TUNER_CACHE"
_FORMAT_VERSION = 2
_SEEN = "seen"  # cache_root/seen/<cheap key>: the content key that folder had

Progress = Callable[[str, int], Callable[[int], None]]
"""``progress(description, total)`` returns ``advance(n)``; see ``data_pipeline.progress``."""


def default_cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "alexnet-tuner"


@dataclass(frozen=True)
class Reject:
    path: str
    reason: str


@dataclass(frozen=True)
class ScanResult:
    """Validation of every file: rejects with reasons, and (width, height) of the good ones."""

    rejects: tuple[Reject, ...]
    sizes: dict[str, tuple[int, int]]


@dataclass(frozen=True)
class CachedImages:
    """Decoded images of one data set at one size; ``rows[i]`` is the array row of ``files[i]``."""

    images: np.ndarray  # (n_rows, size, size, 3) uint8, memory-mapped from ``path``
    files: tuple[ImageFile, ...]
    rows: np.ndarray
    classes: tuple[str, ...]
    rejects: tuple[Reject, ...]
    path: Path
    built: bool  # False when an existing cache was reused

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Array rows and integer labels of one split."""
        picks = [i for i, f in enumerate(self.files) if f.split == name]
        labels = np.array([self.classes.index(self.files[i].label) for i in picks], dtype=np.int32)
        return self.rows[picks], labels


def _combine(paths: Sequence[str], digests: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for path, digest in zip(paths, digests, strict=True):
        h.update(f"{path}\0{digest}\n".encode(errors="surrogateescape"))
    return h.hexdigest()


def _digest_or_empty(path: Path) -> str:
    try:
        return file_digest(path, algorithm=DIGEST)
    except OSError:
        return ""  # unreadable: rejected by the decode pass, which hashes it the same way


def fingerprint(discovery: Discovery, *, workers: int | None = None) -> str:
    """Content fingerprint of the files (paths and bytes), independent of labels and split."""
    paths = [f.path for f in discovery.files]
    with ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        digests = list(pool.map(lambda p: _digest_or_empty(discovery.root / p), paths))
    return _combine(paths, digests)


def stat_key(discovery: Discovery) -> str:
    """Cheap key of the files as they sit on disk (paths, sizes, modification times)."""
    h = hashlib.blake2b(digest_size=16)
    for f in discovery.files:
        try:
            st = (discovery.root / f.path).stat()
            h.update(f"{f.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(errors="surrogateescape"))
        except OSError:
            h.update(f"{f.path}\0?\n".encode(errors="surrogateescape"))
    return h.hexdigest()


def known_key(discovery: Discovery, cache_root: Path, cheap_key: str | None = None) -> str | None:
    """The content key of files seen before (hashed now, so changed bytes are noticed even
    under an unchanged modification time); None for files never seen."""
    if not (Path(cache_root) / _SEEN / (cheap_key or stat_key(discovery))).exists():
        return None
    return fingerprint(discovery)


def _remember(cheap_key: str, cache_root: Path, key: str) -> None:
    seen = Path(cache_root) / _SEEN
    seen.mkdir(parents=True, exist_ok=True)
    write_text_atomic(seen / cheap_key, key)


def _write_json_atomic(path: Path, payload: object) -> None:
    write_text_atomic(path, json.dumps(payload))


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def printable(path: str) -> str:
    """A file name as text: bytes that are not UTF-8 shown as U+FFFD, for reports and JSON."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _scan_payload(discovery: Discovery, results: Sequence[Decoded]) -> dict[str, Any]:
    pairs = [(f.path, d) for f, d in zip(discovery.files, results, strict=True)]
    return {
        "rejects": [{"path": printable(p), "reason": d.error} for p, d in pairs if d.error],
        "sizes": {p: [d.width, d.height] for p, d in pairs if not d.error},
    }


def _scan_from_payload(payload: dict) -> ScanResult:
    return ScanResult(
        rejects=tuple(Reject(r["path"], r["reason"]) for r in payload["rejects"]),
        sizes={p: (int(w), int(h)) for p, (w, h) in payload["sizes"].items()},
    )


def cache_dir_for(discovery: Discovery, cache_root: Path, key: str | None = None) -> Path:
    return Path(cache_root) / (key or fingerprint(discovery))


def scan(
    discovery: Discovery,
    cache_dir: Path,
    *,
    progress: Progress = _no_progress,
    workers: int | None = None,
) -> ScanResult:
    """Validate every file by decoding it (memoised in ``scan.json`` of the cache folder)."""
    marker = cache_dir / "scan.json"
    if marker.exists():
        return _scan_from_payload(json.loads(marker.read_text()))
    advance = progress("validating images", len(discovery.files))
    paths = [discovery.root / f.path for f in discovery.files]
    results = decode_files(paths, None, advance=advance, workers=workers)
    cache_dir.mkdir(parents=True, exist_ok=True)
    payload = _scan_payload(discovery, results)
    _write_json_atomic(marker, payload)
    return _scan_from_payload(payload)


def is_cached(cache_dir: Path, size: int) -> bool:
    return (cache_dir / f"images-{size}.json").exists()


def _staging_prefix() -> str:
    return f".building-{socket.gethostname()}-"


def _clean_stale_staging(cache_root: Path) -> None:
    """Remove what a build killed mid-decode on this host left behind (its process is gone)."""
    prefix = _staging_prefix()
    for folder in Path(cache_root).glob(f"{prefix}*"):
        pid = folder.name[len(prefix) :].split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _create_npy(path: Path, shape: tuple[int, ...]) -> int:
    """A .npy file of uint8 zeros (sparse) with ``shape``; returns where its data starts."""
    with path.open("wb") as fh:
        header = {"descr": "|u1", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(fh, header)
        offset = fh.tell()
        fh.truncate(offset + int(np.prod(shape)))
    return offset


def _pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    view = data.data.cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _build_array(
    discovery: Discovery,
    size: int,
    cache_root: Path,
    key: str | None,
    cheap_key: str,
    progress: Progress,
    workers: int | None,
) -> tuple[np.ndarray, dict, Path]:
    """Decode every file once into the cache file; return the array (mapped), its index and
    its cache folder.

    Each decoding thread resizes into a small buffer of its own and writes it into the file
    with ``pwrite``: the page cache is filled without faulting in and zeroing each page first,
    which on this VM took the decode pass from 0.87 s to 0.62 s (2,002 images at 227px, new
    process). The pages just written are the pages training then maps, so there is no second
    copy in RAM and nothing left to save. Without a known ``key`` the files are hashed in the
    same pass, and the file waits in a staging folder until the key names its folder.
    """
    shape = (len(discovery.files), size, size, 3)
    if key is None:
        _clean_stale_staging(cache_root)
    staging = Path(cache_root) / (
        key or f"{_staging_prefix()}{os.getpid()}-{threading.get_ident()}"
    )
    staging.mkdir(parents=True, exist_ok=True)
    array_name = f"images-{size}.npy"
    tmp_array = staging / f"{array_name}.tmp-{os.getpid()}-{threading.get_ident()}"
    data_offset = _create_npy(tmp_array, shape)
    row_bytes = size * size * 3
    advance = progress(
        f"decoding {len(discovery.files):,} images to {size}px (once)", len(discovery.files)
    )
    paths = [discovery.root / f.path for f in discovery.files]
    fd = os.open(tmp_array, os.O_WRONLY)
    try:
        results = decode_files(
            paths,
            size,
            sink=lambda i, pixels: _pwrite_all(fd, pixels, data_offset + i * row_bytes),
            digests=key is None,
            advance=advance,
            workers=workers,
        )
    except BaseException as exc:  # interrupted, or a full disk: no half-written array left
        os.close(fd)
        tmp_array.unlink(missing_ok=True)
        if key is None:
            shutil.rmtree(staging, ignore_errors=True)
        room = no_room(
            exc,
            cache_root,
            needed_bytes=data_offset + len(paths) * row_bytes,
            fix="free some space or pass --cache-dir a larger disk, then run the same command",
        )
        if room is not None:
            raise room from exc
        raise
    os.close(fd)
    if key is None:
        key = _combine([f.path for f in discovery.files], [r.digest or "" for r in results])
    cache_dir = Path(cache_root) / key
    cache_dir.mkdir(parents=True, exist_ok=True)
    payload = _scan_payload(discovery, results)
    if not (cache_dir / "scan.json").exists():
        _write_json_atomic(cache_dir / "scan.json", payload)
    bad = {r["path"] for r in payload["rejects"]}
    index = {
        "version": _FORMAT_VERSION,
        "size": size,
        "rows": {f.path: i for i, f in enumerate(discovery.files) if f.path not in bad},
        "rejects": payload["rejects"],
    }
    # The array first, the index last (atomic renames): the index marks a complete cache.
    array_path = cache_dir / array_name
    os.replace(tmp_array, array_path)
    _write_json_atomic(cache_dir / f"images-{size}.json", index)
    _remember(cheap_key, cache_root, key)
    if staging != cache_dir:
        shutil.rmtree(staging, ignore_errors=True)
    return _map(array_path), index, cache_dir


def _map(array_path: Path) -> np.ndarray:
    """Copy-on-write mapping: pages are shared with every other reader through the page cache,
    and writable in name only, so that TensorFlow may alias them (``pipeline._as_tensor``)."""
    return np.load(array_path, mmap_mode="c")


def build(
    discovery: Discovery,
    size: int,
    cache_root: Path,
    *,
    progress: Progress = _no_progress,
    workers: int | None = None,
) -> CachedImages:
    """Return the cached images at ``size``, decoding each file once if they are not cached yet.

    Files never seen before (by paths, sizes and times) are decoded and hashed in one pass;
    files seen before are hashed first, and their content key finds the cache.
    """
    cheap_key = stat_key(discovery)  # before any read: a file changed meanwhile looks new
    key = known_key(discovery, cache_root, cheap_key)
    cache_dir = Path(cache_root) / key if key else None
    built = cache_dir is None or not is_cached(cache_dir, size)
    if cache_dir is not None and not built:
        index = json.loads((cache_dir / f"images-{size}.json").read_text())
        images = _map(cache_dir / f"images-{size}.npy")
    else:
        images, index, cache_dir = _build_array(
            discovery, size, cache_root, key, cheap_key, progress, workers
        )
    rows_by_path: dict[str, int] = index["rows"]
    files = tuple(f for f in discovery.files if f.path in rows_by_path)
    return CachedImages(
        images=images,
        files=files,
        rows=np.array([rows_by_path[f.path] for f in files], dtype=np.int64),
        classes=discovery.classes,
        rejects=tuple(Reject(r["path"], r["reason"]) for r in index["rejects"]),
        path=cache_dir / f"images-{size}.npy",
        built=built,
    )
