"""Ingest: files → records → runs (via a format reader) → DuckDB rows, in batches, idempotently."""

from __future__ import annotations

import glob
import queue
import threading
from contextlib import contextmanager
from itertools import chain
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from memkit.canonical import content_hash, file_sha256
from memkit.errors import BadPlaybookRef, IngestFailed, InputNotFound, UnknownFormat
from memkit.model import Run
from memkit.stores.injection import flag_steps
from memkit.stores.limits import Cut, Limits, too_big
from memkit.stores.formats import ReadContext, RecordError, detect, detect_path, get_reader
from memkit.stores.formats.streamed import streamed_file
from memkit.stores.records import Record, Redactions, read_records

MAX_UNDETECTED = 100  # records without a recognised format before a file is called "not a trajectory file"
RUN_ID_LENGTH = 16  # hex chars of sha256: 64 bits, collision-free far beyond a million runs
INPUT_SUFFIXES = {".json", ".jsonl", ".ndjson", ".eval", ".traj"}


@dataclass
class IngestResult:
    files: int = 0
    records: int = 0
    added: int = 0
    duplicates: int = 0
    rejected: int = 0
    outcomes: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)
    file_errors: list[str] = field(default_factory=list)
    reject_lines: list[str] = field(default_factory=list)  # the first few, for the summary
    redactions: Counter = field(default_factory=Counter)
    outcomes_matched: Optional[int] = None  # runs given an outcome by --outcomes (None: no such file)
    truncated: int = 0  # runs added cut to ingest.max_messages / max_run_bytes (rows in `truncations`)

    def as_dict(self) -> dict:
        return {
            "files": self.files, "records": self.records, "added": self.added, "duplicates": self.duplicates,
            "rejected": self.rejected, "outcomes": dict(self.outcomes), "formats": dict(self.formats),
            "file_errors": self.file_errors, "rejects": self.reject_lines, "redactions": dict(self.redactions),
            "truncated": self.truncated,
            **({"outcomes_matched": self.outcomes_matched} if self.outcomes_matched is not None else {}),
        }


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files, directories (recursively, trace files only) and glob patterns, in a stable order."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out.extend(sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in INPUT_SUFFIXES
                              and not any(part.startswith(".") for part in f.relative_to(path).parts)))
        else:
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True) if Path(m).is_file())
            if not matches:
                raise InputNotFound(f"{p}: no such file or directory")
            out.extend(matches)
    seen, unique = set(), []
    for f in out:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def parse_playbook_ref(ref: Optional[str]) -> tuple[Optional[str], Optional[int]]:
    if not ref:
        return None, None
    name, _, version = str(ref).partition("#")[0].partition("@")  # NAME@VERSION#CONTEXT: see _Ingest.stamp
    if version and not version.isdigit():
        raise RecordError(f"playbook reference {ref!r} is not NAME@VERSION")
    return name.strip() or None, int(version) if version else None


_S, _F, _I, _B = pa.string(), pa.float64(), pa.int64(), pa.bool_()
_TRAJ_SCHEMA = pa.schema([
    ("id", _S), ("source_sha256", _S), ("source_uri", _S), ("record_location", _S), ("external_id", _S),
    ("task_id", _S), ("task_text", _S), ("agent", _S), ("model", _S), ("started_at", _S), ("ended_at", _S),
    ("outcome", _S), ("reward", _F), ("cost_usd", _F), ("tokens_in", _I), ("tokens_out", _I), ("playbook", _S),
    ("playbook_version", _I), ("n_steps", _I), ("metadata", _S), ("attempt", _S),
])
_STEP_SCHEMA = pa.schema([("trajectory_id", _S), ("seq", _I), ("role", _S), ("name", _S), ("text", _S),
                          ("reasoning", _S), ("n_tool_calls", _I)])
_CALL_SCHEMA = pa.schema([("trajectory_id", _S), ("step_seq", _I), ("idx", _I), ("call_id", _S), ("name", _S),
                          ("arguments", _S), ("arguments_raw", _S)])
