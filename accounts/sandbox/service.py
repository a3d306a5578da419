"""The account service's domain logic over SQLite: every rule of accounts/openapi.yaml lives here.

``SandboxService(db_path)`` is a plain Python object: the HTTP server (server.py) and the
in-process twin (accounts/local.py) both call it. Methods take and return the contract's JSON
shapes (dicts) and raise ``accounts.base`` errors.

Transactions: every call runs in one ``BEGIN IMMEDIATE`` transaction, so concurrent calls are
serialised by SQLite and cannot break a rule. A refusal (``AccountError``) commits what was written
before it on purpose (a burned route-4 attempt, a wrong-code count, a rate-limit event); any other
exception rolls everything back. Idempotency: a state-changing call with an ``idempotency_key`` stores
its outcome (result or refusal, except TOO_FREQUENT) in the same transaction; a retry with the same key
and request replays it and changes nothing, the same key with a different request is a CONFLICT.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import re
import secrets
import sqlite3
import threading
import time
import unicodedata
import uuid
from typing import Any, Callable, Iterator, Mapping

from .. import validation as v
from ..base import (AccountError, AttemptsExhausted, BadImage, ChallengeExpired, Conflict, EmailIpLimited, EmailUsed,
                    IdTaken, InvalidCode, NotFound, PhoneTaken, RecordMismatch, TooFrequent, Unauthorized,
                    Validation)
from ..contract import IDENTITY_ROUTES, IMAGE_MAGIC, LEVELS, MAX_IMAGE_BYTES, PROVIDERS, ROUTE4_ATTEMPTS
from ..masking import mask_name, mask_phone
from ..wire import error_body, error_from_body
from . import db
from settings import SandboxLimits

_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
IMAGE_TOO_LARGE = f"图片不能超过{MAX_IMAGE_BYTES // (1024 * 1024)}MB，请压缩后重新上传。"

APP_INSTRUCTIONS = (
    "请按以下步骤完成 APP 自助验证：\n"
    "1. 下载并打开学信网手机 APP；\n"
    "2. 点击“我的”，使用当前账号登录并按提示完成验证；\n"
    "3. 验证通过后，您的账号即可使用。\n"
    "重要提示：实人验证通过后，将会注销使用了您当前证件号码的其他账号；如果您另有其他账号，请慎重此操作。"
    "注销账号会暂时影响您原填报研招推免、统考、自主招生、兵役登记/应征报名的信息操作。"
)


def _h(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _norm(value: Any) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(value))).casefold()


class SandboxService:
    """The account service. ``db_path`` may be ``":memory:"`` (one shared connection, serialised)."""

    def __init__(self, db_path: str, *, public_base_url: str = "http://127.0.0.1:8765",
                 limits: SandboxLimits | None = None, clock: Callable[[], float] = time.time,
                 kdf_n: int = 2 ** 14, seed_demo: bool = True) -> None:
        self.db_path = str(db_path)
        self.public_base_url = public_base_url.rstrip("/")
        self.limits = limits or SandboxLimits()
        self.clock = clock
        self.kdf_n = kdf_n
        self._memory = self.db_path == ":memory:"
        self._shared = db.connect(self.db_path) if self._memory else None
        self._lock = threading.RLock()
        conn = self._shared or db.connect(self.db_path)
        try:
            self.schema_version = db.migrate(conn)
        finally:
            if not self._memory:
                conn.close()
        if seed_demo:
            from .demo import seed
            with self._tx() as c:
                if c.execute("SELECT 1 FROM meta WHERE key = 'demo_seeded'").fetchone() is None:
                    seed(self, c)
                    c.execute("INSERT INTO meta VALUES ('demo_seeded', '1')")

    def close(self) -> None:
        """Close the shared in-memory connection (file databases hold none)."""
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    # ---- plumbing ---------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock if self._memory else contextlib.nullcontext():
            conn = self._shared or db.connect(self.db_path)
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield conn
                except AccountError:
                    conn.execute("COMMIT")
                    raise
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if not self._memory:
                    conn.close()

    def _once(self, endpoint: str, key: str | None, request: Mapping[str, Any],
              op: Callable[[sqlite3.Connection], dict[str, Any]],
              token: str | None = None) -> dict[str, Any]:
        """Run ``op`` in one transaction, at most once per idempotency key (see module doc).

        Keys are scoped by ``endpoint`` and principal (the logged-in account when ``token`` is given);
        ``op`` returns the response body.
        """
        if key is not None and (not isinstance(key, str) or not _KEY_RE.fullmatch(key)):
            raise Validation("Idempotency-Key 应为1–255个可见ASCII字符。", field="Idempotency-Key")
        fingerprint = _h(json.dumps(request, sort_keys=True, ensure_ascii=False, default=str))
        with self._tx() as conn:
            principal = self._account_for(conn, token)["id"] if token is not None else ""
            if key is not None:
                row = conn.execute("SELECT fingerprint, status, body FROM idempotency WHERE key = ? AND endpoint = ?"
                                   " AND principal = ?", (key, endpoint, principal)).fetchone()
                if row is not None:
                    if row["fingerprint"] != fingerprint:
                        raise Conflict("该 Idempotency-Key 已用于另一个不同的请求。", field="Idempotency-Key")
                    body = json.loads(row["body"])
                    if row["status"] >= 400:
                        raise error_from_body(body)
                    return body
            try:
                body = op(conn)
            except TooFrequent:
                raise
            except AccountError as e:
                self._remember(conn, key, endpoint, principal, fingerprint, e.status, error_body(e))
                raise
            self._remember(conn, key, endpoint, principal, fingerprint, 200, body)
            return body

    def _remember(self, conn: sqlite3.Connection, key: str | None, endpoint: str, principal: str,
                  fingerprint: str, status: int, body: dict[str, Any]) -> None:
        if key is None:
            return
        now = self.clock()
        conn.execute("DELETE FROM idempotency WHERE created_at < ?", (now - self.limits.idempotency_ttl,))
        conn.execute("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (key, endpoint, principal, fingerprint, status, json.dumps(body, ensure_ascii=False), now))

    def _throttle(self, conn: sqlite3.Connection, buckets: list[tuple[str, tuple[int, int]]],
                  error: type[AccountError] = TooFrequent, message: str = "操作过于频繁，请稍后再试。") -> None:
        """Refuse when any bucket is full (``retry_after`` until a slot frees); else count one event in each."""
        now = self.clock()
        for bucket, (limit, window) in buckets:
            rows = conn.execute("SELECT at FROM rate_events WHERE bucket = ? AND at > ? ORDER BY at",
                                (bucket, now - window)).fetchall()
            if len(rows) >= limit:
                retry = max(1, math.ceil(rows[len(rows) - limit]["at"] + window - now))
                raise error(message, retry_after=retry)
        conn.execute("DELETE FROM rate_events WHERE at < ?", (now - 86400,))
        conn.executemany("INSERT INTO rate_events VALUES (?, ?)", [(b, now) for b, _ in buckets])

    def _client_buckets(self, client_id: str | None) -> list[tuple[str, tuple[int, int]]]:
        return [("client:" + _h(client_id), self.limits.per_client)] if client_id else []

    def _account_for(self, conn: sqlite3.Connection, token: str | None) -> sqlite3.Row:
        if not token:
            raise Unauthorized("请先登录。")
        row = conn.execute("SELECT a.* FROM sessions s JOIN accounts a ON a.id = s.account_id"
                           " WHERE s.token_hash = ? AND s.expires_at > ?", (_h(token), self.clock())).fetchone()
        if row is None:
            raise Unauthorized("登录已失效，请重新登录。")
        return row

    def _account(self, conn: sqlite3.Connection, account_id: str) -> sqlite3.Row:
        return conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()

    def hash_password(self, password: str) -> str:
        """scrypt with a per-user salt; parameters stored with the hash."""
        salt = secrets.token_bytes(16)
        dk = hashlib.scrypt(password.encode(), salt=salt, n=self.kdf_n, r=8, p=1, maxmem=2 ** 26, dklen=32)
        return "scrypt${}$8$1${}${}".format(self.kdf_n, base64.b64encode(salt).decode(), base64.b64encode(dk).decode())

    @staticmethod
    def check_password(password: str, stored: str) -> bool:
        """True when ``password`` matches a hash from ``hash_password``."""
        _, n, r, p, salt, dk = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=2 ** 26, dklen=32)
        return hmac.compare_digest(got, base64.b64decode(dk))

    def _sms(self, conn: sqlite3.Connection, phone: str, kind: str, text: str, *,
             code: str | None = None, username: str | None = None) -> None:
        conn.execute("INSERT INTO outbox (phone, kind, text, code, username, sent_at) VALUES (?, ?, ?, ?, ?, ?)",
                     (phone, kind, text, code, username, self.clock()))

    def _new_challenge(self, conn: sqlite3.Connection, purpose: str, account: sqlite3.Row) -> dict[str, Any]:
        cid = "ch_" + secrets.token_urlsafe(16)
        code = f"{secrets.randbelow(10 ** 6):06d}"
        now = self.clock()
        conn.execute("INSERT INTO challenges VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                     (cid, purpose, account["id"], _h(cid, code), now, now + self.limits.code_ttl,
                      self.limits.code_attempts))
        what = "登录" if purpose == "login" else "找回密码"
        self._sms(conn, account["phone"], f"{purpose}_code",
                  f"【学信网】您正在{what}，验证码 {code}，{self.limits.code_ttl // 60}分钟内有效，请勿泄露给他人。", code=code)
        return {"challenge_id": cid, "sent_to": mask_phone(account["phone"])}

    def _redeem(self, conn: sqlite3.Connection, purpose: str, challenge_id: str, code: Any) -> sqlite3.Row:
        """The challenge's account when ``code`` is right; counts a wrong code, kills it after the last."""
        code = v.code(code)
        row = conn.execute("SELECT * FROM challenges WHERE id = ? AND purpose = ?", (challenge_id, purpose)).fetchone()
        if row is None:
            raise NotFound("验证请求不存在，请重新获取验证码。")
        now = self.clock()
        if row["closed_at"] is not None or row["expires_at"] <= now or row["attempts_left"] <= 0:
            raise ChallengeExpired("验证码已失效（已过期、已使用或错误次数过多），请重新获取。")
        if not hmac.compare_digest(row["code_hash"], _h(challenge_id, code)):
            left = row["attempts_left"] - 1
            conn.execute("UPDATE challenges SET attempts_left = ?, closed_at = ? WHERE id = ?",
                         (left, now if left == 0 else None, challenge_id))
            raise InvalidCode("验证码不正确。" + (f"还可尝试{left}次。" if left else "错误次数过多，请重新获取验证码。"),
                              attempts_left=left)
        conn.execute("UPDATE challenges SET closed_at = ? WHERE id = ?", (now, challenge_id))
        return self._account(conn, row["account_id"])

    def _identity_key(self, id_type: Any, id_number: Any) -> tuple[str, str]:
        t = v.id_type(id_type)
        return t, v.id_number(t, id_number)

    # ---- registration and recovery -------------------------------------------

    def register(self, *, username: Any, password: Any, name: Any, id_type: Any, id_number: Any, phone: Any,
                 email: Any = None, re_register: bool = False, client_id: str | None = None,
                 idempotency_key: str | None = None) -> dict[str, Any]:
        """Create an account: ``active``, or ``pending_identity`` when re-registering a taken ID number."""
        fields = dict(username=v.username(username), name=v.name(name), phone=v.phone(phone), email=v.email(email))
        fields["id_type"], fields["id_number"] = self._identity_key(id_type, id_number)
        v.password(password, fields["username"])
        request = dict(fields, password_hash=_h(str(password)), re_register=bool(re_register))
        pw_hash = self.hash_password(str(password))  # outside the transaction: the KDF is slow on purpose
        return self._once("register", idempotency_key, request,
                          lambda c: self._register(c, pw_hash=pw_hash, re_register=bool(re_register),
                                                   client_id=client_id, **fields))

    def _register(self, conn: sqlite3.Connection, *, username: str, pw_hash: str, name: str, id_type: str,
                  id_number: str, phone: str, email: str | None, re_register: bool,
                  client_id: str | None) -> dict[str, Any]:
        if conn.execute("SELECT 1 FROM accounts WHERE username_lc = ?", (username.lower(),)).fetchone():
            raise Conflict("该用户名已被注册，请换一个用户名。", field="username")
        if conn.execute("SELECT 1 FROM accounts WHERE phone = ? AND status != 'cancelled'", (phone,)).fetchone():
            raise PhoneTaken("手机号码已被注册，请更换手机号码注册。", field="phone")
        holders = conn.execute("SELECT 1 FROM accounts WHERE id_type = ? AND id_number = ? AND status != 'cancelled'",
                               (id_type, id_number)).fetchone()
        if holders and not re_register:
            raise IdTaken("证件号码已被注册。可先使用找回用户名核实是否注册过账号，或勾选“我要重新注册”。",
                          field="id_number")
        if email is not None:
            if conn.execute("SELECT 1 FROM used_emails WHERE email = ?", (email,)).fetchone():
                raise EmailUsed("该邮箱已用于注册（安全邮箱仅限注册使用一次），请更换邮箱或不填写邮箱。", field="email")
            if client_id:
                self._throttle(conn, [("email_ip:" + _h(client_id), self.limits.email_per_client)], EmailIpLimited,
                               "邮箱 IP 受限，建议不填写邮箱完成注册，注册成功后可在账号管理中绑定邮箱。")
        account_id = "acc_" + uuid.uuid4().hex
        status = "pending_identity" if holders else "active"
        now = self.clock()
        conn.execute("INSERT INTO accounts (id, username, username_lc, password_hash, name, id_type, id_number, phone,"
                     " email, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (account_id, username, username.lower(), pw_hash, name, id_type, id_number, phone, email,
                      status, now))
        if email is not None:
            conn.execute("INSERT INTO used_emails VALUES (?, ?, ?)", (email, account_id, now))
        return {"account_id": account_id, "status": status}

    def recover_username(self, *, name: Any, id_type: Any, id_number: Any, client_id: str | None = None,
                         idempotency_key: str | None = None) -> dict[str, Any]:
        """SMS the username(s) held by this name + ID number; return the masked phone(s)."""
        nm = v.name(name)
        t, n = self._identity_key(id_type, id_number)

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            self._throttle(conn, [("recovery:" + _h(t, n), self.limits.recovery_per_identity),
                                  *self._client_buckets(client_id)])
            rows = conn.execute("SELECT * FROM accounts WHERE id_type = ? AND id_number = ? AND status != 'cancelled'"
                                " ORDER BY created_at", (t, n)).fetchall()
            rows = [r for r in rows if _norm(r["name"]) == _norm(nm)]
            if not rows:
                raise NotFound("未找到与所填姓名和证件号码匹配的账号，请核对后重试。")
            for r in rows:
                self._sms(conn, r["phone"], "username", f"【学信网】您的学信网账号用户名为：{r['username']}。",
                          username=r["username"])
                conn.execute("UPDATE accounts SET last_recovery_at = ? WHERE id = ?", (self.clock(), r["id"]))
            return {"sent_to": "、".join(dict.fromkeys(mask_phone(r["phone"]) for r in rows))}

        return self._once("recovery.username", idempotency_key, {"name": nm, "id": [t, n]}, op)

    def start_password_recovery(self, *, username: Any, name: Any, id_type: Any, id_number: Any,
                                client_id: str | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        """Check username + name + ID number and SMS a code."""
        user, nm = v.username(username), v.name(name)
        t, n = self._identity_key(id_type, id_number)

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            self._throttle(conn, [("recovery:" + _h(t, n), self.limits.recovery_per_identity),
                                  *self._client_buckets(client_id)])
            row = conn.execute("SELECT * FROM accounts WHERE username_lc = ?", (user.lower(),)).fetchone()
            if row is None or (row["id_type"], row["id_number"]) != (t, n) or _norm(row["name"]) != _norm(nm):
                raise NotFound("用户名、姓名与证件号码不匹配，请核对后重试。")
            if row["status"] == "cancelled":
                raise Conflict("该账号已注销，无法找回密码。")
            return self._new_challenge(conn, "password_recovery", row)

        return self._once("recovery.password", idempotency_key, {"u": user.lower(), "name": nm, "id": [t, n]}, op)

    def verify_password_recovery(self, challenge_id: str, code: Any, *,
                                 idempotency_key: str | None = None) -> dict[str, Any]:
        """A right code gives a one-time reset link."""
        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            account = self._redeem(conn, "password_recovery", challenge_id, code)
            token = secrets.token_urlsafe(32)
            now = self.clock()
            conn.execute("INSERT INTO reset_tokens VALUES (?, ?, ?, NULL)",
                         (_h(token), account["id"], now + self.limits.reset_ttl))
            conn.execute("UPDATE accounts SET last_recovery_at = ? WHERE id = ?", (now, account["id"]))
            return {"reset_url": f"{self.public_base_url}/sandbox/reset/{token}",
                        "expires_in": self.limits.reset_ttl}

        return self._once("recovery.password.verify:" + challenge_id, idempotency_key, {"code": str(code)}, op)

    def reset_password(self, token: str, password: Any) -> None:
        """The site's reset page: set a new password with a one-time link."""
        with self._tx() as conn:
            row = conn.execute("SELECT r.*, a.username FROM reset_tokens r JOIN accounts a ON a.id = r.account_id"
                               " WHERE token_hash = ?", (_h(token),)).fetchone()
            if row is None or row["used_at"] is not None or row["expires_at"] <= self.clock():
                raise ChallengeExpired("重置链接无效或已过期，请重新找回密码。")
            v.password(password, row["username"])
            conn.execute("UPDATE accounts SET password_hash = ? WHERE id = ?",
                         (self.hash_password(str(password)), row["account_id"]))
            conn.execute("UPDATE reset_tokens SET used_at = ? WHERE token_hash = ?", (self.clock(), _h(token)))

    # ---- chat login -------------------------------------------------------------

    def start_login(self, username: Any, *, client_id: str | None = None,
                    idempotency_key: str | None = None) -> dict[str, Any]:
        """SMS a login code to the account's phone."""
        user = v.username(username)

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            self._throttle(conn, [("login:" + _h(user.lower()), self.limits.login_per_username),
                                  *self._client_buckets(client_id)])
            row = conn.execute("SELECT * FROM accounts WHERE username_lc = ?", (user.lower(),)).fetchone()
            if row is None:
                raise NotFound("用户名不存在，请核对，或使用找回用户名功能。")
            return self._new_challenge(conn, "login", row)

        return self._once("auth.otp", idempotency_key, {"u": user.lower()}, op)

    def verify_login(self, challenge_id: str, code: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """A right code gives a short-lived user token."""
        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            account = self._redeem(conn, "login", challenge_id, code)
            token = secrets.token_urlsafe(32)
            now = self.clock()
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                         (_h(token), account["id"], now, now + self.limits.token_ttl))
            return {"token": token, "account_id": account["id"], "expires_in": self.limits.token_ttl}

        return self._once("auth.otp.verify:" + challenge_id, idempotency_key, {"code": str(code)}, op)

    # ---- identity (seed topic 5) ---------------------------------------------------

    def identity(self, token: str) -> dict[str, Any]:
        """Status, available routes, route-4 attempts, the latest review and own classmate requests."""
        with self._tx(write=False) as conn:
            return self._identity(conn, self._account_for(conn, token))

    def _identity(self, conn: sqlite3.Connection, a: sqlite3.Row) -> dict[str, Any]:
        used = self._route4_used(conn, a)
        review = conn.execute("SELECT ticket_id, status, reason FROM manual_reviews WHERE account_id = ?"
                              " ORDER BY created_at DESC, rowid DESC LIMIT 1", (a["id"],)).fetchone()
        requests = conn.execute("SELECT * FROM classmate_requests WHERE requester_id = ? ORDER BY created_at, rowid",
                                (a["id"],)).fetchall()
        routes = [r for r in IDENTITY_ROUTES if r != "student_record" or used < ROUTE4_ATTEMPTS]
        return {"status": a["status"], "routes": routes if a["status"] == "pending_identity" else [],
                "route4_attempts_used": used, "route4_attempts_left": ROUTE4_ATTEMPTS - used,
                "manual_review": dict(review) if review else None,
                "classmate_requests": [self._request_body(conn, r) for r in requests]}

    def _route4_used(self, conn: sqlite3.Connection, a: sqlite3.Row) -> int:
        row = conn.execute("SELECT used FROM route4_attempts WHERE id_type = ? AND id_number = ?",
                           (a["id_type"], a["id_number"])).fetchone()
        return row["used"] if row else 0

    def _pending(self, a: sqlite3.Row) -> None:
        if a["status"] == "cancelled":
            raise Conflict("该账号已注销，无法进行身份核验。")
        if a["status"] != "pending_identity":
            raise Conflict("该账号无需核验身份信息。")

    def _verify(self, conn: sqlite3.Connection, account_id: str, route: str) -> None:
        """Make this account active and cancel every other account holding its ID number (kept, not deleted)."""
        a = self._account(conn, account_id)
        self._pending(a)
        now = self.clock()
        conn.execute("UPDATE accounts SET status = 'cancelled', cancelled_at = ?, cancelled_reason = ?"
                     " WHERE id_type = ? AND id_number = ? AND id != ? AND status != 'cancelled'",
                     (now, f"verified:{route}:{account_id}", a["id_type"], a["id_number"], account_id))
        conn.execute("UPDATE accounts SET status = 'active', verified_at = ?, verified_route = ? WHERE id = ?",
                     (now, route, account_id))

    def start_app_verification(self, token: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Route 1: record the start and give the APP instructions."""
        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            a = self._account_for(conn, token)
            self._pending(a)
            conn.execute("INSERT INTO app_verifications VALUES (?, ?, NULL) ON CONFLICT (account_id)"
                         " DO UPDATE SET started_at = excluded.started_at", (a["id"], self.clock()))
            return {"instructions": APP_INSTRUCTIONS}

        return self._once("me.app-verification", idempotency_key, {}, op, token=token)

    def submit_manual_review(self, token: str, image: bytes, filename: str = "", content_type: str = "", *,
                             idempotency_key: str | None = None) -> dict[str, Any]:
        """Route 2: an ID photo (JPEG/PNG by content, ≤ MAX_IMAGE_BYTES) opens a pending ticket."""
        data = bytes(image or b"")
        if not data:
            raise BadImage("请上传证件照片（JPG 或 PNG 格式）。")
        if len(data) > MAX_IMAGE_BYTES:
            raise BadImage(IMAGE_TOO_LARGE)
        kind = next((t for t, magic in IMAGE_MAGIC.items() if data.startswith(magic)), None)
        if kind is None:
            raise BadImage("仅支持 JPG 或 PNG 格式的图片，请重新上传。")
        digest = hashlib.sha256(data).hexdigest()

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            a = self._account_for(conn, token)
            self._pending(a)
            if conn.execute("SELECT 1 FROM manual_reviews WHERE account_id = ? AND status = 'pending'",
                            (a["id"],)).fetchone():
                raise Conflict("已有待审核的客服审核申请，请耐心等待审核结果。")
            ticket = "rv_" + secrets.token_hex(8)
            conn.execute("INSERT INTO manual_reviews VALUES (?, ?, 'pending', NULL, ?, ?, ?, ?, ?, NULL)",
                         (ticket, a["id"], kind, len(data), digest, data, self.clock()))
            return {"ticket_id": ticket, "status": "pending", "reason": None}

        return self._once("me.manual-review", idempotency_key, {"sha256": digest}, op, token=token)

    def request_classmate(self, token: str, classmate_name: Any, classmate_username: Any, *,
                          idempotency_key: str | None = None) -> dict[str, Any]:
        """Route 3: ask a classmate (by name + username) to confirm this account."""
        nm, user = v.name(classmate_name, "classmate_name"), v.username(classmate_username, "classmate_username")

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            a = self._account_for(conn, token)
            self._pending(a)
            mate = conn.execute("SELECT * FROM accounts WHERE username_lc = ?", (user.lower(),)).fetchone()
            if mate is None or _norm(mate["name"]) != _norm(nm):
                raise NotFound("未找到该同学的账号，请核对同学的姓名和用户名。")
            if (mate["id_type"], mate["id_number"]) == (a["id_type"], a["id_number"]):
                raise Validation("不能向自己或使用同一证件号码的账号发送协助请求。", field="classmate_username")
            if mate["status"] != "active":
                raise Conflict("该同学的账号当前无法协助核验，请联系其他同学。")
            if conn.execute("SELECT 1 FROM classmate_requests WHERE requester_id = ? AND classmate_id = ?"
                            " AND status = 'pending'", (a["id"], mate["id"])).fetchone():
                raise Conflict("已向该同学发送过协助请求，请等待对方处理。")
            rid = "cr_" + secrets.token_hex(8)
            conn.execute("INSERT INTO classmate_requests VALUES (?, ?, ?, 'pending', ?, NULL)",
                         (rid, a["id"], mate["id"], self.clock()))
            return {"request_id": rid, "status": "pending"}

        return self._once("me.classmate-requests", idempotency_key, {"name": nm, "u": user.lower()}, op, token=token)

    def _request_body(self, conn: sqlite3.Connection, r: sqlite3.Row) -> dict[str, Any]:
        requester, mate = self._account(conn, r["requester_id"]), self._account(conn, r["classmate_id"])
        return {"request_id": r["id"], "status": r["status"], "requester_name": mask_name(requester["name"]),
                "classmate_username": mate["username"]}

    def inbox(self, token: str) -> dict[str, Any]:
        """Classmate requests addressed to this account, newest first."""
        with self._tx(write=False) as conn:
            a = self._account_for(conn, token)
            rows = conn.execute("SELECT * FROM classmate_requests WHERE classmate_id = ?"
                                " ORDER BY created_at DESC, rowid DESC", (a["id"],)).fetchall()
            return {"requests": [self._request_body(conn, r) for r in rows]}

    def answer_classmate_request(self, token: str, request_id: str, accept: bool, *,
                                 idempotency_key: str | None = None) -> dict[str, Any]:
        """The classmate accepts (verifying the requester) or rejects a request."""
        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            a = self._account_for(conn, token)
            r = conn.execute("SELECT * FROM classmate_requests WHERE id = ? AND classmate_id = ?",
                             (request_id, a["id"])).fetchone()
            if r is None:
                raise NotFound("未找到该协助请求。")
            if r["status"] != "pending":
                raise Conflict("该协助请求已处理过。")
            if a["status"] != "active":
                raise Conflict("您的账号当前无法协助核验。")
            if accept:
                self._verify(conn, r["requester_id"], "classmate")
            conn.execute("UPDATE classmate_requests SET status = ?, answered_at = ? WHERE id = ?",
                         ("accepted" if accept else "rejected", self.clock(), request_id))
            return self._request_body(conn, conn.execute(
                "SELECT * FROM classmate_requests WHERE id = ?", (request_id,)).fetchone())

        endpoint = f"me.inbox.{'accept' if accept else 'reject'}:{request_id}"
        return self._once(endpoint, idempotency_key, {}, op, token=token)

    def submit_student_record(self, token: str, record: Mapping[str, Any], *,
                              idempotency_key: str | None = None) -> dict[str, Any]:
        """Route 4: check a 学籍/学历 record; at most 3 attempts per ID number across its accounts."""
        rec = self._record(record)

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            a = self._account_for(conn, token)
            self._pending(a)
            used = self._route4_used(conn, a)
            if used >= ROUTE4_ATTEMPTS:
                raise AttemptsExhausted("该证件号码通过“提供学籍或学历信息”核验的次数已用完（最多3次），"
                                        "请选择其他途径。", attempts_left=0)
            conn.execute("INSERT INTO route4_attempts VALUES (?, ?, 1) ON CONFLICT (id_type, id_number)"
                         " DO UPDATE SET used = used + 1", (a["id_type"], a["id_number"]))
            matched = any(self._matches(rec, r) for r in conn.execute(
                "SELECT * FROM student_records WHERE id_type = ? AND id_number = ? AND kind = ?",
                (a["id_type"], a["id_number"], rec["kind"])))
            conn.execute("INSERT INTO route4_log VALUES (?, ?, ?)", (a["id"], self.clock(), int(matched)))
            if not matched:
                left = ROUTE4_ATTEMPTS - used - 1
                raise RecordMismatch("学籍或学历信息核对不一致，请核对后重新填写。" + (
                    f"该证件号码还可通过此途径核验{left}次。" if left else "此途径的核验次数已用完，请选择其他途径。"),
                    attempts_left=left)
            self._verify(conn, a["id"], "student_record")
            return self._identity(conn, self._account(conn, a["id"]))

        return self._once("me.student-record", idempotency_key, rec, op, token=token)

    @staticmethod
    def _record(record: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a route-4 record: in-school (学号 + 入学年份) or graduate (证书编号 + 毕业年份)."""
        if not isinstance(record, Mapping):
            raise Validation("学籍学历信息格式不正确。", field="record")
        kind = record.get("kind")
        if kind not in ("enrolled", "graduate"):
            raise Validation("请选择在校生学籍信息或毕业生学历信息。", field="kind")
        school = v.text(record.get("school"), "school", "院校名称")
        if len(school) > 60:
            raise Validation("院校名称过长。", field="school")
        if record.get("level") not in LEVELS:
            raise Validation("学历层次应为：" + "、".join(LEVELS) + "。", field="level")
        no_field, year_field = ("student_no", "enrolment_year") if kind == "enrolled" else \
            ("certificate_no", "graduation_year")
        label = "学号" if kind == "enrolled" else "证书编号"
        number = v.text(record.get(no_field), no_field, label).replace(" ", "")
        if not re.fullmatch(r"[A-Za-z0-9\-]{1,30}", number):
            raise Validation(f"{label}只能包含字母、数字和“-”，最长30位。", field=no_field)
        year = record.get(year_field)
        if isinstance(year, str) and year.strip().isdigit():
            year = int(year.strip())
        if isinstance(year, bool) or not isinstance(year, int) or not 1950 <= year <= time.gmtime().tm_year + 1:
            raise Validation(("入学" if kind == "enrolled" else "毕业") + "年份应为4位数字年份。", field=year_field)
        return {"kind": kind, "school": school, "level": record["level"], no_field: number, year_field: year}

    @staticmethod
    def _matches(rec: dict[str, Any], row: sqlite3.Row) -> bool:
        return all(_norm(row[k]) == _norm(val) for k, val in rec.items())

    # ---- bindings (seed topics 7 and 9) --------------------------------------------------

    def bind(self, token: str, provider: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Start a WeChat/Alipay binding: a QR link; refused within 2 hours of a recovery."""
        if provider not in PROVIDERS:
            raise Validation("绑定方式应为微信（wechat）或支付宝（alipay）。", field="provider")

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            a = self._account_for(conn, token)
            if a["status"] == "cancelled":
                raise Conflict("该账号已注销，无法绑定。")
            wait = (a["last_recovery_at"] or -math.inf) + self.limits.bind_after_recovery - self.clock()
            if wait > 0:
                raise TooFrequent("操作过于频繁：找回用户名或密码后，需2小时后再进行微信或支付宝的绑定操作。",
                                  retry_after=math.ceil(wait))
            row = conn.execute("SELECT status FROM bindings WHERE account_id = ? AND provider = ?",
                               (a["id"], provider)).fetchone()
            if row is not None and row["status"] == "bound":
                raise Conflict(f"该账号已绑定{PROVIDERS[provider]}。")
            qr = secrets.token_urlsafe(16)
            conn.execute("INSERT INTO bindings VALUES (?, ?, 'pending', ?, ?, NULL) ON CONFLICT (account_id, provider)"
                         " DO UPDATE SET qr_token = excluded.qr_token, created_at = excluded.created_at",
                         (a["id"], provider, qr, self.clock()))
            return {"qr_url": f"{self.public_base_url}/sandbox/qr/{qr}"}

        return self._once("me.bindings", idempotency_key, {"provider": provider}, op, token=token)

    def scan_qr(self, qr_token: str) -> str:
        """The sandbox's stand-in for scanning the QR code in the app: completes the binding."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM bindings WHERE qr_token = ?", (qr_token,)).fetchone()
            if row is None or row["status"] != "pending":
                raise NotFound("二维码无效或已使用。")
            conn.execute("UPDATE bindings SET status = 'bound', bound_at = ? WHERE qr_token = ?",
                         (self.clock(), qr_token))
            return str(row["provider"])

    def unbind(self, token: str, provider: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Remove a binding (bound or pending)."""
        if provider not in PROVIDERS:
            raise Validation("绑定方式应为微信（wechat）或支付宝（alipay）。", field="provider")

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            a = self._account_for(conn, token)
            if conn.execute("DELETE FROM bindings WHERE account_id = ? AND provider = ?",
                            (a["id"], provider)).rowcount == 0:
                raise NotFound(f"该账号未绑定{PROVIDERS[provider]}。")
            return {}

        return self._once("me.unbind:" + str(provider), idempotency_key, {}, op, token=token)

    def bindings(self, token: str) -> dict[str, Any]:
        """This account's bindings: provider → pending | bound."""
        with self._tx(write=False) as conn:
            a = self._account_for(conn, token)
            rows = conn.execute("SELECT provider, status FROM bindings WHERE account_id = ?", (a["id"],)).fetchall()
            return {"bindings": {r["provider"]: r["status"] for r in rows}}

    # ---- sandbox-only: outbox and admin ---------------------------------------------------

    def outbox(self, phone: Any) -> dict[str, Any]:
        """The SMS "sent" to a phone, newest first (at most 50)."""
        p = v.phone(phone)
        with self._tx(write=False) as conn:
            rows = conn.execute("SELECT id, kind, text, code, username, sent_at FROM outbox WHERE phone = ?"
                                " ORDER BY id DESC LIMIT 50", (p,)).fetchall()
            return {"messages": [dict(r) for r in rows]}

    def pending_reviews(self) -> dict[str, Any]:
        """Admin: the manual reviews waiting for a decision, oldest first."""
        with self._tx(write=False) as conn:
            rows = conn.execute("SELECT r.ticket_id, a.username, r.image_type, r.image_size, r.created_at"
                                " FROM manual_reviews r JOIN accounts a ON a.id = r.account_id"
                                " WHERE r.status = 'pending' ORDER BY r.created_at").fetchall()
            return {"reviews": [dict(r) for r in rows]}

    def decide_review(self, ticket_id: str, approve: bool, reason: Any = None) -> dict[str, Any]:
        """Admin: approve (verifying the account) or reject with a reason; the photo is then purged."""
        reason = reason.strip() if isinstance(reason, str) and reason.strip() else None
        if not approve and reason is None:
            raise Validation("驳回时请填写原因。", field="reason")
        with self._tx() as conn:
            r = conn.execute("SELECT * FROM manual_reviews WHERE ticket_id = ?", (ticket_id,)).fetchone()
            if r is None:
                raise NotFound("审核单不存在。")
            if r["status"] != "pending":
                raise Conflict("该审核单已处理。")
            if approve:
                self._verify(conn, r["account_id"], "manual_review")
            status = "approved" if approve else "rejected"
            conn.execute("UPDATE manual_reviews SET status = ?, reason = ?, decided_at = ?, image = NULL"
                         " WHERE ticket_id = ?", (status, reason, self.clock(), ticket_id))
            return {"ticket_id": ticket_id, "status": status, "reason": reason}

    def pass_app_verification(self, username: Any) -> dict[str, Any]:
        """Admin: the APP verification of this (pending) account passed."""
        user = v.username(username)
        with self._tx() as conn:
            a = conn.execute("SELECT * FROM accounts WHERE username_lc = ?", (user.lower(),)).fetchone()
            if a is None:
                raise NotFound("账号不存在。")
            if conn.execute("SELECT 1 FROM app_verifications WHERE account_id = ?", (a["id"],)).fetchone() is None:
                raise Conflict("该账号尚未开始 APP 自助验证。")
            self._verify(conn, a["id"], "app")
            conn.execute("UPDATE app_verifications SET passed_at = ? WHERE account_id = ?", (self.clock(), a["id"]))
            return self._identity(conn, self._account(conn, a["id"]))

    def account_view(self, username: Any) -> dict[str, Any]:
        """Admin: an account's stored record (no password hash)."""
        user = v.username(username)
        with self._tx(write=False) as conn:
            a = conn.execute("SELECT * FROM accounts WHERE username_lc = ?", (user.lower(),)).fetchone()
            if a is None:
                raise NotFound("账号不存在。")
            view = {k: a[k] for k in a.keys() if k not in ("password_hash", "username_lc")}
            view["route4_attempts_used"] = self._route4_used(conn, a)
            return view

    def clear_rate_limits(self) -> None:
        """Admin: forget every rate-limit event (demos and tests)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM rate_events")
            conn.execute("UPDATE accounts SET last_recovery_at = NULL")

    def add_student_record(self, conn: sqlite3.Connection | None, id_type: Any, id_number: Any,
                           record: Mapping[str, Any]) -> dict[str, Any]:
        """Admin/demo: store one 学籍/学历 record for an ID number (in ``conn``'s transaction or a new one)."""
        t, n = self._identity_key(id_type, id_number)
        rec = self._record(record)
        if conn is None:
            with self._tx() as c:
                return self.add_student_record(c, t, n, rec)
        conn.execute("INSERT INTO student_records (id_type, id_number, kind, school, level, student_no, enrolment_year,"
                     " certificate_no, graduation_year) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (t, n, rec["kind"], rec["school"], rec["level"], rec.get("student_no"),
                      rec.get("enrolment_year"), rec.get("certificate_no"), rec.get("graduation_year")))
        return rec


def latest_code(messages: list[dict[str, Any]]) -> str:
    """The newest SMS code among outbox ``messages`` (newest first); KeyError when none."""
    for m in messages:
        if m.get("code"):
            return str(m["code"])
    raise KeyError("no code in the outbox")
