"""CPU time per request of POST /api/chat, in process (no sockets, no load generator): the
measure to use on a shared machine, where req/s figures are noise.

Each setup's ASGI app is called directly (a raw ASGI scope, as uvicorn would), one request at a
time, N FAQ questions over a few conversations; the figure is ``time.process_time()`` (CPU of
every thread of this process: the request, the engine's worker thread, the insights writer, the
Redis client) divided by N. The setups are those of bench_web.py:

- ``bare``: the bare Starlette app answering a small JSON body (the floor),
- ``default``: ``create_app`` over the shipped config as ``serve`` runs it (SQLite sessions, abuse
  limits in SQLite beside them),
- ``production``: the same with Redis sessions and limits (one worker's share of the work).

    python benchmarks/profile_web.py [-n 2000] [--setups bare,default,production] [--profile default]

``--profile SETUP`` also prints the top of a cProfile of that setup (cumulative time).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = ["忘记密码怎么办", "证件号码已被注册怎么办", "用户名忘了", "提示操作过于频繁", "怎么绑定微信", "手机号被注册了"]


def bare_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request):
        await request.body()
        return JSONResponse({"replies": [{"text": "ok"}]})

    async def session(request):
        return JSONResponse({"session_id": "x"}, status_code=201)

    return Starlette(routes=[Route("/api/chat", chat, methods=["POST"]),
                             Route("/api/session", session, methods=["POST"])])


def bot_app(tmp: Path, redis: bool):
    import settings
    from channels.app import create_app

    os.environ.setdefault("WEB_SESSION_SECRET", "bench-secret-" + "0" * 32)
    from bench_web import config

    from channels.launcher import served_config

    path = config(tmp, None, redis)
    return create_app(served_config(settings.load(str(path))))   # as serve runs it (limits in SQLite beside SQLite sessions)


async def call(app, path: str, body: bytes) -> tuple[int, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    sent = False
    out: dict = {"status": 0, "body": b""}

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["body"]


async def conversations(app, n: int = 8) -> list[str]:
    sids = []
    for _ in range(n):
        status, body = await call(app, "/api/session", b"")
        sids.append(json.loads(body)["session_id"])
    return sids


async def drive(app, sids: list[str], n: int, offset: int = 0) -> float:
    """CPU seconds per request over ``n`` chat requests."""
    bodies = [json.dumps({"session_id": sids[i % len(sids)], "text": QUESTIONS[i % len(QUESTIONS)]},
                         ensure_ascii=False).encode() for i in range(offset, offset + n)]
    started = time.process_time()
    for b in bodies:
        status, _ = await call(app, "/api/chat", b)
        if status != 200:
            raise RuntimeError(f"status {status}")
    return (time.process_time() - started) / n


async def measure(setups: list[str], n: int, rounds: int, profile: str) -> dict[str, list[float]]:
    """Per-request CPU of each setup, ``rounds`` interleaved rounds of ``n / rounds`` requests each
    (interleaving spreads the machine's load over every setup alike)."""
    with tempfile.TemporaryDirectory() as tmp:
        apps = {}
        for setup in setups:
            folder = Path(tmp) / setup
            folder.mkdir()
            apps[setup] = bare_app() if setup == "bare" else bot_app(folder, setup == "production")
        async with contextlib.AsyncExitStack() as stack:
            sids = {}
            for setup, app in apps.items():
                await stack.enter_async_context(app.router.lifespan_context(app))
                sids[setup] = await conversations(app)
                await drive(app, sids[setup], max(60, n // 10))   # warm-up
            if profile:
                return {profile: [await profiled(apps[profile], sids[profile], n)]}
            results: dict[str, list[float]] = {s: [] for s in setups}
            per_round = max(1, n // rounds)
            for r in range(rounds):
                for setup, app in apps.items():
                    results[setup].append(await drive(app, sids[setup], per_round, r * per_round))
            return results


async def profiled(app, sids: list[str], n: int) -> float:
    """One run under cProfile (this thread's CPU time), the engine called in this thread so the
    profile sees it; prints the top functions."""
    import concurrent.futures

    import channels.web

    class Inline(concurrent.futures.Executor):
        def submit(self, fn, /, *args, **kwargs):
            future: concurrent.futures.Future = concurrent.futures.Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 - handed to the caller as the thread would
                future.set_exception(e)
            return future

    async def inline(fn, *a, **k):
        return fn(*a, **k)
    saved = channels.web.run_in_threadpool, channels.web._turns
    channels.web.run_in_threadpool, channels.web._turns = inline, Inline
    prof = cProfile.Profile(time.thread_time)
    prof.enable()
    try:
        return await drive(app, sids, n)
    finally:
        prof.disable()
        channels.web.run_in_threadpool, channels.web._turns = saved
        for key, top in (("cumulative", 50), ("tottime", 35)):
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats(key).print_stats(top)
            print(out.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=3000, help="requests per setup")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--setups", default="bare,default,production")
    ap.add_argument("--profile", default="", help="a setup to run under cProfile instead")
    args = ap.parse_args()
    import logging
    logging.disable(logging.WARNING)
    setups = args.setups.split(",")
    results = asyncio.run(measure(setups, args.n, args.rounds, args.profile))
    if args.profile:
        return 0
    print(f"CPU per POST /api/chat, in process, {args.n} requests per setup in {args.rounds} interleaved rounds "
          f"(time.process_time, all threads; median and best round)")
    bare = statistics.median(results["bare"]) if "bare" in results else None
    for setup, rounds in results.items():
        med, best = statistics.median(rounds), min(rounds)
        ratio = f"  {med / bare:6.1f}× bare" if bare else ""
        print(f"  {setup:<11} median {med * 1e6:7.0f} µs  best {best * 1e6:7.0f} µs{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
