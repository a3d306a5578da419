"""The account contract's field rules, shared by the sandbox and anyone who pre-checks input.

Every check returns the normalised value or raises ``accounts.base.Validation`` with
``field`` set and a Chinese message. The rules are written down in accounts/openapi.yaml.
"""
from __future__ import annotations

import datetime as _dt
import re
import unicodedata

from .base import Validation
from .contract import ID_TYPE_LABELS

_GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_GB11643_CHECK = "10X98765432"

USERNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{5,19}$")
PHONE_RE = re.compile(r"^1[3-9]\d{9}$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$")
NAME_RE = re.compile(r"^[\u3400-\u9fffA-Za-z][\u3400-\u9fffA-Za-z·・.\- ]{0,49}$")
_ID_FORMATS = {
    "hk_macao_permit": re.compile(r"^[HM]\d{8}(\d{2})?$"),
    "taiwan_permit": re.compile(r"^\d{8}(\d{2})?$"),
    "passport": re.compile(r"^[A-Z0-9]{5,17}$"),
    "foreign_permanent_id": re.compile(r"^([A-Z]{3}\d{12}|9\d{16}[\dX])$"),
}
PASSWORD_MIN, PASSWORD_MAX = 8, 32


def text(value: object, field: str, label: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Validation(f"请填写{label}。", field=field)
    return unicodedata.normalize("NFKC", value).strip()


def gb11643_check_digit(first17: str) -> str:
    """The 18th character of a 居民身份证 number for its first 17 digits."""
    return _GB11643_CHECK[sum(int(c) * w for c, w in zip(first17, _GB11643_WEIGHTS)) % 11]


def _resident_id(s: str, field: str) -> str:
    s = s.upper()
    if not re.fullmatch(r"\d{17}[\dX]", s):
        raise Validation("居民身份证号码应为18位，由17位数字和1位数字或字母X组成。", field=field)
    try:
        born = _dt.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        born = None
    if born is None or born.year < 1900 or born > _dt.date.today():
        raise Validation("居民身份证号码中的出生日期不正确，请核对。", field=field)
    if gb11643_check_digit(s[:17]) != s[17]:
        raise Validation("居民身份证号码校验位不正确，请核对后重新输入。", field=field)
    return s


def id_type(value: object, field: str = "id_type") -> str:
    """One of the contract's id types."""
    if value not in ID_TYPE_LABELS:
        raise Validation("证件类型不正确，可选：" + "、".join(ID_TYPE_LABELS.values()) + "。", field=field)
    return str(value)


def id_number(kind: str, value: object, field: str = "id_number") -> str:
    """An ID number valid for its type (居民身份证: GB 11643 check digit)."""
    s = text(value, field, "证件号码").replace(" ", "").upper()
    if kind == "resident_id":
        return _resident_id(s, field)
    if kind == "foreign_permanent_id" and len(s) == 18:
        if not _ID_FORMATS[kind].fullmatch(s) or gb11643_check_digit(s[:17]) != s[17]:
            raise Validation("外国人永久居留身份证号码不正确，请核对。", field=field)
        return s
    if not _ID_FORMATS[kind].fullmatch(s):
        raise Validation(f"{ID_TYPE_LABELS[kind]}号码格式不正确，请核对。", field=field)
    return s


def phone(value: object, field: str = "phone") -> str:
    """A mainland mobile number, 11 digits starting 13–19."""
    s = text(value, field, "手机号码").replace(" ", "").replace("-", "")
    if s.startswith("+86"):
        s = s[3:]
    if not PHONE_RE.fullmatch(s):
        raise Validation("手机号码应为11位中国大陆手机号（1开头，第二位3–9）。", field=field)
    return s


def username(value: object, field: str = "username") -> str:
    """6–20 characters: letters, digits, underscore; starts with a letter."""
    s = text(value, field, "用户名")
    if not USERNAME_RE.fullmatch(s):
        raise Validation("用户名格式不正确：本服务的用户名为6–20位字母、数字或下划线，以字母开头，请核对。", field=field)
    return s


def password(value: object, user: str, field: str = "password") -> str:
    """8–32 printable ASCII characters, no spaces, ≥2 of letters/digits/symbols, not containing the username."""
    if not isinstance(value, str) or not value:
        raise Validation("请设置密码。", field=field)
    if not (PASSWORD_MIN <= len(value) <= PASSWORD_MAX) or not all("!" <= c <= "~" for c in value):
        raise Validation("密码为8–32位，只能使用字母、数字和英文符号，不能含空格。", field=field)
    kinds = sum((any(c.isalpha() for c in value), any(c.isdigit() for c in value),
                 any(not c.isalnum() for c in value)))
    if kinds < 2:
        raise Validation("密码需至少包含字母、数字、符号中的两种。", field=field)
    if user and user.lower() in value.lower():
        raise Validation("密码不能包含用户名。", field=field)
    return value


def name(value: object, field: str = "name") -> str:
    """1–50 characters: Chinese characters or letters, with · . - and spaces inside."""
    s = re.sub(r"\s+", " ", text(value, field, "姓名"))
    if not NAME_RE.fullmatch(s):
        raise Validation("姓名只能包含汉字、字母及“·”，最长50个字符。", field=field)
    return s


def email(value: object, field: str = "email") -> str | None:
    """Optional; a plain address of at most 254 characters, returned lower-cased."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    s = text(value, field, "邮箱")
    if len(s) > 254 or not EMAIL_RE.fullmatch(s):
        raise Validation("邮箱格式不正确。", field=field)
    return s.lower()


def code(value: object, field: str = "code") -> str:
    """An SMS code: 6 digits."""
    s = text(value, field, "验证码").replace(" ", "")
    if not re.fullmatch(r"\d{6}", s):
        raise Validation("验证码为6位数字。", field=field)
    return s
