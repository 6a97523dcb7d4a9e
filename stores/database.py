"""The bank's DuckDB file: opening it, applying migrations, and waiting for another process's lock."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import duckdb

from memkit.errors import BankLocked, MemkitError
from memkit.stores.migrations import MIGRATIONS

DB_FILE = "memkit.duckdb"


def lock_timeout() -> float:
    return float(os.environ.get("MEMKIT_LOCK_TIMEOUT", "60"))


def connect(path: Path, read_only: bool = False, timeout: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open the bank. DuckDB lets one process write (or several read); while another process holds
    the file, wait up to `timeout` seconds (MEMKIT_LOCK_TIMEOUT, default 60), saying so once."""
    timeout = lock_timeout() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as e:
            if "lock" not in str(e).lower():
                raise MemkitError(f"cannot open {path}: {e}") from None
            if time.monotonic() >= deadline:
                raise BankLocked(f"{path} is in use by another memkit process (waited {timeout:g}s); "
                                 "try again when it finishes") from None
            if not said:
                print(f"Waiting for another memkit process to release {path} (up to {timeout:g}s)...", file=sys.stderr)
                said = True
            time.sleep(0.2)
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
