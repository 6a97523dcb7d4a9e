"""Scoring: utility per item recomputed from the exposures event table and run outcomes,
and pruning of items that the evidence says make runs worse."""

from __future__ import annotations

import math
from collections import defaultdict
from statistics import NormalDist

import duckdb
import pyarrow as pa

from memkit.config import ScoringConfig
from memkit.model import CITATION, Operation, Playbook, Utility
from memkit.stores.playbook_store import version_content

_KNOWN = "('success', 'failure', 'partial')"


def record_exposures(con: duckdb.DuckDBPyConnection, name: str) -> int:
    """Append an exposure for every (run, item) of the playbook version a run carried; return how many."""
    runs = con.execute(
        """SELECT t.id, t.playbook_version FROM trajectories t
           WHERE t.playbook = ? AND t.playbook_version IS NOT NULL
             AND t.playbook_version IN (SELECT version FROM playbook_versions WHERE playbook = ?)
             AND NOT EXISTS (SELECT 1 FROM exposures e WHERE e.trajectory_id = t.id AND e.playbook = t.playbook)""",
        [name, name],
    ).fetchall()
    if not runs:
        return 0
    by_version: dict[int, list[str]] = defaultdict(list)
    for run_id, version in runs:
        by_version[version].append(run_id)
    con.register("_exposed", pa.table({"id": [r for r, _ in runs]}))
    cited: dict[str, set[str]] = defaultdict(set)
    for run_id, text in con.execute(
        """SELECT s.trajectory_id, s.text FROM steps s JOIN _exposed x ON x.id = s.trajectory_id
           WHERE s.role = 'assistant' AND s.text LIKE '%[%-%]%'"""
    ).fetchall():
        cited[run_id].update(CITATION.findall(text))
    con.unregister("_exposed")
    rows = {"trajectory_id": [], "playbook": [], "version": [], "item_id": [], "cited": []}
    for version, run_ids in by_version.items():
        items = [i.id for i in version_content(con, name, version).active()]
        for run_id in run_ids:
            for item_id in items:
                for k, v in zip(rows, (run_id, name, version, item_id, item_id in cited[run_id])):
                    rows[k].append(v)
    if rows["item_id"]:
        con.register("_rows", pa.table(rows))
        con.execute("INSERT INTO exposures BY NAME SELECT *, now() AS recorded_at FROM _rows ON CONFLICT DO NOTHING")
        con.unregister("_rows")
    return len(rows["item_id"])


def wilson(successes: float, n: float, confidence: float) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def base_rate(con, name: str) -> float | None:
    return con.execute(
        f"""SELECT avg((outcome = 'success')::INT) FROM trajectories WHERE outcome IN {_KNOWN}
            AND id IN (SELECT trajectory_id FROM exposures WHERE playbook = ?)""", [name]
    ).fetchall()[0][0]


def score(con, playbook: Playbook, cfg: ScoringConfig) -> list[Operation]:
    """Recompute every item's utility in place; retire active items the evidence says hurt. Return the operations."""
    stats = {
        r[0]: r[1:]
        for r in con.execute(
            f"""SELECT e.item_id, count(*), sum(e.cited::INT), sum((t.outcome = 'success')::INT),
                       sum((e.cited AND t.outcome = 'success')::INT)
                FROM exposures e JOIN trajectories t ON t.id = e.trajectory_id
                WHERE e.playbook = ? AND t.outcome IN {_KNOWN} GROUP BY 1""", [playbook.name]
        ).fetchall()
    }
    base = base_rate(con, playbook.name)
    ops: list[Operation] = []
    rescored = 0
    for item in playbook.items:
        n, c, s, cs = stats.get(item.id, (0, 0, 0, 0))
        if n == 0:
            new = Utility()
        else:
            # Cited exposures count cite_weight times: an item the agent used says more than one it only saw.
            w = cfg.cite_weight
            n_eff, s_eff = (n - c) + c * w, (s - cs) + cs * w
            q = s_eff / n_eff
            lower, upper = wilson(s_eff, n_eff, cfg.confidence)
            new = Utility(exposures=n, citations=c, successes=s, success_rate=_r(s / n), base_rate=_r(base),
                          advantage=_r(q - base) if base is not None else None, q=_r(q), lower=_r(lower), upper=_r(upper))
        if new != item.utility:
            item.utility = new
            rescored += 1
        if (item.status == "active" and base is not None and n >= cfg.min_evidence
                and new.upper is not None and new.upper < base):
            item.status = "retired"
            item.status_reason = (f"worse than the base rate: q={new.q:.2f} (upper bound {new.upper:.2f})"
                                  f" < {base:.2f} over {n} exposures, {c} cited")
            ops.append(Operation(op="RETIRE", item_id=item.id, reason=item.status_reason))
    if rescored:
        ops.insert(0, Operation(op="SCORE", item_id="*", reason=f"{rescored} items rescored"))
    return ops


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
