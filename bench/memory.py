#!/usr/bin/env python
"""Peak memory of `memkit ingest` on large files: JSON Lines and one JSON array, at several sizes.

    python bench/memory.py                      # 100 MB and 300 MB of each
    python bench/memory.py --sizes 100,1000 --formats array --duckdb-limits none
    python bench/memory.py --sizes 60 --formats inspect,tau2 --duckdb-limits 512MB --whole

`inspect` and `tau2` are whole-file formats (one JSON object whose `samples` / `simulations` array
holds every run), made from their test fixtures with the runs replicated. They are read an item at
a time (stores/formats/streamed.py); `--whole` also measures each with that switched off, i.e. the
file parsed whole as one record, as before.

The tau-bench airline sample is replicated (as in bench/ingest.py) until a file reaches the size.
Each ingest runs in a fresh subprocess, which reports its peak resident set (getrusage ru_maxrss),
that of the process that parsed the input when it was big enough to get one (stores/ingest.py
_parse_in_child; a fork, so pages it shares with the writer count in both), and its resident set
just before the ingest (Python, memkit and DuckDB loaded), so the growth that
ingest itself causes is the difference. Streaming shows as a peak that does not grow with the file.

DuckDB keeps written blocks in its buffer pool up to its `memory_limit` (80% of RAM by default), so
with default settings the peak grows with the data loaded whatever the reader does; each size is
also measured with `SET memory_limit` (default 512MB), which isolates what memkit itself holds.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def worker(file: Path, folder: Path, limit: str, whole: bool = False) -> None:
    import memkit

    if whole:  # the old path: the file is one record, parsed whole
        import memkit.stores.ingest as ingest

        ingest.streamed_file = lambda *args: None

    bank = memkit.init(folder / "bank")
    if limit != "none":
        bank.con.execute(f"SET memory_limit = '{limit}'")
    before = _rss_mb()
    t0 = time.perf_counter()
    res = bank.ingest([file])
    bank.close()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the parsing process (big inputs)
    print("RESULT " + json.dumps({"seconds": seconds, "peak_mb": peak, "child_peak_mb": child, "before_mb": before,
                                  "added": res.added, "rejected": res.rejected}))


def replicas(sample: Path, n: int):
    """The runs of bench/ingest.py's replicate(sample, n), one at a time."""
    base = json.loads(sample.read_bytes())
    span = max((r.get("trial") or 0) for r in base) + 1
    for i in range(n):
        k, rec = divmod(i, len(base))
        rec = base[rec]
        if k:
            traj = list(rec["traj"])
            for j, m in enumerate(traj):
                if m.get("role") == "user" and isinstance(m.get("content"), str):
                    traj[j] = dict(m, content=f"{m['content']} [bench replica {k}]")
                    break
            rec = dict(rec, trial=(rec.get("trial") or 0) + k * span, traj=traj)
        yield rec


WHOLE = {"inspect": ("inspect/arith.json", "samples"), "tau2": ("tau2/results.json", "simulations")}


def write_whole(fmt: str, target_mb: int, folder: Path) -> tuple[Path, int]:
    """An Inspect log or tau2 results file of about `target_mb`: the fixture's header, its runs replicated
    (each copy a distinct run: Inspect samples get a new id, tau2 simulations a new trial)."""
    import orjson

    fixture, key = WHOLE[fmt]
    doc = json.loads((HERE.parent / "tests" / "data" / "formats" / fixture).read_bytes())
    base, doc[key] = doc[key], []
    head, _, tail = orjson.dumps(doc).partition(f'"{key}":[]'.encode())
    path = folder / f"{fmt}-{target_mb}mb.json"
    n, size = 0, 0
    with open(path, "wb") as f:
        f.write(head + f'"{key}":['.encode())
        while size < target_mb * 1e6:
            rec = dict(base[n % len(base)])
            if fmt == "inspect":
                rec["id"] = f"{rec['id']}-{n}"
            else:
                rec.update(id=f"{rec['id']}-{n}", trial=n)
            data = (b"," if n else b"") + orjson.dumps(rec)
            f.write(data)
            size += len(data)
            n += 1
        f.write(b"]" + tail)
    return path, n


