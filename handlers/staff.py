"""Staff accounts: agents and admins who answer hand-offs in the console.

Passwords are hashed with scrypt (memory-hard; N=2^15, r=8 → 32 MiB per hash), parameters kept
with the hash. Five failed sign-ins in a row lock an account for 15 minutes. Each account has
a ``session_version``: disabling it or changing its password bumps the version, which revokes
every signed cookie issued before. ``last_seen`` (refreshed by the console) tells the bot
whether an agent is signed in.

Backends behind one interface (``StaffAccounts``): ``SqlStaffStore`` (alias ``StaffStore``) in the
hand-off database, ``MemoryStaffStore`` the in-process twin; ``build_staff_store`` picks one.
``add`` → ``StaffExists`` / ``InvalidStaff``; ``disable`` / ``set_password`` → ``UnknownStaff``;
``authenticate`` → ``BadCredentials`` (also for a disabled or unknown name) or ``AccountLocked``.

Error contract: ``StaffError`` subclasses with a Chinese ``message``; database failures surface
as ``StaffStoreError``. Sign-in failures never say whether the name exists.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .db import Database, errors_as

ROLES = ("agent", "admin")
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
ONLINE_SECONDS = 90  # an agent whose console has not been seen for this long counts as away
MIN_PASSWORD = 8
_NAME = re.compile(r"^[A-Za-z0-9_.\-\u4e00-\u9fff]{1,32}$")
_KDF = {"n": 2 ** 15, "r": 8, "p": 1}


class StaffError(Exception):
    message = "操作失败。"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message


class BadCredentials(StaffError):
    message = "用户名或密码错误。"


class AccountLocked(StaffError):
    message = "登录失败次数过多，账号已锁定 15 分钟，请稍后再试。"


class StaffExists(StaffError):
    message = "该用户名已存在。"


class UnknownStaff(StaffError):
    message = "没有这个客服账号。"


class InvalidStaff(StaffError):
    message = "用户名或密码不符合要求。"


class StaffStoreError(StaffError):
    message = "账号存储暂时不可用，请稍后再试。"


@dataclass(frozen=True)
class Staff:
    name: str
    role: str
    disabled: bool
    session_version: int
    created_at: float
    last_seen: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "disabled": self.disabled}


def hash_password(password: str) -> str:
    """scrypt with a random salt; the parameters travel with the hash."""
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, maxmem=2 ** 26, dklen=32, **_KDF)
    return "scrypt${n}${r}${p}${salt}${dk}".format(**_KDF, salt=base64.b64encode(salt).decode(),
                                                   dk=base64.b64encode(dk).decode())


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash from ``hash_password`` (constant-time compare)."""
    try:
        kind, n, r, p, salt, dk = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=2 ** 26, dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(dk))


# checked for unknown names, so timing does not tell; its result is never used, so a constant does (hashing one
# at import cost every `bot.py` command 0.1 s). Same parameters as ``_KDF``: the same work as a real check.
_DUMMY_HASH = "scrypt${n}${r}${p}$AAAAAAAAAAAAAAAAAAAAAA==${dk}".format(**_KDF, dk="A" * 43 + "=")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidStaff("用户名只能包含字母、数字、汉字、点、下划线和连字符（1–32 个字符）。")
    return name


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD or len(password) > 256:
        raise InvalidStaff(f"密码至少 {MIN_PASSWORD} 个字符（最多 256 个）。")
    return password


def new_account_digest(name: str, role: str, password: str) -> str:
    """Check a new account's name, role and password (``InvalidStaff``); the password's digest."""
    check_name(name)
    check_password(password)
    if role not in ROLES:
        raise InvalidStaff(f"角色只能是 {' / '.join(ROLES)}。")
    return hash_password(password)


MIGRATIONS = [
    """
    CREATE TABLE staff (
        name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0, session_version INTEGER NOT NULL DEFAULT 1,
        failures INTEGER NOT NULL DEFAULT 0, locked_until DOUBLE PRECISION,
        last_seen DOUBLE PRECISION, created_at DOUBLE PRECISION NOT NULL)
    """,
]
_COLUMNS = "name, role, disabled, session_version, created_at, last_seen"


