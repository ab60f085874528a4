"""``python -m data_pipeline.download --dest DIR``: fetch and prepare Microsoft's Cats-and-Dogs set.

The archive is the one TensorFlow Datasets uses for ``cats_vs_dogs`` (25,000 JPEGs in
``PetImages/Cat`` and ``PetImages/Dog``). It is downloaded to a ``.part`` file, its SHA-256
checked, then extracted safely into DIR; ``--data-dir DIR`` then works with every command.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from data_pipeline.archive import extract_checked
from data_pipeline.errors import DataError
from data_pipeline.progress import progress_bars

URL = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
    "kagglecatsanddogs_5340.zip"
)
SHA256 = "b7974bd00a84a99921f36ee4403f089853777b5ae8d151c76a86e64900334af9"
SIZE = 824_887_076


def fetch(
    url: str,
    target: Path,
    *,
    expected_sha256: str,
    show_progress: bool = True,
    timeout: float = 15.0,
) -> Path:
    """Download ``url`` to ``target`` (via ``target.part``) and verify its SHA-256."""
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or SIZE
            with part.open("wb") as out, progress_bars(enabled=show_progress) as bars:
                advance = bars(f"downloading {target.name}", total)
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    advance(len(chunk))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"could not download {url}: {reason}. Are you offline? Download the archive by "
            f"other means and pass it directly: --data-dir kagglecatsanddogs_5340.zip"
        ) from None
    if digest.hexdigest() != expected_sha256:
        part.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {url}: got sha256 {digest.hexdigest()}, "
            f"expected {expected_sha256}; the download is corrupt, try again."
        )
    os.replace(part, target)
    return target


def prepare_archive(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` (checked for unsafe members first); return ``dest``.

    Nothing of the user's is replaced: if a top-level name of the archive already exists in
    ``dest``, nothing is extracted and the error says which.
    """
    tmp = dest / f".extracting-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    extract_checked(archive, tmp)
    clashes = sorted(child.name for child in tmp.iterdir() if (dest / child.name).exists())
    if clashes:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(
            f"{dest / clashes[0]} already exists; remove it or choose another --dest "
            "(nothing was extracted or replaced)."
        )
    for child in tmp.iterdir():
        os.replace(child, dest / child.name)
    tmp.rmdir()
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_pipeline.download", description=__doc__)
    p.add_argument("--dest", type=Path, required=True, help="folder to download and extract into")
    p.add_argument("--url", default=URL, help="archive address (file:// works for a local copy)")
    p.add_argument("--sha256", default=SHA256, help="expected SHA-256 of the archive")
    p.add_argument("--keep-archive", action="store_true", help="keep the .zip after extracting")
    args = p.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    name = Path(args.url.split("?")[0]).name or "archive.zip"
    # Downloaded under a name of our own: --url file://DEST/mydata.zip must not overwrite or
    # delete the user's mydata.zip, which is an input.
    archive = args.dest / f".alexnet-tuner-download-{os.getpid()}-{name}"
    try:
        fetch(args.url, archive, expected_sha256=args.sha256, show_progress=sys.stderr.isatty())
        prepare_archive(archive, args.dest)
        if args.keep_archive and not (args.dest / name).exists():
            os.replace(archive, args.dest / name)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        archive.unlink(missing_ok=True)
    print(f"ready: {args.dest} (try: python -m data_pipeline.inspect {args.dest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
