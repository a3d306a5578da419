"""The channels' config sections: ``web`` and ``telegram`` in config.yaml."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class WebConfig:
    """The ``web`` section of config.yaml."""

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 6 * 1024 * 1024
    max_json_bytes: int = 64 * 1024
    max_text_chars: int = 2000
    session_secret: str = ""
    secret_file: str = "var/web_session.key"

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "WebConfig":
        d = cls()
        return cls(
            host=str(m.get("host") or d.host),
            port=int(m.get("port") or d.port),
            public_url=str(m.get("public_url") or d.public_url).rstrip("/"),
            cors_origins=tuple(str(o).rstrip("/") for o in (m.get("cors_origins") or ())),
            max_body_bytes=int(m.get("max_body_bytes") or d.max_body_bytes),
            max_json_bytes=int(m.get("max_json_bytes") or d.max_json_bytes),
            max_text_chars=int(m.get("max_text_chars") or d.max_text_chars),
            session_secret=str(m.get("session_secret") or ""),
            secret_file=str(m.get("secret_file") or d.secret_file),
        )


@dataclass(frozen=True)
class TelegramConfig:
    """The ``telegram`` section of config.yaml."""

    token: str = ""
    webhook_secret: str = ""
    webhook_path: str = "/telegram/webhook"

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "TelegramConfig":
        path = str(m.get("webhook_path") or cls.webhook_path)
        return cls(token=str(m.get("token") or "").strip(), webhook_secret=str(m.get("webhook_secret") or ""),
                   webhook_path=path if path.startswith("/") else "/" + path)
