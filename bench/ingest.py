#!/usr/bin/env python
"""Ingest throughput: memkit vs DuckDB's own `read_json` vs a naive json.load + row-by-row INSERT.

    python bench/ingest.py                 # 20,000 runs, JSONL and JSON array, best of 2
    python bench/ingest.py --runs 50000 --formats jsonl --repeat 3
    python bench/ingest.py --profile 5000  # also cProfile memkit's ingest of a 5,000-run JSONL file

The tau-bench airline sample (200 runs) is replicated to N distinct runs (replica k > 0 gets
`trial` shifted and a marker appended to its first user message, so memkit's content-hash
dedupe keeps every one) and written once as JSON Lines and once as a JSON array. Every
contender then reads the *same file* into a *fresh, file-backed* DuckDB database, and its
clock stops only after the connection is closed (so the final checkpoint is paid by all):

  duckdb     CREATE TABLE runs AS SELECT * FROM read_json(file, format=...)   (all threads)
  duckdb-1t  the same with SET threads = 1                                    (for reference)
  naive      json.loads per line (json.load for the array) + one INSERT per run and an
             executemany per run's messages, in one transaction; measured on the first
             --naive-runs runs (default 500) and scaled per run to N
  memkit     memkit.init(folder); bank.ingest([file]); bank.close()  (an input this big is parsed in a
             forked child process, stores/ingest.py _parse_in_child; its peak RSS is in the note)
  memkit, in-process   the same with MEMKIT_INGEST_CHILD=0: parsing thread + writer thread (reference)

Each measurement runs in a fresh subprocess (so peak RSS is per contender) and the best of
--repeat runs is kept. Machines are shared and noisy, so the result is printed as ratios
against the baselines measured in the same invocation; there is no absolute-time check.
`--min-ratio R` makes the exit status 1 when memkit/DuckDB falls below R (off by default).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "data" / "samples" / "tau-bench-airline" / "gpt-4o-airline.json"
TARGET = 0.5  # the target: memkit >= 0.5x DuckDB's reader


# --------------------------------------------------------------------------- data


def replicate(sample: Path, n: int) -> list[dict]:
    """n distinct runs cycling through the sample; replica 0 is the sample unchanged."""
    base = json.loads(sample.read_bytes())
    trial_span = max((r.get("trial") or 0) for r in base) + 1
    out = []
    for i in range(n):
        k, rec = divmod(i, len(base))
        rec = base[rec]
        if k == 0:
            out.append(rec)
            continue
        new = dict(rec)
        new["trial"] = (rec.get("trial") or 0) + k * trial_span
        traj = list(rec["traj"])
        for j, m in enumerate(traj):
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                traj[j] = dict(m, content=f"{m['content']} [bench replica {k}]")
                break
        new["traj"] = traj
        out.append(new)
    return out


def write_files(runs: list[dict], folder: Path, stem: str) -> dict[str, Path]:
    import orjson

    folder.mkdir(parents=True, exist_ok=True)
    lines = [orjson.dumps(r) for r in runs]
    jsonl, array = folder / f"{stem}.jsonl", folder / f"{stem}.json"
    with open(jsonl, "wb") as f:
        for line in lines:
            f.write(line)
            f.write(b"\n")
    with open(array, "wb") as f:  # same records, same bytes per record
        f.write(b"[")
        for i, line in enumerate(lines):
            if i:
                f.write(b",\n")
            f.write(line)
        f.write(b"]\n")
    return {"jsonl": jsonl, "array": array}


# --------------------------------------------------------------------------- workers (run in a subprocess)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def work_duckdb(file: Path, fmt: str, folder: Path, threads: int | None, expect_runs: int, expect_msgs: int) -> dict:
    import duckdb

    db = folder / "duckdb.duckdb"
    con = duckdb.connect(str(db))
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    duck_fmt = "newline_delimited" if fmt == "jsonl" else "array"
    t0 = time.perf_counter()
    con.execute(f"CREATE TABLE runs AS SELECT * FROM read_json(?, format = '{duck_fmt}')", [str(file)])
    con.close()
    seconds = time.perf_counter() - t0
    con = duckdb.connect(str(db), read_only=True)
    n, msgs = con.execute("SELECT count(*), sum(len(traj)) FROM runs").fetchone()
    con.close()
    ok = n == expect_runs and msgs == expect_msgs
    return {"seconds": seconds, "rss_mb": _peak_rss_mb(), "db_mb": db.stat().st_size / 1e6, "ok": ok,
            "check": f"{n} rows, {msgs} messages"}


def work_naive(file: Path, fmt: str, folder: Path, expect_runs: int, expect_msgs: int) -> dict:
    import duckdb

    db = folder / "naive.duckdb"
    t0 = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute("""CREATE TABLE trajectories (id BIGINT PRIMARY KEY, task_id VARCHAR, trial BIGINT, reward DOUBLE,
                   info JSON, raw JSON)""")
    con.execute("""CREATE TABLE messages (trajectory_id BIGINT, seq INTEGER, role VARCHAR, content VARCHAR,
                   name VARCHAR, tool_call_id VARCHAR, tool_calls JSON)""")
    con.execute("BEGIN")

    def insert(i: int, rec: dict, raw: str) -> None:
        con.execute("INSERT INTO trajectories VALUES (?, ?, ?, ?, ?, ?)",
                    [i, str(rec.get("task_id")), rec.get("trial"), rec.get("reward"), json.dumps(rec.get("info")), raw])
        con.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)", [
            (i, seq, m.get("role"), m.get("content"), m.get("name"), m.get("tool_call_id"),
             json.dumps(m["tool_calls"]) if m.get("tool_calls") else None)
            for seq, m in enumerate(rec.get("traj") or [])])

    if fmt == "jsonl":
        with open(file, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if line.strip():
                    insert(i, json.loads(line), line)
    else:
        with open(file, encoding="utf-8") as f:
            for i, rec in enumerate(json.load(f)):
                insert(i, rec, json.dumps(rec))
    con.execute("COMMIT")
    con.close()
    seconds = time.perf_counter() - t0
    con = duckdb.connect(str(db), read_only=True)
    n = con.execute("SELECT count(*) FROM trajectories").fetchone()[0]
    msgs = con.execute("SELECT count(*) FROM messages").fetchone()[0]
    con.close()
    return {"seconds": seconds, "rss_mb": _peak_rss_mb(), "db_mb": db.stat().st_size / 1e6,
            "ok": n == expect_runs and msgs == expect_msgs, "check": f"{n} rows, {msgs} messages"}


def work_memkit(file: Path, fmt: str, folder: Path, expect_runs: int, expect_msgs: int) -> dict:
    import memkit

    bank = memkit.init(folder / "bank")  # creating the bank (migrations) is not timed
    t0 = time.perf_counter()
    res = bank.ingest([file])
    bank.close()
    seconds = time.perf_counter() - t0
    bank = memkit.open(folder / "bank")
    steps = bank.con.execute("SELECT count(*) FROM steps").fetchone()[0]
    bank.close()
    db = folder / "bank" / ".memkit" / "memkit.duckdb"
    truncated = getattr(res, "truncated", 0)  # the default ingest limits must not touch normal runs
    ok = (res.added == expect_runs and res.rejected == 0 and res.duplicates == 0 and steps == expect_msgs
          and not truncated)
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the parsing process, if any
    return {"seconds": seconds, "rss_mb": _peak_rss_mb(), "db_mb": db.stat().st_size / 1e6, "ok": ok,
            "check": f"added {res.added}, dup {res.duplicates}, rejected {res.rejected}, truncated {truncated}, "
                     f"{steps} steps" + (f"; parsing process peak RSS {child:,.0f} MB" if child else "")}


def worker_main(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"{args.worker}-", dir=args.scratch))
    try:
        file = Path(args.file)
        if args.worker == "duckdb":
            out = work_duckdb(file, args.fmt, folder, args.threads, args.expect_runs, args.expect_msgs)
        elif args.worker == "naive":
            out = work_naive(file, args.fmt, folder, args.expect_runs, args.expect_msgs)
        else:
            out = work_memkit(file, args.fmt, folder, args.expect_runs, args.expect_msgs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("RESULT " + json.dumps(out))


# --------------------------------------------------------------------------- driver


def measure(kind: str, file: Path, fmt: str, scratch: Path, repeat: int, expect_runs: int, expect_msgs: int,
            threads: int | None = None, env: dict | None = None) -> dict:
    best = None
    for _ in range(repeat):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--file", str(file), "--fmt", fmt,
               "--scratch", str(scratch), "--expect-runs", str(expect_runs), "--expect-msgs", str(expect_msgs)]
        if threads:
            cmd += ["--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"{kind} ({fmt}) failed")
        out = json.loads(lines[-1][7:])
        if not out["ok"]:
            raise SystemExit(f"{kind} ({fmt}) did not load everything: {out['check']}")
        if best is None or out["seconds"] < best["seconds"]:
            best = out
        best["rss_mb"] = max(best["rss_mb"], out["rss_mb"])
    return best


def profile_memkit(file: Path, scratch: Path, top: int) -> None:
    import cProfile
    import pstats

    import memkit

    folder = Path(tempfile.mkdtemp(prefix="profile-", dir=scratch))
    bank = memkit.init(folder / "bank")
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    res = bank.ingest([file])
    bank.close()
    prof.disable()
    print(f"\ncProfile of memkit ingest, {res.added:,} runs from {file.name} "
          f"({time.perf_counter() - t0:.1f} s under the profiler)")
    for key in ("tottime", "cumulative"):
        print(f"\n--- top {top} by {key} ---")
        pstats.Stats(prof, stream=sys.stdout).strip_dirs().sort_stats(key).print_stats(top)
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20_000, help="runs to replicate the sample to (default 20,000)")
    ap.add_argument("--naive-runs", type=int, default=500, help="runs the naive baseline loads; scaled per run to --runs (default 500)")
    ap.add_argument("--repeat", type=int, default=2, help="measurements per contender, best kept (default 2)")
    ap.add_argument("--formats", default="jsonl,array", help="comma list of jsonl, array (default both)")
    ap.add_argument("--no-single-thread", action="store_true", help="skip the DuckDB threads=1 reference row")
    ap.add_argument("--no-in-process", action="store_true", help="skip the memkit in-process reference row")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="also cProfile memkit on an N-run JSONL file")
    ap.add_argument("--profile-top", type=int, default=25)
    ap.add_argument("--out", type=Path, help="where to write the data files (default: a temp dir, removed after)")
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--min-ratio", type=float, default=None, help="exit 1 if memkit/DuckDB is below this (off by default)")
    # worker mode (internal)
    ap.add_argument("--worker", choices=["duckdb", "naive", "memkit"], help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--fmt", help=argparse.SUPPRESS)
    ap.add_argument("--scratch", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--expect-runs", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--expect-msgs", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args)

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats or any(f not in ("jsonl", "array") for f in formats):
        ap.error("--formats takes jsonl and/or array")
    n, n_naive = args.runs, min(args.naive_runs, args.runs)
    scratch = args.out or Path(tempfile.mkdtemp(prefix="memkit-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        runs = replicate(args.sample, max(n, args.profile))
        msgs = sum(len(r["traj"]) for r in runs[:n])
        naive_msgs = sum(len(r["traj"]) for r in runs[:n_naive])
        files = write_files(runs[:n], scratch, f"runs-{n}")
        naive_files = write_files(runs[:n_naive], scratch, f"runs-{n_naive}")
        profile_file = write_files(runs[:args.profile], scratch, f"runs-{args.profile}")["jsonl"] if args.profile else None
        del runs
        print(f"memkit ingest benchmark: {n:,} runs ({msgs:,} messages) replicated from {args.sample.name}; "
              f"data written in {time.perf_counter() - t0:.1f} s to {scratch}")
        import duckdb

        print(f"python {sys.version.split()[0]}, duckdb {duckdb.__version__}, {os.cpu_count()} CPUs; "
              f"best of {args.repeat}; each contender in a fresh process, clock stops after the DB is closed\n")

        rows, ratios = [], {}
        for fmt in formats:
            file, size = files[fmt], files[fmt].stat().st_size
            nfile = naive_files[fmt]
            duck = measure("duckdb", file, fmt, scratch, args.repeat, n, msgs)
            rows.append((fmt, "duckdb read_json", n, size, duck, ""))
            if not args.no_single_thread:
                duck1 = measure("duckdb", file, fmt, scratch, args.repeat, n, msgs, threads=1)
                rows.append((fmt, "duckdb read_json, 1 thread", n, size, duck1, ""))
            naive = measure("naive", nfile, fmt, scratch, 1 if n_naive < n else args.repeat, n_naive, naive_msgs)
            scaled = dict(naive, seconds=naive["seconds"] * n / n_naive)
            note = f"measured on {n_naive:,} runs ({naive['seconds']:.1f} s), scaled" if n_naive < n else ""
            rows.append((fmt, "naive json + INSERT", n, size, scaled, note))
            mk = measure("memkit", file, fmt, scratch, args.repeat, n, msgs)
            rows.append((fmt, "memkit ingest", n, size, mk, mk["check"]))
            if not args.no_in_process:
                here = measure("memkit", file, fmt, scratch, args.repeat, n, msgs, env={"MEMKIT_INGEST_CHILD": "0"})
                rows.append((fmt, "memkit ingest, in-process", n, size, here, "(reference)"))
            ratios[fmt] = (duck["seconds"] / mk["seconds"], scaled["seconds"] / mk["seconds"],
                           (duck1["seconds"] / mk["seconds"]) if not args.no_single_thread else None)

        head = f"{'format':<6} {'contender':<28} {'runs':>7} {'MB':>7} {'seconds':>8} {'runs/s':>9} {'MB/s':>7} {'peak RSS MB':>11} {'DB MB':>7}  note"
        print(head)
        print("-" * len(head))
        for fmt, name, runs_n, size, m, note in rows:
            s = m["seconds"]
            print(f"{fmt:<6} {name:<28} {runs_n:>7,} {size / 1e6:>7.1f} {s:>8.2f} {runs_n / s:>9,.0f} {size / 1e6 / s:>7.1f} "
                  f"{m['rss_mb']:>11,.0f} {m['db_mb']:>7.1f}  {note}")
        print()
        worst = None
        for fmt, (vs_duck, vs_naive, vs_duck1) in ratios.items():
            extra = f"   memkit / DuckDB threads=1 = {vs_duck1:.2f}x" if vs_duck1 is not None else ""
            verdict = "meets" if vs_duck >= TARGET else "BELOW"
            print(f"{fmt:<6} memkit / DuckDB read_json = {vs_duck:.2f}x ({verdict} the {TARGET}x target)   "
                  f"memkit / naive = {vs_naive:.1f}x{extra}")
            worst = vs_duck if worst is None else min(worst, vs_duck)
        print("(throughput ratios from this run: >1 means memkit is faster; the target is judged against DuckDB's default\n"
              " settings, the threads=1 ratio is for reference on small or busy machines)")

        if profile_file:
            profile_memkit(profile_file, scratch, args.profile_top)
        if args.min_ratio is not None and worst is not None and worst < args.min_ratio:
            raise SystemExit(f"memkit/DuckDB {worst:.2f}x is below --min-ratio {args.min_ratio}")
    finally:
        if args.out is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
