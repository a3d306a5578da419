"""Masking of personal data in free text: what transcripts and logs may keep."""
from __future__ import annotations

import re

from accounts.masking import mask_id_number, mask_phone

# One pass, longest alternatives first: an 18-character ID contains 11-digit runs
# that look like phones, and masked output must not be masked again.
_PERSONAL = re.compile(
    r"(?<![0-9A-Za-z])(?P<id>\d{17}[\dXx]|\d{15}|[A-Za-z]{3}\d{12}|[HMhm]\d{8}(?:\d{2})?)(?![0-9A-Za-z])"
    r"|(?<!\d)(?:\+?86[- ]?)?(?P<phone>1[3-9]\d{9})(?!\d)"
    r"|(?<![\d*])(?P<digits>\d{4,})(?![\d*])")   # codes, student/certificate numbers, permits


def _mask(m: re.Match[str]) -> str:
    if m.group("id"):
        return mask_id_number(m.group("id"))
    if m.group("phone"):
        return mask_phone(m.group("phone"))
    return "*" * len(m.group("digits"))


_DIGIT = re.compile(r"\d")   # every pattern below needs one: a text without is returned as it is (fast)


def mask_text(text: str) -> str:
    """The text with ID numbers, phones and any run of 4+ digits masked."""
    return _PERSONAL.sub(_mask, text) if _DIGIT.search(text) else text


# A link's query, fragment and any long opaque path segment (one-time reset/QR tokens) are secrets.
_URL = re.compile(r"https?://[^\s<>()\[\]（）\"']+")
_OPAQUE = re.compile(r"^(?=.*\d)[A-Za-z0-9_\-.~%]{12,}$|^[A-Za-z0-9_\-~%]{20,}$")


def _mask_url(m: re.Match[str]) -> str:
    url = m.group(0)
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    path = path.split("?", 1)[0].split("#", 1)[0]
    parts = ["***" if _OPAQUE.match(p) else p for p in path.split("/")] if slash else []
    hidden = ("?" in url or "#" in url)
    return f"{scheme}://{host}" + ("/" + "/".join(parts) if slash else "") + ("?***" if hidden else "")


# e-mail addresses keep only their domain; long opaque strings outside links (a pasted reset
# token, a WeChat OpenID) that mix letters (two or more: not an ID number's X) and digits are hidden whole
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@(?P<domain>[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)")
_BARE_TOKEN = re.compile(r"(?<![A-Za-z0-9_\-])(?=[A-Za-z0-9_\-]*\d)(?=(?:[A-Za-z0-9_\-]*[A-Za-z]){2})"
                         r"[A-Za-z0-9_\-]{16,}(?![A-Za-z0-9_\-])")


def mask_secrets(text: str) -> str:
    """``mask_text`` plus links stripped of their tokens, e-mail addresses reduced to their domain and
    long letter-and-digit tokens hidden: what a transcript for staff (and a turn event) may keep."""
    if "://" in text:
        text = _URL.sub(_mask_url, text)
    if "@" in text:
        text = _EMAIL.sub(lambda m: "***@" + m.group("domain"), text)
    if not _DIGIT.search(text):   # a bare token and everything mask_text hides has a digit
        return text
    return mask_text(_BARE_TOKEN.sub("***", text))
