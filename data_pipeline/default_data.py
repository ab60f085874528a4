"""The default data set, fetched on first use the Keras way: Microsoft's Cats-and-Dogs archive.

Like ``keras.datasets.*.load_data()``, a search with no ``--data-dir`` (and no ``data/`` folder)
downloads the archive once with ``keras.utils.get_file`` (progress bar, SHA-256 check) into
the Keras cache, ``$KERAS_HOME/datasets/`` (default ``~/.keras/datasets/``), and reuses it
afterwards. The archive is then extracted by ``data_pipeline.archive`` (zip-slip and size
guards) like any ``--data-dir`` zip. ``$ALEXNET_TUNER_DATA_URL`` and
``$ALEXNET_TUNER_DATA_SHA256`` point it at a mirror (or a local ``file://`` copy).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from data_pipeline.download import SHA256, URL
from data_pipeline.errors import DataError

FNAME = "kagglecatsanddogs_5340.zip"
URL_ENV = "ALEXNET_TUNER_DATA_URL"
SHA256_ENV = "ALEXNET_TUNER_DATA_SHA256"


def keras_home() -> Path:
    """Where Keras caches downloads (``keras.utils.get_file``'s rule, without importing it)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def default_archive_path() -> Path:
    """Where the default archive is (or will be, once fetched)."""
    return keras_home() / "datasets" / FNAME


def is_default(data_dir: Path) -> bool:
    return Path(data_dir) == default_archive_path()


def fetch_default() -> Path:
    """The default archive, downloaded and checked on first use; a ``DataError`` offline."""
    target = default_archive_path()
    origin = os.environ.get(URL_ENV) or URL
    sha256 = os.environ.get(SHA256_ENV) or SHA256
    home = keras_home()
    for folder in (home, home / "datasets"):
        if folder.exists() and not folder.is_dir():
            raise DataError(
                f"the Keras cache {str(folder)!r} is a file, not a folder (KERAS_HOME="
                f"{os.environ.get('KERAS_HOME', '')!r}): point KERAS_HOME at a folder, or pass "
                "--data-dir with your images."
            )
    try:
        import keras

        path = keras.utils.get_file(
            fname=FNAME,
            origin=origin,
            file_hash=sha256,
            hash_algorithm="sha256",
            cache_dir=str(keras_home()),
            cache_subdir="datasets",
        )
    except ValueError as exc:  # get_file's "Incomplete or corrupted file detected"
        _remove(target)
        raise DataError(
            f"the default data set from {origin} failed its SHA-256 check ({exc}); it was "
            "deleted: run again to download it again."
        ) from None
    except Exception as exc:  # urllib's URLError/HTTPError, OSError, timeouts
        _remove(target)
        raise DataError(
            f"could not download the default data set (Microsoft's Cats and Dogs, 786 MiB) "
            f"from {origin}: {_reason(exc)}. Offline? Download {FNAME} by other means and put "
            f"it at {target} (it is then used as is), or pass --data-dir with any folder or "
            ".zip of cat/dog images."
        ) from None
    return Path(path)


def _remove(path: Path) -> None:
    """A partial download is removed; one that cannot be is left, never a second error."""
    with contextlib.suppress(OSError):
        Path(path).unlink(missing_ok=True)


def _reason(exc: BaseException) -> str:
    """Why a download failed, in a few words: get_file wraps urllib's error in a message that
    repeats the URL and an errno of None ("URL fetch failure on ...: None -- [Errno -2] ...")."""
    cause = exc.__cause__ or exc.__context__ or exc
    reason = getattr(cause, "reason", None) or cause
    text = getattr(reason, "strerror", None) or str(reason)
    return text.strip() or type(exc).__name__
