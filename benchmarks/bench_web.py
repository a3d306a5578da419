"""Web serving benchmark: req/s, p50 and p99 of POST /api/chat (FAQ questions, kept-alive
connections, one conversation per connection) at concurrency 1, 8, 32, 64, for

- ``bare``: a bare uvicorn app answering a small JSON body (the ceiling of this machine),
- ``default``: ``python bot.py serve`` exactly as shipped (no ``--workers``: one worker per core; SQLite
  sessions and the SQLite limiter shared by the workers),
- ``production``: ``python bot.py serve --workers 2`` with Redis sessions and abuse limits,

all in the same run. The load generator is ``wrk`` when it is installed (``apt-get install wrk``;
C, a few per cent of a core): one thread and one kept-alive connection per simulated user, each
user one conversation (a session created beforehand with ``POST /api/session``) asking the FAQ
questions in turn (a Lua script, benchmarks/wrk_chat.lua). Without wrk (or with ``--generator
python``) it is asyncio with raw keep-alive HTTP/1.1 in its own process, which needs a good share
of a core itself and so undercounts. The abuse limits are checked as usual but raised for the run
(one address floods on purpose), their window cut to one second so that a sliding log holds as many
events as a real one does.

    python benchmarks/bench_web.py [--seconds 5] [--levels 1,8,32,64] [--generator wrk|python] [--json]

A benchmark, not a test: the CPU is shared (the load generator runs on the same cores). Each row
ends with the machine's load average around that setup; with wrk a second table gives the CPU
each request cost in the server's processes, Redis and wrk (from /proc, Redis's INFO and wrk's
rusage), which other work on the machine disturbs far less than req/s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import http.client
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["忘记密码怎么办", "证件号码已被注册怎么办", "用户名忘了", "提示操作过于频繁", "怎么绑定微信", "手机号被注册了"]
BARE = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
async def chat(request):
    await request.body()
    return JSONResponse({"replies": [{"text": "ok"}]})
async def session(request):
    return JSONResponse({"session_id": "x"}, status_code=201)
app = Starlette(routes=[Route("/api/chat", chat, methods=["POST"]), Route("/api/session", session, methods=["POST"]),
                        Route("/healthz", lambda r: JSONResponse({"status": "ok"}))])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(tmp: Path, port: int | None, redis: bool) -> Path:
    """A benchmark config in ``tmp``: no limits in the way, no FAQ watching; ``port=None`` for an app
    driven in-process (profile_web.py), which listens nowhere."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    cfg["web"].update(secret_file=str(tmp / "web.key"))
    if port is not None:
        cfg["web"].update(port=port, public_url=f"http://127.0.0.1:{port}")
    cfg["sessions"].update(sqlite_path=str(tmp / "sessions.db"), data_dir=str(tmp))
    if redis:
        cfg["sessions"].update(backend="redis", redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                               redis_prefix=f"bench-{secrets.token_hex(4)}:")
    cfg["handoff"].update(database_url=f"sqlite:///{tmp}/bot.db")
    cfg["telegram"]["token"] = ""
    cfg["logging"]["level"] = "WARNING"
    cfg.setdefault("faq", {})["watch"] = False
    # never refused, and each sliding log holds a second of events (a few hundred: as many as a real
    # log, which never holds more than its limit) — a minute of one flooding address would be 10⁴+
    big = {"limit": 10 ** 9, "window": 1}
    cfg["limits"].update(chat_per_ip=big, chat_per_session=big, session_per_ip=big)
    path = tmp / f"config-{port or 'inprocess'}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def start(setup: str, tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WEB_SESSION_SECRET": "bench-secret-" + "0" * 32}
    if setup == "bare":
        cmd = [sys.executable, "-c", BARE, str(port)]
    elif setup == "default":
        cmd = [sys.executable, str(ROOT / "bot.py"), "--config", str(config(tmp, port, False)), "serve"]
    else:
        cmd = [sys.executable, str(ROOT / "bot.py"), "--config", str(config(tmp, port, True)), "serve", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{setup} did not start")


async def request(reader, writer, path: str, body: bytes) -> tuple[int, bytes]:
    writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def user(port: int, until: float, latencies: list[float], errors: list[int], n: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    status, body = await request(reader, writer, "/api/session", b"")
    sid = json.loads(body)["session_id"]
    i = n
    while time.perf_counter() < until:
        payload = json.dumps({"session_id": sid, "text": QUESTIONS[i % len(QUESTIONS)]}, ensure_ascii=False).encode()
        i += 1
        t = time.perf_counter()
        status, _ = await request(reader, writer, "/api/chat", payload)
        latencies.append(time.perf_counter() - t)
        if status != 200:
            errors.append(status)
    writer.close()


async def level(port: int, concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    await asyncio.gather(*(user(port, time.perf_counter() + 0.5, [], [], n) for n in range(concurrency)))  # warm-up
    started = time.perf_counter()
    await asyncio.gather(*(user(port, started + seconds, latencies, errors, n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {"c": concurrency, "rps": round(len(latencies) / elapsed), "p50_ms": round(q[49] * 1000, 1),
            "p99_ms": round(q[98] * 1000, 1), "errors": len(errors), "requests": len(latencies)}


WRK_SCRIPT = ROOT / "benchmarks" / "wrk_chat.lua"


def new_sessions(port: int, n: int) -> list[str]:
    """``n`` conversations (``POST /api/session``), one per simulated user."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for _ in range(n):
        conn.request("POST", "/api/session", b"", {"Content-Type": "application/json"})
        out.append(json.loads(conn.getresponse().read())["session_id"])
    conn.close()
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) so far of process ``root`` and its live descendants (the workers)."""
    parent: dict[int, int] = {}
    spent: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(entry)] = int(fields[1])
            spent[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def under_root(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parent.get(pid, 0)
        return False
    return sum(t for pid, t in spent.items() if under_root(pid))


def redis_cpu() -> float:
    """CPU seconds so far of the Redis server (all its clients: other work on it counts too); 0 without one."""
    try:
        import redis

        info = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), socket_timeout=2).info("cpu")
    except Exception:   # noqa: BLE001 - no Redis here: the setups without it do not need one
        return 0.0
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def children_cpu() -> float:
    """CPU seconds of this process's finished children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(port: int, concurrency: int, seconds: float, server: int) -> dict:
    """One level under wrk: ``concurrency`` threads with one connection each (one conversation per
    connection: wrk's Lua cannot tell the connections of a thread apart), after a 1 s warm-up; with
    the CPU the measured run cost per request in the server's processes, Redis and wrk."""
    sids = new_sessions(port, concurrency)
    env = {**os.environ, "BENCH_SESSIONS": ",".join(sids), "BENCH_QUESTIONS": "|".join(QUESTIONS)}

    def run(duration: float) -> dict:
        cmd = ["wrk", "-t", str(concurrency), "-c", str(concurrency), "-d", f"{duration:g}s", "--timeout", "10s",
               "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}/api/chat"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60).stdout
        found = re.search(r"^WRKJSON (.*)$", out, re.M)
        if not found:
            raise RuntimeError(f"wrk gave no result: {out[-500:]}")
        return json.loads(found.group(1))

    run(1)   # warm-up
    before = (tree_cpu(server), redis_cpu(), children_cpu())
    r = run(seconds)
    after = (tree_cpu(server), redis_cpu(), children_cpu())
    errors = r["status_errors"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    per_request = [round((b - a) / max(1, r["requests"]) * 1e6) for a, b in zip(before, after)]
    return {"c": concurrency, "rps": round(r["requests"] / (r["duration_us"] / 1e6)), "p50_ms": round(r["p50_us"] / 1000, 2),
            "p99_ms": round(r["p99_us"] / 1000, 2), "errors": errors, "requests": r["requests"],
            "cpu_us": dict(zip(("server", "redis", "wrk"), per_request))}


def http_parser() -> str:
    """What uvicorn's ``http="auto"`` runs here (every setup of the run alike): httptools when installed."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11 (httptools not installed: pip install -r requirements.txt)"
    return "httptools"


def print_cpu(results: dict[str, list[dict]], levels: list[int]) -> None:
    """CPU per request of each level: steadier than req/s when other work shares the machine."""
    print("\nCPU per request, µs (user+system) of the server's processes + Redis (0 without) + wrk, and the req/s "
          f"{os.cpu_count()} cores would allow at that cost (a ceiling: less steady than CPU, more than req/s):")
    print(f"{'setup':<11}" + "".join(f"| c={c:<3} server redis  wrk  ceiling " for c in levels))
    for setup, rows in results.items():
        cells = []
        for r in rows:
            cpu = r["cpu_us"]
            ceiling = round((os.cpu_count() or 1) * 1e6 / max(1, sum(cpu.values())))
            cells.append(f"| {cpu['server']:>10} {cpu['redis']:>5} {cpu['wrk']:>4} {ceiling:>8} ")
        print(f"{setup:<11}" + "".join(cells))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--levels", default="1,8,32,64")
    ap.add_argument("--setups", default="bare,default,production")
    ap.add_argument("--generator", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    results: dict[str, list[dict]] = {}
    load: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setup in args.setups.split(","):
            folder = Path(tmp) / setup
            folder.mkdir()
            proc, port = start(setup, folder)
            before = os.getloadavg()[0]
            try:
                results[setup] = [wrk(port, c, args.seconds, proc.pid) if args.generator == "wrk"
                                  else asyncio.run(level(port, c, args.seconds)) for c in levels]
            finally:
                load[setup] = f"{before:.1f}→{os.getloadavg()[0]:.1f}"
                proc.terminate()
                proc.wait(timeout=60)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"POST /api/chat, keep-alive, {args.seconds:g} s per level, {os.cpu_count()} cores shared with the "
          f"load generator ({args.generator}); uvicorn's HTTP parser: {http_parser()}")
    print(f"{'setup':<11}" + "".join(f"| c={c:<3} req/s  p50 ms  p99 ms  err " for c in levels) + "| load (1 min avg)")
    for setup, rows in results.items():
        print(f"{setup:<11}" + "".join(f"| {r['rps']:>9} {r['p50_ms']:>7} {r['p99_ms']:>7} {r['errors']:>4} " for r in rows)
              + f"| {load[setup]}")
    print("load: the machine's 1-minute load average before → after each setup (this run adds about 2-3; "
          "more means other work shared the cores and the figures are low)")
    if args.generator == "wrk":
        print_cpu(results, levels)
    bare = {r["c"]: r["rps"] for r in results.get("bare", [])}
    for setup in ("default", "production"):
        for r in results.get(setup, []):
            if bare.get(r["c"]):
                r["share_of_bare"] = round(r["rps"] / bare[r["c"]], 3)
    print("share of the bare app's req/s:",
          {s: {r["c"]: r.get("share_of_bare") for r in rows} for s, rows in results.items() if s != "bare"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
