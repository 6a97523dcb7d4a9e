"""HTML for notebooks: a run as a conversation, a playbook as a table with utility bars.

Inline styles only (code hosts drop <style> blocks), and every figure is also written as text, so
a notebook reads the same where styles are stripped.
"""

from __future__ import annotations

from html import escape
from typing import Any, Optional

import polars as pl

ROLE_COLOUR = {"system": "#9e9e9e", "user": "#1e88e5", "assistant": "#43a047", "tool": "#8e24aa"}
OUTCOME_COLOUR = {"success": "#2e7d32", "failure": "#c62828", "partial": "#ef6c00", "unknown": "#757575"}
ERROR_COLOUR = "#c62828"
LONG = 1200  # characters shown before the rest of a message folds away


def _text(value: Optional[str], limit: int = LONG) -> str:
    """Escaped text; beyond `limit` characters the rest folds into a <details>."""
    if not value:
        return ""
    if len(value) <= limit:
        return escape(value)
    return (f"{escape(value[:limit])}<details style='display:inline'><summary>… {len(value) - limit:,} more "
            f"characters</summary>{escape(value[limit:])}</details>")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _badge(label: str, colour: str) -> str:
    return (f"<span style='background:{colour};color:#fff;border-radius:3px;padding:0 5px;"
            f"font-size:0.9em'>{escape(label)}</span>")


def run_html(info: dict[str, Any], steps: pl.DataFrame) -> str:
    """A run's header (task, outcome, counts) and its messages, tool calls and results; errors in red."""
    outcome = info.get("outcome") or "unknown"
    facts = [f"task {escape(str(info.get('task_id')))}", _badge(outcome, OUTCOME_COLOUR.get(outcome, "#757575"))]
    if info.get("reward") is not None:
        facts.append(f"reward {info['reward']:g}")
    facts.append(f"{plural(len(steps), 'message')}, {plural(info.get('n_tool_calls') or 0, 'tool call')}")
    if info.get("n_tool_errors"):
        facts.append(f"<span style='color:{ERROR_COLOUR}'>{plural(info['n_tool_errors'], 'tool error')}</span>")
    if info.get("playbook"):
        facts.append(f"carried {escape(info['playbook'])}@{info.get('playbook_version')}")
    parts = [f"<div class='memkit-run' style='font-family:system-ui,sans-serif;font-size:13px;max-width:960px'>",
             f"<div style='margin-bottom:6px'><b>Run {escape(info['run_id'])}</b> · {' · '.join(facts)}</div>"]
    for step in steps.iter_rows(named=True):
        parts.append(_step_html(step))
    parts.append("</div>")
    return "\n".join(parts)


def _step_html(step: dict[str, Any]) -> str:
    role, error = step["role"], bool(step["is_error"])
    colour = ERROR_COLOUR if error else ROLE_COLOUR.get(role, "#616161")
    label = f"#{step['seq']} {escape(role)}" + (f" · {escape(step['name'])}" if step["name"] else "")
    if error:
        label += f" · <b style='color:{ERROR_COLOUR}'>ERROR</b>"
    background = "#fdecea" if error else "transparent"
    body = []
    if step["role"] == "system" and step["text"]:
        body.append(f"<details><summary>system prompt ({len(step['text']):,} characters)</summary>"
                    f"<div style='white-space:pre-wrap'>{escape(step['text'])}</div></details>")
    elif step["text"]:
        mono = "font-family:monospace;" if role == "tool" else ""
        body.append(f"<div style='white-space:pre-wrap;{mono}'>{_text(step['text'])}</div>")
    if step["reasoning"]:
        body.append(f"<div style='white-space:pre-wrap;color:#616161;font-style:italic'>{_text(step['reasoning'])}</div>")
    for call in step["tool_calls"] or []:
        body.append(f"<div style='font-family:monospace'>→ <b>{escape(call['name'])}</b>"
                    f"({_text(call['arguments'] or '', 400)})</div>")
    return (f"<div style='border-left:3px solid {colour};background:{background};margin:3px 0;padding:2px 8px'>"
            f"<div style='font-size:11px;color:{colour}'>{label}</div>{''.join(body)}</div>")


def _utility_cell(row: dict[str, Any]) -> str:
    """A bar on [-1, 1]: the confidence interval of the advantage over the base rate shaded, the
    advantage marked, zero as a thin line; then the figures."""
    if not row["exposures"] or row["advantage"] is None:
        return f"<span style='color:#757575'>no exposures yet · evidence {row['n_evidence']} runs</span>"
    adv, lower, upper = row["advantage"], row["lower"], row["upper"]
    colour = "#2e7d32" if lower > 0 else ("#c62828" if upper < 0 else "#1e88e5")

    def x(v: float) -> float:
        return (v + 1) * 50

    bar = (f"<div style='position:relative;display:inline-block;width:120px;height:10px;background:#eee;"
           f"vertical-align:middle;margin-right:6px'>"
           f"<div style='position:absolute;left:{x(lower):.1f}%;width:{max(x(upper) - x(lower), 0.5):.1f}%;"
           f"height:100%;background:{colour};opacity:0.35'></div>"
           f"<div style='position:absolute;left:{x(adv):.1f}%;width:2px;height:100%;background:{colour}'></div>"
           f"<div style='position:absolute;left:50%;width:1px;height:140%;top:-20%;background:#000'></div></div>")
    cited = f", {row['citations']} cited" if row["citations"] else ""
    return (f"{bar}advantage {adv:+.2f} [{lower:+.2f}, {upper:+.2f}] vs base {row['base_rate']:.2f}"
            f" · q {row['q']:.2f} · {row['exposures']} exposures{cited}")


def playbook_html(name: str, version: Optional[int], items: pl.DataFrame) -> str:
    """The playbook's items by section and status, each with its utility bar and support."""
    counts = items.group_by("status").len() if len(items) else None
    by_status = dict(counts.iter_rows()) if counts is not None else {}
    summary = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "no items"
    head = (f"<div style='margin-bottom:4px'><b>Playbook {escape(name)}</b>"
            f"{f' v{version}' if version is not None else ''} · {summary}"
            " · bar: interval shaded, q marked, black line = base rate</div>")
    rows = []
    cell = "style='text-align:left;vertical-align:top;padding:3px 6px;border-bottom:1px solid #eee'"
    for row in items.iter_rows(named=True):
        muted = row["status"] != "active"
        status = escape(row["status"]) + (f"<br><small>{escape(row['status_reason'])}</small>"
                                          if row["status_reason"] else "")
        when = f"<br><small style='color:#616161'>When: {escape(row['when_to_use'])}</small>" if row["when_to_use"] else ""
        rows.append(f"<tr style='{'color:#9e9e9e' if muted else ''}'>"
                    f"<td {cell}><code>{escape(row['id'])}</code></td><td {cell}>{escape(row['section'])}</td>"
                    f"<td {cell}>{status}</td><td {cell}>{escape(row['text'])}{when}</td>"
                    f"<td {cell}>{escape(row['support'] or '')}</td><td {cell}>{_utility_cell(row)}</td></tr>")
    header = "".join(f"<th {cell}>{h}</th>" for h in ("id", "section", "status", "lesson", "support", "utility"))
    return (f"<div class='memkit-playbook' style='font-family:system-ui,sans-serif;font-size:13px'>{head}"
            f"<table style='border-collapse:collapse'><thead><tr>{header}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")
