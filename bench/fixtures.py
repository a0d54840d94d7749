"""The test pages (tests/fixtures) served on loopback for the benchmark drivers."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D102 - requests are not worth a line each
        pass


def fixture_server() -> str:
    """Serves FIXTURES on a free loopback port from a daemon thread; returns the base URL."""
    handler = functools.partial(QuietHandler, directory=str(FIXTURES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"
