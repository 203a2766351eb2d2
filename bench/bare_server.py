"""The HTTP peer: a bare ``ThreadingHTTPServer`` answering a fixed small JSON.

Tuned as one would tune the standard server without writing a new one:
HTTP/1.1 keep-alive, TCP_NODELAY, a listen backlog of 1024, daemonic
handler threads, no access log on stderr. It keeps the standard
``serve_forever`` loop (which wakes twice a second to check for shutdown).

Run alone: ``python bench/bare_server.py PORT``; prints ``ready`` once listening.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b'{"status": "healthy", "uptime_seconds": 1, "fetcher_service_connected": true, "scheduler_running": true}'


class BareHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class BareServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True


def serve_in_thread(port: int) -> BareServer:
    """Start a bare server on ``127.0.0.1:port`` in a daemon thread."""
    server = BareServer(("127.0.0.1", port), BareHandler)
    threading.Thread(target=server.serve_forever, name="bare-http", daemon=True).start()
    return server


def main() -> int:
    server = BareServer(("127.0.0.1", int(sys.argv[1])), BareHandler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("ready", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
