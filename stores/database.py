"""The bank's DuckDB file: opening it, applying migrations, waiting for another process's lock, and
the read snapshot that lets readers work while a writer runs.

DuckDB lets one process write a file or several read it, never both. So every writer leaves a copy
of the bank as it closes (`snapshot.duckdb`, only when something changed), and a reader that meets a
writer's lock reads that copy: the bank as the last finished command left it, never half a write.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb

from memkit.errors import BankLocked, MemkitError
from memkit.fileio import copy_atomic, remove_stale_temps
from memkit.stores.migrations import MIGRATIONS

DB_FILE = "memkit.duckdb"
SNAPSHOT_FILE = "snapshot.duckdb"
_told: set[Path] = set()  # banks whose snapshot this process has said it reads


def lock_timeout() -> float:
    value = os.environ.get("MEMKIT_LOCK_TIMEOUT", "60")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also NaN
        raise MemkitError(f"MEMKIT_LOCK_TIMEOUT must be a number of seconds (0 or more), not {value!r}")
    return seconds


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
            if read_only and (con := _open_snapshot(path)) is not None:
                return con
            if time.monotonic() >= deadline:
                raise BankLocked(f"{path} is in use by another memkit process (waited {timeout:g}s); "
                                 "try again when it finishes") from None
            if not said:
                print(f"Waiting for another memkit process to release {path} (up to {timeout:g}s)...", file=sys.stderr)
                said = True
            time.sleep(0.2)
    if not read_only:
        migrate(con)
    _told.discard(path)
    return con


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the bank has `name`: a bank from before its migration, opened read-only, does not."""
    return con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchall()[0][0] > 0


def snapshot_path(path: Path) -> Path:
    return Path(path).with_name(SNAPSHOT_FILE)


def publish_snapshot(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """Leave readers a copy of the bank as this writer has it now (the caller holds the write lock).
    Skipped when the copy is already current or a transaction is still open; True when copied."""
    snap = snapshot_path(path)
    try:
        con.execute("CHECKPOINT")  # everything into the main file, so the file alone is the bank
    except duckdb.Error:
        return False  # a transaction is open: the last snapshot stays, still whole
    remove_stale_temps(snap)  # a writer killed mid-copy; only writers touch them, and we hold the lock
    src = path.stat()
    if snap.exists() and ((s := snap.stat()).st_size, s.st_mtime_ns) == (src.st_size, src.st_mtime_ns):
        return False
    copy_atomic(path, snap)
    return True


def _open_snapshot(path: Path) -> duckdb.DuckDBPyConnection | None:
    """A read-only connection to the snapshot, if there is one with every migration applied."""
    snap = snapshot_path(path)
    if not snap.exists():
        return None
    try:
        con = duckdb.connect(str(snap), read_only=True)
    except duckdb.Error:
        return None
    try:
        done = {r[0] for r in con.execute("SELECT name FROM schema_migrations").fetchall()}
    except duckdb.Error:
        con.close()
        return None
    if not {name for name, _ in MIGRATIONS} <= done:
        con.close()
        return None  # an older memkit left it; wait for the writer instead
    if path not in _told:
        at = datetime.fromtimestamp(snap.stat().st_mtime).isoformat(sep=" ", timespec="seconds")
        print(f"Another memkit process is writing to {path}; reading the bank as its last finished "
              f"write left it ({at}).", file=sys.stderr)
        _told.add(path)
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
