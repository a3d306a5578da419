"""The channels' config sections: ``web``, ``telegram`` and ``wechat`` in config.yaml."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from settings import ConfigError


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
    events_per_minute: int = 60   # GET /api/chat/events connections per client address

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
            events_per_minute=int(m.get("events_per_minute") or d.events_per_minute),
        )


@dataclass(frozen=True)
class TelegramConfig:
    """The ``telegram`` section of config.yaml."""

    token: str = ""
    webhook_secret: str = ""
    webhook_path: str = "/telegram/webhook"
    base_url: str = "https://api.telegram.org/bot"            # the Bot API (a local Bot API server, a stand-in)
    base_file_url: str = "https://api.telegram.org/file/bot"  # where files are downloaded from

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "TelegramConfig":
        path = str(m.get("webhook_path") or cls.webhook_path)
        return cls(token=str(m.get("token") or "").strip(), webhook_secret=str(m.get("webhook_secret") or ""),
                   webhook_path=path if path.startswith("/") else "/" + path,
                   base_url=str(m.get("base_url") or cls.base_url).strip(),
                   base_file_url=str(m.get("base_file_url") or cls.base_file_url).strip())


@dataclass(frozen=True)
class WeChatConfig:
    """The ``wechat`` section of config.yaml."""

    token: str = ""
    app_id: str = ""
    app_secret: str = ""
    aes_key: str = ""                 # EncodingAESKey (43 characters): safe mode; empty: plain mode
    path: str = "/wechat"
    base_url: str = "https://api.weixin.qq.com"
    passive_seconds: float = 4.0      # answer passively when the engine is done by then (WeChat waits 5 s)
    follow_up_delay: float = 0.3      # seconds from the passive reply to the customer-service messages after it
    max_body_bytes: int = 16384
    max_text_bytes: int = 2000      # WeChat takes at most 2048 bytes in a text message
    max_text_chars: int = 2000
    max_clock_skew: int = 300         # seconds a request's timestamp may be off (0: not checked)
    dedupe_seconds: int = 600
    token_refresh_margin: int = 300   # refresh the access_token this long before it expires
    http_timeout: float = 5.0
    media_max_bytes: int = 5 * 1024 * 1024
    msgmenu: bool = True              # buttons as customer-service menus (False: numbered text)
    user_messages_per_minute: int = 30  # more from one user in a minute: a "too fast" reply, no engine turn
    sqlite_path: str = "var/wechat.db"

    @property
    def enabled(self) -> bool:
        return bool(self.token and self.app_id and self.app_secret)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "WeChatConfig":
        d = cls()
        path = str(m.get("path") or d.path)
        aes_key = str(m.get("aes_key") or "").strip()
        if aes_key and len(aes_key) != 43:
            raise ConfigError("wechat.aes_key: an EncodingAESKey has 43 characters")

        def num(name: str, kind: type) -> Any:
            value = m.get(name)
            return kind(value) if value not in (None, "") else getattr(d, name)

        return cls(token=str(m.get("token") or "").strip(), app_id=str(m.get("app_id") or "").strip(),
                   app_secret=str(m.get("app_secret") or "").strip(), aes_key=aes_key,
                   path=path if path.startswith("/") else "/" + path,
                   base_url=str(m.get("base_url") or d.base_url).rstrip("/"),
                   passive_seconds=num("passive_seconds", float), follow_up_delay=num("follow_up_delay", float),
                   max_body_bytes=num("max_body_bytes", int),
                   max_text_bytes=num("max_text_bytes", int), max_text_chars=num("max_text_chars", int),
                   max_clock_skew=num("max_clock_skew", int), dedupe_seconds=num("dedupe_seconds", int),
                   token_refresh_margin=num("token_refresh_margin", int), http_timeout=num("http_timeout", float),
                   media_max_bytes=num("media_max_bytes", int),
                   user_messages_per_minute=num("user_messages_per_minute", int),
                   msgmenu=bool(m.get("msgmenu", d.msgmenu)), sqlite_path=str(m.get("sqlite_path") or d.sqlite_path))
