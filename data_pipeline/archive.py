"""Extract a data set archive once, safely, into the cache."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from data_pipeline.errors import DataError
from data_pipeline.files import file_digest, locked_file

# The Microsoft Cats-and-Dogs archive unpacks to ~0.85 GB; anything past this is not a photo set.
MAX_UNCOMPRESSED_BYTES = 64 * 2**30
MAX_RATIO = 200  # compression ratio past which a member is treated as a zip bomb
# Below this, the whole archive is not checked for its ratio: a few small text files compress
# well and are harmless. JPEGs barely compress (ratio ~1), so photo sets are far from it.
RATIO_FLOOR_BYTES = 16 * 2**20


def check_members(zf: zipfile.ZipFile, *, max_bytes: int = MAX_UNCOMPRESSED_BYTES) -> None:
    """Refuse members that escape the target folder and archives whose size is absurd."""
    total = compressed = 0
    for info in zf.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise DataError(
                f"archive member {name!r} would be written outside the target "
                "folder; refusing to extract this archive."
            )
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise DataError(f"archive member {name!r} is a symbolic link; refusing to extract.")
        total += info.file_size
        compressed += info.compress_size
        if (
            info.compress_size
            and info.file_size / info.compress_size > MAX_RATIO
            and info.file_size > 2**20
        ):
            raise DataError(
                f"archive member {name!r} expands {info.file_size / info.compress_size:.0f}x "
                f"(over {MAX_RATIO}x): refusing a likely zip bomb."
            )
    if total > max_bytes:
        raise DataError(
            f"archive would expand to {total:,} bytes, over the {max_bytes:,} byte "
            "limit; refusing to extract."
        )
    # many small members can add up to a bomb that no single member reveals
    if total > RATIO_FLOOR_BYTES and total / max(compressed, 1) > MAX_RATIO:
        raise DataError(
            f"archive expands {total / max(compressed, 1):.0f}x in all ({total:,} bytes from "
            f"{compressed:,}; over {MAX_RATIO}x): refusing a likely zip bomb."
        )


def extract_checked(archive: Path, into: Path) -> None:
    """Extract ``archive`` into the new folder ``into``, or leave nothing behind: a corrupt
    archive (bad CRC, truncated) is a ``DataError`` and its partial extraction is removed."""
    try:
        with zipfile.ZipFile(archive) as zf:
            check_members(zf)
            zf.extractall(into)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        shutil.rmtree(into, ignore_errors=True)
        raise DataError(
            f"{str(archive)!r} is corrupt or unreadable ({type(exc).__name__}: {exc}); "
            "download it again."
        ) from None
    except BaseException:
        shutil.rmtree(into, ignore_errors=True)
        raise


def extract_once(archive: Path, cache_root: Path) -> Path:
    """Extract ``archive`` into ``cache_root/extracted/<hash>/`` unless already done; return it."""
    if not zipfile.is_zipfile(archive):
        raise DataError(f"{str(archive)!r} is not a readable .zip archive.")
    target = Path(cache_root) / "extracted" / file_digest(archive)[:24]
    if (target / ".complete").exists():
        return target
    # Two processes extracting the same archive for the first time: the second waits, then
    # finds the first one's result instead of deleting it.
    with locked_file(target.with_name(f"{target.name}.lock")):
        if (target / ".complete").exists():
            return target
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        extract_checked(archive, tmp)
        (tmp / ".complete").touch()
        if target.exists():  # an incomplete extraction of a crashed process: never complete
            shutil.rmtree(target)
        os.replace(tmp, target)
    return target
