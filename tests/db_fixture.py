"""Database fixtures: a fresh SQLite file, or a unique schema in the real PostgreSQL (dropped afterwards).

PostgreSQL is the server at 127.0.0.1:5432 (trust auth, user postgres, database ``test``;
``PG_TEST_URL`` overrides). Without it the PostgreSQL cases skip, which fails under CI.
"""
from __future__ import annotations

import os
import secrets
from typing import Iterator

import pytest

PG_URL = os.environ.get("PG_TEST_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        import psycopg
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "not available here"
        return f"PostgreSQL at {PG_URL} not reachable ({e.__class__.__name__}); start it (see .ci/run)"


def pg_schema_url() -> Iterator[str]:
    """A URL whose tables live in a new schema ``t_<random>``; the schema is dropped afterwards."""
    problem = _pg_available()
    if problem:
        pytest.skip(problem)
    import psycopg

    schema = "t_" + secrets.token_hex(6)
    yield f"{PG_URL}?schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> Iterator[str]:
    """A database URL for each real backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bot.db"
    else:
        yield from pg_schema_url()
