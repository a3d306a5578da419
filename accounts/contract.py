"""The account contract's constants (accounts/openapi.yaml), in one place.

The flows, the sandbox, the client and the channels import them from here, never spell them
again; tests/test_accounts_contract.py checks every one against openapi.yaml, so the contract
document and the code cannot drift. Adding a value (a level, a provider, an ID type) is one
edit here and the matching enum in openapi.yaml.
"""
from __future__ import annotations

from typing import Literal, get_args

IdType = Literal["resident_id", "hk_macao_permit", "taiwan_permit", "passport", "foreign_permanent_id"]
ID_TYPE_LABELS: dict[str, str] = {        # components.schemas.IdType, in the order users see them
    "resident_id": "居民身份证",
    "hk_macao_permit": "港澳居民来往内地通行证",
    "taiwan_permit": "台湾居民来往大陆通行证",
    "passport": "护照",
    "foreign_permanent_id": "外国人永久居留身份证",
}

Provider = Literal["wechat", "alipay"]
PROVIDERS: dict[str, str] = {"wechat": "微信", "alipay": "支付宝"}   # components.schemas.Provider

RecordKind = Literal["enrolled", "graduate"]                         # StudentRecord.kind
Level = Literal["专科", "本科", "硕士研究生", "博士研究生"]
LEVELS: tuple[str, ...] = get_args(Level)                            # StudentRecord.level

IdentityRoute = Literal["app", "manual_review", "classmate", "student_record"]
IDENTITY_ROUTES: tuple[str, ...] = get_args(IdentityRoute)        # Identity.routes, in route order
ROUTE4_ATTEMPTS = 3                       # route 4 (student record) tries per ID number: Identity.route4_attempts_*

# Route 2's ID photo (POST /v1/me/identity/manual-review, the image part's x-max-bytes / x-content-types)
MAX_IMAGE_BYTES = 5 * 1024 * 1024
IMAGE_MAGIC: dict[str, bytes] = {         # content type → the bytes a file of that type starts with
    "image/jpeg": b"\xff\xd8\xff",
    "image/png": b"\x89PNG\r\n\x1a\n",
}
IMAGE_TYPES: tuple[str, ...] = tuple(IMAGE_MAGIC)
