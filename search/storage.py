"""Where an Optuna study lives: a journal file in the run directory, or a database URL.

Passwords never travel on the command line: ``--storage`` must not contain one (libpq reads
``$PGPASSWORD``), or the whole URL comes from ``$ALEXNET_TUNER_STORAGE``. Everything that is
printed or saved shows the URL masked.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from data_pipeline.files import pid_alive

STORAGE_ENV = "ALEXNET_TUNER_STORAGE"
# libpq and the drivers take a password from these query keys as well as from user:password@
_SECRET_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword", "passfile"})


class StorageError(ValueError):
    """A storage URL given in an unsafe or unusable way: message and exit code 2."""


def _parse(url: str) -> Any:
    """The URL as SQLAlchemy (which Optuna hands it to) reads it, so that what we check and
    mask is what the database driver will see."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        port = parsed.port
    except (ArgumentError, ValueError, TypeError):
        return None
    if port is not None and not 0 < port < 65536:
        return None
    return parsed


def _secret_query(parsed: Any) -> list[str]:
    return [k for k in parsed.query if k.lower() in _SECRET_KEYS]


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``; query
    parameters that carry a password are masked too, and a URL that cannot be parsed is not
    shown at all (it may hold a secret in a form no parser recognises)."""
    parsed = _parse(url)
    if parsed is None:
        scheme = url.split(":", 1)[0] if ":" in url else "?"
        return f"{scheme}://<unparsable URL hidden>"
    secrets = _secret_query(parsed)
    if secrets:
        parsed = parsed.update_query_dict({k: "***" for k in secrets})
    return str(parsed.render_as_string(hide_password=True))


def resolve_storage(cli_url: str | None) -> str | None:
    """The storage URL to use (None: the run directory's journal file)."""
    if cli_url:
        parsed = _parse(cli_url)
        if parsed is None:
            raise StorageError(
                f"--storage must be a database URL like postgresql://USER@HOST:5432/DB, but got "
                f"{mask_url(cli_url)} (not parsable, or a port outside 1-65535)."
            )
        if parsed.password is not None or _secret_query(parsed):
            raise StorageError(
                f"--storage must not contain a password (got {mask_url(cli_url)}): the command "
                f"line is visible to every user of this machine. Put the password in $PGPASSWORD "
                f"or the whole URL in ${STORAGE_ENV}."
            )
        return cli_url
    env = os.environ.get(STORAGE_ENV) or None
    if env is not None and _parse(env) is None:
        raise StorageError(
            f"${STORAGE_ENV} must be a database URL like postgresql://USER:PASSWORD@HOST/DB, "
            f"but got {mask_url(env)}."
        )
    return env


def this_host() -> str:
    return socket.gethostname()


def process_alive(host: object, pid: object) -> bool:
    """Whether the process that started a trial still runs (unknown elsewhere: assume so)."""
    if host != this_host():
        return True
    return pid_alive(pid)