_RESULT_SCHEMA = pa.schema([("trajectory_id", _S), ("step_seq", _I), ("call_id", _S), ("name", _S),
                            ("content", _S), ("is_error", _B)])
_SCORE_SCHEMA = pa.schema([("trajectory_id", _S), ("scorer", _S), ("key", _S), ("value_num", _F), ("value_str", _S),
                           ("explanation", _S), ("source", _S)])
_TRUNC_SCHEMA = pa.schema([("trajectory_id", _S), ("seq", _I), ("what", _S), ("limit_name", _S), ("original", _I),
                           ("kept", _I)])
_REJECT_SCHEMA = pa.schema([("source_sha256", _S), ("source_uri", _S), ("location", _S), ("line", _I),
                            ("reader", _S), ("reason", _S), ("raw", pa.binary())])


def run_id_of(run: Run) -> str:
    """The run's id; RecordError when the run holds a value orjson cannot write (nested deeper than
    255 levels), so that run is a reject instead of an error that stops the ingest."""
    try:
        orjson.dumps(run.metadata, default=str)  # stored by add_run: fail here, not half-way through a batch
        return content_hash(run.identity(), RUN_ID_LENGTH)
    except orjson.JSONEncodeError as e:
        if "ecursion" in str(e):
            raise RecordError("a value is nested too deeply to store (more than 255 levels)") from None
        raise RecordError(f"cannot be stored as JSON ({e})") from None


class _Batch:
    """One batch of rows, built as tuples on the main thread and handed over as Arrow tables."""

    def __init__(self):
        self.traj: list[tuple] = []
        self.raw: list[bytes] = []
        self.steps: list[tuple] = []
        self.calls: list[tuple] = []
        self.results: list[tuple] = []
        self.scores: list[tuple] = []
        self.truncations: list[tuple] = []
        self.rejects: list[dict] = []
        self.finish: list[Callable] = []  # picklable jobs for files that ended in this batch (redaction rows)
        self.sources: list[tuple] = []  # their `sources` rows, completed on the writer side (_source_row)

    def __len__(self) -> int:
        return len(self.traj)

    def add_run(self, src: dict, run_id: str, record: Record, run: Run, pb_name: Optional[str],
                pb_version: Optional[int], cut: Optional[Cut] = None) -> None:
        """The run's rows; `cut`: what the limits cut from it (the run is already cut)."""
        n_steps, raw, seqs = len(run.steps), record.data, None
        if cut is not None:
            n_steps, seqs = cut.n_steps, cut.seqs
            raw = record.data if cut.keep_raw else None
            self.truncations += [(run_id, *row) for row in cut.rows]
        self.traj.append((run_id, src["sha256"], src["uri"], record.location, run.external_id, run.task_id,
                          run.task_text, run.agent, run.model, run.started_at, run.ended_at, run.outcome, run.reward,
                          run.cost_usd, run.tokens_in, run.tokens_out, pb_name, pb_version, n_steps,
                          orjson.dumps(run.metadata, default=str).decode(), run.attempt))
        self.raw.append(raw)
        steps, calls, results = self.steps, self.calls, self.results
        for seq, s in zip(seqs, run.steps) if seqs else enumerate(run.steps):
            steps.append((run_id, seq, s.role, s.name, s.text, s.reasoning, len(s.tool_calls)))
            for idx, c in enumerate(s.tool_calls):
                args = orjson.dumps(c.arguments).decode() if c.arguments is not None else None
                calls.append((run_id, seq, idx, c.call_id, c.name, args, c.arguments_raw))
            if s.role == "tool":
                results.append((run_id, seq, s.tool_call_id, s.name, s.text, s.is_error))
        for sc in run.scores:
            self.scores.append((run_id, sc.scorer, sc.key, sc.value_num, sc.value_str, sc.explanation, sc.source))

    def add_reject(self, src: dict, location: str, line: Optional[int], reader: Optional[str], reason: str,
                   raw: bytes) -> None:
        self.rejects.append({"source_sha256": src["sha256"], "source_uri": src["uri"],
                             "location": location, "line": line, "reader": reader, "reason": reason, "raw": raw})

    def rows(self) -> "_Rows":
        return _Rows(self.tables() if self.traj else {}, self.rejects, self.finish, self.sources)

    def tables(self) -> dict[str, pa.Table]:
        out = {}
        for name, rows, schema in (("trajectories", self.traj, _TRAJ_SCHEMA), ("steps", self.steps, _STEP_SCHEMA),
                                   ("tool_calls", self.calls, _CALL_SCHEMA), ("tool_results", self.results, _RESULT_SCHEMA),
                                   ("scores", self.scores, _SCORE_SCHEMA),
                                   ("truncations", self.truncations, _TRUNC_SCHEMA)):
            columns = list(zip(*rows)) if rows else [()] * len(schema)
            out[name] = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema)], schema=schema)
        # The raw JSON goes over as bytes: no Python str objects for the biggest column.
        out["trajectories"] = out["trajectories"].append_column("raw", pa.array(self.raw, pa.binary()).cast(_S))
        return out


