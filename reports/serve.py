"""``python -m reports.serve RUNS_DIR``: serve the reports on localhost and print the address."""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import sys
from collections.abc import Sequence
from pathlib import Path

from reports.writer import write_index


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports.serve", description=__doc__)
    p.add_argument("runs_dir", type=Path, nargs="?", default=Path("runs"))
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = p.parse_args(argv)
    if not args.runs_dir.is_dir():
        print(f"error: {str(args.runs_dir)!r} is not a folder of runs.", file=sys.stderr)
        return 2
    write_index(args.runs_dir)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(args.runs_dir))
    with http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler) as server:
        print(
            f"serving {args.runs_dir} at http://127.0.0.1:{server.server_address[1]}/ "
            "(Ctrl-C to stop)",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
