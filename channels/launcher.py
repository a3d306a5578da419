"""Running the web app: ``python bot.py serve`` and the demo ``python bot.py``
(the account sandbox in a thread, embedded defaults, one URL to open)."""
from __future__ import annotations

import asyncio
import copy
import errno
import logging
import os
import socket
import threading
import time
from typing import Any, Mapping

import settings
from logsetup import listening_socket, uvicorn_log_config
from settings import LoggingConfig, SandboxConfig, WebConfig

from .app import create_app


def demo_config(cfg: Mapping[str, Any]) -> dict:
    """``cfg`` with embedded defaults: SQLite sessions, everything on localhost, accounts → the sandbox."""
    out = copy.deepcopy(dict(cfg))
    sandbox = SandboxConfig.of(out)
    out["accounts"] = {**settings.section(out, "accounts"), "base_url": f"http://{sandbox.host}:{sandbox.port}",
                       "api_key": sandbox.api_key or settings.section(out, "accounts").get("api_key")}
    sessions = settings.section(out, "sessions")
    if sessions.get("backend") != "memory":
        sessions["backend"] = "sqlite"
    out["sessions"] = sessions
    out["web"] = {**settings.section(out, "web"), "host": "127.0.0.1"}
    return out


def served_config(cfg: Mapping[str, Any]) -> dict:
    """``cfg`` as ``serve`` (one worker or N; not the demo) runs it: with SQLite sessions and
    ``limits.backend: auto`` the abuse limits count in SQLite beside the sessions
    (``handlers.limits.SqliteLimiter``), so every worker of the machine, and a restarted process,
    counts together — not N× the configured limits."""
    out = dict(cfg)
    limits = settings.section(out, "limits")
    if settings.SessionsConfig.of(out).backend == "sqlite" and str(limits.get("backend", "auto")).lower() == "auto":
        out["limits"] = {**limits, "backend": "sqlite"}
    return out


def start_sandbox(cfg: Mapping[str, Any], level: str) -> bool:
    """Serve the account sandbox (config section ``sandbox``) from a daemon thread; False if it did not start."""
    import uvicorn

    from accounts.sandbox import server as sandbox_server

    conf = SandboxConfig.of(cfg)
    host, port = conf.host, conf.port
    sock = listening_socket(host, port)
    if sock is None:
        print(f"端口 {host}:{port} 已被占用：假定那是已启动的账号服务沙箱（python bot.py sandbox），直接使用它。")
        return True
    database = settings.resolve_path(conf.database)
    database.parent.mkdir(parents=True, exist_ok=True)
    _, app = sandbox_server.build(conf, str(database))
    # uvicorn's start-up lines once (the web server's): the sandbox says its own line below; its
    # access log follows the web server's configuration, which replaces this one (same loggers)
    quiet = "WARNING" if logging.getLevelName(level) < logging.WARNING else level
    server = uvicorn.Server(uvicorn.Config(app, log_config=uvicorn_log_config(quiet)))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="account-sandbox", daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            print(f"账号服务沙箱未能在 {host}:{port} 启动，请查看上方日志。")
            return False
        time.sleep(0.05)
    print(f"账号服务沙箱：http://{host}:{port}（演示账号见 accounts/README.md）", flush=True)
    sandbox_server.announce_admin_key(app)
    return True


def proxy_settings(conf: WebConfig) -> dict[str, Any]:
    """uvicorn's proxy options from ``web.trusted_proxies`` (one setting for ``serve`` and ``serve --workers``):
    X-Forwarded-For/-Proto are believed only from those addresses (so the per-address limits see the
    real client behind nginx, and a client talking to us directly cannot pick its address); empty: never."""
    trusted = conf.trusted_proxies.strip()
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or "127.0.0.1"}


class OneAcceptSocket(socket.socket):
    """A listening socket whose ``accept`` hands out one connection per event-loop pass, then says
    "nothing more" once (asyncio's accept loop stops there; the socket is still readable, so the
    next pass takes the next one). asyncio otherwise accepts every queued connection at once: with
    several workers on one socket, whichever woke first took a whole burst (32 kept-alive clients
    split 32/0, 27/5, 8 clients 8/0, 7/1 — one worker saturated, the other idle; c=8 ran at one
    worker's req/s). One per pass, like nginx's ``multi_accept off``, leaves new connections to the
    workers whose passes are short (the least busy): 16/16 in 6 tries of 6, 5/3 in 8 of 8."""

    _took_one = False

    def accept(self) -> tuple[socket.socket, Any]:
        if self._took_one:
            self._took_one = False
            raise BlockingIOError(errno.EAGAIN, "one connection per event-loop pass")
        accepted = super().accept()
        self._took_one = True
        return accepted


class BalancedLoop(asyncio.SelectorEventLoop):
    """The event loop of each ``serve --workers N`` worker (uvicorn's ``loop`` option): asyncio's,
    serving the listening socket the workers share as a ``OneAcceptSocket``."""

    async def create_server(self, protocol_factory: Any, host: Any = None, port: Any = None, *,
                            sock: socket.socket | None = None, **kwargs: Any) -> asyncio.Server:
        if sock is not None and not isinstance(sock, OneAcceptSocket):
            sock = OneAcceptSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        return await super().create_server(protocol_factory, host, port, sock=sock, **kwargs)


GRACEFUL_SECONDS = 30   # on SIGTERM/Ctrl+C: stop accepting, let in-flight turns finish this long


