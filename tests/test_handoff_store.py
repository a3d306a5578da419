"""One contract test for every HandoffStore (in-memory twin, SQLite, PostgreSQL), the SQL layer's
migrations, and concurrent claims across threads and processes (exactly one agent wins)."""
from __future__ import annotations

import multiprocessing
import threading
from typing import Iterator

import pytest

from db_fixture import db_url, pg_schema_url  # noqa: F401  (fixtures)
from handlers.db import Database, DatabaseError
from handlers.handoffs import (MIGRATIONS, HandoffClosed, HandoffConflict, HandoffNotFound, HandoffStoreError,
                               MemoryHandoffStore, NewHandoff, SqlHandoffStore)
from support import Clock


def new(n: int = 0, **kw) -> NewHandoff:
    base = dict(session_key=f"key{n}", channel="web", address=f"sid{n}", reason="user_request",
                flow="recover_password", step="ask_code", topic="recover_account",
                transcript=(("用户", "忘记密码"), ("助手", "好的")))
    return NewHandoff(**{**base, **kw})


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request, tmp_path) -> Iterator:
    clock = Clock()
    if request.param == "memory":
        s = MemoryHandoffStore(clock)
        s.clock = clock
        yield s
        return
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path}/h.db")
        s = SqlHandoffStore(db, clock)
        s.clock = clock
        yield s
        s.close()
        return
    gen = pg_schema_url()
    url = next(gen)
    db = Database(url)
    s = SqlHandoffStore(db, clock)
    s.clock = clock
    yield s
    s.close()
    next(gen, None)


def test_contract(store):
    clock = store.clock
    a = store.create(new(1))
    clock.advance(5)
    b = store.create(new(2, channel="telegram", address="12345", reason="invalid_tries"))
    assert a.id != b.id and a.status == "waiting" and a.agent is None
    got = store.get(a.id)
    assert got == a
    assert got.transcript == (("用户", "忘记密码"), ("助手", "好的"))
    assert store.get("nope") is None
    # queue: oldest first, positions
    assert [h.id for h in store.list("waiting")] == [a.id, b.id]
    assert (store.position(a.id), store.position(b.id), store.position("nope")) == (1, 2, 0)

    # claim: one agent; the same agent again is a no-op; another agent conflicts
    clock.advance(5)
    claimed = store.claim(a.id, "li")
    assert (claimed.status, claimed.agent, claimed.claimed_at) == ("active", "li", clock.now)
    assert store.claim(a.id, "li").agent == "li"
    with pytest.raises(HandoffConflict):
        store.claim(a.id, "wang")
    with pytest.raises(HandoffNotFound):
        store.claim("nope", "li")
    assert store.position(a.id) == 0 and store.position(b.id) == 1
    assert [h.id for h in store.list("active")] == [a.id]

    # messages: in order, ids increase, ``after`` pages
    m1 = store.add_message(a.id, "user", "用户", "人呢？")
    m2 = store.add_message(a.id, "agent", "li", "您好，我来帮您")
    store.add_message(b.id, "user", "用户", "在吗")
    assert m2.id > m1.id
    assert [m.text for m in store.messages(a.id)] == ["人呢？", "您好，我来帮您"]
    assert [m.id for m in store.messages(a.id, after=m1.id)] == [m2.id]
    assert store.messages("nope") == []
    with pytest.raises(HandoffNotFound):
        store.add_message("nope", "user", "用户", "x")

    # finish: once; then no messages, no claims
    clock.advance(60)
    done = store.finish(a.id, "closed", "solved", "li")
    assert (done.status, done.resolution, done.closed_at, done.agent) == ("closed", "solved", clock.now, "li")
    assert done.address == "" and store.get(a.id).address == ""   # the chat address is not kept
    with pytest.raises(HandoffClosed):
        store.finish(a.id, "closed", "solved")
    with pytest.raises(HandoffClosed):
        store.add_message(a.id, "agent", "li", "还在吗")
    with pytest.raises(HandoffClosed):
        store.claim(a.id, "li")
    gone = store.finish(b.id, "abandoned", "user_left")
    assert gone.status == "abandoned" and gone.agent is None
    assert store.list("waiting") == []
    assert [h.id for h in store.list("closed")] == [a.id]
    assert [h.id for h in store.list("abandoned")] == [b.id]
    with pytest.raises(ValueError):
        store.finish(b.id, "active", "x")


