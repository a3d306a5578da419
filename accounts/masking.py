"""Masks for personal data in logs and in what the service shows back (138****1234)."""
from __future__ import annotations


def mask_phone(phone: str) -> str:
    """138****1234; anything too short to keep both ends becomes ****."""
    p = (phone or "").strip()
    return f"{p[:3]}****{p[-4:]}" if len(p) >= 8 else "****"


def mask_id_number(id_number: str) -> str:
    """1101**********123X: first 4 and last 4 kept, the middle starred."""
    s = (id_number or "").strip()
    return f"{s[:4]}{'*' * (len(s) - 8)}{s[-4:]}" if len(s) > 8 else "*" * len(s)


def mask_name(name: str) -> str:
    """张* / 欧** : the first character kept."""
    s = (name or "").strip()
    return s[:1] + "*" * max(len(s) - 1, 1) if s else ""
