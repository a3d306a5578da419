"""``HttpAccountClient``: the bot's account API client over HTTP (requests).

Retries: connection errors, timeouts and 502/503/504 are retried with exponential backoff
(``backoff``, doubled each time, ``retries`` extra tries) for GETs and for POST/DELETEs that
carry an Idempotency-Key (the service replays those, so a retry cannot act twice). Calls
without a key are tried once. After the last try, or on any other 5xx or a reply that is not
the contract's, ``ServiceUnavailable`` is raised. Refusals become the ``accounts.base`` error for
their code, with ``retry_after`` / ``attempts_left`` / ``field``.

Logs carry only the method, the path template, the status and the duration: never bodies,
path values, tokens or query strings.
"""
from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

import requests

from .base import AccountError, ServiceUnavailable
from .wire import OPERATIONS, WireClient, error_from_body
from settings import AccountsConfig

log = logging.getLogger("accounts.client")
_RETRY_STATUSES = frozenset({502, 503, 504})
_UNAVAILABLE = "账号服务暂时不可用，请稍后再试。"


class HttpAccountClient(WireClient):
    """``AccountAPI`` over HTTP. ``client_id`` (optional) is sent as X-Client-Id for per-client rate limits."""

    def __init__(self, config: AccountsConfig, session: requests.Session | None = None,
                 client_id: str | None = None) -> None:
        self.config = config
        self.session = session or requests.Session()
        self.client_id = client_id

    def with_client_id(self, client_id: str) -> "HttpAccountClient":
        """The same client (sharing its session) acting for one end-user client, e.g. a chat session id."""
        return HttpAccountClient(self.config, self.session, client_id)

    def close(self) -> None:
        self.session.close()

    def _call(self, op: str, *, token: str | None = None, key: str | None = None,
              path: dict[str, str] | None = None, body: dict[str, Any] | None = None,
              image: tuple[str, bytes, str] | None = None) -> dict[str, Any]:
        method, template = OPERATIONS[op]
        url = self.config.base_url + template.format(**{k: quote(str(v), safe="") for k, v in (path or {}).items()})
        headers = {"X-API-Key": self.config.api_key, "Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if key is not None:
            headers["Idempotency-Key"] = key
        if self.client_id:
            headers["X-Client-Id"] = self.client_id
        kwargs: dict[str, Any] = {"headers": headers, "timeout": (self.config.connect_timeout,
                                                                  self.config.read_timeout)}
        if image is not None:
            kwargs["files"] = {"image": image}
        elif body is not None:
            kwargs["json"] = body
        retryable = method == "GET" or key is not None
        return self._send(method, url, template, kwargs, self.config.retries if retryable else 0)

    def _send(self, method: str, url: str, template: str, kwargs: dict[str, Any], retries: int) -> dict[str, Any]:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
            started = time.monotonic()
            try:
                resp = self.session.request(method, url, **kwargs)
            except requests.RequestException as e:
                log.warning("%s %s failed (%s), try %d/%d", method, template, type(e).__name__, attempt + 1,
                            retries + 1)
                continue
            log.info("%s %s -> %d (%.0f ms)", method, template, resp.status_code,
                     (time.monotonic() - started) * 1000)
            if resp.status_code in _RETRY_STATUSES:
                continue
            return self._result(resp)
        raise ServiceUnavailable(_UNAVAILABLE)

    @staticmethod
    def _result(resp: requests.Response) -> dict[str, Any]:
        if resp.status_code == 204:
            return {}
        try:
            body = resp.json()
        except ValueError:
            body = None
        if 200 <= resp.status_code < 300 and isinstance(body, dict):
            return body
        if 400 <= resp.status_code < 500 and isinstance(body, dict) and isinstance(body.get("code"), str):
            exc: AccountError = error_from_body(body)
            if exc.retry_after is None and resp.headers.get("Retry-After", "").isdigit():
                exc.retry_after = int(resp.headers["Retry-After"])
            raise exc
        raise ServiceUnavailable(_UNAVAILABLE, details={"status": resp.status_code})
