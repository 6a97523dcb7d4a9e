"""Concurrent use: two writers (two ingests, or an ingest during a distill) and readers at once, as real
processes. The first writer is held at a gate while the bank is open, so the others meet its lock every
time: they say they wait (or give up with one clear line when MEMKIT_LOCK_TIMEOUT is short), then
finish, and the bank ends as a sequential run leaves it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def start(root: Path, argv: list[str], timeout: str = "120") -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=root, env=env(timeout), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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


def test_two_ingests_and_readers_at_once(tmp_path, slice_runs):
    root = new_bank(tmp_path / "bank", slice_runs)
    parts = sorted(str(p.relative_to(root)) for p in (root / "runs").glob("*.jsonl"))
    first, gate = hold(root, "ingest", *parts[:FILES // 2])

    second = start(root, [*CLI, "ingest", *parts[FILES // 2:]])
    assert second.stderr.readline().rstrip("\n") == waiting_line(root, "120")
    reader = start(root, [*CLI, "stats", "--json"])
    assert reader.stderr.readline().rstrip("\n") == waiting_line(root, "120")
    api_reader = start(root, [sys.executable, "-c", API_READER, str(root)])
    assert api_reader.stderr.readline().rstrip("\n") == waiting_line(root, "120")

    impatient = subprocess.run([*CLI, "ingest", *parts], cwd=root, env=env("0.5"), capture_output=True, text=True)
    assert impatient.returncode == 1
    db = root.resolve() / ".memkit" / "memkit.duckdb"
    assert stderr_lines(impatient.stderr) == [
        waiting_line(root, "0.5"),
        f"Error: {db} is in use by another memkit process (waited 0.5s); try again when it finishes"]

    gate.touch()
    out, _ = finish(first)
    assert out.splitlines()[-1] == ("Ingested 4 file(s), 16 records: 16 runs added (7 failure, 9 success), "
                                    "0 skipped as duplicates, 0 rejected.")
    out, _ = finish(second)
    assert out.rstrip("\n").startswith("Ingested 4 file(s), 16 records: 16 runs added")
    assert out.rstrip("\n").endswith(", 0 skipped as duplicates, 0 rejected.")
    # A reader sees the bank between two writes, never in the middle of one.
    assert json.loads(finish(reader)[0])["runs"] in (16, 32)
    assert int(finish(api_reader)[0]) in (16, 32)

    check_invariants(root)
    clean = new_bank(tmp_path / "clean", slice_runs)
    memkit_ok(clean, "ingest", "runs")
    assert state(root) == state(clean)


def test_an_ingest_during_a_distill_waits_then_both_finish(tmp_path, slice_runs):
    root = new_bank(tmp_path / "bank", slice_runs)
    parts = sorted(str(p.relative_to(root)) for p in (root / "runs").glob("*.jsonl"))
    memkit_ok(root, "ingest", *parts[:FILES // 2])
    clean = tmp_path / "clean"
    shutil.copytree(root, clean)

    distill, gate = hold(root, "distill")
    ingest = start(root, [*CLI, "ingest", *parts[FILES // 2:]])
    assert ingest.stderr.readline().rstrip("\n") == waiting_line(root, "120")
    api_reader = start(root, [sys.executable, "-c", API_READER, str(root)])
    assert api_reader.stderr.readline().rstrip("\n") == waiting_line(root, "120")
    impatient = subprocess.run([*CLI, "distill"], cwd=root, env=env("0.5"), capture_output=True, text=True)
    assert impatient.returncode == 1
    assert stderr_lines(impatient.stderr)[-1] == (f"Error: {root.resolve() / '.memkit' / 'memkit.duckdb'} is in use by "
                                                  "another memkit process (waited 0.5s); try again when it finishes")

    gate.touch()
    out, _ = finish(distill)
    assert out.splitlines()[0] == "16 new run(s) reflected on, 4 candidate lesson(s)."
    finish(ingest)
    assert int(finish(api_reader)[0]) in (16, 32)

    check_invariants(root)
    memkit_ok(clean, "distill")  # the same work one after the other
    memkit_ok(clean, "ingest", *parts[FILES // 2:])
    assert state(root) == state(clean)
    with memkit.open(root) as bank:
        assert bank.stats()["runs"] == 32