@dataclass
class _Rows:
    """A batch as plain data (Arrow tables, dicts, tuples, picklable jobs): what a parsing process
    sends to the one that writes (see _parse_in_child)."""

    tables: dict[str, pa.Table]  # empty when the batch holds no runs
    rejects: list[dict]
    finish: list[Callable]
    sources: list[tuple]


def _write_batch(rows: _Rows, result: IngestResult, counts: dict[str, list[int]]):
    """A job for the writer thread and the bytes it appends: the batch's new runs (skipping ids already
    stored), their flags, its rejects, and the source rows of the files that ended in it. Many small files
    share a batch, and batches share a transaction (see _Writer). The job returns what to count once
    its transaction has committed."""
    tables, rejects, finish, sources = rows.tables, rows.rejects, rows.finish, rows.sources

    def job(cur: duckdb.DuckDBPyConnection) -> Callable[[], None]:
        known: list[str] = []
        traj = tables.get("trajectories")
        all_sources = traj["source_sha256"].to_pylist() if traj is not None else []
        if traj is not None:
            cur.register("_batch_ids", traj.select(["id"]))
            known = [r[0] for r in cur.execute("SELECT t.id FROM trajectories t JOIN _batch_ids b USING (id)").fetchall()]
            cur.unregister("_batch_ids")
            if known:
                known_set = pa.array(known, _S)
                for name, table in tables.items():
                    key = table["id" if name == "trajectories" else "trajectory_id"]
                    tables[name] = table.filter(pc.invert(pc.is_in(key, value_set=known_set)))
                traj = tables["trajectories"]
            for name, table in tables.items():
                if table.num_rows:
                    cur.register("_rows", table)
                    extra = ", now() AS ingested_at" if name == "trajectories" else ""
                    conflict = " ON CONFLICT DO NOTHING" if name == "scores" else ""
                    cur.execute(f"INSERT INTO {name} BY NAME SELECT *{extra} FROM _rows{conflict}")
                    cur.unregister("_rows")
        if tables and tables["steps"].num_rows:
            flags = flag_steps(tables["steps"])
            if flags.num_rows:
                cur.register("_flags", flags)
                cur.execute("INSERT INTO step_flags BY NAME SELECT * FROM _flags ON CONFLICT DO NOTHING")
                cur.unregister("_flags")
        if rejects:
            cur.register("_rejects", pa.Table.from_pylist(rejects, schema=_REJECT_SCHEMA))
            cur.execute("""INSERT INTO rejects BY NAME SELECT *, now() AS rejected_at FROM _rejects
                           ON CONFLICT DO UPDATE SET reason = excluded.reason, rejected_at = excluded.rejected_at""")
            cur.unregister("_rejects")
        added = Counter(tables["trajectories"]["source_sha256"].to_pylist()) if tables else Counter()
        for sha, n in (Counter(all_sources) - added).items():
            counts[sha][1] += n
        for sha, n in added.items():
            counts[sha][0] += n
        for finish_file in finish:
            finish_file(cur)
        if sources:
            _write_sources(cur, [_source_row(row, counts) for row in sources])

        def committed() -> None:
            if traj is None:
                return
            result.duplicates += len(known)
            result.added += traj.num_rows
            if tables["truncations"].num_rows:
                result.truncated += pc.count_distinct(tables["truncations"]["trajectory_id"]).as_py()
            if traj.num_rows:
                for outcome, n in zip(*pc.value_counts(traj["outcome"]).flatten()):
                    result.outcomes[outcome.as_py()] += n.as_py()

        return committed

    return job, sum(t.nbytes for t in tables.values())


