"""Outcomes from an evaluation report (`memkit ingest --outcomes FILE`), for runs whose trace does
not say whether they succeeded (SWE-agent, mini-swe-agent, ...), or to override what it says.

The file maps ids to verdicts: a JSON object (`{"id": true | 0.5 | "resolved" | {"resolved": true}}`),
a list of rows or JSON Lines (`{"instance_id": ..., "resolved": ...}`), a CSV with a header (an id
column and a value column), or a SWE-bench report (`{"resolved_ids": [...], "unresolved_ids": [...]}`).
A run takes the verdict of the first of its external id, task id and file name (without
`.traj`/`.json`) that the file names. The verdict sets the run's outcome and reward and is kept as
a score (`outcomes:FILE`, source `outcomes-file`); the run id stays the hash of the trace, so
giving a report on a second ingest updates the runs already stored.

No verdict is lost: each is appended to `outcome_events` (after the run's own verdict, source
`trace`, the first time a file overrides it), which scoring reads; giving the same file again
appends nothing, and `trajectories` holds the latest verdict for every other reader.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import duckdb
import orjson
import pyarrow as pa

from memkit.errors import MemkitError
from memkit.model import Run
from memkit.stores.formats import ReadContext, RecordError
from memkit.stores.formats.fields import outcome_from

ID_FIELDS = ("run_id", "id", "instance_id", "task_id", "external_id", "sample_id")
VALUE_FIELDS = ("resolved", "success", "passed", "outcome", "reward", "score")
_YES_NO = {"yes": True, "y": True, "no": False, "n": False}
# SWE-bench's run report (swebench.harness.reporting): every id list and what it means.
SWE_BENCH_FAILURES = ("unresolved_ids", "error_ids", "empty_patch_ids")
SWE_BENCH_KEYS = ("resolved_ids",) + SWE_BENCH_FAILURES
_NUMERIC = {"success": 1.0, "failure": 0.0}


class BadOutcomesFile(MemkitError):
    "The --outcomes file is not a map of run or instance ids to outcomes."


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str
    reward: Optional[float]
    given: str  # the value as the file gave it


def verdict_of(value: Any, ctx: ReadContext) -> Verdict:
    """A success flag, a reward, an outcome word, or an object holding one of them (RecordError if not)."""
    given = value if isinstance(value, str) else orjson.dumps(value).decode()
    if isinstance(value, dict):
        reward = _number(value.get("reward", value.get("score")))
        for key in VALUE_FIELDS:
            if value.get(key) is not None and key not in ("reward", "score"):
                inner = verdict_of(value[key], ctx)
                r = outcome_from(ctx, reward=reward)[1] if reward is not None else inner.reward
                return Verdict(inner.outcome, r, given)
        if reward is not None:
            return Verdict(*outcome_from(ctx, reward=reward), given)
        raise RecordError(f"{given[:80]} has none of {', '.join(VALUE_FIELDS)}")
    if isinstance(value, bool):
        return Verdict(*outcome_from(ctx, success=value), given)
    if isinstance(value, (int, float)):
        return Verdict(*outcome_from(ctx, reward=value), given)
    if isinstance(value, str):
        text = value.strip()
        try:
            return Verdict(*outcome_from(ctx, reward=float(text)), given)
        except ValueError:
            pass
        if text.lower() in _YES_NO:
            return Verdict(*outcome_from(ctx, success=_YES_NO[text.lower()]), given)
        try:
            return Verdict(*outcome_from(ctx, outcome=text), given)
        except RecordError:
            pass
    shown = repr(value[:80]) if isinstance(value, str) else given[:80]
    raise RecordError(f"{shown} is not a success flag, reward or outcome word")


def _number(value: Any) -> Any:
    """A reward from a CSV cell is text; a number in any other shape stays as it is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise RecordError(f"reward {value!r} is not a number") from None
    return value


def _id_of(row: dict) -> Any:
    return next((row[k] for k in ID_FIELDS if row.get(k) not in (None, "")), None)


def _value_of(row: dict) -> Any:
    present = {k: row[k] for k in VALUE_FIELDS if row.get(k) not in (None, "")}
    if not present:
        return None
    if len(present) == 1 and not present.keys() & {"reward", "score"}:
        return next(iter(present.values()))
    return present  # a reward is read as a number, also from a CSV cell


