"""Library output during the search's export goes to a log, by Python and by native code."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from search.quiet import output_to


def test_output_to_takes_python_and_native_writes_and_gives_the_descriptors_back(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "logs" / "export.log"
    with output_to(log):
        print("python stdout")
        print("python stderr", file=sys.stderr)
        os.write(1, b"native stdout\n")
        os.write(2, b"native stderr\n")
    print("after")
    os.write(2, b"after, native\n")
    text = log.read_text()
    for line in ("python stdout", "python stderr", "native stdout", "native stderr"):
        assert line in text
    seen = capfd.readouterr()
    assert seen.out == "after\n" and seen.err == "after, native\n"


def test_output_to_an_unwritable_log_still_keeps_the_console_clean(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    with output_to(blocked / "logs" / "export.log"):  # its parent cannot be a folder
        os.write(2, b"chatter\n")
    assert capfd.readouterr().err == ""
