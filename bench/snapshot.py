#!/usr/bin/env python
"""What the read snapshot costs a writer: the copy a writer leaves for readers as it closes
(memkit.stores.database.publish_snapshot), against the ingest it follows, measured in the same run.

    python bench/snapshot.py               # 5,000 runs of the replicated tau-bench sample
    python bench/snapshot.py --runs 20000

Steps: ingest N runs into a fresh bank (its clock: the ingest and a checkpoint, before any
snapshot), publish the snapshot once (its clock: checkpoint + atomic copy), then publish again
with nothing changed (the common case for a command that wrote nothing). Printed as
ratios of the ingest time; the machines here are shared and noisy, so no absolute-time check.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ingest import SAMPLE, replicate, write_files  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5000)
    args = ap.parse_args()

    import memkit
    from memkit.stores import database

    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(replicate(SAMPLE, args.runs), Path(tmp) / "data", "runs")
        bank = memkit.init(Path(tmp) / "bank")
        db = bank.root / ".memkit" / database.DB_FILE
        t0 = time.perf_counter()
        bank.ingest([files["jsonl"]])
        bank.con.execute("CHECKPOINT")
        ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        copied = database.publish_snapshot(bank.con, db)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = database.publish_snapshot(bank.con, db)
        unchanged = time.perf_counter() - t0
        size = db.stat().st_size / 1e6
        bank._con.close()  # without a second publish: it is measured above
        bank._con = None
    assert copied and not again
    print(f"{args.runs} runs, bank {size:.0f} MB")
    print(f"ingest            {ingest:8.2f} s   1.000x")
    print(f"snapshot (copy)   {first:8.2f} s   {first / ingest:.3f}x of the ingest")
    print(f"snapshot (no-op)  {unchanged:8.4f} s   {unchanged / ingest:.5f}x of the ingest")


if __name__ == "__main__":
    main()
