"""Live FAQ reload: time from saving a YAML file to the new answer being served, and the
chat latency while reloads happen.

    python benchmarks/bench_reload.py [--edits 5] [--interval 1.0] [--clients 3]

Starts `python bot.py serve` on a copy of faq/data (watch_interval = --interval), keeps
--clients threads asking one question in a loop over HTTP, then saves --edits changes to
the answer (write a temporary file, rename it over the topic file, as editors do). For each
save it reports the wall time until a client first receives the new answer; afterwards the
request latencies (p50/p99/max) of the whole run, of the 2 s after each save, and the count
of non-200 responses. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
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
TOPIC = "topics/02_recover_account.yaml"
sys.path.insert(0, str(ROOT))
from faq.loader import load_dir  # noqa: E402

_ENTRY = load_dir(ROOT / "faq" / "data").entry("recover_account.username")
ANCHOR = _ENTRY.answer.splitlines()[0][:16]    # the answer's start; each edit puts a marker before it
QUESTION = _ENTRY.question


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=5)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--clients", type=int, default=3)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    folder = work / "data"
    shutil.copytree(ROOT / "faq" / "data", folder)
    port = free_port()
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    cfg["faq"].update(dir=str(folder), watch=True, watch_interval=args.interval)
    cfg["web"].update(port=port, public_url=f"http://127.0.0.1:{port}", secret_file=str(work / "web.key"))
    cfg["sessions"].update(backend="sqlite", sqlite_path=str(work / "sessions.db"), data_dir=str(work))
    cfg["telegram"]["token"] = ""
    cfg["logging"] = {"level": "WARNING"}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(ROOT / "bot.py"), "--config", str(work / "config.yaml"), "serve"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}/"
    for line in proc.stdout:  # type: ignore[union-attr]
        if re.search(r"请在浏览器打开", line):
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]

    rows: list[tuple[float, float, int, str]] = []  # (sent, seconds, status, first reply)
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as http:
            sid = http.post(url + "api/session", timeout=30).json()["session_id"]
            while not stop.is_set():
                sent = time.monotonic()
                r = http.post(url + "api/chat", json={"session_id": sid, "text": QUESTION}, timeout=30)
                done = time.monotonic()
                text = r.json()["replies"][0]["text"] if r.status_code == 200 else ""
                rows.append((sent, done - sent, r.status_code, text))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for t in threads:
        t.start()
    time.sleep(2)
    topic = folder / TOPIC
    delays, saves = [], []
    try:
        for n in range(1, args.edits + 1):
            marker = f"【第{n}版】"
            text = re.sub(r"^(\s+)(【第\d+版】)?" + re.escape(ANCHOR), lambda m: m.group(1) + marker + ANCHOR,
                          topic.read_text(encoding="utf-8"), count=1, flags=re.M)
            tmp = topic.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            saved = time.monotonic()
            os.replace(tmp, topic)
            saves.append(saved)
            deadline = saved + 60
            while time.monotonic() < deadline:
                seen = [done_at for sent, secs, _, reply in list(rows)
                        if reply.startswith(marker) and (done_at := sent + secs) >= saved]
                if seen:
                    delays.append(min(seen) - saved)
                    break
                time.sleep(0.01)
            time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
        shutil.rmtree(work, ignore_errors=True)

    lat = [secs * 1000 for _, secs, _, _ in rows]
    during = [secs * 1000 for sent, secs, _, _ in rows if any(s <= sent <= s + 2 for s in saves)]
    print(f"watch_interval {args.interval} s, {args.clients} clients, {len(rows)} requests, "
          f"non-200: {sum(status != 200 for _, _, status, _ in rows)}")
    print("save → new answer served (s): " + ", ".join(f"{d:.2f}" for d in delays)
          + (f"  (median {statistics.median(delays):.2f})" if delays else ""))
    print(f"latency all (ms):          p50 {pct(lat, .5):.1f}  p99 {pct(lat, .99):.1f}  max {max(lat):.1f}")
    if during:
        print(f"latency 2 s after saves:   p50 {pct(during, .5):.1f}  p99 {pct(during, .99):.1f}  max {max(during):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
