"""Purge: remove runs and everything derived from them, and retire the lessons they alone supported.

Selectors combine (a run must match every one given): `source` (a file's uri as ingested, a glob
over uris, a sha256 prefix, or a file on disk, matched by content), `run` (ids or unique id
prefixes), `before` (runs that started before a date; runs without a start time by when they were
ingested). Playbooks are changed first, through the same versioned, atomic, git-committed path as
hand curation, then the rows go in one transaction: run twice after an interruption, a purge
finishes what it started.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Iterable, Optional

import pyarrow as pa

from memkit.canonical import file_sha256
from memkit.errors import MemkitError
from memkit.model import Operation, Playbook

REASON = "evidence purged"
# Tables whose rows belong to one run, by the column that names it.
PER_RUN = [("steps", "trajectory_id"), ("tool_calls", "trajectory_id"), ("tool_results", "trajectory_id"),
           ("scores", "trajectory_id"), ("exposures", "trajectory_id"), ("distilled_runs", "trajectory_id"),
           ("step_flags", "trajectory_id"), ("item_tags", "trajectory_id"), ("truncations", "trajectory_id")]


class PurgeError(MemkitError):
    "A purge names no runs, or names them in a way that matches nothing."


@dataclass
class PurgeResult:
    runs: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # uris of the sources removed whole
    deleted: dict[str, int] = field(default_factory=dict)  # table -> rows deleted
    playbooks: list[dict] = field(default_factory=list)  # name, version, retired, trimmed, git_commit
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {"runs": len(self.runs), "run_ids": self.runs, "sources": self.sources, "deleted": self.deleted,
                "playbooks": self.playbooks, "dry_run": self.dry_run}


def parse_date(value: str | date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    try:
        return datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        raise PurgeError(f"--before {value!r} is not a date (YYYY-MM-DD, or an ISO date and time)") from None


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, (str, Path)) else list(value)


def match_sources(con, patterns: Iterable[str | Path]) -> dict[str, str]:
    """sha256 -> uri of the sources each pattern names; a pattern that names none is an error."""
    rows = con.execute("SELECT sha256, uri FROM sources ORDER BY uri").fetchall()
    found: dict[str, str] = {}
    for pattern in patterns:
        text = str(pattern)
        hits = {sha: uri for sha, uri in rows
                if uri == text or fnmatch.fnmatchcase(uri, text) or (len(text) >= 8 and sha.startswith(text.lower()))}
        path = Path(text)
        if path.is_file():
            sha = file_sha256(path)
            hits.update({s: u for s, u in rows if s == sha})
            resolved = path.resolve()
            hits.update({s: u for s, u in rows if Path(u).resolve() == resolved})
        if not hits:
            raise PurgeError(f"no ingested source matches {text!r} (`memkit stats` lists the sources)")
        found.update(hits)
    return found


def match_runs(con, prefixes: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for prefix in prefixes:
        ids = [r[0] for r in con.execute("SELECT id FROM trajectories WHERE starts_with(id, ?) LIMIT 2",
                                         [prefix.strip()]).fetchall()] if prefix.strip() else []
        if not ids:
            raise PurgeError(f"no run with id {prefix!r}")
        if len(ids) > 1:
            raise PurgeError(f"run id prefix {prefix!r} is ambiguous; give more characters")
        out.add(ids[0])
    return out


def select(con, source=None, run=None, before=None) -> tuple[set[str], dict[str, str]]:
    """The run ids the selectors name, and the sources named by `source` (sha256 -> uri)."""
    sources, runs = _as_list(source), _as_list(run)
    if not (sources or runs or before is not None):
        raise PurgeError("say what to purge: --source FILE, --run ID or --before DATE")
    where, params = [], []
    named_sources = match_sources(con, sources) if sources else {}
    if sources:
        where.append("list_contains(?, source_sha256)")
        params.append(sorted(named_sources))
    if runs:
        where.append("list_contains(?, id)")
        params.append(sorted(match_runs(con, runs)))
    if before is not None:
        where.append("coalesce(try_cast(started_at AS TIMESTAMP), ingested_at) < ?")
        params.append(parse_date(before))
    ids = {r[0] for r in con.execute(f"SELECT id FROM trajectories WHERE {' AND '.join(where)}", params).fetchall()}
    return ids, named_sources


def retire_purged(playbook: Playbook, purged: set[str]) -> list[Operation]:
    """Retire items whose evidence was only purged runs; drop purged ids from the others' evidence."""
    ops = []
    for item in playbook.items:
        evidence = item.provenance.evidence
        gone = [e for e in evidence if e in purged]
        if not gone:
            continue
        item.provenance.evidence = [e for e in evidence if e not in purged]
        if not item.provenance.evidence and item.status != "retired":
            item.status = "retired"
            item.status_reason = REASON
            ops.append(Operation(op="RETIRE", item_id=item.id, reason=REASON))
        else:
            ops.append(Operation(op="UPDATE", item_id=item.id, reason=f"{REASON}: {len(gone)} of {len(evidence)} runs"))
    return ops