def _rows(rows: list, ctx: ReadContext, where: Callable[[int], str]) -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RecordError(f"{where(i)}: expected an object with an id and an outcome, not {type(row).__name__}")
        key = _id_of(row)
        if key is None:
            raise RecordError(f"{where(i)}: no id (one of {', '.join(ID_FIELDS)})")
        value = _value_of(row)
        if value is None:
            raise RecordError(f"{where(i)}: no outcome (one of {', '.join(VALUE_FIELDS)})")
        try:
            out[str(key)] = verdict_of(value, ctx)
        except RecordError as e:
            raise RecordError(f"{where(i)}: {e}") from None
    return out


def _mapping(data: Any, ctx: ReadContext) -> dict[str, Verdict]:
    if isinstance(data, list):
        return _rows(data, ctx, lambda i: f"row {i + 1}")
    if not isinstance(data, dict):
        raise RecordError("expected an object of id: outcome, a list of rows or a SWE-bench report, "
                          f"not {type(data).__name__}")
    if any(k in data for k in SWE_BENCH_KEYS):
        out: dict[str, Verdict] = {}
        for key in SWE_BENCH_FAILURES + ("resolved_ids",):  # resolved last: it wins over the others
            ids = data.get(key, [])
            if not isinstance(ids, list):
                raise RecordError(f"{key} must be a list of ids, not {type(ids).__name__}")
            resolved = key == "resolved_ids"
            for i in ids:
                out[str(i)] = Verdict("success" if resolved else "failure", None, key[:-4])
        return out
    out = {}
    for key, value in data.items():
        try:
            out[str(key)] = verdict_of(value, ctx)
        except RecordError as e:
            raise RecordError(f"entry {key!r}: {e}") from None
    return out