def _staff(r: dict[str, Any]) -> Staff:
    return Staff(r["name"], r["role"], bool(r["disabled"]), int(r["session_version"]), float(r["created_at"]),
                 r["last_seen"])


class StaffAccounts(Protocol):
    """What the console, the CLI and presence need of staff accounts (contract in the module docstring;
    ``tests/test_staff_store.py`` runs one contract test over every backend)."""

    def add(self, name: str, role: str, password: str) -> Staff: ...

    def get(self, name: str) -> Staff | None: ...

    def list(self) -> list[Staff]: ...

    def disable(self, name: str) -> None: ...

    def set_password(self, name: str, password: str) -> None: ...

    def authenticate(self, name: str, password: str) -> Staff: ...

    def touch(self, name: str) -> None: ...

    def sign_out(self, name: str) -> None: ...

    def online(self, within: float = ONLINE_SECONDS) -> list[str]: ...


class MemoryStaffStore:
    """The in-process twin: the same rules (hashing, lock-out, revocation), nothing kept after the process."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rows: dict[str, dict[str, Any]] = {}
        self._mutex = threading.Lock()

    def add(self, name: str, role: str, password: str) -> Staff:
        digest = new_account_digest(name, role, password)
        with self._mutex:
            if name in self._rows:
                raise StaffExists()
            self._rows[name] = {"name": name, "role": role, "password_hash": digest, "disabled": 0,
                                "session_version": 1, "failures": 0, "locked_until": None, "last_seen": None,
                                "created_at": self._clock()}
        return self.get(name)  # type: ignore[return-value]

    def get(self, name: str) -> Staff | None:
        with self._mutex:
            r = self._rows.get(name)
            return _staff(r) if r else None

    def list(self) -> list[Staff]:
        with self._mutex:
            return [_staff(self._rows[n]) for n in sorted(self._rows)]

    def _row(self, name: str) -> dict[str, Any]:
        r = self._rows.get(name)
        if r is None:
            raise UnknownStaff()
        return r

    def disable(self, name: str) -> None:
        with self._mutex:
            r = self._row(name)
            r.update(disabled=1, last_seen=None, session_version=r["session_version"] + 1)

    def set_password(self, name: str, password: str) -> None:
        check_password(password)
        digest = hash_password(password)
        with self._mutex:
            r = self._row(name)
            r.update(password_hash=digest, failures=0, locked_until=None, session_version=r["session_version"] + 1)

    def authenticate(self, name: str, password: str) -> Staff:
        now = self._clock()
        with self._mutex:
            r = dict(self._rows[name]) if isinstance(name, str) and name in self._rows else None
        if r is None:
            verify_password(str(password), _DUMMY_HASH)
            raise BadCredentials()
        if r["locked_until"] and r["locked_until"] > now:
            raise AccountLocked()
        ok = isinstance(password, str) and verify_password(password, r["password_hash"])
        with self._mutex:
            row = self._rows[name]
            if not ok:
                row["failures"] += 1
                locked = row["failures"] >= MAX_FAILURES
                if locked:
                    row.update(failures=0, locked_until=now + LOCK_SECONDS)
                raise AccountLocked() if locked else BadCredentials()
            row.update(failures=0, locked_until=None)
        if r["disabled"]:
            raise BadCredentials()
        return self.get(name)  # type: ignore[return-value]

    def touch(self, name: str) -> None:
        with self._mutex:
            r = self._rows.get(name)
            if r is not None and not r["disabled"]:
                r["last_seen"] = self._clock()

    def sign_out(self, name: str) -> None:
        with self._mutex:
            if name in self._rows:
                self._rows[name]["last_seen"] = None

    def online(self, within: float = ONLINE_SECONDS) -> list[str]:
        since = self._clock() - within
        with self._mutex:
            return sorted(n for n, r in self._rows.items() if not r["disabled"] and r["last_seen"]
                          and r["last_seen"] > since)


class SqlStaffStore:
    """Staff accounts in the shared database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        with self._errors():
            db.migrate("staff", MIGRATIONS)

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return errors_as(StaffStoreError)

    def add(self, name: str, role: str, password: str) -> Staff:
        """A new account; ``StaffExists`` when the name is taken."""
        digest = new_account_digest(name, role, password)
        with self._errors(), self.db.transaction() as tx:
            if tx.row("SELECT name FROM staff WHERE name = ?", (name,)):
                raise StaffExists()
            tx.execute("INSERT INTO staff (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                       (name, role, digest, self._clock()))
        return self.get(name)  # type: ignore[return-value]

    def get(self, name: str) -> Staff | None:
        with self._errors():
            r = self.db.tx().row(f"SELECT {_COLUMNS} FROM staff WHERE name = ?", (name,))
        return _staff(r) if r else None

    def list(self) -> list[Staff]:
        with self._errors():
            return [_staff(r) for r in self.db.tx().rows(f"SELECT {_COLUMNS} FROM staff ORDER BY name")]

    def disable(self, name: str) -> None:
        """Disable the account and revoke its signed-in sessions."""
        with self._errors():
            changed = self.db.tx().execute("UPDATE staff SET disabled = 1, last_seen = NULL, "
                                           "session_version = session_version + 1 WHERE name = ?", (name,))
        if changed != 1:
            raise UnknownStaff()

    def set_password(self, name: str, password: str) -> None:
        """A new password (revokes existing sessions, clears a lock)."""
        check_password(password)
        digest = hash_password(password)
        with self._errors():
            changed = self.db.tx().execute("UPDATE staff SET password_hash = ?, failures = 0, locked_until = NULL, "
                                           "session_version = session_version + 1 WHERE name = ?", (digest, name))
        if changed != 1:
            raise UnknownStaff()

    def authenticate(self, name: str, password: str) -> Staff:
        """The account when the password is right; ``BadCredentials`` / ``AccountLocked`` otherwise."""
        now = self._clock()
        with self._errors():
            r = self.db.tx().row("SELECT password_hash, disabled, failures, locked_until FROM staff WHERE name = ?",
                                 (name,)) if isinstance(name, str) and _NAME.fullmatch(name) else None
        if r is None:
            verify_password(str(password), _DUMMY_HASH)
            raise BadCredentials()
        if r["locked_until"] and r["locked_until"] > now:
            raise AccountLocked()
        ok = isinstance(password, str) and verify_password(password, r["password_hash"])
        with self._errors():
            if not ok:
                # failures count up atomically; the fifth locks and starts counting again
                with self.db.transaction() as tx:
                    tx.execute("UPDATE staff SET failures = failures + 1 WHERE name = ?", (name,))
                    row = tx.row("SELECT failures FROM staff WHERE name = ?", (name,))
                    locked = bool(row and row["failures"] >= MAX_FAILURES)
                    if locked:
                        tx.execute("UPDATE staff SET failures = 0, locked_until = ? WHERE name = ?",
                                   (now + LOCK_SECONDS, name))
                raise AccountLocked() if locked else BadCredentials()
            self.db.tx().execute("UPDATE staff SET failures = 0, locked_until = NULL WHERE name = ?", (name,))
        if r["disabled"]:
            raise BadCredentials()
        return self.get(name)  # type: ignore[return-value]

    def touch(self, name: str) -> None:
        """The agent's console is open now."""
        with self._errors():
            self.db.tx().execute("UPDATE staff SET last_seen = ? WHERE name = ? AND disabled = 0",
                                 (self._clock(), name))

    def sign_out(self, name: str) -> None:
        with self._errors():
            self.db.tx().execute("UPDATE staff SET last_seen = NULL WHERE name = ?", (name,))

    def online(self, within: float = ONLINE_SECONDS) -> list[str]:
        """Names of enabled accounts whose console was seen in the last ``within`` seconds."""
        with self._errors():
            rows = self.db.tx().rows("SELECT name FROM staff WHERE disabled = 0 AND last_seen > ? ORDER BY name",
                                     (self._clock() - within,))
        return [r["name"] for r in rows]


StaffStore = SqlStaffStore   # the name every caller used before the twin existed


def build_staff_store(db: Database | None, clock: Callable[[], float] = time.time) -> StaffAccounts:
    """In the hand-off database when there is one, else the in-process twin (``memory://``)."""
    return SqlStaffStore(db, clock) if db is not None else MemoryStaffStore(clock)
