"""Throwaway PostgreSQL databases on the local server (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from collections.abc import Iterator

PG_HOST = os.environ.get("CLOSEDLOOP_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CLOSEDLOOP_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CLOSEDLOOP_TEST_PG_USER", "postgres")


def admin_dsn(dbname: str = "postgres") -> str:
    return (
        f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={dbname} "
        "connect_timeout=3"
    )


def postgres_available() -> bool:
    try:
        with psycopg.connect(admin_dsn(), autocommit=True):
            return True
    except psycopg.Error:
        return False


@contextmanager
def temporary_database(prefix: str = "closedloop_test") -> Iterator[str]:
    """Creates a database, yields its store URL, drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
