"""The bank's DuckDB file: opening it, applying migrations, and the errors that come with it."""

from __future__ import annotations

from pathlib import Path

import duckdb

from memkit.errors import BankLocked, MemkitError
from memkit.stores.migrations import MIGRATIONS

DB_FILE = "memkit.duckdb"


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            raise BankLocked(f"{path} is in use by another memkit process; try again when it finishes") from None
        raise MemkitError(f"cannot open {path}: {e}") from None
    if not read_only:
        migrate(con)
    return con


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every migration not yet recorded; return the names applied."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
    done = {r[0] for r in con.execute("SELECT name FROM schema_migrations").fetchall()}
    applied = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        con.execute("BEGIN")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, now())", [name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied
