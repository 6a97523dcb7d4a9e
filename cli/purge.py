from pathlib import Path
from typing import List, Optional

import typer

from memkit.cli.common import BankOption, JsonOption, console, emit_json, err_console, handle_errors, open_bank


@handle_errors
def purge(
    source: Optional[List[str]] = typer.Option(None, "--source", help="A file as ingested (its path, a glob over paths, "
                                               "or the file itself, matched by content); repeatable."),
    run: Optional[List[str]] = typer.Option(None, "--run", help="A run id or unique id prefix; repeatable."),
    before: Optional[str] = typer.Option(None, "--before", help="Runs that started before this date (YYYY-MM-DD); "
                                         "runs without a start time count from when they were ingested."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    bank: Path = BankOption,
    json: bool = JsonOption,
):
    """Remove runs and everything derived from them (steps, tool calls, scores, exposures, rejects and
    redaction records of their files); lessons that only they supported are retired ("evidence purged")
    in a new playbook version. Options combine: a run must match every one given.

    Example: memkit purge --source runs/2024-05.jsonl --yes
    """
    with open_bank(bank, write=True) as b:
        if not (yes or dry_run):
            plan = b.purge(source=source, run=run, before=before, dry_run=True)
            if not plan.runs and not plan.sources:
                return _show(plan, json)
            err_console.print(_summary(plan), highlight=False, markup=False)
            typer.confirm("Purge them?", abort=True, err=True)
        result = b.purge(source=source, run=run, before=before, dry_run=dry_run)
    _show(result, json)


def _show(result, json: bool) -> None:
    if json:
        return emit_json(result.as_dict())
    console.print(_summary(result), highlight=False, markup=False)


def _summary(result) -> str:
    if not result.runs and not result.sources:
        return "Nothing to purge: no run matches."
    verb = "Would purge" if result.dry_run else "Purged"
    rows = ", ".join(f"{n} {table}" for table, n in result.deleted.items() if table not in ("trajectories", "sources"))
    text = f"{verb} {len(result.runs)} run(s)"
    if result.sources:
        text += f" and {len(result.sources)} source(s) ({', '.join(result.sources)})"
    if rows:
        text += f"; rows: {rows}"
    text += "."
    for p in result.playbooks:
        parts = []
        if p["retired"]:
            parts.append(f"retired {', '.join(p['retired'])} (evidence purged)")
        if p["trimmed"]:
            parts.append(f"{len(p['trimmed'])} item(s) lost part of their evidence")
        commit = f", git {p['git_commit'][:10]}" if p.get("git_commit") else ""
        text += f"\nPlaybook {p['name']} v{p['version']}{commit}: {'; '.join(parts)}."
    return text
