"""Static files the widget and the consoles load (``channels/static/``), served cheaply.

Each file is read once when the app is built (an edit needs a restart), with its gzip form
precomputed and an ``ETag`` from its content. A request whose ``If-None-Match`` names the
current version gets ``304 Not Modified`` with no body; otherwise the body is gzip when the
client accepts it (``Accept-Encoding``), else the plain bytes. Only these files are compressed:
API responses are small JSON and event streams must not be buffered by a compressor.
"""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response

STATIC = Path(__file__).resolve().parent / "static"

_TYPES = {"js": "application/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
          "html": "text/html; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    """One static file: its bytes, its gzip form and the validators of both."""

    body: bytes
    gzipped: bytes
    media_type: str
    etag: str           # quoted strong validator of the plain bytes
    gzip_etag: str      # of the gzip bytes (a different representation, so a different tag)

    @classmethod
    def load(cls, name: str, folder: Path = STATIC) -> "Asset":
        """The file ``folder/name`` (its type from the extension: js, css or html)."""
        body = (folder / name).read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:20]
        # mtime=0: the same file always compresses to the same bytes (stable across instances)
        gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        return cls(body, gzipped, _TYPES[name.rsplit(".", 1)[1]], f'"{digest}"', f'"{digest}-gz"')

    def response(self, request: Request, cache_control: str, headers: dict[str, str] | None = None) -> Response:
        """200 with the body (gzip when accepted) or 304 when ``If-None-Match`` names this version."""
        gz = accepts_gzip(request.headers.get("accept-encoding", ""))
        common = {"Cache-Control": cache_control, "Vary": "Accept-Encoding", **(headers or {})}
        if _matches(request.headers.get("if-none-match", ""), (self.etag, self.gzip_etag)):
            return Response(status_code=304, headers={**common, "ETag": self.gzip_etag if gz else self.etag})
        if gz:
            return Response(self.gzipped, media_type=self.media_type,
                            headers={**common, "ETag": self.gzip_etag, "Content-Encoding": "gzip"})
        return Response(self.body, media_type=self.media_type, headers={**common, "ETag": self.etag})


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip`` or ``*`` without ``q=0``)."""
    allowed: dict[str, bool] = {}
    for part in header.lower().split(","):
        coding, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            key, _, value = p.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding.strip():
            allowed[coding.strip()] = q > 0
    return allowed.get("gzip", allowed.get("x-gzip", allowed.get("*", False)))


def _matches(header: str, tags: tuple[str, ...]) -> bool:
    """``If-None-Match`` (weak comparison, RFC 9110 13.1.2): ``*`` or any listed tag is one of ``tags``."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    given = {t.strip().removeprefix("W/") for t in header.split(",")}
    return any(t in given for t in tags)
