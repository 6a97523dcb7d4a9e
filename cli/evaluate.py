from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from memkit.cli.common import BankOption, JsonOption, console, emit_json, err_console, handle_errors, open_bank


@handle_errors
def eval(
    name: str = typer.Argument(..., help="Playbook name."),
    config: Path = typer.Option(..., "--config", "-c", help="eval.yaml: agent command template, tasks glob, trials, parallel."),
    baseline: str = typer.Option("stable", "--baseline", help="Arm A: a version (3 or v3), stable, latest, or none."),
    candidate: str = typer.Option("latest", "--candidate", help="Arm B: a version, stable, latest, or none."),
    bank: Path = BankOption,
    json: bool = JsonOption,
):
    """Run your agent over a task set with two context files and compare success rates.

    The agent is a command template in eval.yaml, e.g.
    `python my_agent.py --task {task_file} --context {context_file} --out {run_file}`;
    it is run without a shell, and runs already written are not run again.

    Example: memkit eval airline --config eval.yaml --baseline none --candidate latest
    """
    with open_bank(bank, write=True) as b:
        with Progress(TextColumn("agent runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=json) as progress:
            task = progress.add_task("runs", total=None)
            report = b.eval(name, config, (baseline, candidate),
                            on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    if json:
        return emit_json(report)
    for arm in report["arms"]:
        rate = "-" if arm["success_rate"] is None else f"{arm['success_rate']:.2f} [{arm['lower']:.2f}, {arm['upper']:.2f}]"
        console.print(f"{arm['arm']:>6}: {arm['successes']}/{arm['runs']} succeeded, {rate}", highlight=False)
        for failure in arm["agent_failures"][:5]:
            err_console.print(f"        agent failed: {failure}", highlight=False, markup=False)
    console.print(report["verdict"]["reason"], highlight=False, markup=False)
    for label, items in report["only_in"].items():
        if items:
            console.print(f"only in {label}: {', '.join(items)}", highlight=False)
    shown = [i for i in report["items"] if i["advantage"] is not None]
    if shown:
        console.print("Items, by advantage over their task families' base rate (all exposures so far):")
        for i in shown[:10]:
            console.print(f"  {i['id']}: {i['advantage']:+.2f} [{i['lower']:+.2f}, {i['upper']:+.2f}] over"
                          f" {i['exposures']} exposures", highlight=False)
