"""A real HTTP receiver for webhook tests: binds an ephemeral port, verifies each signature
like a help desk would, answers a scripted series of statuses, and can hold requests open — or hang
on the first ones: never answer, or trickle an answer a byte at a time that never ends."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """``statuses``: answers for the first requests, 200 after; ``hold``: requests wait on it;
    ``hang``: the first ``hang`` requests get no answer until the receiver closes — ``drip`` set: a
    status line sent one byte every ``drip`` seconds, then more header bytes, forever (a read
    timeout per socket read never fires)."""

    def __init__(self, secret: str, statuses: tuple[int, ...] = (), hold: threading.Event | None = None,
                 headers: dict[str, str] | None = None, hang: int = 0, drip: float | None = None) -> None:
        self.secret = secret.encode()
        self.statuses = list(statuses)
        self.hold = hold
        self.extra_headers = headers or {}
        self.requests: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        self.hang, self.drip = hang, drip
        self.closing = threading.Event()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(owner.secret, body, hashlib.sha256).hexdigest()
                signature = self.headers.get("X-Signature", "")
                record = {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                          "path": self.path, "signature_ok": hmac.compare_digest(expected, signature)}
                with owner._lock:
                    owner.requests.append(record)
                    hang = len(owner.requests) <= owner.hang
                    status = owner.statuses.pop(0) if owner.statuses and not hang else 200
                owner.arrived.set()
                if hang:
                    self.close_connection = True
                    if owner.drip is None:
                        owner.closing.wait()
                        return
                    for byte in (b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"." * 100000):
                        if owner.closing.wait(owner.drip):
                            return
                        try:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                        except OSError:
                            return   # the sender gave up on us
                    return
                if owner.hold is not None:
                    owner.hold.wait(30)
                if not record["signature_ok"]:
                    status = 401
                self.send_response(status)
                for k, v in owner.extra_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/chsi?token=abc"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.closing.set()
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        """The JSON bodies received with a valid signature, in order."""
        with self._lock:
            return [json.loads(r["body"]) for r in self.requests if r["signature_ok"]]

    def wait_for(self, count: int, deadline: float = 10.0) -> list[dict[str, Any]]:
        """Poll until ``count`` requests arrived (any signature); all of them."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        with self._lock:
            raise AssertionError(f"expected {count} webhook requests, got {len(self.requests)}")


def poll(condition, deadline: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``condition()`` is true (generous deadline, short polls)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met before the deadline")
