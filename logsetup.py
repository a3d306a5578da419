"""Set-up shared by the HTTP servers: uvicorn's logging configuration with the access log
redacted, and the listening socket (a taken port is said plainly, not as uvicorn's traceback).

Every server in one process (the web chat and, in the demo, the account sandbox)
must use this same configuration: uvicorn applies its logging configuration per
server, and a second server started with the default one would replace the
redacting filter for both.
"""
from __future__ import annotations

import copy
import logging
import re
import socket
from typing import Any

_SECRET_PATH = re.compile(r"(/sandbox/(?:reset|qr)/)[^/?\s]+")
_QUERY_VALUE = re.compile(r"=([^&\s]*)")


class RedactAccessLog(logging.Filter):
    """Mask query-string values (?phone=***) and one-time link tokens in access log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, _, query = args[2].partition("?")
            path = _SECRET_PATH.sub(r"\1***", path)
            record.args = (*args[:2], path + ("?" + _QUERY_VALUE.sub("=***", query) if query else ""), *args[3:])
        return True


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's logging configuration with the access log redacted, at ``level``."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["filters"] = {"redact": {"()": RedactAccessLog}}
    cfg["handlers"]["access"]["filters"] = ["redact"]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        cfg["loggers"].setdefault(name, {})["level"] = level.upper()
    return cfg


def listening_socket(host: str, port: int) -> socket.socket | None:
    """A listening socket on host:port, or None when the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: without it Nagle's algorithm delays every kept-alive reply ~40 ms
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        return None
    return sock
