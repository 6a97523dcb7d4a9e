"""The poisoning guard: a lesson is exported only when independent, clean runs support it.

Lessons whose evidence relies on runs with flagged steps (injected instructions, see
stores/injection.py), or that too few independent runs support (different tasks, or different
sources when runs have no task id), are quarantined: kept, listed with the reason, never exported,
until more evidence arrives or someone approves them by hand.
"""

from __future__ import annotations

import re
from collections import defaultdict

from memkit.model import Operation, Playbook


_KEYS = {"task": "coalesce('task:' || task_id, 'source:' || source_uri)", "source": "'source:' || source_uri"}
_WHAT = {"task": "task(s) or source(s)", "source": "source(s)"}
_WHAT_MANY = {"task": "tasks or sources", "source": "sources"}


def _run_facts(con, run_ids: set[str], by: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Each run's independence key (`by` task: its task id, else its source; `by` source: its source
    file, for banks fed files whose task ids nobody vouches for) and the detectors that flagged it."""
    if not run_ids:
        return {}, {}
    ids = sorted(run_ids)
    keys = dict(con.execute(f"SELECT id, {_KEYS[by]} FROM trajectories WHERE list_contains(?, id)", [ids]).fetchall())
    flags: dict[str, list[str]] = defaultdict(list)
    for run_id, detector in con.execute(
            "SELECT DISTINCT trajectory_id, detector FROM step_flags WHERE list_contains(?, trajectory_id) ORDER BY 1, 2",
            [ids]).fetchall():
        flags[run_id].append(detector)
    return keys, flags


def guard(con, playbook: Playbook, min_independent: int, by: str = "task") -> list[Operation]:
    """Quarantine active items without enough clean, independent support; release quarantined ones
    that now have it. Items approved by hand are left alone. Returns the operations."""
    candidates = [i for i in playbook.items if i.status in ("active", "quarantined") and not i.provenance.approved]
    keys, flags = _run_facts(con, {r for i in candidates for r in i.provenance.evidence}, by)
    what = _WHAT[by]
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
                                     reason=f"guard: now supported by clean runs from {independent} {_WHAT_MANY[by]}"))
            continue
        if flagged:
            kinds = sorted({d for r in flagged for d in flags[r]})
            reason = (f"guard: evidence relies on flagged runs: {len(flagged)} of {len(evidence)} carry injected "
                      f"instructions ({', '.join(kinds)}); clean runs from {independent} {what}, {min_independent} needed")
        else:
            reason = f"guard: needs independent support: {len(evidence)} run(s) from {independent} {what}, {min_independent} needed"
        if item.status != "quarantined" or item.status_reason != reason:
            changed_status = item.status != "quarantined"
            item.status, item.status_reason = "quarantined", reason
            if changed_status:
                ops.append(Operation(op="QUARANTINE", item_id=item.id, reason=reason))
    return ops


# ---------------------------------------------------------------- consistency (A-MemGuard's consensus idea)

_DO = re.compile(r"\b(always|must|make sure|be sure|do call|use|call|prefer|goes with success|skipping \S+ goes with failure)\b", re.I)
_DONT = re.compile(r"\b(never|avoid|don'?t|do not|must not|only when|last resort|goes with failure|instead of)\b", re.I)


def polarity(text: str) -> int:
    """+1 for a lesson that tells the agent to do something, -1 for one that tells it not to, 0 unclear."""
    if text.lower().startswith("skipping "):
        return 1
    advice = text.split(". ")[0] + ". " + text.split(". ")[-1]  # the lead and the closing advice
    if _DONT.search(advice):
        return -1  # a negation outweighs the verb it negates ("never call X")
    return 1 if _DO.search(advice) else 0


def _subjects(item) -> set[str]:
    return {t for t in item.tags if t.startswith("tool:")}


def contradictions(playbook: Playbook) -> list[tuple[str, str, str]]:
    """Pairs of live items whose advice points opposite ways: (a, b, why). First those an LLM
    curator declared (`provenance.contradicts`, when a model is configured), then the lexical,
    cheap check on items about the same tool: "call X" against "never call X", and the heuristic
    reflector's success/failure contrasts for one tool."""
    live = [i for i in playbook.items if i.status in ("active", "quarantined")]
    ids = {i.id for i in live}
    out = [(a.id, b, "the LLM curator judged them opposite") for a in live for b in a.provenance.contradicts or ()
           if b in ids]
    judged = {frozenset(pair[:2]) for pair in out}
    for n, a in enumerate(live):
        for b in live[n + 1:]:
            shared = _subjects(a) & _subjects(b)
            if not shared or frozenset((a.id, b.id)) in judged:
                continue
            keys = (a.provenance.key or "", b.provenance.key or "")
            direct = {k.rsplit(":", 1)[0] for k in keys if k.startswith("act:")}
            if len(direct) == 1 and all(k.startswith("act:") for k in keys) and keys[0] != keys[1]:
                out.append((a.id, b.id, f"opposite outcomes for {', '.join(sorted(shared))}"))
            elif a.section == b.section and polarity(a.text) * polarity(b.text) == -1:
                out.append((a.id, b.id, f"opposite advice on {', '.join(sorted(shared))}"))
    return out


def _proven(item, min_evidence: int) -> bool:
    u = item.utility
    return u.exposures >= min_evidence and u.lower is not None and u.lower > 0


def _strength(item) -> int:
    return max(item.utility.exposures, len(item.provenance.evidence))


def check_consistency(playbook: Playbook, added: set[str], min_evidence: int) -> list[Operation]:
    """A new item that contradicts a proven one is quarantined unless its evidence is stronger than the
    proven item's. Other contradictions are listed by `memkit playbook check`."""
    by_id = {i.id: i for i in playbook.items}
    ops = []
    for a_id, b_id, why in contradictions(playbook):
        for new_id, old_id in ((a_id, b_id), (b_id, a_id)):
            new, old = by_id[new_id], by_id[old_id]
            if new_id not in added or old_id in added or new.provenance.approved or new.status != "active":
                continue
            if _proven(old, min_evidence) and _strength(new) <= _strength(old):
                new.status = "quarantined"  # "consistency:" reasons are not released by guard(): a person decides
                new.status_reason = (f"consistency: contradicts proven {old_id} ({why}); it has {_strength(new)} "
                                     f"runs of evidence, {old_id} {_strength(old)}")
                ops.append(Operation(op="QUARANTINE", item_id=new_id, reason=new.status_reason))
    return ops
