"""Uploaded photos are decoded, limited and re-encoded; records files rotate."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image as PILImage

from handlers.images import ImageRejected, sanitize
from handlers.records import FeedbackRecords
from support import photo
from handlers.types import Image


def test_real_jpeg_and_png_are_re_encoded_in_their_format():
    for fmt, ctype, ext in (("JPEG", "image/jpeg", "jpg"), ("PNG", "image/png", "png")):
        raw = photo(fmt) + b"<script>alert(1)</script>"   # trailing bytes do not survive re-encoding
        out = sanitize(Image(raw, "证件.dat", "text/html"))
        assert out.content_type == ctype and out.filename == f"证件.{ext}"
        assert b"<script>" not in out.data
        with PILImage.open(io.BytesIO(out.data)) as pic:
            assert pic.format == fmt and pic.size == (640, 400)


@pytest.mark.parametrize("data", [
    b"\xff\xd8\xff\xe0" + b"<html><body>not a photo</body></html>" * 20,   # a JPEG header then HTML
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 300,
    b"GIF89a" + b"\x00" * 300,
    b"%PDF-1.7 not an image",
])
def test_magic_bytes_are_not_enough(data):
    with pytest.raises(ImageRejected, match="JPG 或 PNG"):
        sanitize(Image(data, "id.jpg", "image/jpeg"))


def test_truncated_jpeg_is_refused():
    with pytest.raises(ImageRejected):
        sanitize(Image(photo("JPEG")[:600], "id.jpg", "image/jpeg"))


def test_other_real_formats_are_refused():
    out = io.BytesIO()
    PILImage.new("RGB", (400, 400)).save(out, "GIF")
    with pytest.raises(ImageRejected, match="JPG 或 PNG"):
        sanitize(Image(out.getvalue(), "id.gif", "image/gif"))


def test_size_pixel_and_minimum_limits():
    with pytest.raises(ImageRejected, match="太大"):
        sanitize(Image(photo("PNG"), "id.png"), max_bytes=1000)
    with pytest.raises(ImageRejected, match="像素过大"):
        sanitize(Image(photo("PNG"), "id.png"), max_pixels=640 * 399)
    with pytest.raises(ImageRejected, match="太小"):
        sanitize(Image(photo("PNG", (120, 80)), "id.png"))


def test_a_decompression_bomb_is_refused_before_decoding():
    out = io.BytesIO()
    PILImage.new("1", (12000, 12000)).save(out, "PNG")   # 144 MP in a few hundred KB
    with pytest.raises(ImageRejected, match="像素过大"):
        sanitize(Image(out.getvalue(), "bomb.png"))


def test_records_rotate_past_the_cap_and_keep_a_few(tmp_path):
    rec = FeedbackRecords(tmp_path, max_bytes=2000, keep=2)
    for i in range(100):
        rec.feedback(f"s{i}", "recover_account.password", True)
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert files == ["feedback.jsonl", "feedback.jsonl.1", "feedback.jsonl.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    votes = [json.loads(line) for line in (tmp_path / "feedback.jsonl").read_text(encoding="utf-8").splitlines()]
    assert votes and all(v["entry"] == "recover_account.password" and v["helpful"] is True for v in votes)
