"""Uploaded photos: decoded for real, limited in size and pixels, re-encoded before anyone sees them.

``sanitize(image)`` returns a fresh JPEG or PNG made from the decoded pixels (metadata and
anything appended to the file are gone), or raises ``ImageRejected`` with a Chinese message.
Magic bytes prove nothing: a JPEG header followed by HTML fails to decode here.
"""
from __future__ import annotations

import io
import warnings

from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from accounts.contract import MAX_IMAGE_BYTES

from .types import Image

MAX_BYTES = MAX_IMAGE_BYTES         # the account API's own limit for a review photo
MAX_PIXELS = 40_000_000            # 40 MP: any phone camera; far below a decompression bomb
MIN_SIDE = 200                     # smaller cannot show an ID card legibly
TOO_MANY_PIXELS = "照片的像素过大，请缩小后重新上传。"
FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png")}   # Pillow format → the contract's IMAGE_TYPES


class ImageRejected(Exception):
    """The upload is not a usable JPEG/PNG photo; ``message`` says why, in Chinese."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _too_big(max_bytes: int) -> ImageRejected:
    return ImageRejected(f"照片太大了（上限 {max(1, max_bytes // 1024 // 1024)} MB），请压缩或截图后重新上传。")


def sanitize(image: Image, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Image:
    """The photo decoded and re-encoded in its own format (JPEG or PNG), EXIF orientation applied."""
    if len(image.data) > max_bytes:
        raise _too_big(max_bytes)
    bad = ImageRejected("无法识别这张图片。请上传 JPG 或 PNG 格式的照片（不要上传其他文件）。")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(image.data), formats=list(FORMATS)) as pic:
                fmt = pic.format or ""
                width, height = pic.size
                if width * height > max_pixels:
                    raise ImageRejected(TOO_MANY_PIXELS)
                pic.load()   # decodes every pixel: a truncated or forged file fails here
                pic = ImageOps.exif_transpose(pic)
    except ImageRejected:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise ImageRejected(TOO_MANY_PIXELS) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise bad from None
    if fmt not in FORMATS:
        raise bad
    if min(width, height) < MIN_SIDE:
        raise ImageRejected("照片太小，看不清证件内容。请拍摄清晰、完整的证件照片后重新上传。")
    out = io.BytesIO()
    if fmt == "JPEG":
        pic.convert("RGB").save(out, "JPEG", quality=90, optimize=True)
    else:
        if pic.mode not in ("RGB", "RGBA", "L", "LA"):
            pic = pic.convert("RGBA")
        pic.save(out, "PNG", optimize=False)
    data = out.getvalue()
    if len(data) > max_bytes:
        raise _too_big(max_bytes)
    content_type, ext = FORMATS[fmt]
    stem = (image.filename.rsplit(".", 1)[0] or "photo")[:80]
    return Image(data, f"{stem}.{ext}", content_type)