def write_file(fmt: str, target_mb: int, folder: Path, sample: Path) -> tuple[Path, int]:
    import orjson

    if fmt in WHOLE:
        return write_whole(fmt, target_mb, folder)

    path = folder / f"runs-{target_mb}mb.{'jsonl' if fmt == 'jsonl' else 'json'}"
    n, size = 0, 0
    with open(path, "wb") as f:
        if fmt == "array":
            f.write(b"[")
        for r in replicas(sample, 10**9):
            if size >= target_mb * 1e6:
                break
            data = orjson.dumps(r) + (b"\n" if fmt == "jsonl" else b",\n")
            f.write(data)
            size += len(data)
            n += 1
        if fmt == "array":  # replace the last separator
            f.seek(f.tell() - 2)
            f.write(b"]\n")
            f.truncate()
    return path, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,300", help="input sizes in MB, comma separated (default 100,300)")
    ap.add_argument("--formats", default="jsonl,array")
    ap.add_argument("--duckdb-limits", default="none,512MB",
                    help="DuckDB memory_limit settings to measure each file with; none = DuckDB's default (default none,512MB)")
    ap.add_argument("--sample", type=Path, default=HERE.parent / "data" / "samples" / "tau-bench-airline" / "gpt-4o-airline.json")
    ap.add_argument("--whole", action="store_true",
                    help="also measure inspect/tau2 files read whole (streaming off), for comparison")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--scratch", help=argparse.SUPPRESS)
    ap.add_argument("--limit", help=argparse.SUPPRESS)
    ap.add_argument("--read-whole", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(Path(args.worker), Path(args.scratch), args.limit, args.read_whole)

    scratch = Path(tempfile.mkdtemp(prefix="memkit-memory-"))
    try:
        print(f"{'format':<14} {'input MB':>9} {'runs':>8} {'duckdb memory_limit':>20} {'seconds':>8} {'RSS before MB':>14} "
              f"{'peak RSS MB':>12} {'growth MB':>10} {'parser peak MB':>15}")
        for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
            for size in [int(s) for s in args.sizes.split(",")]:
                path, n = write_file(fmt, size, scratch, args.sample)
                modes = [False, True] if args.whole and fmt in WHOLE else [False]
                for limit, read_whole in [(x.strip(), m) for x in args.duckdb_limits.split(",") if x.strip() for m in modes]:
                    folder = Path(tempfile.mkdtemp(dir=scratch))
                    proc = subprocess.run([sys.executable, __file__, "--worker", str(path), "--scratch", str(folder),
                                           "--limit", limit] + (["--read-whole"] if read_whole else []),
                                          capture_output=True, text=True)
                    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    if proc.returncode or not lines:
                        sys.stderr.write(proc.stdout + proc.stderr)
                        raise SystemExit(f"ingest of {path.name} failed")
                    r = json.loads(lines[-1][7:])
                    if r["added"] != n or r["rejected"]:
                        raise SystemExit(f"{path.name}: added {r['added']} of {n}, rejected {r['rejected']}")
                    shown = "default" if limit == "none" else limit
                    parser = f"{r['child_peak_mb']:.0f}" if r["child_peak_mb"] else "-"
                    label = f"{fmt} (whole)" if read_whole else fmt
                    print(f"{label:<14} {path.stat().st_size / 1e6:>9.0f} {n:>8,} {shown:>20} {r['seconds']:>8.1f} "
                          f"{r['before_mb']:>14.0f} {r['peak_mb']:>12.0f} {r['peak_mb'] - r['before_mb']:>10.0f} "
                          f"{parser:>15}", flush=True)
                    shutil.rmtree(folder, ignore_errors=True)
                path.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
