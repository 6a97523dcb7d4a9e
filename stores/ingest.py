"""Ingest: files → records → runs (via a format reader) → DuckDB rows, in batches, idempotently."""

from __future__ import annotations

import glob
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import duckdb
import orjson
import pyarrow as pa

from memkit.canonical import content_hash, file_sha256
from memkit.errors import InputNotFound, MemkitError, UnknownFormat
from memkit.model import Run
from memkit.stores.formats import ReadContext, RecordError, detect, get_reader
from memkit.stores.records import Record, Redactions, read_records

RUN_ID_LENGTH = 16  # hex chars of sha256: 64 bits, collision-free far beyond a million runs
INPUT_SUFFIXES = {".json", ".jsonl", ".ndjson"}


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

    def as_dict(self) -> dict:
        return {
            "files": self.files, "records": self.records, "added": self.added, "duplicates": self.duplicates,
            "rejected": self.rejected, "outcomes": dict(self.outcomes), "formats": dict(self.formats),
            "file_errors": self.file_errors, "rejects": self.reject_lines, "redactions": dict(self.redactions),
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
    name, _, version = str(ref).partition("@")
    if version and not version.isdigit():
        raise RecordError(f"playbook reference {ref!r} is not NAME@VERSION")
    return name.strip() or None, int(version) if version else None


class _Writer:
    """Accumulates runs and writes them in one transaction per batch, skipping known ids."""

    def __init__(self, con: duckdb.DuckDBPyConnection, source: dict, result: IngestResult, batch_size: int,
                 latest_version: Callable[[str], Optional[int]]):
        self.con, self.source, self.result, self.batch_size = con, source, result, batch_size
        self.latest_version = latest_version
        self.pending: list[tuple[str, Record, Run, Optional[str], Optional[int]]] = []
        self.rejects: list[dict] = []
        self.seen: set[str] = set()

    def add_run(self, record: Record, run: Run, forced_ref: Optional[str]) -> None:
        run_id = content_hash(run.identity(), RUN_ID_LENGTH)
        if run_id in self.seen:
            self.result.duplicates += 1
            return
        self.seen.add(run_id)
        name, version = parse_playbook_ref(forced_ref or run.playbook_ref)
        if name and version is None:
            version = self.latest_version(name)
        self.pending.append((run_id, record, run, name, version))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def add_reject(self, location: str, line: Optional[int], reader: Optional[str], reason: str, raw: bytes) -> None:
        self.result.rejected += 1
        if len(self.result.reject_lines) < 20 and location != "file":  # file-level errors are reported on their own
            self.result.reject_lines.append(f"{self.source['uri']} {location}: {reason}")
        self.rejects.append({"source_sha256": self.source["sha256"], "source_uri": self.source["uri"],
                             "location": location, "line": line, "reader": reader, "reason": reason, "raw": raw})

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        rejects, self.rejects = self.rejects, []
        con = self.con
        con.execute("BEGIN")
        try:
            if pending:
                ids = pa.table({"id": [p[0] for p in pending]})
                con.register("_batch_ids", ids)
                known = {r[0] for r in con.execute("SELECT t.id FROM trajectories t JOIN _batch_ids b USING (id)").fetchall()}
                con.unregister("_batch_ids")
                new = [p for p in pending if p[0] not in known]
                self.result.duplicates += len(pending) - len(new)
                if new:
                    self._insert(new)
            if rejects:
                con.register("_rejects", pa.Table.from_pylist(rejects, schema=_REJECT_SCHEMA))
                con.execute("""INSERT INTO rejects BY NAME SELECT *, now() AS rejected_at FROM _rejects
                               ON CONFLICT DO UPDATE SET reason = excluded.reason, rejected_at = excluded.rejected_at""")
                con.unregister("_rejects")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise

    def _insert(self, new) -> None:
        traj: dict[str, list] = {k: [] for k in _TRAJ_COLUMNS}
        steps: dict[str, list] = {k: [] for k in ("trajectory_id", "seq", "role", "name", "text", "reasoning", "n_tool_calls")}
        calls: dict[str, list] = {k: [] for k in ("trajectory_id", "step_seq", "idx", "call_id", "name", "arguments", "arguments_raw")}
        results: dict[str, list] = {k: [] for k in ("trajectory_id", "step_seq", "call_id", "name", "content", "is_error")}
        src = self.source
        for run_id, record, run, pb_name, pb_version in new:
            self.result.added += 1
            self.result.outcomes[run.outcome] += 1
            row = (run_id, src["sha256"], src["uri"], record.location, run.external_id, run.task_id, run.task_text,
                   run.agent, run.model, run.started_at, run.ended_at, run.outcome, run.reward, run.cost_usd,
                   run.tokens_in, run.tokens_out, pb_name, pb_version, len(run.steps),
                   orjson.dumps(run.metadata, default=str).decode(), record.text)
            for k, v in zip(_TRAJ_COLUMNS, row):
                traj[k].append(v)
            for seq, s in enumerate(run.steps):
                for k, v in zip(steps, (run_id, seq, s.role, s.name, s.text, s.reasoning, len(s.tool_calls))):
                    steps[k].append(v)
                for idx, c in enumerate(s.tool_calls):
                    args = orjson.dumps(c.arguments).decode() if c.arguments is not None else None
                    for k, v in zip(calls, (run_id, seq, idx, c.call_id, c.name, args, c.arguments_raw)):
                        calls[k].append(v)
                if s.role == "tool":
                    for k, v in zip(results, (run_id, seq, s.tool_call_id, s.name, s.text, s.is_error)):
                        results[k].append(v)
        con = self.con
        for table, cols, types in (("trajectories", traj, _TRAJ_TYPES), ("steps", steps, _STEP_TYPES),
                                   ("tool_calls", calls, _CALL_TYPES), ("tool_results", results, _RESULT_TYPES)):
            arrow = pa.table({k: pa.array(v, type=types[k]) for k, v in cols.items()})
            con.register("_rows", arrow)
            extra = ", now() AS ingested_at" if table == "trajectories" else ""
            con.execute(f"INSERT INTO {table} BY NAME SELECT *{extra} FROM _rows")
            con.unregister("_rows")


_TRAJ_COLUMNS = ("id", "source_sha256", "source_uri", "record_location", "external_id", "task_id", "task_text",
                 "agent", "model", "started_at", "ended_at", "outcome", "reward", "cost_usd", "tokens_in",
                 "tokens_out", "playbook", "playbook_version", "n_steps", "metadata", "raw")
_S, _F, _I, _B = pa.string(), pa.float64(), pa.int64(), pa.bool_()
_TRAJ_TYPES = {k: _S for k in _TRAJ_COLUMNS} | {"reward": _F, "cost_usd": _F, "tokens_in": _I, "tokens_out": _I,
                                               "playbook_version": _I, "n_steps": _I}
_STEP_TYPES = {"trajectory_id": _S, "seq": _I, "role": _S, "name": _S, "text": _S, "reasoning": _S, "n_tool_calls": _I}
_CALL_TYPES = {"trajectory_id": _S, "step_seq": _I, "idx": _I, "call_id": _S, "name": _S, "arguments": _S, "arguments_raw": _S}
_RESULT_TYPES = {"trajectory_id": _S, "step_seq": _I, "call_id": _S, "name": _S, "content": _S, "is_error": _B}
_REJECT_SCHEMA = pa.schema([("source_sha256", _S), ("source_uri", _S), ("location", _S), ("line", _I),
                            ("reader", _S), ("reason", _S), ("raw", pa.binary())])


def ingest_files(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[str | Path],
    ctx: ReadContext,
    *,
    format: Optional[str] = None,
    playbook_ref: Optional[str] = None,
    batch_size: int = 2000,
    latest_version: Callable[[str], Optional[int]] = lambda name: None,
    on_file: Callable[[Path, int], None] = lambda path, index: None,
    on_records: Callable[[int], None] = lambda n: None,
) -> IngestResult:
    files = expand_paths(paths)
    forced = get_reader(format) if format else None
    if playbook_ref:
        parse_playbook_ref(playbook_ref)  # fail early on a malformed flag
    result = IngestResult(files=len(files))
    for index, path in enumerate(files):
        on_file(path, index)
        sha = file_sha256(path)
        source = {"sha256": sha, "uri": str(path)}
        writer = _Writer(con, source, result, batch_size, latest_version)
        reader = forced
        red = Redactions()
        before = (result.records, result.added, result.duplicates, result.rejected)
        errors_before = len(result.file_errors)
        try:
            for record in read_records(path, red):
                result.records += 1
                on_records(1)
                if record.error:
                    writer.add_reject(record.location, record.line, reader.name if reader else None, record.error, record.raw)
                    continue
                if reader is None:
                    reader = detect(record.value, str(path))
                try:
                    run = reader.to_run(record.value, ctx)
                except RecordError as e:
                    writer.add_reject(record.location, record.line, reader.name, str(e), record.text.encode()[:65536])
                    continue
                writer.add_run(record, run, playbook_ref)
        except UnknownFormat as e:
            result.file_errors.append(str(e))
            writer.add_reject("file", None, None, str(e).split(": ", 1)[-1], b"")
        except (OSError, RecursionError) as e:
            msg = f"{path}: cannot read ({e.__class__.__name__}: {e})"
            result.file_errors.append(msg)
            writer.add_reject("file", None, None, msg, b"")
        writer.flush()
        result.redactions.update(red.counts)
        if reader is None and len(result.file_errors) == errors_before and result.rejected == before[3]:
            result.file_errors.append(f"{path}: holds no records")
        fmt = reader.name if reader else "unknown"
        result.formats[fmt] += 1
        _record_source(con, source, path, fmt, reader.version if reader else "-", result, before)
    return result


def _record_source(con, source: dict, path: Path, fmt: str, version: str, result: IngestResult, before) -> None:
    records, added, dups, rejected = (a - b for a, b in zip((result.records, result.added, result.duplicates, result.rejected), before))
    con.execute(
        """INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())
           ON CONFLICT DO UPDATE SET uri = excluded.uri, records = excluded.records, added = sources.added + excluded.added,
           duplicates = excluded.duplicates, rejected = excluded.rejected, ingested_at = excluded.ingested_at""",
        [source["sha256"], source["uri"], fmt, version, path.stat().st_size, records, added, dups, rejected],
    )
