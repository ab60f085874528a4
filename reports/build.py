"""``python -m reports.build RUN_DIR``: (re)write a run's report.html and its folder's index.

Works for a finished run, one still going, and one that crashed (the page says which).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from data_pipeline.files import no_room
from reports.writer import write_index, write_report
from search.rundir import RunDirError


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports.build", description=__doc__)
    p.add_argument("run_dir", type=Path, help="a run directory, or a folder of runs with --index")
    p.add_argument("--index", action="store_true", help="only rebuild RUN_DIR/index.html")
    args = p.parse_args(argv)
    try:
        if args.index:
            print(write_index(args.run_dir))
        else:
            print(write_report(args.run_dir))
    except (FileNotFoundError, RunDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only archive
        room = no_room(exc, args.run_dir)
        if room is None:
            raise
        print(f"error: {room}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
