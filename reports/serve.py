"""``python -m reports.serve RUNS_DIR``: serve the reports on localhost and print the address."""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from data_pipeline.files import write_text_atomic
from reports.writer import render_index


class InsideOnly(http.server.SimpleHTTPRequestHandler):
    """Serves files of the runs folder only: a symbolic link that leads out of it is a 404.
    ``pages`` are served from memory (the index of a read-only runs folder)."""

    pages: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.pages.get(self.path.split("?", 1)[0])
        if body is None:
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def translate_path(self, path: str) -> str:
        local = super().translate_path(path)
        root = os.path.realpath(self.directory)
        real = os.path.realpath(local)
        if real != root and not real.startswith(root + os.sep):
            return os.path.join(root, ".alexnet-tuner-outside-the-runs-folder")  # never exists
        return local


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports.serve", description=__doc__)
    p.add_argument("runs_dir", type=Path, nargs="?", default=Path("runs"))
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = p.parse_args(argv)
    if not args.runs_dir.is_dir():
        print(f"error: {str(args.runs_dir)!r} is not a folder of runs.", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(
            f"error: --port must be 0-65535 (0 picks a free one), but got {args.port}.",
            file=sys.stderr,
        )
        return 2
    index, html = render_index(args.runs_dir)
    pages: dict[str, bytes] = {}
    try:
        write_text_atomic(index, html)
    except OSError as exc:  # a read-only archive or share: browse it all the same
        print(f"note: {exc.strerror} for {str(index)!r}: serving the index from memory")
        pages = {f"/{index.name}": html.encode()}
        if index.name == "index.html":
            pages["/"] = pages["/index.html"]
    handler = functools.partial(
        type("Handler", (InsideOnly,), {"pages": pages}), directory=str(args.runs_dir)
    )
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    except OSError as exc:
        print(
            f"error: cannot serve on port {args.port} ({exc.strerror}); choose another with "
            "--port, or --port 0 for a free one.",
            file=sys.stderr,
        )
        return 2
    with server:
        page = "" if index.name == "index.html" else index.name
        print(
            f"serving {args.runs_dir} at http://127.0.0.1:{server.server_address[1]}/{page} "
            "(Ctrl-C to stop)",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