_SOURCE_SCHEMA = pa.schema([("sha256", _S), ("uri", _S), ("format", _S), ("parser_version", _S), ("size_bytes", _I),
                            ("records", _I), ("added", _I), ("duplicates", _I), ("rejected", _I)])


def _source_row(row: tuple, counts: dict[str, list[int]]) -> tuple:
    """A file's `sources` row (sha256, uri, format, parser version, size, records, rejected, repeated),
    completed on the writer side with what its batches added; written in the transaction of the batch
    that holds the file's last runs, so it never claims runs not stored."""
    sha, uri, fmt, version, size, records, rejected, repeated = row
    added, duplicates = counts.pop(sha, (0, 0))
    return (sha, uri, fmt, version, size, records, added, duplicates + repeated, rejected)


def _write_sources(cur, rows: list[tuple]) -> None:
    table = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(zip(*rows), _SOURCE_SCHEMA)],
                                 schema=_SOURCE_SCHEMA)
    cur.register("_sources", table)
    cur.execute(
        """INSERT INTO sources BY NAME SELECT *, now() AS ingested_at FROM _sources
           ON CONFLICT DO UPDATE SET uri = excluded.uri, records = excluded.records,
           added = sources.added + excluded.added, duplicates = excluded.duplicates,
           rejected = excluded.rejected, ingested_at = excluded.ingested_at""")
    cur.unregister("_sources")


