"""A run as the text a reflection prompt shows: numbered steps, tool calls and results, errors
marked, long texts cut, and the middle of a long run elided to fit a token budget."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from memkit.tokens import count_tokens

_CAPS = {"user": 600, "assistant": 700, "tool": 300, "error": 400, "call": 300}


@dataclass
class RunRecord:
    id: str
    task_id: Optional[str]
    task_text: Optional[str]
    outcome: str
    reward: Optional[float]
    playbook: Optional[str]
    playbook_version: Optional[int]
    lines: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)
    tools: list[str] = field(default_factory=list)
    assistant_text: str = ""


def _cut(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load(con, run_ids: list[str]) -> dict[str, RunRecord]:
    out: dict[str, RunRecord] = {}
    if not run_ids:
        return out
    import pyarrow as pa

    con.register("_want", pa.table({"id": list(run_ids)}))
    try:
        for row in con.execute(
            """SELECT t.id, t.task_id, t.task_text, t.outcome, t.reward, t.playbook, t.playbook_version
               FROM trajectories t JOIN _want w ON w.id = t.id"""
        ).fetchall():
            out[row[0]] = RunRecord(*row)
        steps = con.execute(
            """SELECT s.trajectory_id, s.seq, s.role, s.name, s.text FROM steps s JOIN _want w ON w.id = s.trajectory_id
               ORDER BY 1, 2"""
        ).fetchall()
        calls = con.execute(
            """SELECT c.trajectory_id, c.step_seq, c.idx, c.name, coalesce(c.arguments::VARCHAR, c.arguments_raw)
               FROM tool_calls c JOIN _want w ON w.id = c.trajectory_id ORDER BY 1, 2, 3"""
        ).fetchall()
        errors = {(r[0], r[1]) for r in con.execute(
            """SELECT r.trajectory_id, r.step_seq FROM tool_results r JOIN _want w ON w.id = r.trajectory_id
               WHERE r.is_error"""
        ).fetchall()}
    finally:
        con.unregister("_want")
    by_step: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for run_id, seq, _, name, args in calls:
        by_step.setdefault((run_id, seq), []).append((name, args or ""))
    for run_id, seq, role, name, text in steps:
        run = out.get(run_id)
        if run is None or role == "system":
            continue
        n = seq
        if role == "user":
            run.lines.append(("user", f"[{n}] USER: {_cut(text, _CAPS['user'])}"))
        elif role == "assistant":
            if text and text.strip():
                run.lines.append(("assistant", f"[{n}] AGENT: {_cut(text, _CAPS['assistant'])}"))
                run.assistant_text += text + "\n"
            for tool, args in by_step.get((run_id, seq), []):
                run.tools.append(tool)
                run.lines.append(("call", f"[{n}] AGENT → {tool} {_cut(_compact(args), _CAPS['call'])}"))
        elif role == "tool":
            if (run_id, seq) in errors:
                run.lines.append(("error", f"[{n}] TOOL {name or '?'} ERROR: {_cut(text, _CAPS['error'])}"))
            else:
                run.lines.append(("tool", f"[{n}] TOOL {name or '?'}: {_cut(text, _CAPS['tool'])}"))
    return out


def _compact(args: str) -> str:
    try:
        return json.dumps(json.loads(args), separators=(",", ":"), ensure_ascii=False)
    except (ValueError, TypeError):
        return args


def render(run: RunRecord, max_tokens: int) -> str:
    """The run's steps within `max_tokens`: tool results are shortened first, then the middle
    steps are elided (calls and errors are kept longest, they are what reflection needs)."""
    lines = list(run.lines)
    cost = [count_tokens(text) + 1 for _, text in lines]
    if sum(cost) <= max_tokens:
        return "\n".join(text for _, text in lines)
    for i, (kind, text) in enumerate(lines):
        if kind in ("tool", "assistant", "user") and i > 1:
            short = _cut(text, 120)
            lines[i] = (kind, short)
            cost[i] = count_tokens(short) + 1
    if sum(cost) <= max_tokens:
        return "\n".join(text for _, text in lines)
    keep = [True] * len(lines)
    total = sum(cost)
    order = sorted(range(2, max(2, len(lines) - 3)),
                   key=lambda i: ({"tool": 0, "assistant": 1, "user": 2, "call": 3, "error": 4}[lines[i][0]],
                                  -abs(i - len(lines) / 2)))
    for i in order:
        if total <= max_tokens:
            break
        keep[i] = False
        total -= cost[i]
    out: list[str] = []
    skipped = 0
    for k, (_, text) in zip(keep, lines):
        if k:
            if skipped:
                out.append(f"[… {skipped} steps left out …]")
                skipped = 0
            out.append(text)
        else:
            skipped += 1
    if skipped:
        out.append(f"[… {skipped} steps left out …]")
    return "\n".join(out)
