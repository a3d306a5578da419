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


def mask_text(text: str) -> str:
    """The text with ID numbers, phones and any run of 4+ digits masked."""
    return _PERSONAL.sub(_mask, text)
