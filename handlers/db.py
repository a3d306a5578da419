"""The one small SQL layer for hand-offs, staff accounts (and later insights): SQLite or PostgreSQL.

``connect(url)`` opens a database by URL:

- ``sqlite:///var/handoffs.db`` (relative to the project root), ``sqlite:////abs/path.db``,
  ``sqlite://:memory:`` — the embedded default (WAL, shared safely by threads and processes);
- ``postgresql://user@host:5432/db`` (psycopg 3); ``?schema=NAME`` puts every table in that
  schema (created if absent) — tests use a unique one per run.

Components register their migrations (``migrate(component, [sql, ...])``): each runs once,
in order, inside a transaction, recorded in ``schema_migrations``; concurrent starts are
serialised (PostgreSQL advisory lock / SQLite ``BEGIN IMMEDIATE``). SQL is written once with
``?`` placeholders and portable types; ``{serial}`` stands for an auto-increment primary key.

Error contract: every driver failure surfaces as ``DatabaseError`` (the message names the
failure class, never the parameters); nothing else escapes. Connections are per thread.
"""
from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TYPES = {"sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT"},
          "postgres": {"serial": "BIGSERIAL PRIMARY KEY"}}
_LOCK_KEY = 0x0C45_1BD0  # advisory lock id for migrations


class DatabaseError(Exception):
    """The database is unreachable or a statement failed."""


@contextlib.contextmanager
def errors_as(error: type[Exception]) -> Iterator[None]:
    """Re-raise a ``DatabaseError`` as a store's own error type (each store's error contract)."""
    try:
        yield
    except DatabaseError as e:
        raise error(str(e)) from e


class Tx:
    """One transaction (or one autocommit statement outside ``transaction()``)."""

    def __init__(self, db: "Database", conn: Any) -> None:
        self._db, self._conn = db, conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        with self._db._errors():
            cur = self._conn.execute(self._db._sql(sql), tuple(params))
            return cur.rowcount

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a query; its rows as dicts."""
        with self._db._errors():
            cur = self._conn.execute(self._db._sql(sql), tuple(params))
            names = [d[0] for d in cur.description or ()]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def row(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """The first row of a query, or None."""
        found = self.rows(sql, params)
        return found[0] if found else None

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT into a table with a ``{serial}`` key; the new row's id."""
        with self._db._errors():
            if self._db.dialect == "postgres":
                cur = self._conn.execute(self._db._sql(sql) + " RETURNING id", tuple(params))
                return int(cur.fetchone()[0])
            cur = self._conn.execute(self._db._sql(sql), tuple(params))
            return int(cur.lastrowid)


class Database:
    """A connection factory for one database URL, with per-thread connections."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._all: list[Any] = []
        self._mutex = threading.Lock()
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            self.dialect = "sqlite"
            raw = url[len("sqlite://"):]
            if raw in (":memory:", "/:memory:"):
                raise ValueError("sqlite://:memory: is per connection; use a file (tmp_path) in tests")
            path = Path(raw[1:] if raw.startswith("/") else raw)
            if not path.is_absolute():
                from settings import resolve_path
                path = resolve_path(str(path))
            path.parent.mkdir(parents=True, exist_ok=True)
            self.path = str(path)
            self.schema = ""
        elif parts.scheme in ("postgresql", "postgres"):
            self.dialect = "postgres"
            query = dict(parse_qsl(parts.query))
            self.schema = query.pop("schema", "")
            if self.schema and not _IDENT.fullmatch(self.schema):
                raise ValueError(f"database url: schema {self.schema!r} is not a plain identifier")
            self.conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))
        else:
            raise ValueError(f"database url: unsupported scheme {parts.scheme!r} (sqlite:/// or postgresql://)")
        self._errors_types: tuple[type[BaseException], ...] = (sqlite3.Error,)
        if self.dialect == "postgres":
            import psycopg
            self._errors_types = (psycopg.Error,)
        if self.schema:
            with self.transaction() as tx:
                tx.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')

    # ---- connections -------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._errors_types as e:
            self._drop_broken()
            raise DatabaseError(f"database failed: {e.__class__.__name__}") from e

    def _drop_broken(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self.dialect == "postgres" and conn.closed:
            self._local.conn = None

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._errors():
            if self.dialect == "sqlite":
                conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            else:
                import psycopg
                conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
                if self.schema:
                    conn.execute(f'SET search_path TO "{self.schema}"')
        self._local.conn = conn
        with self._mutex:
            self._all.append(conn)
        return conn

    def _sql(self, sql: str) -> str:
        sql = sql.format(**_TYPES[self.dialect]) if "{" in sql else sql
        if self.dialect == "postgres":
            return sql.replace("%", "%%").replace("?", "%s")
        return sql

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A transaction that takes the write lock at once (SQLite) / READ COMMITTED (PostgreSQL)."""
        conn = self._conn()
        with self._errors():
            conn.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        try:
            yield Tx(self, conn)
        except BaseException:
            with contextlib.suppress(*self._errors_types):
                conn.execute("ROLLBACK")
            raise
        with self._errors():
            conn.execute("COMMIT")

    def tx(self) -> Tx:
        """Statements in autocommit mode (one statement, one transaction)."""
        return Tx(self, self._conn())

    # ---- migrations --------------------------------------------------------------------

    def migrate(self, component: str, migrations: Sequence[str]) -> int:
        """Apply the component's migrations not yet applied, in order; how many ran."""
        with self.transaction() as tx:
            if self.dialect == "postgres":
                tx.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
            tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, "
                       "version INTEGER NOT NULL, PRIMARY KEY (component, version))")
            done = {r["version"] for r in tx.rows("SELECT version FROM schema_migrations WHERE component = ?",
                                                    (component,))}
            ran = 0
            for version, script in enumerate(migrations, start=1):
                if version in done:
                    continue
                for statement in (s.strip() for s in script.split(";")):
                    if statement:
                        tx.execute(statement)
                tx.execute("INSERT INTO schema_migrations (component, version) VALUES (?, ?)", (component, version))
                ran += 1
        if ran:
            log.info("database: %d migration(s) applied for %s", ran, component)
        return ran

    def close(self) -> None:
        """Close every connection this object opened (any thread)."""
        with self._mutex:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()


_OPEN: dict[str, Database] = {}
_OPEN_LOCK = threading.Lock()


def database_url(cfg: Any) -> str:
    """The configured URL: ``DATABASE_URL`` / ``handoff.database_url``, else SQLite under ``var/``."""
    import os

    from settings import HandoffConfig

    return os.environ.get("DATABASE_URL") or HandoffConfig.of(cfg).database_url or "sqlite:///var/bot.db"


def shared(url: str) -> Database:
    """One Database per URL in this process (hand-off store, staff accounts, insights share it)."""
    with _OPEN_LOCK:
        db = _OPEN.get(url)
        if db is None:
            db = _OPEN[url] = Database(url)
        return db


def connect(url: str) -> Database:
    """A new Database for ``url`` (see the module docstring for the URL forms)."""
    return Database(url)