class _Writer:
    """Runs write jobs in order on a background thread with its own DuckDB cursor.

    DuckDB releases the GIL while it inserts and commits, so the next batch is parsed while the
    last one is written. Append jobs share a transaction until it holds TRANSACTION_BYTES of rows:
    replayed alone, the 20,000-run bench's batches cost the writer 6.7-8.2 s of CPU with a commit
    per batch and 4.2-5.1 s in one transaction (every committed row goes through the WAL first).
    End to end (bench/ingest.py) the difference is within the noise, while what DuckDB
    holds uncommitted adds to peak memory (+240 MB at 256 MB per transaction on a 1 GB file), so
    the cap is modest. A job submitted without a size runs in a transaction of its own. The main
    thread does not use the connection until `close()` returns.
    """

    TRANSACTION_BYTES = 64 << 20

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.cur = con.cursor()
        self.jobs: queue.Queue = queue.Queue(maxsize=2)  # bounded: at most a couple of batches in memory
        self.error: Optional[BaseException] = None
        self.open_bytes: Optional[int] = None  # bytes appended in the open transaction; None: none open
        self.on_commit: list[Callable[[], None]] = []
        self.thread = threading.Thread(target=self._work, name="memkit-ingest-writer", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (item := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    self._run(*item)
                except BaseException as e:  # handed to the main thread
                    self.error = e
                    if self.open_bytes is not None:
                        self.open_bytes, self.on_commit = None, []
                        try:
                            self.cur.execute("ROLLBACK")
                        except duckdb.Error:  # a failed COMMIT has already ended the transaction
                            pass
        if self.error is None and self.open_bytes is not None:
            try:
                self._commit()
            except BaseException as e:
                self.error = e

    def _run(self, job: Callable, nbytes: Optional[int]) -> None:
        if nbytes is None:
            if self.open_bytes is not None:
                self._commit()
            job(self.cur)
            return
        if self.open_bytes is None:
            self.cur.execute("BEGIN")
            self.open_bytes = 0
        self.on_commit.append(job(self.cur))
        self.open_bytes += nbytes
        if self.open_bytes >= self.TRANSACTION_BYTES:
            self._commit()

    def _commit(self) -> None:
        self.cur.execute("COMMIT")
        done, self.open_bytes, self.on_commit = self.on_commit, None, []
        for count in done:
            count()

    def submit(self, job: Callable[[duckdb.DuckDBPyConnection], Any], nbytes: Optional[int] = None) -> None:
        if self.error is not None:
            self.close()
        self.jobs.put((job, nbytes))

    def close(self) -> None:
        if self.thread.is_alive():
            self.jobs.put(None)
            self.thread.join()
            self.cur.close()
        if self.error is not None:
            error, self.error = self.error, None
            raise error


@contextmanager
def _bulk_settings(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB settings for the length of an ingest, restored after it. One core fewer for DuckDB:
    the parse (a thread, or a child process for big inputs) keeps the other busy. A commit big enough to trigger a checkpoint skips the
    WAL (it writes the rows straight to the database file instead of first to the log). Measured on
    the 20,000-run bench on 2 cores (bench/ingest.py), median of 3 runs: 9.2 s with DuckDB's
    defaults, 8.4 s skipping the WAL, 6.9 s with zstd text columns (migration 0012) and 1 thread."""
    names = ("threads", "auto_checkpoint_skip_wal_threshold")
    old = {n: con.execute("SELECT current_setting(?)", [n]).fetchone()[0] for n in names}
    con.execute(f"SET threads = {max(1, int(old['threads']) - 1)}")
    con.execute("SET auto_checkpoint_skip_wal_threshold = 1000")
    try:
        yield
    finally:
        for n, value in old.items():
            con.execute(f"SET {n} = {int(value)}")


def ingest_files(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[str | Path],
    ctx: ReadContext,
    *,
    format: Optional[str] = None,
    playbook_ref: Optional[str] = None,
    batch_size: int = 2000,
    latest_versions: Optional[dict[str, int]] = None,
    on_file: Callable[[Path, int], None] = lambda path, index: None,
    on_records: Callable[[int], None] = lambda n: None,
    outcomes: Optional[str | Path] = None,
    mapping: Optional[str | Path] = None,
    limits: Optional[Limits] = None,
    attempt: Optional[str] = None,
    metadata: Optional[dict] = None,
) -> IngestResult:
    """Ingest files into the bank. `latest_versions` maps playbook names to their newest version,
    for runs whose playbook reference names no version. `outcomes` is an evaluation report that
    gives runs their outcome (see stores/outcomes.py); `mapping` a YAML file that says where a
    generic JSON format keeps its fields (see stores/formats/mapped.py). `limits`: caps on record
    and run sizes (see stores/limits.py); None: memkit.yaml's defaults. `attempt` names the repeat
    every run of this ingest is (memkit eval: its eval, arm, task and trial), so identical runs of
    different trials or arms stay separate; `metadata` is added to every run's metadata."""
    from memkit.stores.formats.mapped import load_mapping
    from memkit.stores.outcomes import load_outcomes

    forced = load_mapping(mapping, format) if mapping is not None else get_reader(format) if format else None
    outcome_map = load_outcomes(outcomes, ctx) if outcomes is not None else None
    files = expand_paths(paths)
    if playbook_ref:
        try:
            name, version = parse_playbook_ref(playbook_ref)  # fail early on a malformed flag
        except RecordError as e:
            raise BadPlaybookRef(f"--playbook: {e}") from None
        known = latest_versions or {}
        if name not in known:
            have = ", ".join(sorted(known)) or "none yet: distill first"
            raise BadPlaybookRef(f"--playbook: no playbook {name!r} in this bank (playbooks: {have})")
        if version is not None and not 1 <= version <= known[name]:
            raise BadPlaybookRef(f"--playbook: {name} has versions 1 to {known[name]}, not {version}")
    result = IngestResult(files=len(files))
    limits = limits if limits is not None else Limits.from_config()
    with _bulk_settings(con):
        writer = _Writer(con)
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # sha -> [added, duplicates], writer-side

        def write(rows: Optional[_Rows], job: Optional[Callable] = None) -> None:
            if rows is not None:
                writer.submit(*_write_batch(rows, result, counts))
            else:
                writer.submit(job)

        def parse(sink: Callable, on_file: Callable, on_records: Callable) -> None:
            """Read every file into `sink`; counts go to `result` (in a child: the child's copy)."""
            state = _Ingest(sink, result, batch_size, outcome_map, limits, attempt, metadata or {})
            for index, path in enumerate(files):
                on_file(path, index)
                _ingest_file(path, ctx, forced, playbook_ref, latest_versions or {}, state, on_records)
            state.flush()
            if outcome_map is not None:
                result.outcomes_matched = outcome_map.matched

        try:
            if _in_child(files):
                _parse_in_child(parse, write, on_file, on_records, result)
            else:
                parse(write, on_file, on_records)
        finally:
            writer.close()
    return result


# Inputs at least this big are parsed in a child process (where fork exists): the parse is Python
# and holds the GIL, which the writer thread's many short DuckDB calls then wait for. Measured on
# the 20,000-run bench (bench/ingest.py, 354 MB, 2 cores): see README § Benchmarks.
CHILD_MIN_BYTES = 32 << 20


def _in_child(files: list[Path]) -> bool:
    """MEMKIT_INGEST_CHILD=1 or 0 forces the choice (tests run both ways on small files)."""
    import multiprocessing
    import os

    forced = os.environ.get("MEMKIT_INGEST_CHILD")
    if forced in ("0", "1"):
        wanted = forced == "1"
    else:
        wanted = (os.cpu_count() or 1) > 1 and sum(f.stat().st_size for f in files) >= CHILD_MIN_BYTES
    return wanted and "fork" in multiprocessing.get_all_start_methods()


_CHILD_FIELDS = ("records", "rejected", "duplicates", "formats", "file_errors", "reject_lines", "redactions",
                 "outcomes_matched")  # what the parsing side of an ingest counts (the writer side counts the rest)


def _parse_in_child(parse: Callable, write: Callable, on_file: Callable, on_records: Callable,
                    result: IngestResult) -> None:
    """Run `parse` in a forked child that sends its batches (as _Rows) down a pipe; this process writes
    them. The child touches no DuckDB connection and leaves with os._exit (multiprocessing's fork
    start), so nothing of the parent's database is closed or flushed from it."""
    import multiprocessing
    import pickle

    mp = multiprocessing.get_context("fork")
    receive, send = mp.Pipe(duplex=False)

    def child() -> None:
        import gc

        receive.close()
        gc.freeze()  # what the parent had stays out of the child's collections
        pending = [0]

        def records(n: int) -> None:
            pending[0] += n
            if pending[0] >= 500:
                send.send(("records", pending[0]))
                pending[0] = 0

        def file(path: Path, index: int) -> None:
            if pending[0]:
                send.send(("records", pending[0]))
                pending[0] = 0
            send.send(("file", str(path), index))

        def sink(rows: Optional[_Rows], job: Optional[Callable] = None) -> None:
            if rows is None:
                send.send(("job", job))
                return
            tables, rows.tables = rows.tables, {}
            send.send(("rows", rows, list(tables)))
            for table in tables.values():  # Arrow IPC: the buffers as they are, not pickled
                out = pa.BufferOutputStream()
                with pa.ipc.new_stream(out, table.schema) as stream:
                    stream.write_table(table)
                send.send_bytes(out.getvalue())

        try:
            parse(sink, file, records)
            if pending[0]:
                send.send(("records", pending[0]))
            send.send(("done", {k: getattr(result, k) for k in _CHILD_FIELDS}))
        except BaseException as e:  # handed to the parent, which raises it
            try:
                pickle.dumps(e)
            except Exception:
                e = RuntimeError(f"{e.__class__.__name__}: {e}")
            try:
                send.send(("error", e))
            except OSError:  # the parent has stopped reading: it is failing on its own
                pass
        finally:
            send.close()

    proc = mp.Process(target=child, name="memkit-ingest-parser", daemon=True)
    proc.start()
    send.close()
    try:
        while True:
            try:
                message = receive.recv()
            except EOFError:
                proc.join()
                raise IngestFailed(f"ingest: the parsing process stopped (exit code {proc.exitcode}); "
                                   "the runs already read are stored") from None
            kind = message[0]
            if kind == "rows":
                rows = message[1]
                rows.tables = {name: pa.ipc.open_stream(receive.recv_bytes()).read_all() for name in message[2]}
                write(rows)
            elif kind == "job":
                write(None, message[1])
            elif kind == "records":
                on_records(message[1])
            elif kind == "file":
                on_file(Path(message[1]), message[2])
            elif kind == "error":
                raise message[1]
            else:  # done
                for k, v in message[1].items():
                    if k == "duplicates":
                        result.duplicates += v
                    else:
                        setattr(result, k, v)
                break
    finally:
        receive.close()
        if proc.is_alive():
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()


class _Ingest:
    """What one ingest call shares across its files: where batches go (`sink(rows, job=None)`: a
    batch's rows, or a job of its own), the batch being filled (small files share batches), the run
    ids seen, and what every run is stamped with (see stamp)."""

    def __init__(self, sink: Callable, result: IngestResult, batch_size: int, outcomes, limits: Limits,
                 attempt: Optional[str] = None, metadata: Optional[dict] = None):
        self.sink, self.result, self.batch_size, self.outcomes, self.limits = sink, result, batch_size, outcomes, limits
        self.attempt, self.metadata = attempt, metadata or {}
        self.batch = _Batch()
        self.seen: set[str] = set()

    def flush(self) -> None:
        batch, self.batch = self.batch, _Batch()
        if batch.traj or batch.rejects or batch.finish or batch.sources:
            self.sink(batch.rows())
        job = self.outcomes.job() if self.outcomes is not None else None
        if job is not None:  # after the batch that holds the runs: it updates them
            self.sink(None, job)

    def full(self) -> bool:
        return len(self.batch) >= self.batch_size

    def stamp(self, run: Run) -> None:
        """Before the id: the ingest's attempt (after the run's own, if any) and metadata; a context
        reference in the run's playbook reference (NAME@VERSION#CONTEXT) goes to metadata memkit_context."""
        if self.attempt is not None:
            run.attempt = self.attempt if run.attempt is None else f"{self.attempt}, {run.attempt}"
        context = str(run.playbook_ref or "").partition("#")[2]
        if context or self.metadata:
            run.metadata = {**run.metadata, **({"memkit_context": context} if context else {}), **self.metadata}


def _ingest_file(path: Path, ctx: ReadContext, forced, playbook_ref, latest_versions: dict, state: _Ingest,
                 on_records: Callable[[int], None]) -> None:
    source = {"sha256": file_sha256(path), "uri": str(path)}
    result, outcomes = state.result, state.outcomes
    reader = forced
    red = Redactions(ctx.redactor)
    records = rejected = repeated = 0
    failed = False
    limits = state.limits
    max_record = limits.max_record_bytes

    def reject(location, line, reader_name, reason, raw):
        nonlocal rejected
        rejected += 1
        result.rejected += 1
        if len(result.reject_lines) < 20 and location != "file":  # file-level errors are reported on their own
            result.reject_lines.append(f"{source['uri']} {location}: {reason}")
        state.batch.add_reject(source, location, line, reader_name, reason, raw)

    def add(record: Record, run: Run) -> None:
        nonlocal repeated
        state.stamp(run)
        try:
            name, version = parse_playbook_ref(playbook_ref or run.playbook_ref)
            run_id = run_id_of(run)
        except RecordError as e:
            reject(record.location, record.line, reader.name, str(e), record.data[:65536])
            return
        red.claim(run_id, record)  # the redaction rows of the records it was made from name it
        if run_id in state.seen:  # the same run twice in this ingest
            repeated += 1
            result.duplicates += 1
            return
        state.seen.add(run_id)
        if name and version is None:
            version = latest_versions.get(name)
        if outcomes is not None:
            outcomes.apply(run_id, run, path)  # after the id: the verdict is not part of the trace
        # After the id, which hashes the run as read: an oversized run is the same run on re-ingest.
        cut = limits.apply(run, len(record.data)) if limits.exceeded(run, len(record.data)) else None
        state.batch.add_run(source, run_id, record, run, name, version, cut)
        if state.full():
            state.flush()

    def counted(pairs: Iterator[tuple]) -> Iterator[tuple]:
        nonlocal records
        for pair in pairs:
            records += 1
            on_records(1)
            yield pair

    def parsed(stream: Iterator[Record]) -> Iterator[Record]:
        """The records that are valid JSON; the others are rejected on the way."""
        nonlocal records, failed
        for record in stream:
            records += 1
            on_records(1)
            if record.error:
                if record.location == "file":
                    failed = True
                    result.file_errors.append(f"{path}: {record.error}")
                reject(record.location, record.line, reader.name if reader else None, record.error, record.data)
                continue
            yield record

    try:
        if reader is None:
            reader = detect_path(path)
        streamed = None if reader is not None and reader.binary else streamed_file(path, reader, ctx, red, max_record)
        if streamed is not None:  # tau2 results, Inspect .json logs: their runs array read an item at a time
            reader, pairs = streamed[0], counted(streamed[1])
        elif reader is not None and reader.binary:
            pairs = counted(reader.read_path(path, ctx, red))
        else:
            stream = parsed(read_records(path, red, max_record))
            undetected: list[Record] = []
            if reader is None:
                # A malformed first record must not cost the file: look further, then judge the
                # records passed over by the format the rest of the file has.
                for record in stream:
                    undetected.append(record)
                    try:
                        reader = detect(record.value, str(path))
                        break
                    except UnknownFormat:
                        if len(undetected) >= MAX_UNDETECTED:
                            raise
                else:
                    if undetected:
                        detect(undetected[0].value, str(path))  # raises: nothing in the file was recognised
            pairs = reader.read(chain(undetected, stream), ctx) if reader else iter(())
        for record, run in pairs:
            if isinstance(run, RecordError):
                reject(record.location, record.line, reader.name, str(run), record.data[:65536])
            elif max_record and reader.binary and len(record.data) > max_record:  # an archive entry (text
                # records were measured as they were read)
                reject(record.location, record.line, reader.name, too_big(len(record.data), max_record),
                       record.data[:65536])
            else:
                add(record, run)
    except UnknownFormat as e:
        failed = True
        result.file_errors.append(str(e))
        reject("file", None, None, str(e).split(": ", 1)[-1], b"")
    except (OSError, RecursionError) as e:
        failed = True
        msg = f"{path}: cannot read ({e.__class__.__name__}: {e})"
        result.file_errors.append(msg)
        reject("file", None, None, msg, b"")
    result.records += records
    result.redactions.update(red.counts)
    if reader is None and not failed and not rejected:
        result.file_errors.append(f"{path}: holds no records")
    fmt = reader.name if reader else "unknown"
    result.formats[fmt] += 1
    state.batch.finish.append(red.write_job(source["sha256"]))
    state.batch.sources.append((source["sha256"], source["uri"], fmt, reader.version if reader else "-",
                                path.stat().st_size, records, rejected, repeated))
