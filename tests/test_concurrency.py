"""Concurrent use: two writers (two ingests, or an ingest during a distill) and readers at once, as real
processes. The first writer is held at a gate while the bank is open, so the others meet its lock every
time: a second writer says it waits (or gives up with one clear line when MEMKIT_LOCK_TIMEOUT is short),
then finishes; a reader does not wait at all but reads the snapshot the last finished write left. The
bank ends as a sequential run leaves it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import memkit
from test_crash_safety import CLI, FILES, check_invariants, memkit_ok, new_bank, state

# The first writer opens the bank (taking DuckDB's write lock), says so, and waits for the gate file.
GATED = """
import sys, time
from pathlib import Path
import memkit.bank as m
gate = Path(sys.argv.pop(1))
def gated(real):
    def method(self, *a, **kw):
        print("holding", flush=True)
        while not gate.exists():
            time.sleep(0.05)
        return real(self, *a, **kw)
    return method
m.Bank.ingest, m.Bank.distill = gated(m.Bank.ingest), gated(m.Bank.distill)
from memkit.cli.main import run
run()
"""
API_READER = "import sys, memkit; print(len(memkit.open(sys.argv[1]).runs()))"


def env(timeout: str) -> dict:
    return {**os.environ, "MEMKIT_LOCK_TIMEOUT": timeout}


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    """A failing assertion must not leave a writer waiting at its gate (or a reader waiting for it)."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def start(root: Path, argv: list[str], timeout: str = "120") -> subprocess.Popen:
    proc = subprocess.Popen(argv, cwd=root, env=env(timeout), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _started.append(proc)
    return proc


def waiting_line(root: Path, timeout: str) -> str:
    return f"Waiting for another memkit process to release {root.resolve() / '.memkit' / 'memkit.duckdb'} (up to {timeout}s)..."


def hold(root: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    gate = root / "gate"
    first = start(root, [sys.executable, "-c", GATED, str(gate), *args])
    assert first.stdout.readline() == "holding\n"  # the bank is open for writing: its lock is taken
    return first, gate


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out, err


def stderr_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def read_now(root: Path, argv: list[str]) -> str:
    """Run a reader while the writer is held: it must finish on its own (a reader that waited for the
    lock would hang here until the timeout), saying once that it reads the last finished write."""
    done = subprocess.run(argv, cwd=root, env=env("120"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    db = re.escape(str(root.resolve() / ".memkit" / "memkit.duckdb"))
    said = [line for line in stderr_lines(done.stderr) if "memkit process" in line]
    assert len(said) == 1 and re.fullmatch(
        rf"Another memkit process is writing to {db}; reading the bank as its last finished write left it "
        rf"\(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\)\.", said[0]), done.stderr
    return done.stdout


def snapshot_runs(root: Path) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(root / ".memkit" / "snapshot.duckdb"), read_only=True)
    try:
        return con.execute("SELECT id, source_uri, n_steps FROM trajectories ORDER BY id").fetchall()
    finally:
        con.close()


def test_two_ingests_and_readers_at_once(tmp_path, slice_runs):
    root = new_bank(tmp_path / "bank", slice_runs)
    parts = sorted(str(p.relative_to(root)) for p in (root / "runs").glob("*.jsonl"))
    memkit_ok(root, "ingest", parts[0])
    first, gate = hold(root, "ingest", *parts[1:FILES // 2])

    second = start(root, [*CLI, "ingest", *parts[FILES // 2:]])
    assert second.stderr.readline().rstrip("\n") == waiting_line(root, "120")
    # Readers work while the writer runs: they see the bank as the last finished ingest left it.
    assert json.loads(read_now(root, [*CLI, "stats", "--json"]))["runs"] == 4
    assert int(read_now(root, [sys.executable, "-c", API_READER, str(root)])) == 4

    impatient = subprocess.run([*CLI, "ingest", *parts], cwd=root, env=env("0.5"), capture_output=True, text=True)
    assert impatient.returncode == 1
    db = root.resolve() / ".memkit" / "memkit.duckdb"
    assert stderr_lines(impatient.stderr) == [
        waiting_line(root, "0.5"),
        f"Error: {db} is in use by another memkit process (waited 0.5s); try again when it finishes"]

    gate.touch()
    out, _ = finish(first)
    assert out.splitlines()[-1].startswith("Ingested 3 file(s), 12 records: 12 runs added (")
    assert out.splitlines()[-1].endswith(", 0 skipped as duplicates, 0 rejected.")
    out, _ = finish(second)
    assert out.rstrip("\n").startswith("Ingested 4 file(s), 16 records: 16 runs added")
    assert out.rstrip("\n").endswith(", 0 skipped as duplicates, 0 rejected.")

    check_invariants(root)
    clean = new_bank(tmp_path / "clean", slice_runs)
    memkit_ok(clean, "ingest", "runs")
    assert state(root) == state(clean)
    assert snapshot_runs(root) == state(root)["runs"]  # the last writer left readers everything


def test_a_reader_waits_for_the_writer_when_there_is_no_snapshot(tmp_path, slice_runs):
    """A bank an older memkit wrote has no snapshot yet: its readers wait for the writer, and say so."""
    root = new_bank(tmp_path / "bank", slice_runs)
    (root / ".memkit" / "snapshot.duckdb").unlink()
    first, gate = hold(root, "ingest", "runs")
    reader = start(root, [*CLI, "stats", "--json"])
    assert reader.stderr.readline().rstrip("\n") == waiting_line(root, "120")
    gate.touch()
    finish(first)
    assert json.loads(finish(reader)[0])["runs"] == 32
    assert snapshot_runs(root) == state(root)["runs"]


def test_an_ingest_during_a_distill_waits_then_both_finish(tmp_path, slice_runs):
    root = new_bank(tmp_path / "bank", slice_runs)
    parts = sorted(str(p.relative_to(root)) for p in (root / "runs").glob("*.jsonl"))
    quarter = FILES // 4
    memkit_ok(root, "ingest", *parts[:quarter])
    memkit_ok(root, "distill")
    memkit_ok(root, "ingest", *parts[quarter:FILES // 2])
    before = {target: read_output(root, target) for target in ("json", "agents-md")}
    retrieved = subprocess.run([*CLI, "retrieve", "default", "change a reservation", "--json"], cwd=root,
                               capture_output=True, text=True, check=True).stdout
    clean = tmp_path / "clean"
    shutil.copytree(root, clean)

    distill, gate = hold(root, "distill")
    ingest = start(root, [*CLI, "ingest", *parts[FILES // 2:]])
    assert ingest.stderr.readline().rstrip("\n") == waiting_line(root, "120")
    # Readers work while the distill runs: exports, retrieval and the API see v1 and the 16 runs.
    for target, text in before.items():
        assert read_now(root, [*CLI, "export", "default", "--target", target]) == text
    assert read_now(root, [*CLI, "retrieve", "default", "change a reservation", "--json"]) == retrieved
    assert int(read_now(root, [sys.executable, "-c", API_READER, str(root)])) == 16
    impatient = subprocess.run([*CLI, "distill"], cwd=root, env=env("0.5"), capture_output=True, text=True)
    assert impatient.returncode == 1
    assert stderr_lines(impatient.stderr)[-1] == (f"Error: {root.resolve() / '.memkit' / 'memkit.duckdb'} is in use by "
                                                  "another memkit process (waited 0.5s); try again when it finishes")

    gate.touch()
    out, _ = finish(distill)
    assert out.splitlines()[0].startswith("8 new run(s) reflected on, ")
    finish(ingest)
    assert int(finish(start(root, [sys.executable, "-c", API_READER, str(root)]))[0]) == 32

    check_invariants(root)
    memkit_ok(clean, "distill")  # the same work one after the other
    memkit_ok(clean, "ingest", *parts[FILES // 2:])
    assert state(root) == state(clean)
    with memkit.open(root) as bank:
        assert bank.stats()["runs"] == 32


def read_output(root: Path, target: str) -> str:
    done = subprocess.run([*CLI, "export", "default", "--target", target], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout


def test_a_lock_timeout_that_is_not_a_number_is_one_clear_line(runner, tmp_path, monkeypatch):
    from helpers import error_lines, no_traceback
    from memkit.cli.main import app

    memkit.init(tmp_path).close()
    for bad in ("abc", "-1", "nan"):
        monkeypatch.setenv("MEMKIT_LOCK_TIMEOUT", bad)
        result = runner.invoke(app, ["ingest", "runs"])
        assert result.exit_code == 1
        no_traceback(result)
        assert error_lines(result) == [f"Error: MEMKIT_LOCK_TIMEOUT must be a number of seconds (0 or more), not {bad!r}"]