def _csv(text: str, ctx: ReadContext, delimiter: str = ",") -> dict[str, Verdict]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not any(h in ID_FIELDS for h in header):
        raise RecordError(f"the header has no id column (one of {', '.join(ID_FIELDS)})")
    if not any(h in VALUE_FIELDS for h in header):
        raise RecordError(f"the header has no outcome column (one of {', '.join(VALUE_FIELDS)})")
    rows = [{(k or "").strip().lower(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
            for row in reader]
    return _rows(rows, ctx, lambda i: f"line {i + 2}")


def load_outcomes(path: str | Path, ctx: ReadContext) -> "OutcomeMap":
    """Read an outcomes file; BadOutcomesFile (one line) when it cannot be used."""
    path = Path(path)
    where = f"--outcomes {path}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadOutcomesFile(f"{where}: no such file") from None
    except OSError as e:
        raise BadOutcomesFile(f"{where}: cannot read ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadOutcomesFile(f"{where}: not valid UTF-8 (byte {e.start})") from None
    try:
        if path.suffix.lower() in (".csv", ".tsv"):
            entries = _csv(text, ctx, "\t" if path.suffix.lower() == ".tsv" else ",")
        else:
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError as e:
                try:  # JSON Lines
                    parsed = [orjson.loads(line) for line in text.splitlines() if line.strip()]
                except orjson.JSONDecodeError:
                    raise RecordError(f"not valid JSON ({str(e).split(':', 1)[0]}); "
                                      "a CSV file needs a .csv name") from None
            entries = _mapping(parsed, ctx)
    except RecordError as e:
        raise BadOutcomesFile(f"{where}: {e}") from None
    if not entries:
        raise BadOutcomesFile(f"{where}: holds no outcomes")
    return OutcomeMap(entries, path.name)


_OUT_SCHEMA = pa.schema([("id", pa.string()), ("outcome", pa.string()), ("reward", pa.float64()),
                         ("trace_outcome", pa.string()), ("trace_reward", pa.float64()), ("detail", pa.string())])
_SCORE_SCHEMA = pa.schema([("trajectory_id", pa.string()), ("scorer", pa.string()), ("key", pa.string()),
                           ("value_num", pa.float64()), ("value_str", pa.string()), ("explanation", pa.string()),
                           ("source", pa.string())])


class OutcomeMap:
    """The verdicts of one outcomes file, and the runs of this ingest they were applied to."""

    def __init__(self, entries: dict[str, Verdict], name: str):
        self.entries = entries
        self.name = name
        self.matched = 0
        self._pending: list[tuple[str, str, Verdict, Verdict]] = []  # run id, key, verdict, the trace's own

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, run: Run, path: Path) -> Optional[tuple[str, Verdict]]:
        stem = path.name
        for suffix in (".json", ".traj", ".eval"):
            stem = stem[: -len(suffix)] if stem.endswith(suffix) else stem
        for key in (run.external_id, run.task_id, stem):
            if key is not None and key in self.entries:
                return key, self.entries[key]
        return None

    def apply(self, run_id: str, run: Run, path: Path) -> bool:
        """Give the run its verdict, if the file has one; it is written by the next `job()`."""
        found = self.lookup(run, path)
        if found is None:
            return False
        key, verdict = found
        own = Verdict(run.outcome, run.reward, "trace")
        run.outcome, run.reward = verdict.outcome, verdict.reward
        self._pending.append((run_id, key, verdict, own))
        self.matched += 1
        return True

    def job(self) -> Optional[Callable[[duckdb.DuckDBPyConnection], None]]:
        """A writer job that sets the outcome of the runs matched since the last job (new or already
        stored), keeps each verdict as a score, and appends it to the run's outcome events."""
        if not self._pending:
            return None
        pending, self._pending = self._pending, []
        source = f"outcomes:{self.name}"
        outcomes = pa.Table.from_pylist([{
            "id": r, "outcome": v.outcome, "reward": v.reward, "trace_outcome": own.outcome,
            "trace_reward": own.reward, "detail": f"{key}: {v.given}"[:1000],
        } for r, key, v, own in pending], schema=_OUT_SCHEMA)
        scores = pa.Table.from_pylist([{
            "trajectory_id": r, "scorer": source, "key": "",
            "value_num": v.reward if v.reward is not None else _NUMERIC.get(v.outcome),
            "value_str": v.outcome, "explanation": f"{key}: {v.given}"[:1000], "source": "outcomes-file",
        } for r, key, v, _ in pending], schema=_SCORE_SCHEMA)

        return partial(_write_outcomes, source, outcomes, scores)  # picklable: see stores/ingest.py


def _write_outcomes(source: str, outcomes: pa.Table, scores: pa.Table, cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("BEGIN")
    try:
        cur.register("_outcomes", outcomes)
        append_outcome_events(cur, "_outcomes", source)
        cur.execute("UPDATE trajectories SET outcome = o.outcome, reward = o.reward "
                    "FROM _outcomes o WHERE trajectories.id = o.id")
        cur.unregister("_outcomes")
        cur.register("_outcome_scores", scores)
        cur.execute("""INSERT INTO scores BY NAME SELECT * FROM _outcome_scores
                       ON CONFLICT DO UPDATE SET value_num = excluded.value_num, value_str = excluded.value_str,
                       explanation = excluded.explanation, source = excluded.source""")
        cur.unregister("_outcome_scores")
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def append_outcome_events(cur: duckdb.DuckDBPyConnection, view: str, source: str) -> None:
    """Append the verdicts of `view` (id, outcome, reward, trace_outcome, trace_reward, detail) to the
    outcome events of the stored runs: first the run's own verdict when it has no event yet, then the
    new one unless it is what the run's latest event already says (so giving a file again adds nothing)."""
    latest = """(SELECT trajectory_id, source, outcome, reward FROM outcome_events
                 QUALIFY row_number() OVER (PARTITION BY trajectory_id ORDER BY seq DESC) = 1)"""
    cur.execute(f"""
        INSERT INTO outcome_events
        SELECT o.id, (SELECT coalesce(max(seq), 0) FROM outcome_events) + row_number() OVER (ORDER BY o.id), 'trace',
               o.trace_outcome, o.trace_reward, NULL, now()
        FROM {view} o JOIN trajectories t ON t.id = o.id
        WHERE NOT EXISTS (SELECT 1 FROM outcome_events e WHERE e.trajectory_id = o.id)""")
    cur.execute(f"""
        INSERT INTO outcome_events
        SELECT o.id, (SELECT coalesce(max(seq), 0) FROM outcome_events) + row_number() OVER (ORDER BY o.id), ?,
               o.outcome, o.reward, o.detail, now()
        FROM {view} o JOIN trajectories t ON t.id = o.id LEFT JOIN {latest} l ON l.trajectory_id = o.id
        WHERE l.trajectory_id IS NULL OR l.source <> ? OR l.outcome <> o.outcome
              OR l.reward IS DISTINCT FROM o.reward""", [source, source])
