"""Named, append-only schema migrations recorded in schema_migrations; a blank bank migrates."""

import duckdb

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
