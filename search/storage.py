"""Where an Optuna study lives: a journal file in the run directory, or a database URL.

Passwords never travel on the command line: ``--storage`` must not contain one (libpq reads
``$PGPASSWORD``), or the whole URL comes from ``$ALEXNET_TUNER_STORAGE``. Everything that is
printed or saved shows the URL masked.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit, urlunsplit

from data_pipeline.files import pid_alive

STORAGE_ENV = "ALEXNET_TUNER_STORAGE"


class StorageError(ValueError):
    """A storage URL given in an unsafe or unusable way: message and exit code 2."""


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f":***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def resolve_storage(cli_url: str | None) -> str | None:
    """The storage URL to use (None: the run directory's journal file)."""
    if cli_url:
        if urlsplit(cli_url).password is not None:
            raise StorageError(
                f"--storage must not contain a password (got {mask_url(cli_url)}): the command "
                f"line is visible to every user of this machine. Put the password in $PGPASSWORD "
                f"or the whole URL in ${STORAGE_ENV}."
            )
        return cli_url
    return os.environ.get(STORAGE_ENV) or None


def this_host() -> str:
    return socket.gethostname()


def process_alive(host: object, pid: object) -> bool:
    """Whether the process that started a trial still runs (unknown elsewhere: assume so)."""
    if host != this_host():
        return True
    try:
        return pid_alive(int(str(pid)))
    except ValueError:
        return False
