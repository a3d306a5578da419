"""Logging for the HTTP servers: uvicorn's configuration with the access log redacted.

Every server in one process (the web chat and, in the demo, the account sandbox)
must use this same configuration: uvicorn applies its logging configuration per
server, and a second server started with the default one would replace the
redacting filter for both.
"""
from __future__ import annotations

import copy
import logging
import re
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
