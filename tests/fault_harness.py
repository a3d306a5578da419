"""Real processes for the fault tests (tests/test_faults_*.py): bot instances, the account sandbox,
a private redis-server, a TCP proxy that can hold the account API's requests, and a web chat client.

Everything here starts real OS processes or sockets on ephemeral ports; every ``start`` has a
``stop``/``kill`` and the context managers end them in ``finally``. Waiting is by polling with
generous deadlines (a loaded 2-core machine), never by sleeping a fixed time and assuming.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from handlers.flows.recover import PASSWORD_CODE_SENT  # noqa: E402
from sandbox_fixture import Sandbox  # noqa: E402

SECRET = "fault-tests-secret-0123456789abcdef0123456789"
SANDBOX_API_KEY = "fault-api-key"
SANDBOX_ADMIN_KEY = "fault-admin-key"
START_TIMEOUT = 90.0     # a bot process imports jieba, builds the matcher: slow on a loaded machine
TURN_TIMEOUT = 60.0
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (requests.RequestException, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def _start(args: Sequence[str], log: Path, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("WEB_PORT", "DATABASE_URL", "REDIS_URL")}
    env.update(PYTHONUNBUFFERED="1", WEB_SESSION_SECRET=SECRET, **(env_extra or {}))
    out = open(log, "ab")   # a file, not a pipe: a chatty process never blocks on a full pipe
    try:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        out.close()


def _end(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 40, group: bool = True) -> None:
    """Stop ``proc`` (``group``: and what it spawned, its own process group) politely, then by force."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if group else os.kill)(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)   # leftovers of the group (workers), if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


# ---- configuration --------------------------------------------------------------------

def write_config(path: Path, *, web_port: int, accounts_url: str, sandbox_port: int, data: Path,
                 backend: str = "redis", redis_url: str = REDIS_URL, prefix: str | None = None,
                 limits: dict[str, Any] | None = None, handoff_url: str | None = None) -> Path:
    """A config.yaml for one bot instance (or the sandbox): every file under ``data``; ``limits``
    replaces rules of the ``limits`` section (``{"sms_per_target": {"limit": 1, "window": 3600}}``)."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    cfg["faq"]["watch"] = False
    cfg["web"].update(port=web_port, public_url=f"http://127.0.0.1:{web_port}", session_secret=SECRET,
                      secret_file=str(data / "web.key"))
    cfg["sessions"].update(backend=backend, redis_url=redis_url, redis_prefix=prefix or "unused:",
                           sqlite_path=str(data / "sessions.db"), data_dir=str(data))
    cfg["accounts"].update(base_url=accounts_url, api_key=SANDBOX_API_KEY, connect_timeout=2.0, read_timeout=30.0,
                           retries=1, backoff=0.1)
    cfg["sandbox"].update(port=sandbox_port, database=str(data / "sandbox.db"), api_key=SANDBOX_API_KEY,
                          admin_key=SANDBOX_ADMIN_KEY, public_base_url=f"http://127.0.0.1:{sandbox_port}")
    cfg["handoff"].update(database_url=handoff_url or f"sqlite:///{data / 'bot.db'}", hours="", webhook_url="", webhook_secret="",
                          api_token="")
    cfg["metrics"].update(enabled=False, token="")
    cfg["telegram"]["token"] = ""
    cfg["wechat"].update(token="", app_id="", app_secret="", aes_key="", sqlite_path=str(data / "wechat.db"))
    cfg["logging"]["level"] = "INFO"
    cfg["limits"].update(limits or {})
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


# ---- the account sandbox as its own process ----------------------------------------------

class SandboxProcess:
    """``python bot.py sandbox`` on a fixed ephemeral port over one database: stop and start it again
    (same port, same data) to take the account API down and bring it back."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.data = tmp / "sandbox"
        self.data.mkdir(parents=True, exist_ok=True)
        self.config = write_config(self.data / "config.yaml", web_port=free_port(), sandbox_port=self.port,
                                   accounts_url="http://127.0.0.1:1", data=self.data, backend="memory")
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = self.data / "sandbox.log"
        self.proc: subprocess.Popen | None = None
        self.api = Sandbox(base_url=self.base_url, api_key=SANDBOX_API_KEY, admin_key=SANDBOX_ADMIN_KEY,
                           db_path=str(self.data / "sandbox.db"))

    def start(self) -> None:
        self.proc = _start([str(ROOT / "bot.py"), "--config", str(self.config), "sandbox"], self.log)
        proc = self.proc

        def up() -> bool:
            assert proc.poll() is None, "the sandbox exited:\n" + self.log.read_text(errors="replace")[-3000:]
            return requests.get(self.base_url + "/openapi.json", timeout=5).status_code == 200

        wait_until(up, START_TIMEOUT, "the account sandbox")

    def stop(self) -> None:
        if self.proc is not None:
            _end(self.proc)
            self.proc = None
        # the port is closed: nothing answers there any more
        wait_until(lambda: _refused(self.port), 30, "the sandbox port to close")


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


