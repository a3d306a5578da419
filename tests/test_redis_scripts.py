"""handlers.redis_scripts: Lua scripts over lean connections keep redis-py's results and errors —
replies of every shape, error replies, a server restarted under them (stale connection, script
cache gone), a server down — against a redis-server of the test's own."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest
import redis

from handlers.redis_scripts import LeanScripts

from fault_harness import RedisServer, redis_server

pytestmark = pytest.mark.timeout(120)

SHAPES = """
if ARGV[1] == 'int' then return 42 end
if ARGV[1] == 'nil' then return redis.call('get', KEYS[1]) end
if ARGV[1] == 'status' then return redis.call('set', KEYS[1], ARGV[2]) end
if ARGV[1] == 'bulk' then return redis.call('get', KEYS[1]) end
if ARGV[1] == 'array' then return {1, redis.call('get', KEYS[1]), {2, 'x'}} end
if ARGV[1] == 'empty' then return {} end
if ARGV[1] == 'error' then return redis.error_reply('BAD something') end
return redis.call('no-such-command')
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as s:
        yield s


@pytest.fixture
def pair(server: RedisServer) -> Iterator[tuple[redis.Redis, LeanScripts]]:
    """redis-py's client on the test's server and lean scripts over it (both closed after the test)."""
    client = redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)
    lean = LeanScripts(client)
    try:
        yield client, lean
    finally:
        lean.close()
        client.close()


def test_replies_are_those_of_redis_py(pair):
    client, lean = pair
    mine, theirs = lean.script(SHAPES), client.register_script(SHAPES)
    text = "会话 " + "x" * 5000   # longer than one read, not ASCII
    for args in (["int"], ["nil"], ["status", text], ["bulk"], ["array"], ["empty"]):
        assert mine(keys=["k"], args=args) == theirs(keys=["k"], args=args), args
    assert mine(keys=["k"], args=["bulk"]) == text.encode()
    assert mine(keys=["k"], args=["status", 1.5]) == theirs(keys=["k"], args=["status", 1.5])
    assert mine(keys=["k"], args=["bulk"]) == b"1.5"
    for args in (["error"], ["other"]):
        with pytest.raises(redis.ResponseError):
            mine(keys=["k"], args=args)
    assert mine(keys=["k"], args=["int"]) == 42   # an error reply leaves the connection usable


def test_each_thread_has_its_own_connection_and_results_never_cross(pair):
    _, lean = pair
    echo = lean.script("redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])")
    wrong: list[tuple[str, bytes]] = []

    def work(n: int) -> None:
        for i in range(200):
            value = f"{n}-{i}"
            got = echo(keys=[f"k{n}"], args=[value])
            if got != value.encode():
                wrong.append((value, got))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    assert len(lean._all) == 8


def test_a_restarted_server_is_used_again_and_gets_the_script_anew(server, pair):
    _, lean = pair
    script = lean.script("return redis.call('incr', KEYS[1])")
    assert script(keys=["n"]) == 1
    server.stop()
    with pytest.raises(redis.ConnectionError):   # down: redis-py's error, no hang, no other exception
        script(keys=["n"])
    server.start()   # same append-only file: the data is back, the script cache is not
    assert script(keys=["n"]) == 2
    server.stop()
    server.start()
    assert script(keys=["n"]) == 3   # the stale connection is replaced, the script sent whole again
    assert script(keys=["n"]) == 4


def test_arguments_of_a_wrong_type_are_refused_before_anything_is_sent(pair):
    _, lean = pair
    script = lean.script("return 1")
    with pytest.raises(redis.DataError):
        script(keys=["k"], args=[None])
    with pytest.raises(redis.DataError):
        script(keys=["k"], args=[True])
    assert script(keys=["k"]) == 1
