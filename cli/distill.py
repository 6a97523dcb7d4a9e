from pathlib import Path
from typing import Optional

import typer

from memkit.cli.common import BankOption, JsonOption, console, emit_json, handle_errors, open_bank


def _report(result, json: bool) -> None:
    if json:
        emit_json(result.as_dict())
        return
    console.print(f"{result.new_runs} new run(s) reflected on, {result.insights} candidate lesson(s).")
    if not result.operations:
        console.print(f"Playbook {result.playbook}: no changes (still v{result.previous})." if result.previous
                      else f"Playbook {result.playbook}: nothing to distill yet.")
        return
    for op in result.operations:
        console.print(f"  {op.summary()}", highlight=False, markup=False)
    if result.dry_run:
        console.print("Dry run: nothing was written.")
    else:
        git = f", git commit {result.git_commit[:10]}" if result.git_commit else ""
        console.print(f"Playbook {result.playbook} v{result.version} written to {result.path}{git}.")


def _report_gate(report: dict) -> None:
    console.print(f"Gate: {report['verdict']['reason']}", highlight=False, markup=False)
    if report["promoted"]:
        console.print(f"Promoted v{report['stable']} to stable.", highlight=False)
    else:
        kept = f"stable stays v{report['stable']}" if report["stable"] is not None else "no stable version"
        console.print(f"Not promoted: the new version stays a candidate; {kept}.", highlight=False)


@handle_errors
def distill(
    playbook: Optional[str] = typer.Option(None, "--playbook", "-p", help="Playbook to distill into (default: `playbook` in memkit.yaml)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the operations without writing anything."),
    gate: Optional[Path] = typer.Option(None, "--gate", help="eval.yaml of a held-out task set: promote the new version to stable only if it is not worse."),
    bank: Path = BankOption,
    json: bool = JsonOption,
):
    """Distill runs not yet distilled into the playbook, rescore every item, and write a new version if anything changed.

    Example: memkit distill --playbook airline
    """
    with open_bank(bank, write=True) as b:
        result = b.distill(playbook, dry_run=dry_run)
        report = b.gate(result.playbook, gate, result.version) if gate and result.version and not dry_run else None
    if json:
        return emit_json({**result.as_dict(), **({"gate": report} if report else {})})
    _report(result, False)
    if report:
        _report_gate(report)


@handle_errors
def score(
    playbook: Optional[str] = typer.Option(None, "--playbook", "-p", help="Playbook to score (default: `playbook` in memkit.yaml)."),
    bank: Path = BankOption,
    json: bool = JsonOption,
):
    """Recompute item utility from exposures and outcomes, retiring items the evidence says hurt.

    Example: memkit score --playbook airline
    """
    with open_bank(bank, write=True) as b:
        _report(b.score(playbook), json)
