"""Delivery latency of staff replies: agent send → the user's event stream receives it.

    python benchmarks/bench_handoff.py                # one worker, in-process bus (the embedded default)
    python benchmarks/bench_handoff.py --redis        # two worker processes sharing Redis: the user's
                                                      # stream on one, the agent's requests on the other
    python benchmarks/bench_handoff.py -n 100

Real ``python bot.py serve`` processes, the real engine, SQLite hand-off store; the clock starts just before the
agent's POST and stops when the reply's event is read from the user's stream. Prints p50/p99/max.
"""
from __future__ import annotations

import argparse
import json
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password-1"
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cfg: dict, tmp: Path, name: str) -> tuple[subprocess.Popen, str]:
    """``python bot.py serve`` on a free port with ``cfg``; its URL once /healthz answers."""
    port = free_port()
    cfg = {**cfg, "web": {**cfg["web"], "port": port, "public_url": f"http://127.0.0.1:{port}"}}
    path = tmp / f"config-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(ROOT / "bot.py"), "--config", str(path), "serve"], cwd=ROOT,
                            stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=2).ok:
                return proc, url
        except requests.RequestException:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("worker did not start")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100, help="replies to time (default 100)")
    ap.add_argument("--redis", action="store_true", help="two workers sharing Redis streams")
    args = ap.parse_args()
    from handlers.db import Database
    from handlers.staff import StaffStore

    tmp = Path(tempfile.mkdtemp(prefix="bench-handoff-"))
    prefix = f"bench-{secrets.token_hex(4)}:"
    import settings
    cfg = settings.load()
    cfg["handoff"].update(database_url=f"sqlite:///{tmp}/bot.db", hours="", webhook_url="")
    cfg["sessions"].update(backend="redis" if args.redis else "memory", redis_prefix=prefix, data_dir=str(tmp))
    cfg["web"].update(session_secret="bench-secret-0123456789abcdef0123", events_per_minute=10_000)
    cfg["staff"] = {**cfg.get("staff", {}), "rate_limit": 100_000}
    cfg["telegram"]["token"] = ""
    cfg["web"].update(secret_file=str(tmp / "web.key"))
    cfg["logging"]["level"] = "WARNING"
    StaffStore(Database(f"sqlite:///{tmp}/bot.db")).add("bench", "agent", PASSWORD)
    workers = [start(cfg, tmp, f"w{i}") for i in range(2 if args.redis else 1)]
    user_url, agent_url = workers[0][1], workers[-1][1]
    try:
        sid = requests.post(user_url + "/api/session").json()["session_id"]
        requests.post(user_url + "/api/chat", json={"session_id": sid, "text": "转人工"})
        received: dict[str, float] = {}
        ready = threading.Event()

        def listen() -> None:
            try:
                with requests.get(user_url + "/api/chat/events", params={"session_id": sid}, stream=True,
                                  timeout=120) as resp:
                    ready.set()
                    for line in resp.iter_lines(decode_unicode=True):
                        if line.startswith("data: "):
                            now = time.perf_counter()
                            for reply in json.loads(line[6:])["replies"]:
                                received.setdefault(reply["text"], now)
            except requests.RequestException:  # the workers stop at the end
                pass

        threading.Thread(target=listen, daemon=True).start()
        ready.wait(30)
        agent = requests.Session()
        agent.post(agent_url + "/staff/login", data={"name": "bench", "password": PASSWORD})
        csrf = {"X-CSRF-Token": agent.get(agent_url + "/staff/api/me").json()["csrf"]}
        [h] = agent.get(agent_url + "/staff/api/handoffs").json()["handoffs"]
        agent.post(f"{agent_url}/staff/api/handoffs/{h['id']}/claim", headers=csrf)
        latencies = []
        for i in range(args.n + 5):
            text = f"第 {i} 条回复"
            start_t = time.perf_counter()
            r = agent.post(f"{agent_url}/staff/api/handoffs/{h['id']}/messages", json={"text": text}, headers=csrf)
            r.raise_for_status()
            deadline = time.monotonic() + 10
            while text not in received and time.monotonic() < deadline:
                time.sleep(0.0005)
            if text not in received:
                raise SystemExit(f"reply {i} never arrived")
            if i >= 5:  # the first few warm up connections and caches
                latencies.append((received[text] - start_t) * 1000)
        mode = "two workers, Redis streams" if args.redis else "one worker, in-process bus"
        print(f"delivery latency, agent POST → user's event stream ({mode}), n={len(latencies)}:")
        print(f"  p50 {statistics.median(latencies):.1f} ms   p99 {percentile(latencies, 99):.1f} ms   "
              f"max {max(latencies):.1f} ms   mean {statistics.fmean(latencies):.1f} ms")
    finally:
        for proc, _ in workers:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:  # an open event stream keeps uvicorn's graceful shutdown waiting
                proc.kill()
                proc.wait(10)
        if args.redis:
            import redis
            client = redis.Redis.from_url(cfg["sessions"]["redis_url"])
            for key in client.scan_iter(match=prefix + "*"):
                client.delete(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
