"""The poisoning guard: a lesson is exported only when independent, clean runs support it.

Lessons whose evidence relies on runs with flagged steps (injected instructions, see
stores/injection.py), or that too few independent runs support (different tasks, or different
sources when runs have no task id), are quarantined: kept, listed with the reason, never exported,
until more evidence arrives or someone approves them by hand.
"""

from __future__ import annotations

from collections import defaultdict

from memkit.model import Operation, Playbook


def _run_facts(con, run_ids: set[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Each run's independence key (task id, else source) and the detectors that flagged it."""
    if not run_ids:
        return {}, {}
    ids = sorted(run_ids)
    keys = dict(con.execute(
        "SELECT id, coalesce('task:' || task_id, 'source:' || source_uri) FROM trajectories WHERE list_contains(?, id)",
        [ids]).fetchall())
    flags: dict[str, list[str]] = defaultdict(list)
    for run_id, detector in con.execute(
            "SELECT DISTINCT trajectory_id, detector FROM step_flags WHERE list_contains(?, trajectory_id) ORDER BY 1, 2",
            [ids]).fetchall():
        flags[run_id].append(detector)
    return keys, flags


def guard(con, playbook: Playbook, min_independent: int) -> list[Operation]:
    """Quarantine active items without enough clean, independent support; release quarantined ones
    that now have it. Items approved by hand are left alone. Returns the operations."""
    candidates = [i for i in playbook.items if i.status in ("active", "quarantined") and not i.provenance.approved]
    keys, flags = _run_facts(con, {r for i in candidates for r in i.provenance.evidence})
    ops = []
    for item in candidates:
        evidence = [r for r in item.provenance.evidence if r in keys]  # purged runs no longer count
        if not evidence:
            continue  # written by a person, or its runs were purged (purge retires those): nothing to judge
        flagged = [r for r in evidence if r in flags]
        independent = len({keys[r] for r in evidence if r not in flags})
        if independent >= min_independent:
            if item.status == "quarantined" and (item.status_reason or "").startswith("guard:"):
                item.status, item.status_reason = "active", None
                ops.append(Operation(op="RESTORE", item_id=item.id,
                                     reason=f"guard: now supported by {independent} independent clean runs"))
            continue
        if flagged:
            kinds = sorted({d for r in flagged for d in flags[r]})
            reason = (f"guard: evidence relies on flagged runs: {len(flagged)} of {len(evidence)} carry injected "
                      f"instructions ({', '.join(kinds)}); {independent} independent clean run(s), {min_independent} needed")
        else:
            reason = f"guard: needs independent support: {independent} independent run(s) (task or source), {min_independent} needed"
        if item.status != "quarantined" or item.status_reason != reason:
            changed_status = item.status != "quarantined"
            item.status, item.status_reason = "quarantined", reason
            if changed_status:
                ops.append(Operation(op="QUARANTINE", item_id=item.id, reason=reason))
    return ops