def test_kept_pushes_go_in_order_per_hand_off_to_one_owner_at_a_time(store):
    clock = store.clock
    a, b = store.create(new(1)), store.create(new(2, channel="telegram", address="777"))
    assert store.pushes_waiting(a.id) == 0 and store.claim_push("r1", 60) is None
    with pytest.raises(HandoffNotFound):
        store.queue_push("nope", "web", "sid", "[]", None, clock.now)
    p1 = store.queue_push(a.id, "web", "sid1", '[{"text": "一"}]', 7, clock.now + 10)   # not due for 10 s
    p2 = store.queue_push(a.id, "web", "sid1", '[{"text": "二"}]', 8, clock.now)        # due, but behind p1
    p3 = store.queue_push(b.id, "telegram", "777", '[{"text": "三"}]', None, clock.now)
    assert p1.id < p2.id < p3.id and (p1.handoff_id, p1.channel, p1.address, p1.message_id) == (a.id, "web", "sid1", 7)
    assert (store.pushes_waiting(a.id), store.pushes_waiting(b.id), store.pushes_pending()) == (2, 1, 3)

    # only the first pending push of a hand-off, only when due: p2 never overtakes p1
    got = store.claim_push("r1", 60)
    assert got == p3 and store.claim_push("r2", 60) is None
    clock.advance(10)
    assert store.claim_push("r2", 60) == p1
    assert store.claim_push("r1", 60) is None          # p1 is held by r2, p2 waits behind it, p3 by r1
    assert not store.push_delivered(p1.id, "r1")       # settled only by its owner
    assert store.push_retry(p1.id, "r2", clock.now + 5, "BusError")
    assert store.claim_push("r1", 60) is None          # p1 waits for its next try; p2 still behind it
    clock.advance(5)
    again = store.claim_push("r1", 60)
    assert again.id == p1.id and again.attempts == 1 and again.body == '[{"text": "一"}]'
    assert store.push_delivered(p1.id, "r1") and store.pushes_waiting(a.id) == 1
    assert store.claim_push("r1", 60) == p2            # now p2 is first

    # a claim whose lease ran out is another owner's to take; the old owner can no longer settle it
    clock.advance(61)
    taken = store.claim_push("r3", 60)
    assert taken.id in (p2.id, p3.id)
    assert not store.push_delivered(taken.id, "r1") and not store.push_failed(taken.id, "r1", "x")
    other = store.claim_push("r3", 60)
    assert {taken.id, other.id} == {p2.id, p3.id}

    # failed: no longer pending, never claimed again; finishing the hand-off leaves kept pushes alone
    assert store.push_failed(p3.id, "r3", "WindowClosed") and store.pushes_waiting(b.id) == 0
    store.finish(a.id, "closed", "solved", "li")
    p4 = store.queue_push(a.id, "web", "sid1", '[{"text": "结束"}]', None, clock.now)   # a closing notice
    assert store.push_delivered(p2.id, "r3")
    assert store.claim_push("r3", 60) == p4 and store.claim_push("r3", 60) is None
    assert store.push_delivered(p4.id, "r3") and store.pushes_waiting(a.id) == 0 and store.pushes_pending() == 0


def test_a_store_made_before_kept_pushes_gets_their_table(db_url):
    db = Database(db_url)
    db.migrate("handoffs", MIGRATIONS[:1])            # the schema as an older release left it
    old = SqlHandoffStore.__new__(SqlHandoffStore)
    old.db, old._clock = db, lambda: 1.0
    h = old.create(new(1))
    store = SqlHandoffStore(db)                       # this release: the new migration runs once
    assert store.get(h.id) == h and store.pushes_waiting(h.id) == 0
    p = store.queue_push(h.id, "web", "sid1", "[]", None, 0.0)
    assert store.claim_push("r", 60) == p
    assert db.tx().rows("SELECT version FROM schema_migrations WHERE component = 'handoffs' ORDER BY version") == [
        {"version": 1}, {"version": 2}]
    db.close()