def purge(bank, source=None, run=None, before=None, *, dry_run: bool = False) -> PurgeResult:
    """Remove the selected runs and what was derived from them; see the module docstring."""
    con = bank.con
    ids, named_sources = select(con, source, run, before)
    result = PurgeResult(runs=sorted(ids), dry_run=dry_run)
    # Sources that go whole: the ones named (with every run they hold selected), and any left without runs.
    touched = {r[0] for r in con.execute("SELECT DISTINCT source_sha256 FROM trajectories WHERE list_contains(?, id)",
                                         [result.runs]).fetchall()}
    candidates = touched | set(named_sources)
    remaining = {r[0] for r in con.execute(
        """SELECT DISTINCT source_sha256 FROM trajectories WHERE list_contains(?, source_sha256)
           AND NOT list_contains(?, id)""", [sorted(candidates), result.runs]).fetchall()}
    whole = sorted(candidates - remaining)
    uris = dict(con.execute("SELECT sha256, uri FROM sources WHERE list_contains(?, sha256)", [whole]).fetchall())
    result.sources = sorted(uris.values())
    if not ids and not whole:
        return result

    _purge_playbooks(bank, ids, result, dry_run)
    if dry_run:
        result.deleted = _count(con, ids, whole)
        return result
    con.register("_purged", pa.table({"id": pa.array(result.runs, pa.string())}))
    con.register("_gone_sources", pa.table({"sha256": pa.array(whole, pa.string())}))
    con.execute("BEGIN")
    try:
        deleted = {}
        for table, column in _per_run(con):
            deleted[table] = _delete(con, table, f"{column} IN (SELECT id FROM _purged)")
        if _tables(con) >= {"reflections"}:  # an LLM reflection on several runs is derived from each of them
            deleted["reflections"] = _delete(con, "reflections", """EXISTS (SELECT 1 FROM _purged
                WHERE list_contains(CAST(reflections.trajectory_ids AS VARCHAR[]), _purged.id))""")
        deleted["redactions"] = _delete(con, "redactions", """source_sha256 IN (SELECT sha256 FROM _gone_sources)
            OR EXISTS (SELECT 1 FROM trajectories t WHERE t.id IN (SELECT id FROM _purged)
                       AND t.source_sha256 = redactions.source_sha256 AND t.record_location = redactions.location)""")
        deleted["rejects"] = _delete(con, "rejects", "source_sha256 IN (SELECT sha256 FROM _gone_sources)")
        deleted["insights"] = _purge_insights(con, ids)
        deleted["trajectories"] = _delete(con, "trajectories", "id IN (SELECT id FROM _purged)")
        deleted["sources"] = _delete(con, "sources", "sha256 IN (SELECT sha256 FROM _gone_sources)")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("_purged")
        con.unregister("_gone_sources")
    result.deleted = {k: v for k, v in deleted.items() if v}
    return result


def _tables(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def _per_run(con) -> list[tuple[str, str]]:
    """PER_RUN, less the tables a bank does not have (yet)."""
    have = _tables(con)
    return [(t, c) for t, c in PER_RUN if t in have]


def _delete(con, table: str, where: str) -> int:
    return con.execute(f"DELETE FROM {table} WHERE {where}").fetchall()[0][0]


def _count(con, ids: set[str], whole: list[str]) -> dict[str, int]:
    runs = sorted(ids)
    out = {table: con.execute(f"SELECT count(*) FROM {table} WHERE list_contains(?, {column})", [runs]).fetchall()[0][0]
           for table, column in _per_run(con)}
    out["rejects"] = con.execute("SELECT count(*) FROM rejects WHERE list_contains(?, source_sha256)", [whole]).fetchall()[0][0]
    out["trajectories"], out["sources"] = len(ids), len(whole)
    return {k: v for k, v in out.items() if v}


def _purge_insights(con, ids: set[str]) -> int:
    """Candidate lessons drawn only from purged runs go; the others forget the purged ids."""
    rows = con.execute("SELECT rowid, evidence FROM insights").fetchall()
    import orjson

    gone, changed = [], []
    for rowid, evidence in rows:
        ev = orjson.loads(evidence) if evidence else []
        keep = [e for e in ev if e not in ids]
        if len(keep) == len(ev):
            continue
        (changed.append((rowid, orjson.dumps(keep).decode())) if keep else gone.append(rowid))
    for rowid, evidence in changed:
        con.execute("UPDATE insights SET evidence = ? WHERE rowid = ?", [evidence, rowid])
    if gone:
        con.execute("DELETE FROM insights WHERE list_contains(?, rowid)", [gone])
    return len(gone)


def _purge_playbooks(bank, ids: set[str], result: PurgeResult, dry_run: bool) -> None:
    from memkit.distill.pipeline import save_version, sync_file

    names = [r[0] for r in bank.con.execute("SELECT DISTINCT playbook FROM playbook_versions ORDER BY 1").fetchall()]
    for name in names:
        path = bank.playbook_path(name)
        if dry_run:
            pb, current, _ = sync_file(bank.con, path, name, dry_run=True)
            ops = retire_purged(pb, ids)
            version, commit = ((current or 0) + 1 if ops else None), None
        else:
            holder: list[list[Operation]] = []

            def change(pb: Playbook) -> list[Operation]:
                holder.append(retire_purged(pb, ids))
                return holder[-1]

            pb, commit = save_version(bank.con, path, name, change, bank.config.git_commit)
            ops = holder[-1] if holder else []
            version = pb.version if ops else None
        if ops:
            result.playbooks.append({
                "name": name, "version": version, "git_commit": commit,
                "retired": [o.item_id for o in ops if o.op == "RETIRE"],
                "trimmed": [o.item_id for o in ops if o.op == "UPDATE"]})
