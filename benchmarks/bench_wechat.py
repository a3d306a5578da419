"""WeChat channel: time to the passive reply for FAQ questions, and which messages fell back to
the customer-service API.

    python benchmarks/bench_wechat.py [--questions FILE.yaml] [--rounds 2] [--safe]

The bot runs as `bot.py serve` would (uvicorn, the real engine and FAQ, SQLite sessions and
channel store) with the WeChat API replaced by the local stand-in of the tests; each question of
the file (default: the public dev set, else the private held-out set) is posted as WeChat would —
signed, or encrypted in safe mode — by one user per question, sequentially. The time is from
sending the POST to having the whole response (the passive reply XML). A message "falls back"
when its response is `success` (the engine missed `wechat.passive_seconds`) and everything
went through the customer-service API. Follow-up menus always go through that API and are
counted apart. Nothing is asserted; prints a table.
"""
from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

import settings  # noqa: E402
from channels.app import create_app  # noqa: E402
from intents.cli import load_items  # noqa: E402
from logsetup import uvicorn_log_config  # noqa: E402
from wechat_standin import WxUser, running_standin  # noqa: E402

AES_KEY = "b" * 43


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))]


def questions(path: str | None) -> list[str]:
    candidates = [Path(path)] if path else [ROOT.parent / "shared" / "eval" / "dev.yaml",
                                            ROOT / "benchmarks" / "heldout.yaml"]
    for p in candidates:
        if p.exists():
            items = load_items(str(p))
            return [i["text"] if isinstance(i, dict) else i.text for i in items]
    raise SystemExit("no question file found")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--safe", action="store_true", help="safe mode (AES)")
    args = ap.parse_args()
    texts = questions(args.questions)
    with tempfile.TemporaryDirectory() as tmp, running_standin("wxbench0000000001", "bench-secret") as standin:
        cfg = settings.load()
        cfg["web"] = {**cfg["web"], "session_secret": "x" * 48}
        cfg["sessions"] = {**cfg["sessions"], "backend": "sqlite", "sqlite_path": f"{tmp}/sessions.db",
                           "data_dir": tmp}
        cfg["handoff"] = {**cfg.get("handoff", {}), "database_url": f"sqlite:///{tmp}/handoffs.db"}
        cfg["wechat"] = {**cfg["wechat"], "token": "bench-token", "app_id": standin.app_id,
                         "app_secret": standin.app_secret, "base_url": standin.base_url,
                         "aes_key": AES_KEY if args.safe else "", "sqlite_path": f"{tmp}/wechat.db"}
        app = create_app(cfg)
        channel = app.state.channels["wechat"]
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        server = uvicorn.Server(uvicorn.Config(app, log_config=uvicorn_log_config("WARNING")))
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        while not server.started:
            time.sleep(0.01)
        client = httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=30)

        def idle() -> None:
            deadline = time.monotonic() + 30
            while channel.in_flight and time.monotonic() < deadline:
                time.sleep(0.002)

        times: list[float] = []
        fell_back: list[tuple[str, float]] = []
        follow_ups = 0
        WxUser(client, standin, token="bench-token", app_id=standin.app_id,
               aes_key=AES_KEY if args.safe else "", wait_idle=idle).say("你好")   # warm up
        for _ in range(args.rounds):
            for text in texts:
                user = WxUser(client, standin, token="bench-token", app_id=standin.app_id,
                              aes_key=AES_KEY if args.safe else "", wait_idle=idle)
                query, body = user.signed_query(user.xml("text", Content=text))
                start = time.perf_counter()
                r = user.post_raw(query, body)
                elapsed = (time.perf_counter() - start) * 1000
                times.append(elapsed)
                if r.text == "success":
                    fell_back.append((text, elapsed))
                idle()
                follow_ups += len(standin.messages_to(user.openid))
        server.should_exit = True
    times.sort()
    mode = "safe (AES)" if args.safe else "plain"
    print(f"WeChat passive reply, {mode} mode, {len(times)} FAQ questions "
          f"({len(texts)} × {args.rounds}), sequential, uvicorn on 127.0.0.1")
    print(f"  p50 {pct(times, .5):7.1f} ms   p95 {pct(times, .95):7.1f} ms   p99 {pct(times, .99):7.1f} ms   "
          f"max {times[-1]:7.1f} ms")
    print(f"  fell back to the customer-service API (engine slower than passive_seconds): {len(fell_back)}")
    for text, ms in fell_back:
        print(f"    {ms:7.1f} ms  {text}")
    print(f"  follow-up customer-service messages (menus, further parts): {follow_ups} "
          f"({follow_ups / max(1, len(times)):.2f} per question)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
