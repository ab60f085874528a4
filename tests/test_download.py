"""The downloader, against a local archive (file://) and an unreachable address."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from data_pipeline.discover import discover
from data_pipeline.download import main
from tests.conftest import write_image


def _pet_archive(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "src"
    for i in range(3):
        write_image(src / "PetImages" / "Cat" / f"{i}.jpg", seed=i)
        write_image(src / "PetImages" / "Dog" / f"{i}.jpg", seed=10 + i)
    (src / "readme[1].txt").write_text("readme")
    archive = tmp_path / "kagglecatsanddogs_5340.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_download_verifies_and_prepares(tmp_path: Path) -> None:
    archive, sha = _pet_archive(tmp_path)
    dest = tmp_path / "data"
    assert main(["--dest", str(dest), "--url", archive.as_uri(), "--sha256", sha]) == 0
    found = discover(dest)
    assert found.classes == ("Cat", "Dog") and len(found.files) == 6
    assert not (dest / archive.name).exists()
    assert not list(dest.glob("*.part"))


def test_bad_checksum_keeps_nothing(tmp_path: Path, capsys) -> None:
    archive, _ = _pet_archive(tmp_path)
    dest = tmp_path / "data"
    assert main(["--dest", str(dest), "--url", archive.as_uri(), "--sha256", "0" * 64]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert list(dest.iterdir()) == []


def test_offline_fails_at_once_with_advice(tmp_path: Path, capsys) -> None:
    code = main(["--dest", str(tmp_path / "d"), "--url", "http://127.0.0.1:9/archive.zip"])
    err = capsys.readouterr().err
    assert code == 1
    assert "could not download" in err and "--data-dir" in err


def test_the_users_archive_in_dest_is_neither_overwritten_nor_deleted(tmp_path: Path) -> None:
    archive, sha = _pet_archive(tmp_path)
    dest = tmp_path / "data"
    dest.mkdir()
    mine = dest / "mydata.zip"
    mine.write_bytes(archive.read_bytes())
    before = mine.read_bytes()
    assert main(["--dest", str(dest), "--url", mine.as_uri(), "--sha256", sha]) == 0
    assert mine.exists() and mine.read_bytes() == before
    assert len(discover(dest / "PetImages").files) == 6
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no leftovers


def test_an_existing_folder_in_dest_is_not_replaced(tmp_path: Path, capsys) -> None:
    archive, sha = _pet_archive(tmp_path)
    dest = tmp_path / "data"
    (dest / "PetImages").mkdir(parents=True)
    (dest / "PetImages" / "notes.txt").write_text("the user's own")
    assert main(["--dest", str(dest), "--url", archive.as_uri(), "--sha256", sha]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (dest / "PetImages" / "notes.txt").read_text() == "the user's own"
    assert sorted(p.name for p in dest.iterdir()) == ["PetImages"]


def test_a_corrupt_archive_is_an_error_and_leaves_nothing(tmp_path: Path, capsys) -> None:
    archive, _ = _pet_archive(tmp_path)
    data = bytearray(archive.read_bytes())
    start = data.find(b"\xff\xd8\xff")  # inside the first JPEG member: its CRC will not match
    data[start + 200 : start + 260] = b"\0" * 60
    archive.write_bytes(bytes(data))
    sha = hashlib.sha256(bytes(data)).hexdigest()
    dest = tmp_path / "data"
    assert main(["--dest", str(dest), "--url", archive.as_uri(), "--sha256", sha]) == 1
    assert "corrupt" in capsys.readouterr().err
    assert list(dest.iterdir()) == []


def _search(tmp_path: Path, env: dict[str, str], *extra: str):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "search.run",
            "--image-size",
            "67",
            "--width",
            "0.125",
            "--precision",
            "float32",
            *extra,
        ],
        cwd=tmp_path,  # no ./data here: the default data set is used
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "KERAS_HOME": str(tmp_path / "keras-home"),
            "ALEXNET_TUNER_CACHE": str(tmp_path / "cache"),
            **env,
        },
    )


@pytest.mark.slow
def test_without_data_dir_the_default_data_is_fetched_once_into_the_keras_cache(
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    for i in range(6):
        write_image(src / "PetImages" / "Cat" / f"{i}.jpg", seed=i)
        write_image(src / "PetImages" / "Dog" / f"{i}.jpg", seed=10 + i)
    (src / "PetImages" / "Cat" / "666.jpg").write_bytes(b"")  # Microsoft's has empty files
    archive = tmp_path / "mirror.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    env = {
        "ALEXNET_TUNER_DATA_URL": archive.as_uri(),
        "ALEXNET_TUNER_DATA_SHA256": hashlib.sha256(archive.read_bytes()).hexdigest(),
    }
    out = _search(tmp_path, env, "--dry-run")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    cached = tmp_path / "keras-home" / "datasets" / "kagglecatsanddogs_5340.zip"
    assert cached.read_bytes() == archive.read_bytes()
    assert "fetching the default data set" in out.stdout
    assert "class-folders layout" in out.stdout and "skipped 1 of 13 files" in out.stdout
    assert "PetImages/Cat/666.jpg" in out.stdout
    archive.unlink()  # the second run uses the cache: no origin needed
    again = _search(tmp_path, env, "--dry-run")
    assert again.returncode == 0 and "fetching" not in again.stdout


@pytest.mark.slow
def test_default_data_offline_or_corrupt_is_one_clear_message(tmp_path: Path) -> None:
    offline = _search(tmp_path, {"ALEXNET_TUNER_DATA_URL": "http://127.0.0.1:9/x.zip"})
    assert offline.returncode == 2, offline.stderr[-2000:]
    assert "Offline?" in offline.stderr and "keras-home/datasets" in offline.stderr
    assert "Traceback" not in offline.stderr
    assert offline.stderr.count("127.0.0.1:9") == 1 and "None --" not in offline.stderr
    assert "Connection refused" in offline.stderr  # the reason, in words
    assert not (tmp_path / "runs").exists()  # no empty run directory holding only its lock
    (tmp_path / "keras-file").write_text("not a folder")
    filed = _search(tmp_path, {"KERAS_HOME": str(tmp_path / "keras-file")})
    assert filed.returncode == 2 and "is a file, not a folder" in filed.stderr
    assert "Traceback" not in filed.stderr
    archive, _ = _pet_archive(tmp_path)
    wrong = _search(tmp_path, {"ALEXNET_TUNER_DATA_URL": archive.as_uri()})  # the real SHA
    assert wrong.returncode == 2 and "SHA-256" in wrong.stderr, wrong.stderr[-2000:]
    assert not (tmp_path / "keras-home" / "datasets" / "kagglecatsanddogs_5340.zip").exists()
