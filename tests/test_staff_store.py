"""One contract test for every staff-account store (in-memory twin, SQLite, PostgreSQL): accounts,
roles, bad input, sign-in with lock-out, revocation by session version, presence."""
from __future__ import annotations

from typing import Iterator

import pytest

from db_fixture import pg_schema_url
from handlers.db import Database
from handlers.staff import (LOCK_SECONDS, MAX_FAILURES, ONLINE_SECONDS, AccountLocked, BadCredentials, InvalidStaff,
                            MemoryStaffStore, SqlStaffStore, StaffAccounts, StaffExists, UnknownStaff,
                            build_staff_store)
from support import Clock

PASSWORD = "correct-horse-1"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def accounts(request, tmp_path) -> Iterator[tuple[StaffAccounts, Clock]]:
    clock = Clock()
    if request.param == "memory":
        yield MemoryStaffStore(clock), clock
    elif request.param == "sqlite":
        yield SqlStaffStore(Database(f"sqlite:///{tmp_path}/staff.db"), clock), clock
    else:
        gen = pg_schema_url()
        yield SqlStaffStore(Database(next(gen)), clock), clock
        next(gen, None)


def test_staff_store_contract(accounts):
    store, clock = accounts
    li = store.add("li", "agent", PASSWORD)
    assert (li.name, li.role, li.disabled, li.session_version) == ("li", "agent", False, 1)
    store.add("王芳", "admin", PASSWORD)
    assert [s.name for s in store.list()] == sorted(["li", "王芳"]) and store.get("nobody") is None
    with pytest.raises(StaffExists):
        store.add("li", "agent", PASSWORD)
    for name, role, password in [("bad name", "agent", PASSWORD), ("x", "boss", PASSWORD), ("y", "agent", "short")]:
        with pytest.raises(InvalidStaff):
            store.add(name, role, password)
    assert store.get("x") is None and store.get("y") is None
    # sign-in: a wrong password, an unknown or malformed name all look the same
    assert store.authenticate("li", PASSWORD).name == "li"
    for name, password in [("li", "wrong-password"), ("nobody", PASSWORD), ("bad name", PASSWORD), ("li", None)]:
        with pytest.raises(BadCredentials):
            store.authenticate(name, password)
    store.authenticate("li", PASSWORD)                           # a success resets the count
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(BadCredentials):
            store.authenticate("li", "wrong-password")
    with pytest.raises(AccountLocked):
        store.authenticate("li", "wrong-password")               # the fifth in a row locks
    with pytest.raises(AccountLocked):
        store.authenticate("li", PASSWORD)                       # even the right password, for 15 minutes
    clock.advance(LOCK_SECONDS + 1)
    assert store.authenticate("li", PASSWORD).name == "li"
    # a new password revokes sessions and clears a lock
    for _ in range(MAX_FAILURES):
        with pytest.raises((BadCredentials, AccountLocked)):
            store.authenticate("li", "wrong-password")
    store.set_password("li", "another-horse-2")
    assert store.get("li").session_version == 2
    assert store.authenticate("li", "another-horse-2").name == "li"
    with pytest.raises(BadCredentials):
        store.authenticate("li", PASSWORD)
    with pytest.raises(InvalidStaff):
        store.set_password("li", "short")
    # presence
    assert store.online() == []
    store.touch("li")
    store.touch("王芳")
    assert store.online() == sorted(["li", "王芳"])
    store.sign_out("王芳")
    assert store.online() == ["li"]
    clock.advance(ONLINE_SECONDS + 1)
    assert store.online() == []
    store.touch("li")
    # disabling signs out, revokes, and refuses sign-in like a wrong password
    store.disable("li")
    li = store.get("li")
    assert li.disabled and li.session_version == 3 and store.online() == []
    store.touch("li")
    assert store.online() == []
    with pytest.raises(BadCredentials):
        store.authenticate("li", "another-horse-2")
    for call in (lambda: store.disable("nobody"), lambda: store.set_password("nobody", PASSWORD)):
        with pytest.raises(UnknownStaff):
            call()


def test_build_picks_the_database_or_the_twin(tmp_path):
    assert isinstance(build_staff_store(None), MemoryStaffStore)
    assert isinstance(build_staff_store(Database(f"sqlite:///{tmp_path}/s.db")), SqlStaffStore)


def test_the_web_app_on_memory_hand_offs_keeps_staff_in_the_twin():
    """handoff.database_url memory:// (a demo without files): the console starts (it used to fail
    on the URL), signs agents in from the in-memory accounts, and the queue sees them online."""
    from fastapi.testclient import TestClient

    from channels.app import create_app
    from support import RecordingEngine

    cfg = {"web": {"session_secret": "memory-staff-secret-0123456789abcdef"}, "telegram": {"token": ""},
           "handoff": {"database_url": "memory://"}, "sessions": {"backend": "memory"}}
    app = create_app(cfg, engine=RecordingEngine())
    store = app.state.staff_console.store
    assert isinstance(store, MemoryStaffStore)
    store.add("li", "agent", PASSWORD)
    with TestClient(app) as c:
        r = c.post("/staff/login", data={"name": "li", "password": PASSWORD}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/staff"
        assert c.get("/staff/api/me").json()["name"] == "li"
    # the signed-in agent counts as online for the users in the queue (not "没有人工客服在线")
    assert app.state.staff_console.service.agents_online() == 1
