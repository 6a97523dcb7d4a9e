"""The heuristic reflector: lessons mined from the store with SQL, no LLM.

Three miners, each stating its support (k of n runs):
- failure signatures: a tool and its error text with ids, dates and numbers masked, clustered
  across runs, with the failure rate of the runs that hit it and what recovered runs did next;
- preconditions: tools that successful runs called before a given tool (a sequence shared by
  the successes across task families), compared with failed runs;
- contrasts: tools whose use separates success from failure within tasks that had both outcomes.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict

import duckdb

from memkit.config import Config
from memkit.model import Insight

_MASKS = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"), "<DATE>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<ID>"),
    (re.compile(r"\b(?=[\w\-]*\d)(?=[\w\-]*[A-Za-z])[\w\-]+\b"), "<ID>"),
    (re.compile(r"\b\d+(?:\.\d+)?\b"), "<N>"),
    (re.compile(r"\s+"), " "),
]


def mask_error(text: str, limit: int = 160) -> str:
    """An error message with its instance details masked, so the same failure clusters across runs."""
    out = text.strip()
    for pattern, repl in _MASKS:
        out = pattern.sub(repl, out)
    return out[:limit]


def _pct(k: int, n: int) -> str:
    return f"{round(100 * k / n)}%" if n else "n/a"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def reflect(con: duckdb.DuckDBPyConnection, new_runs: set[str], cfg: Config) -> list[Insight]:
    """Every lesson the whole store supports that has at least one new run among its evidence."""
    n_runs = con.execute("SELECT count(*) FROM trajectories WHERE outcome IN ('success', 'failure', 'partial')").fetchall()[0][0]
    tags = [f"domain:{cfg.domain}"] if cfg.domain else []
    insights = failure_signatures(con, cfg, n_runs, tags) + preconditions(con, cfg, n_runs, tags) + contrasts(con, cfg, tags)
    return [i for i in insights if new_runs.intersection(i.evidence)]


def _flagged_runs(con) -> set[str]:
    """Runs with a step flagged as an injected instruction (stores/injection.py). Their outcomes may come
    from obeying the injection, so what they did is never offered as advice on the strength of them."""
    return {r for (r,) in con.execute("SELECT DISTINCT trajectory_id FROM step_flags").fetchall()}


def failure_signatures(con, cfg: Config, n_runs: int, tags: list[str]) -> list[Insight]:
    rows = con.execute(
        """SELECT r.trajectory_id, r.step_seq, coalesce(r.name, '?'), r.content, t.outcome
           FROM tool_results r JOIN trajectories t ON t.id = r.trajectory_id
           WHERE r.is_error ORDER BY r.trajectory_id, r.step_seq"""
    ).fetchall()
    clusters: dict[tuple[str, str], dict[str, tuple[int, str]]] = defaultdict(dict)
    for run_id, seq, tool, content, outcome in rows:
        sig = (tool, mask_error(content or ""))
        clusters[sig].setdefault(run_id, (seq, outcome))  # the first hit in each run
    # What each run did after a hit: the next tool it called.
    next_calls = {}
    if clusters:
        for run_id, seq, name in con.execute(
            """SELECT r.trajectory_id, r.step_seq, (SELECT c.name FROM tool_calls c WHERE c.trajectory_id = r.trajectory_id
                       AND c.step_seq > r.step_seq ORDER BY c.step_seq, c.idx LIMIT 1)
               FROM tool_results r WHERE r.is_error"""
        ).fetchall():
            next_calls[(run_id, seq)] = name
    flagged = _flagged_runs(con) if clusters else set()
    out = []
    for (tool, error), hits in clusters.items():
        if len(hits) < cfg.distill.min_support:
            continue
        known = [o for _, o in hits.values() if o in ("success", "failure", "partial")]
        failed = sum(o != "success" for o in known)
        recovered = [rid for rid, (_, o) in hits.items() if o == "success"]
        text = (f"`{tool}` can fail with \"{error}\": {len(hits)} runs hit this"
                f" and {_pct(failed, len(known))} of them failed.")
        # What recovered runs did next is advice: only runs without injected instructions give it.
        clean = [rid for rid in recovered if rid not in flagged]
        nexts = Counter(next_calls.get((rid, hits[rid][0])) for rid in clean)
        if nexts:
            step, k = nexts.most_common(1)[0]
            did = "called no other tool after it" if step is None else f"called `{step}` next"
            text += (f" The one run that still succeeded {did}." if len(clean) == 1
                     else f" Of the {len(clean)} that still succeeded, {k} {did}.")
        elif recovered:
            text += (f" The {len(recovered)} that still succeeded carried injected instructions;"
                     " what they did next is not advice.")
        else:
            text += " None of them recovered."
        text += f" Check what this error names before calling `{tool}`."
        out.append(Insight(
            key=f"sig:{tool}:{_short_hash(error)}", section="pitfalls", text=text,
            when_to_use=f"before calling `{tool}`",
            tags=[f"tool:{tool}", "error"] + tags,
            evidence=sorted(hits), support=f"{len(hits)} of {n_runs} runs",
        ))
    return out


def _first_calls(con) -> list[tuple[str, str, str, int]]:
    """(run, outcome, tool, position of its first call) for every tool a run called."""
    return con.execute(
        """SELECT c.trajectory_id, t.outcome, c.name, min(c.step_seq * 1000 + c.idx) AS pos
           FROM tool_calls c JOIN trajectories t ON t.id = c.trajectory_id
           WHERE t.outcome IN ('success', 'failure') GROUP BY ALL"""
    ).fetchall()


_ACTION_VERB = re.compile(
    r"^(update|book|cancel|create|delete|remove|send|transfer|write|submit|modify|set|add|post|put|patch|pay|refund"
    r"|exchange|return|edit|insert|apply|commit|push|deploy|execute|run)", re.I)


def _acting_tools(con) -> set[str]:
    """Tools that change something: ones that returned an error somewhere, or named with an action verb."""
    names = {r[0] for r in con.execute("SELECT DISTINCT name FROM tool_calls").fetchall()}
    failing = {r[0] for r in con.execute("SELECT DISTINCT name FROM tool_results WHERE is_error AND name IS NOT NULL").fetchall()}
    return {n for n in names if n in failing or _ACTION_VERB.match(n)}


def preconditions(con, cfg: Config, n_runs: int, tags: list[str]) -> list[Insight]:
    acting = _acting_tools(con)
    runs: dict[str, dict[str, int]] = defaultdict(dict)
    outcome: dict[str, str] = {}
    for run_id, o, tool, pos in _first_calls(con):
        runs[run_id][tool] = pos
        outcome[run_id] = o
    by_tool: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"success": [], "failure": []})
    for run_id, tools in runs.items():
        for tool in tools:
            by_tool[tool][outcome[run_id]].append(run_id)
    out = []
    for tool, groups in sorted(by_tool.items()):
        if tool not in acting:
            continue
        wins, losses = groups["success"], groups["failure"]
        if len(wins) < max(cfg.distill.min_support, 3):
            continue
        before = Counter(p for rid in wins for p, pos in runs[rid].items() if p != tool and pos < runs[rid][tool])
        needed = [p for p, k in before.most_common() if k / len(wins) >= cfg.distill.precondition_share]
        if not needed:
            continue
        needed.sort(key=lambda p: sum(runs[r][p] for r in wins if p in runs[r]) / before[p])
        parts = []
        for p in needed:
            lost_k = sum(1 for rid in losses if p in runs[rid] and runs[rid][p] < runs[rid][tool])
            parts.append(f"`{p}` (done first by {before[p]} of {len(wins)} successful runs that used `{tool}`"
                         + (f"; by {lost_k} of {len(losses)} failed ones)" if losses else ")"))
        text = f"Before calling `{tool}`, call " + ", then ".join(parts) + "."
        evidence = sorted(r for r in wins if all(p in runs[r] and runs[r][p] < runs[r][tool] for p in needed))
        out.append(Insight(
            key=f"pre:{tool}", section="strategies", text=text,
            when_to_use=f"before calling `{tool}`", tags=[f"tool:{tool}"] + [f"tool:{p}" for p in needed] + tags,
            evidence=evidence, support=f"{len(evidence)} of {n_runs} runs",
        ))
    return out


def contrasts(con, cfg: Config, tags: list[str]) -> list[Insight]:
    """Tools whose use goes with a different success rate, compared within task families (task ids)
    that had both outcomes, so a tool is not credited for merely appearing on easy tasks."""
    family: dict[str, list[str]] = defaultdict(list)
    outcome: dict[str, str] = {}
    for run_id, fam, o in con.execute(
        "SELECT id, coalesce(task_id, ''), outcome FROM trajectories WHERE outcome IN ('success', 'failure')"
    ).fetchall():
        family[fam].append(run_id)
        outcome[run_id] = o
    mixed = [runs for runs in family.values() if len({outcome[r] for r in runs}) == 2]
    if not mixed:
        return []
    used: dict[str, set[str]] = defaultdict(set)
    for run_id, _, tool, _ in _first_calls(con):
        used[tool].add(run_id)
    flagged = _flagged_runs(con)
    # The same contrast without runs that carry injected instructions: a run that "succeeded" by obeying
    # one (skipping a check it was told to skip) must not turn that into advice on its own strength.
    clean_families = [[r for r in runs if r not in flagged] for runs in family.values()]
    clean_mixed = [runs for runs in clean_families if len({outcome[r] for r in runs}) == 2]

    def contrast(strata, with_tool):
        num = den = 0.0
        k_with = n_with = k_without = n_without = families = 0
        taking_part = []
        for runs in strata:
            a = [r for r in runs if r in with_tool]
            b = [r for r in runs if r not in with_tool]
            if not a or not b:
                continue
            ka, kb = sum(outcome[r] == "success" for r in a), sum(outcome[r] == "success" for r in b)
            weight = len(a) * len(b) / (len(a) + len(b))  # Cochran-Mantel-Haenszel weight of the stratum
            num += weight * (ka / len(a) - kb / len(b))
            den += weight
            families += 1
            k_with, n_with, k_without, n_without = k_with + ka, n_with + len(a), k_without + kb, n_without + len(b)
            taking_part += runs
        if families < 2 or min(n_with, n_without) < cfg.distill.min_contrast_runs:
            return None
        gap = num / den
        if abs(gap) < cfg.distill.min_rate_gap:
            return None
        return gap, families, k_with, n_with, k_without, n_without, taking_part

    out = []
    for tool, with_tool in sorted(used.items()):
        found = contrast(mixed, with_tool)
        if found is None:
            continue
        gap, families, k_with, n_with, k_without, n_without, taking_part = found
        rests_on = sorted(r for r in taking_part if r in flagged)
        if rests_on:
            clean = contrast(clean_mixed, with_tool)
            if clean is not None and (clean[0] > 0) == (gap > 0):
                rests_on = []  # clean runs alone show the same contrast
        figures = (f"within {families} tasks that had both outcomes and runs with and without it,"
                   f" {k_with} of {n_with} runs with it succeeded vs {k_without} of {n_without} without"
                   f" ({abs(round(100 * gap))} points {'more' if gap > 0 else 'less'} often, task by task)")
        if gap > 0:
            section, sign = "strategies", "+"
            text = f"Skipping `{tool}` goes with failure: {figures}. Call `{tool}` whenever the task calls for it."
        else:
            section, sign = "pitfalls", "-"
            text = (f"Calling `{tool}` goes with failure: {figures}."
                    f" Call `{tool}` only when the task clearly requires it, and confirm with the user first.")
        # Evidence is the runs using the tool; when the contrast holds only with flagged runs in it, it
        # rests on them (on either side), and the guard judges it by them.
        evidence = rests_on or sorted(r for runs in mixed for r in runs if r in with_tool)
        out.append(Insight(
            key=f"act:{tool}:{sign}", section=section, text=text, when_to_use=f"deciding whether to call `{tool}`",
            tags=[f"tool:{tool}"] + tags, evidence=evidence, support=f"{n_with} of {n_with + n_without} runs",
        ))
    return out
