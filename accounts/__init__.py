"""The account API: interface and errors (base), HTTP client (client), in-process twin (local).

``build_client(cfg)`` returns the HTTP client configured by the ``accounts`` config section.
"""
from __future__ import annotations

from typing import Any, Mapping


def build_client(cfg: Mapping[str, Any]):  # -> accounts.client.HttpAccountClient
    """The configured HTTP account client (imported lazily: requests is not needed to import base)."""
    from .client import build_client as _build
    return _build(cfg)
