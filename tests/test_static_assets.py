"""Static files over real HTTP (uvicorn on a socket, raw http.client: nothing decompresses for us):
ETag + 304 on If-None-Match, Cache-Control, gzip when accepted (the body decompresses to the file),
and no compression of the chat API or its event stream."""
from __future__ import annotations

import gzip
import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from channels.app import create_app
from channels.assets import accepts_gzip
from handlers.db import Database
from handlers.staff import StaffStore
from handlers.types import Message, Reply
from live_server import serving

STATIC = Path(__file__).resolve().parent.parent / "channels" / "static"
PASSWORD = "static-assets-pass-1"


class Echo:
    def handle(self, session_id: str, message: Message) -> list[Reply]:
        return [Reply("您好，" * 200)]   # long enough that a compressor would bother


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("static")
    staff = StaffStore(Database(f"sqlite:///{tmp}/bot.db"))
    staff.add("li", "agent", PASSWORD)
    cfg = {"web": {"session_secret": "static-test-secret-0123456789abcdef"}, "telegram": {"token": ""},
           "sessions": {"data_dir": str(tmp)}, "handoff": {"database_url": f"sqlite:///{tmp}/bot.db"}}
    with serving(create_app(cfg, engine=Echo(), staff=staff), "static-assets") as url:
        yield url


def get(base: str, path: str, headers: dict[str, str] | None = None, method: str = "GET",
        body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path,name,cache", [("/widget.js", "widget.js", "public, max-age=300"),
                                             ("/", "demo.html", "no-cache"),
                                             ("/staff/console.css", "console.css", "public, no-cache")])
def test_public_files_are_gzipped_tagged_and_revalidated(base, path, name, cache):
    raw = (STATIC / name).read_bytes()
    status, h, body = get(base, path, {"Accept-Encoding": "gzip, deflate, br"})
    assert status == 200 and h["content-encoding"] == "gzip" and h["cache-control"] == cache
    assert "accept-encoding" in h["vary"].lower()
    assert gzip.decompress(body) == raw and len(body) < len(raw) and int(h["content-length"]) == len(body)
    etag = h["etag"]
    assert etag.startswith('"') and etag.endswith('"')

    status, plain_h, plain = get(base, path)                     # no Accept-Encoding: the file itself
    assert status == 200 and "content-encoding" not in plain_h and plain == raw
    assert plain_h["etag"] != etag                                 # another representation, another tag

    for tag in (etag, plain_h["etag"], f'"nope", W/{etag}', "*"):   # either form's tag revalidates
        status, h304, empty = get(base, path, {"Accept-Encoding": "gzip", "If-None-Match": tag})
        assert (status, empty) == (304, b""), tag
        assert h304["etag"] == etag and h304["cache-control"] == cache
    status, _, again = get(base, path, {"Accept-Encoding": "gzip", "If-None-Match": '"stale-version"'})
    assert status == 200 and gzip.decompress(again) == raw


def test_gzip_refused_with_q_zero_gets_the_plain_file(base):
    status, h, body = get(base, "/widget.js", {"Accept-Encoding": "gzip;q=0, identity"})
    assert status == 200 and "content-encoding" not in h and body == (STATIC / "widget.js").read_bytes()
    assert accepts_gzip("*") and accepts_gzip("GZIP;q=0.5") and not accepts_gzip("br") and not accepts_gzip("")


def test_the_agent_script_is_private_and_signed_in_only(base):
    status, h, _ = get(base, "/staff/console.js", {"Accept-Encoding": "gzip"})
    assert status == 303 and h["location"] == "/staff/login"
    form = f"name=li&password={PASSWORD}".encode()
    status, h, _ = get(base, "/staff/login", {"Content-Type": "application/x-www-form-urlencoded"}, "POST", form)
    assert status == 303
    cookie = h["set-cookie"].split(";")[0]
    status, h, body = get(base, "/staff/console.js", {"Accept-Encoding": "gzip", "Cookie": cookie})
    assert status == 200 and h["cache-control"] == "private, no-cache" and h["content-encoding"] == "gzip"
    assert gzip.decompress(body) == (STATIC / "console.js").read_bytes()
    status, _, empty = get(base, "/staff/console.js", {"Cookie": cookie, "If-None-Match": h["etag"]})
    assert (status, empty) == (304, b"")
    # revalidation does not bypass sign-in
    status, h, _ = get(base, "/staff/console.js", {"If-None-Match": h["etag"]})
    assert status == 303


def test_chat_api_and_event_stream_are_not_compressed(base):
    status, _, body = get(base, "/api/session", {"Accept-Encoding": "gzip"}, "POST")
    sid = json.loads(body)["session_id"]
    status, h, body = get(base, "/api/chat", {"Accept-Encoding": "gzip", "Content-Type": "application/json"},
                          "POST", json.dumps({"session_id": sid, "text": "你好"}).encode())
    assert status == 200 and "content-encoding" not in h and json.loads(body)["replies"]
    conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=10)
    try:
        conn.request("GET", f"/api/chat/events?session_id={sid}", headers={"Accept-Encoding": "gzip"})
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("content-type", "").startswith("text/event-stream")
        assert r.getheader("content-encoding") is None and r.getheader("etag") is None
        assert r.readline() == b"retry: 2000\n"    # readable as it comes: not buffered by a compressor
    finally:
        conn.close()
