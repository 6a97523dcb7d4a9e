"""Named, append-only schema migrations recorded in schema_migrations; a blank bank migrates."""

import duckdb
import pytest

import memkit
from memkit.stores.database import connect, migrate
from memkit.stores.migrations import MIGRATIONS

TABLES = {"sources", "trajectories", "steps", "tool_calls", "tool_results", "rejects", "insights",
          "distilled_runs", "exposures", "playbook_versions", "schema_migrations"}


def _tables(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def test_migrating_a_blank_database_records_every_migration(tmp_path):
    con = duckdb.connect(str(tmp_path / "blank.duckdb"))
    names = [name for name, _ in MIGRATIONS]
    assert migrate(con) == names
    assert [r[0] for r in con.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()] == sorted(names)
    assert TABLES <= _tables(con)
    con.close()


def test_migrate_is_idempotent(tmp_path):
    path = tmp_path / "blank.duckdb"
    con = duckdb.connect(str(path))
    migrate(con)
    stamps = con.execute("SELECT name, applied_at FROM schema_migrations ORDER BY name").fetchall()
    assert migrate(con) == []
    con.close()
    con = connect(path)  # connect() migrates again on open
    assert con.execute("SELECT name, applied_at FROM schema_migrations ORDER BY name").fetchall() == stamps
    con.close()


def test_migration_names_are_unique_and_ordered():
    names = [name for name, _ in MIGRATIONS]
    assert len(names) == len(set(names))
    assert names == sorted(names)
    assert all(name[:4].isdigit() for name in names)


def test_a_bank_with_an_unmigrated_database_opens_for_writing(tmp_path):
    (tmp_path / ".memkit").mkdir()
    duckdb.connect(str(tmp_path / ".memkit" / "memkit.duckdb")).close()  # a blank, pre-schema file
    with memkit.open(tmp_path, write=True) as b:
        assert b.stats()["runs"] == 0
        assert TABLES <= _tables(b.con)


def test_the_zstd_rebuild_keeps_every_row_and_column(tmp_path):
    """0012 rebuilds trajectories, steps and tool_results: a bank ingested before it keeps its runs,
    column order, primary key and values, and its long texts are then stored with zstd."""
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "data" / "samples" / "tau-bench-airline" / "gpt-4o-airline.json"
    with memkit.init(tmp_path) as b:
        b.ingest([sample])
    path = tmp_path / ".memkit" / "memkit.duckdb"
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM schema_migrations WHERE name = '0012_zstd_text'")
    old = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in ("trajectories", "steps", "tool_results")}
    columns = {t: [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()] for t in old}
    # the pre-0012 tables: the same columns without the compression clause
    for t in old:
        ddl = con.execute(f"SELECT sql FROM duckdb_tables() WHERE table_name = '{t}'").fetchone()[0]
        con.execute(f"CREATE TABLE {t}_old AS SELECT * FROM {t}")
        con.execute(f"DROP TABLE {t}")
        con.execute(ddl.replace(" USING COMPRESSION ZSTD", ""))
        con.execute(f"INSERT INTO {t} SELECT * FROM {t}_old")
        con.execute(f"DROP TABLE {t}_old")
    assert migrate(con) == ["0012_zstd_text"]
    for t, rows in old.items():
        assert [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()] == columns[t]
        assert con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() == rows
        assert "USING COMPRESSION ZSTD" in con.execute(f"SELECT sql FROM duckdb_tables() WHERE table_name = '{t}'").fetchone()[0]
    assert len(old["trajectories"]) == 200 and len(old["steps"]) > 5000
    with pytest.raises(duckdb.ConstraintException):  # the key survived the rebuild
        con.execute("INSERT INTO trajectories SELECT * FROM trajectories LIMIT 1")
    con.execute("CHECKPOINT")
    used = {r[0] for r in con.execute("SELECT compression FROM pragma_storage_info('steps') WHERE column_name = 'text'").fetchall()}
    assert "ZSTD" in used
    con.close()
