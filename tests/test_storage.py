"""Database URLs: read as SQLAlchemy reads them, a password never shown or accepted on the
command line, a malformed URL an error that names the option (never a traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.options import SearchOptions
from search.storage import StorageError, mask_url, resolve_storage

SECRET = "Zq9Secret"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://tuner:pa/{SECRET}@db-host/tuner",  # urllib sees no password here
        f"postgresql://tuner:{SECRET}@db-host:5432/tuner",
        f"postgresql://:{SECRET}@db-host/tuner",
        f"postgresql+psycopg://tuner:{SECRET}%40x@db-host/tuner",
        f"postgresql://tuner@db-host/tuner?password={SECRET}",
        f"postgresql://tuner@db-host/tuner?sslmode=require&PASSWORD={SECRET}",
        f"mysql://tuner:{SECRET}@db-host/tuner",
    ],
)
def test_every_spelling_of_a_password_is_refused_and_masked(url: str) -> None:
    with pytest.raises(StorageError, match="must not contain a password") as err:
        resolve_storage(url)
    assert SECRET not in str(err.value)
    assert SECRET not in mask_url(url)


@pytest.mark.parametrize(
    "url", ["nonsense", "postgresql://u@h:abc/db", "postgresql://u@h:99999/db", "://"]
)
def test_a_malformed_url_names_the_option(url: str) -> None:
    with pytest.raises(StorageError, match="--storage must be a database URL"):
        resolve_storage(url)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=20),
    st.sampled_from(["userinfo", "query"]),
)
def test_no_secret_survives_masking_whatever_the_password(password: str, where: str) -> None:
    secret = SECRET + password
    url = (
        f"postgresql://tuner:{secret}@db-host/tuner"
        if where == "userinfo"
        else f"postgresql://tuner@db-host/tuner?password={secret}"
    )
    assert SECRET not in mask_url(url)
    try:
        resolve_storage(url)
    except StorageError as exc:
        assert SECRET not in str(exc)
    else:  # accepted only if the driver would not see a password either
        pytest.fail(f"accepted a URL with a password: {mask_url(url)}")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_as_storage_is_a_clean_error_or_a_url(text: str) -> None:
    try:
        out = resolve_storage(text)
    except StorageError:
        return
    assert out == text or (not text and out is None)


def test_the_url_from_the_environment_is_masked_in_the_identity(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ALEXNET_TUNER_STORAGE", f"postgresql://u:{SECRET}@db/x")
    opts = SearchOptions(engine="optuna", data_dir=tmp_path)
    assert SECRET not in json.dumps(opts.identity())
    assert SECRET not in json.dumps(opts.to_dict())


def _optuna_search(storage: str, data: Path, run_dir: Path, *extra: str, env=None):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "search.run",
            "--engine",
            "optuna",
            "--storage",
            storage,
            "--data-dir",
            str(data),
            "--run-dir",
            str(run_dir),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_search_run_exits_2_without_echoing_the_password(tmp_path: Path) -> None:
    url = f"postgresql://tuner:pa/{SECRET}@db-host/tuner"
    out = _optuna_search(url, tmp_path, tmp_path / "run")
    assert out.returncode == 2 and "must not contain a password" in out.stderr
    assert SECRET not in out.stdout + out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "config.json").exists()


def test_an_unreachable_database_exits_2_with_the_masked_url(tmp_path: Path) -> None:
    from tests.conftest import make_blog_layout

    data = make_blog_layout(tmp_path / "data", train=5, test=2)
    out = _optuna_search(
        "postgresql://tuner@127.0.0.1:1/tuner",
        data,
        tmp_path / "run",
        "--image-size",
        "67",
        "--cache-dir",
        str(tmp_path / "cache"),
        env={"PGPASSWORD": SECRET},
    )
    assert out.returncode == 2, out.stderr[-1500:]
    assert "cannot use the study storage postgresql://tuner@127.0.0.1:1/tuner" in out.stderr
    assert "Traceback" not in out.stderr and SECRET not in out.stdout + out.stderr