def test_concurrent_push_claims_in_threads_one_winner(store):
    h = store.create(new())
    for n in range(5):
        p = store.queue_push(h.id, "web", "sid", f'[{{"text": "{n}"}}]', None, store.clock.now)
        got: list = []
        barrier = threading.Barrier(6)

        def claim(owner: str) -> None:
            barrier.wait()
            got.append((owner, store.claim_push(owner, 60)))

        threads = [threading.Thread(target=claim, args=(f"r{i}",)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        winners = [(owner, c) for owner, c in got if c is not None]
        assert len(got) == 6 and len(winners) == 1 and winners[0][1].id == p.id
        assert store.push_delivered(p.id, winners[0][0])


def test_concurrent_claims_in_threads_one_winner(store):
    for _ in range(5):
        h = store.create(new())
        wins, conflicts = [], []
        barrier = threading.Barrier(6)

        def claim(agent: str) -> None:
            barrier.wait()
            try:
                wins.append(store.claim(h.id, agent).agent)
            except HandoffConflict:
                conflicts.append(agent)

        threads = [threading.Thread(target=claim, args=(f"agent{i}",)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(wins) == 1 and len(conflicts) == 5
        assert store.get(h.id).agent == wins[0]


def _claim_in_process(url: str, handoff_id: str, agent: str, start, results) -> None:
    store = SqlHandoffStore(Database(url))
    start.wait(30)
    try:
        store.claim(handoff_id, agent)
        results.put(("won", agent))
    except HandoffConflict:
        results.put(("lost", agent))
    except Exception as e:  # noqa: BLE001 - reported to the test
        results.put(("error", repr(e)))


def test_concurrent_claims_across_processes_one_winner(db_url):
    store = SqlHandoffStore(Database(db_url))
    ctx = multiprocessing.get_context("spawn")
    for _ in range(2):
        h = store.create(new())
        start, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_claim_in_process, args=(db_url, h.id, f"agent{i}", start, results))
                 for i in range(4)]
        for p in procs:
            p.start()
        start.set()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        assert sorted(o[0] for o in outcomes) == ["lost", "lost", "lost", "won"], outcomes
        winner = next(o[1] for o in outcomes if o[0] == "won")
        assert store.get(h.id).agent == winner
    store.close()


def test_migrations_run_once_and_are_recorded(db_url):
    db = Database(db_url)
    SqlHandoffStore(db)
    assert db.migrate("handoffs", ["SELECT 1"]) == 0          # version 1 already applied
    assert db.migrate("demo", ["CREATE TABLE demo (id {serial}, v TEXT)", "ALTER TABLE demo ADD COLUMN w TEXT"]) == 2
    assert db.migrate("demo", ["x", "y"]) == 0
    new_id = db.tx().insert("INSERT INTO demo (v, w) VALUES (?, ?)", ("a", "100%"))
    assert db.tx().row("SELECT v, w FROM demo WHERE id = ?", (new_id,)) == {"v": "a", "w": "100%"}
    db.close()


def test_failures_surface_as_the_contract_errors(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/h.db")
    with pytest.raises(DatabaseError):
        db.tx().execute("SELECT * FROM no_such_table")
    broken = SqlHandoffStore(Database(f"sqlite:///{tmp_path}/b.db"))
    broken.db.tx().execute("DROP TABLE handoff_messages")
    h = broken.create(new())
    with pytest.raises(HandoffStoreError):
        broken.messages(h.id)
    with pytest.raises(ValueError):
        Database("mysql://x/y")
    with pytest.raises(ValueError):
        Database("postgresql://postgres@127.0.0.1/test?schema=bad;name")


def test_unreachable_postgres_is_a_store_error():
    with pytest.raises(HandoffStoreError):
        SqlHandoffStore(Database("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2"))
