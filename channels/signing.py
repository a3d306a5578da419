"""Signing for the web channel: session ids and button payloads the server recognises
without storing them, and the secret file that keeps the key across restarts."""
from __future__ import annotations

import base64
import functools
import hmac
import os
import re
import secrets
from typing import Any

from settings import WebConfig, resolve_path

_TOKEN = re.compile(r"[A-Za-z0-9_.:\-]{1,256}")


class Signer:
    """HMACs that let the server recognise what it issued without storing it:
    session ids (``<engine id>.<mac>``) and, per session, button payloads (``<payload>~<mac>``)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        # the same ids and buttons are signed again on every turn of a conversation
        self._mac = functools.lru_cache(maxsize=8192)(self._compute)

    def _compute(self, purpose: bytes, value: str, size: int) -> str:
        mac = hmac.digest(self._secret, purpose + b"\0" + value.encode(), "sha256")   # one C call
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")[:size]

    def issue(self, session_id: str) -> str:
        """The token the client keeps for ``session_id``."""
        return f"{session_id}.{self._mac(b'session', session_id, 32)}"

    def verify(self, token: Any) -> str | None:
        """The engine session id of a token we issued; None for anything else."""
        if not isinstance(token, str) or not _TOKEN.fullmatch(token) or "." not in token:
            return None
        session_id, mac = token.rsplit(".", 1)
        if session_id and hmac.compare_digest(mac, self._mac(b"session", session_id, 32)):
            return session_id
        return None

    def sign_payload(self, session_id: str, payload: str) -> str:
        """The button payload as sent to this session's client."""
        return f"{payload}~{self._mac(b'payload', session_id + chr(0) + payload, 16)}"

    def open_payload(self, session_id: str, signed: str) -> str | None:
        """The engine payload behind a signed one issued to this session; None if we never issued it."""
        payload, _, mac = signed.rpartition("~")
        if payload and hmac.compare_digest(mac, self._mac(b"payload", session_id + chr(0) + payload, 16)):
            return payload
        return None


def load_secret(conf: WebConfig) -> bytes:
    """The signing secret: config/env ``web.session_secret``, else one kept in ``web.secret_file``
    (generated on first use, mode 600)."""
    if conf.session_secret:
        return conf.session_secret.encode()
    path = resolve_path(conf.secret_file)
    try:
        value = path.read_text(encoding="ascii").strip()
        if len(value) >= 32:
            return value.encode()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(value + "\n")
    return value.encode()