@contextlib.contextmanager
def sandbox_process(tmp: Path) -> Iterator[SandboxProcess]:
    sp = SandboxProcess(tmp)
    try:
        sp.start()
        yield sp
    finally:
        if sp.proc is not None:
            _end(sp.proc)
        sp.api.http.close()


@pytest.fixture
def sandbox_proc(tmp_path: Path) -> Iterator[SandboxProcess]:
    """The account sandbox in a process of its own, for a fault test (registered in conftest.py)."""
    with sandbox_process(tmp_path) as sp:
        yield sp


# ---- a private redis-server ---------------------------------------------------------------

class RedisServer:
    """A redis-server of our own on an ephemeral port, its data in a temp dir, with exactly the
    persistence deploy/redis.conf.example documents for production (appendonly yes, appendfsync
    always): only the port, address and directory are ours."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        conf = (ROOT / "deploy" / "redis.conf.example").read_text(encoding="utf-8")
        (self.dir / "redis.conf").write_text(
            conf + f"\nport {self.port}\nbind 127.0.0.1\ndir {self.dir}\n", encoding="utf-8")
        log = open(self.dir / "redis.log", "ab")
        try:
            self.proc = subprocess.Popen(["redis-server", str(self.dir / "redis.conf")], cwd=self.dir,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        import redis

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "redis-server exited"
            try:
                client = redis.Redis(port=self.port, socket_timeout=2)
                try:
                    return bool(client.ping())
                finally:
                    client.close()
            except redis.RedisError:
                return False

        wait_until(up, 30, "redis-server")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: redis fsyncs its append-only file and exits)."""
        if self.proc is not None:
            _end(self.proc)
            self.proc = None
        wait_until(lambda: _refused(self.port), 30, "the redis port to close")

    def kill9(self) -> None:
        """``kill -9``: no shutdown, no last fsync or snapshot; what survives is what the append-only
        file already held."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.proc = None
        wait_until(lambda: _refused(self.port), 30, "the redis port to close")


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp)
    try:
        server.start()
        yield server
    finally:
        if server.proc is not None:
            _end(server.proc, signal.SIGKILL)


# ---- a TCP proxy that can hold requests ---------------------------------------------------

class HoldProxy:
    """Forwards 127.0.0.1:port → ``upstream``; while ``hold`` is set, new connections are accepted and
    kept open but never forwarded (the caller waits), and ``held`` reports their peer ports — so a test
    knows a process is inside a turn, blocked on the account API, holding the session's lock."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.hold = threading.Event()
        self.held: list[socket.socket] = []
        self.arrived = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._open: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="hold-proxy").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self.hold.is_set():
                self.held.append(conn)
                self.arrived.set()
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                conn.close()   # upstream down: the client sees the connection closed
                continue
            up.settimeout(None)
            self._open += [conn, up]
            threading.Thread(target=self._pump, args=(conn, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if from_client and self.hold.is_set():   # a kept-alive connection is held too
                    self.held.append(src)
                    self.arrived.set()
                    return
                dst.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def held_peer_ports(self) -> list[int]:
        ports = []
        for conn in self.held:
            with contextlib.suppress(OSError):
                ports.append(conn.getpeername()[1])
        return ports

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        for conn in self.held + self._open:
            with contextlib.suppress(OSError):
                conn.close()


# ---- bot processes ----------------------------------------------------------------------

class BotProcess:
    """``python bot.py --config CFG serve [--workers N]`` on its own port."""

    def __init__(self, tmp: Path, name: str, *, accounts_url: str, backend: str = "redis",
                 redis_url: str = REDIS_URL, prefix: str | None = None, workers: int = 1,
                 limits: dict[str, Any] | None = None, handoff_url: str | None = None) -> None:
        self.name, self.workers = name, workers
        self.port = free_port()
        self.data = tmp / name
        self.data.mkdir(parents=True, exist_ok=True)
        self.config = write_config(self.data / "config.yaml", web_port=self.port, accounts_url=accounts_url,
                                   sandbox_port=free_port(), data=self.data, backend=backend,
                                   redis_url=redis_url, prefix=prefix, limits=limits,
                                   handoff_url=handoff_url)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.data / "bot.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "BotProcess":
        args = [str(ROOT / "bot.py"), "--config", str(self.config), "serve"]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        self.proc = _start(args, self.log)
        proc = self.proc

        def up() -> bool:
            assert proc.poll() is None, f"{self.name} exited:\n" + self.tail()
            return requests.get(self.url + "/healthz", timeout=5).status_code == 200

        wait_until(up, START_TIMEOUT, f"bot instance {self.name}")
        return self

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:] if self.log.exists() else ""

    def kill9(self) -> None:
        """``kill -9`` the instance (its main process; workers too when it has some)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int | None:
        """SIGTERM to the main process (as systemd does); its exit code."""
        if self.proc is None:
            return None
        _end(self.proc, group=False)
        code = self.proc.returncode
        self.proc = None
        return code

    def workers_pids(self) -> list[int]:
        """The worker processes of ``serve --workers N`` (children of the main process running uvicorn)."""
        assert self.proc is not None
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and "spawn_main" in cmdline:
                pids.append(int(entry.name))
        return sorted(pids)


def pid_of_local_port(pids: Sequence[int], port: int) -> int | None:
    """Which of ``pids`` owns the TCP socket bound locally to 127.0.0.1:``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    m = re.fullmatch(r"socket:\[(\d+)\]", target)
                    if m and m.group(1) in inodes:
                        return pid
    return None


@contextlib.contextmanager
def bots(*procs: BotProcess) -> Iterator[tuple[BotProcess, ...]]:
    """Start every bot (in order) and stop each in ``finally``, whatever happened."""
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in procs:
            if p.proc is not None:
                _end(p.proc)


def unique_prefix() -> str:
    return f"test-faults:{secrets.token_hex(6)}:"


# ---- a web chat client --------------------------------------------------------------------

class Interrupted(Exception):
    """The request's connection broke (the process serving it died)."""


class WebChat:
    """One conversation over the HTTP chat API; each request on a fresh connection to ``urls[i]``,
    alternating round robin unless a request names its ``via``; ``client``: the address it claims
    (X-Forwarded-For, believed from 127.0.0.1 by default) so the per-address limits see one user each."""

    def __init__(self, urls: Sequence[str], client: str | None = None) -> None:
        self.urls = list(urls)
        self.headers = {"Connection": "close", **({"X-Forwarded-For": client} if client else {})}
        self._next = 0
        self.sid = self._post(self.urls[0], "/api/session", {}, expect=201)["session_id"]
        self.last: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []

    def _post(self, base: str, path: str, body: dict, expect: int = 200) -> dict:
        try:
            r = requests.post(base + path, json=body, timeout=TURN_TIMEOUT, headers=self.headers)
        except requests.ConnectionError as e:
            raise Interrupted(str(e)) from e
        assert r.status_code == expect, (r.status_code, r.text)
        return r.json()

    def _pick(self, via: str | None) -> str:
        if via is not None:
            return via
        url = self.urls[self._next % len(self.urls)]
        self._next += 1
        return url

    def send(self, body: dict, via: str | None = None) -> dict:
        out = self._post(self._pick(via), "/api/chat", {"session_id": self.sid, **body})
        self.last = out
        self.history.append(out)
        return out

    def say(self, text: str, via: str | None = None) -> dict:
        return self.send({"text": text}, via)

    def payload(self, label: str) -> str:
        for reply in reversed(self.last.get("replies", [])):
            for b in reply["buttons"]:
                if b["label"] == label:
                    return b["payload"]
        raise AssertionError(f"no button {label!r} in {self.labels}")

    def press(self, label: str, via: str | None = None) -> dict:
        return self.send({"payload": self.payload(label)}, via)

    @property
    def text(self) -> str:
        return "\n\n".join(r["text"] for r in self.last.get("replies", []))

    @property
    def labels(self) -> list[str]:
        return [b["label"] for r in self.last.get("replies", []) for b in r["buttons"]]

    @property
    def flow(self) -> str | None:
        return self.last.get("flow")


def shape(reply: dict) -> tuple:
    """A chat response without what differs between two accounts or two runs (numbers, masked
    phones, links, user names): what must be the same whichever instance answered."""
    def norm(text: str) -> str:
        text = re.sub(r"https?://\S+", "URL", text)
        return re.sub(r"[0-9A-Za-z*_]{4,}", "#", text)

    return (reply.get("flow"), reply.get("intent"),
            tuple((norm(r["text"]), tuple(b["label"] for b in r["buttons"])) for r in reply["replies"]))


RESET_LINK = re.compile(r"\[重置密码\]\((http[^)]+)\)")
Step = tuple[str, Callable[[], str], Callable[["WebChat"], Any]]


def recover_password_steps(acct: dict, code: Callable[[], str]) -> list[Step]:
    """The guided flow 找回密码 as (kind, value, check-after) steps: kind is say or press."""
    def has(text: str) -> Callable[[WebChat], None]:
        def check(chat: WebChat) -> None:
            assert text in chat.text, chat.text
        return check

    def in_flow(chat: WebChat) -> None:
        assert chat.flow == "recover_password", chat.last

    def link(chat: WebChat) -> None:
        assert RESET_LINK.search(chat.text), chat.text
        assert chat.flow is None

    return [
        ("say", lambda: "密码忘了怎么办", lambda chat: chat.payload("开始找回密码")),
        ("press", lambda: "开始找回密码", has("用户名")),
        ("say", lambda: acct["username"], in_flow),
        ("say", lambda: acct["name"], has("证件类型")),
        ("press", lambda: "居民身份证", in_flow),
        ("say", lambda: acct["id_number"], has(PASSWORD_CODE_SENT)),
        ("say", code, link),
    ]


def run(chat: WebChat, steps: Sequence[Step], via: Callable[[int], str | None] = lambda i: None) -> list[tuple]:
    shapes = []
    for i, (kind, value, check) in enumerate(steps):
        (chat.say if kind == "say" else chat.press)(value(), via=via(i))
        check(chat)
        shapes.append(shape(chat.last))
    return shapes