def app_factory() -> Any:
    """The app for one worker process of ``serve --workers N`` (config from $CHSI_BOT_CONFIG)."""
    cfg = served_config(settings.load())
    level = settings.LoggingConfig.of(cfg).level
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(cfg)


def default_workers() -> int:
    """``serve``'s worker processes when ``--workers`` is not given: one per core."""
    return max(1, os.cpu_count() or 1)


def shared_secret_problem(cfg: Mapping[str, Any], workers: int) -> str | None:
    """Why the processes serving this config could not recognise each other's session ids (None when
    they can). The workers of one ``serve`` share the secret file (written before they start); with
    Redis, instances on other hosts serve the same users, so WEB_SESSION_SECRET must be set explicitly."""
    if settings.SessionsConfig.of(cfg).backend == "redis" and not settings.WebConfig.of(cfg).session_secret:
        return ("使用 Redis 时，所有实例和工作进程必须共用同一个会话密钥：请设置环境变量 WEB_SESSION_SECRET"
                "（至少 32 个字符，例如 python -c \"import secrets; print(secrets.token_hex(32))\" 的输出）。")
    return None


def serve_workers(cfg: Mapping[str, Any], workers: int, config_path: str | None = None) -> int:
    """``python bot.py serve [--workers N]`` with N > 1 (the default on a machine with several cores):
    uvicorn's process manager, N workers on one listening socket sharing the session store (SQLite
    file or Redis) and the signing secret; SIGTERM finishes in-flight turns first. The app is built
    once here first, so a setting that cannot work stops the start with one line (not N tracebacks)
    and the secret file exists before the workers read it."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    problem = shared_secret_problem(cfg, workers)
    if problem:
        print(problem)
        return 2
    cfg = served_config(cfg)
    level = LoggingConfig.of(cfg).level
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    conf = WebConfig.of(cfg)
    # bound, not listening: a client gets "connection refused" (not a hang) until a worker serves
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # inherited by accepted connections
    try:
        sock.bind((conf.host, conf.port))
    except OSError:
        sock.close()
        print(f"端口 {conf.host}:{conf.port} 已被占用：请关闭占用它的程序，或设置环境变量 WEB_PORT 换一个端口。")
        return 1
    with sock:
        app = create_app(cfg)   # the check (ConfigError → one line in bot.py); the workers build their own
        staff = app.state.staff_console.store
        accounts = "" if staff.list() else "（还没有客服账号：先运行 python bot.py staff add 用户名 --role agent）"
        del app, staff
        if config_path:
            os.environ["CHSI_BOT_CONFIG"] = str(os.path.abspath(config_path))
        port = sock.getsockname()[1]
        url = conf.public_url + "/" if conf.port else f"http://{conf.host}:{port}/"

        def announce() -> None:   # once a worker listens (the address works from then on)
            while True:
                try:
                    socket.create_connection(("127.0.0.1" if conf.host in ("0.0.0.0", "") else conf.host, port),
                                             timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
            print(f"学信网账号助手已启动（{workers} 个工作进程），请在浏览器打开：{url}（按 Ctrl+C 停止）", flush=True)
            print(f"人工客服工作台：{url}staff{accounts}", flush=True)

        threading.Thread(target=announce, name="announce", daemon=True).start()
        config = uvicorn.Config("channels.launcher:app_factory", factory=True, host=conf.host, port=port,
                                workers=workers, log_config=uvicorn_log_config(level), server_header=False,
                                loop="channels.launcher:BalancedLoop",
                                **proxy_settings(conf), timeout_graceful_shutdown=GRACEFUL_SECONDS)
        Multiprocess(config, sockets=[sock]).run()
    return 0


def serve(cfg: Mapping[str, Any], with_sandbox: bool = False) -> int:
    """Run the web app with uvicorn (``with_sandbox``: the demo — sandbox + embedded defaults)."""
    import uvicorn

    if not with_sandbox:
        problem = shared_secret_problem(cfg, 1)
        if problem:
            print(problem)
            return 2
    # the demo (one process, sandbox accounts tried again and again) counts in memory: a restart resets it
    cfg = demo_config(cfg) if with_sandbox else served_config(cfg)
    level = LoggingConfig.of(cfg).level
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    conf = WebConfig.of(cfg)
    sock = listening_socket(conf.host, conf.port)
    if sock is None:
        print(f"端口 {conf.host}:{conf.port} 已被占用：请关闭占用它的程序，或设置环境变量 WEB_PORT 换一个端口。")
        return 1
    with sock:
        if with_sandbox and not start_sandbox(cfg, level):
            return 1
        app = create_app(cfg)
        port = sock.getsockname()[1]  # the port bound (WEB_PORT=0: any free one)
        url = f"http://{conf.host}:{port}/" if with_sandbox else conf.public_url + "/"
        print(f"学信网账号助手已启动，请在浏览器打开：{url}（按 Ctrl+C 停止）", flush=True)
        staff = app.state.staff_console.store
        accounts = "" if staff.list() else "（还没有客服账号：先运行 python bot.py staff add 用户名 --role agent）"
        print(f"人工客服工作台：{url}staff{accounts}", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_config=uvicorn_log_config(level), **proxy_settings(conf),
                                               server_header=False, timeout_graceful_shutdown=GRACEFUL_SECONDS))
        server.run(sockets=[sock])
    return 0 if server.started else 1
