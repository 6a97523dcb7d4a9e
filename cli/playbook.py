from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from memkit.cli.common import BankOption, JsonOption, console, emit_json, handle_errors, open_bank

app = typer.Typer(help="List, show, and compare playbooks and their versions.", no_args_is_help=True)


@app.command("list")
@handle_errors
def list_(bank: Path = BankOption, json: bool = JsonOption):
    """List the bank's playbooks with their current version and item counts.

    Example: memkit playbook list
    """
    with open_bank(bank) as b:
        rows = b.playbooks()
    if json:
        return emit_json(rows)
    if not rows:
        return console.print("No playbooks yet: run `memkit distill`.")
    table = Table("playbook", "version", "active", "retired", "path")
    for r in rows:
        table.add_row(r["name"], str(r["version"]), str(r["active"]), str(r["retired"]), r["path"])
    console.print(table)


@app.command()
@handle_errors
def show(
    name: str = typer.Argument(..., help="Playbook name."),
    version: Optional[int] = typer.Option(None, "--version", "-V", help="A past version (default: the current file)."),
    all_items: bool = typer.Option(False, "--all", help="Include retired and quarantined items."),
    bank: Path = BankOption,
    json: bool = JsonOption,
):
    """Show a playbook's items with their utility.

    Example: memkit playbook show airline --version 1
    """
    with open_bank(bank) as b:
        pb = b.load_playbook(name, version)
    items = pb.items if all_items else pb.active()
    if json:
        return emit_json({"name": pb.name, "version": pb.version, "items": [i.model_dump(mode="json", exclude_none=True) for i in items]})
    table = Table("id", "status", "exposures", "q", "text", title=f"{pb.name} v{pb.version}", show_lines=True)
    for i in items:
        u = i.utility
        table.add_row(i.id, i.status, str(u.exposures), "-" if u.q is None else f"{u.q:.2f}", i.text)
    console.print(table)


@app.command()
@handle_errors
def log(name: str = typer.Argument(..., help="Playbook name."), bank: Path = BankOption, json: bool = JsonOption):
    """Show a playbook's versions, newest first, with the operations that made each.

    Example: memkit playbook log airline
    """
    with open_bank(bank) as b:
        versions = b.versions(name)
    if json:
        return emit_json(versions)
    for v in reversed(versions):
        commit = f"  git {v['git_commit'][:10]}" if v["git_commit"] else ""
        console.print(f"v{v['version']}  {v['created_at'][:19]}  {v['summary']}{commit}", highlight=False)


@app.command()
@handle_errors
def diff(
    name: str = typer.Argument(..., help="Playbook name."),
    v1: Optional[int] = typer.Argument(None, help="Older version (default: the one before V2)."),
    v2: Optional[int] = typer.Argument(None, help="Newer version (default: the latest)."),
    bank: Path = BankOption,
    json: bool = JsonOption,
):
    """Show what changed between two versions of a playbook.

    Example: memkit playbook diff airline 1 2
    """
    with open_bank(bank) as b:
        d = b.diff(name, v1, v2)
    if json:
        return emit_json(d)
    console.print(f"{name}: v{d['from']} → v{d['to']}", highlight=False)
    for item in d["added"]:
        console.print(f"+ [{item['id']}] {item['text']}", highlight=False, markup=False)
    for item_id in d["removed"]:
        console.print(f"- [{item_id}]", highlight=False, markup=False)
    for c in d["changed"]:
        console.print(f"~ [{c['id']}] {', '.join(c['fields'])}", highlight=False, markup=False)
        for f in c["fields"]:
            if f in ("text", "status", "status_reason"):
                console.print(f"    - {c['before'].get(f)}\n    + {c['after'].get(f)}", highlight=False, markup=False)
    if not (d["added"] or d["removed"] or d["changed"]):
        console.print("no differences")
