"""SQLite for the sandbox: connections, numbered schema migrations applied at start-up."""
from __future__ import annotations

import sqlite3
from pathlib import Path

# Each migration is applied once, in order, inside one transaction; never edit an applied one, append.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        username_lc TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        name TEXT NOT NULL,
        id_type TEXT NOT NULL,
        id_number TEXT NOT NULL,
        phone TEXT NOT NULL,
        email TEXT,
        status TEXT NOT NULL CHECK (status IN ('active', 'pending_identity', 'cancelled')),
        created_at REAL NOT NULL,
        verified_at REAL,
        verified_route TEXT,
        cancelled_at REAL,
        cancelled_reason TEXT,
        last_recovery_at REAL
    );
    CREATE INDEX accounts_id_number ON accounts (id_type, id_number);
    CREATE INDEX accounts_phone ON accounts (phone);
    CREATE TABLE used_emails (email TEXT PRIMARY KEY, account_id TEXT NOT NULL, used_at REAL NOT NULL);
    CREATE TABLE challenges (
        id TEXT PRIMARY KEY,
        purpose TEXT NOT NULL CHECK (purpose IN ('login', 'password_recovery')),
        account_id TEXT NOT NULL REFERENCES accounts (id),
        code_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        attempts_left INTEGER NOT NULL,
        closed_at REAL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE reset_tokens (
        token_hash TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        expires_at REAL NOT NULL,
        used_at REAL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        phone TEXT NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        code TEXT,
        username TEXT,
        sent_at REAL NOT NULL
    );
    CREATE INDEX outbox_phone ON outbox (phone, id);
    CREATE TABLE rate_events (bucket TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX rate_events_bucket ON rate_events (bucket, at);
    CREATE TABLE idempotency (
        key TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        principal TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (key, endpoint, principal)
    );
    CREATE TABLE student_records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        id_type TEXT NOT NULL,
        id_number TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('enrolled', 'graduate')),
        school TEXT NOT NULL,
        level TEXT NOT NULL,
        student_no TEXT,
        enrolment_year INTEGER,
        certificate_no TEXT,
        graduation_year INTEGER
    );
    CREATE INDEX student_records_id ON student_records (id_type, id_number);
    CREATE TABLE route4_attempts (
        id_type TEXT NOT NULL,
        id_number TEXT NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (id_type, id_number)
    );
    CREATE TABLE route4_log (account_id TEXT NOT NULL, at REAL NOT NULL, matched INTEGER NOT NULL);
    CREATE TABLE app_verifications (account_id TEXT PRIMARY KEY, started_at REAL NOT NULL, passed_at REAL);
    CREATE TABLE manual_reviews (
        ticket_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
        reason TEXT,
        image_type TEXT NOT NULL,
        image_size INTEGER NOT NULL,
        image_sha256 TEXT NOT NULL,
        image BLOB,
        created_at REAL NOT NULL,
        decided_at REAL
    );
    CREATE TABLE classmate_requests (
        id TEXT PRIMARY KEY,
        requester_id TEXT NOT NULL REFERENCES accounts (id),
        classmate_id TEXT NOT NULL REFERENCES accounts (id),
        status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
        created_at REAL NOT NULL,
        answered_at REAL
    );
    CREATE TABLE bindings (
        account_id TEXT NOT NULL REFERENCES accounts (id),
        provider TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'bound')),
        qr_token TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        bound_at REAL,
        PRIMARY KEY (account_id, provider)
    );
    """),
)


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), rows as sqlite3.Row."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations in one IMMEDIATE transaction; return the schema version."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "memory":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        for version, sql in MIGRATIONS:
            if version > current:
                for statement in filter(str.strip, sql.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, datetime('now'))", (version,))
                current = version
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return current
