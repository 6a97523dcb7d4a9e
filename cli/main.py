"""The `memkit` command: a thin typer layer over the Python API (one module per command)."""

import typer

from memkit.cli import demo, distill, evaluate, export, ingest, init, playbook, stats
from memkit.cli import costs, retrieve
from memkit.cli import runs
from memkit.cli import purge

app = typer.Typer(
    name="memkit",
    help="Distill agent runs into versioned, outcome-scored playbooks and context files.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(init.init)
app.command()(ingest.ingest)
app.command()(distill.distill)
app.command()(distill.score)
app.command()(export.export)
app.command()(retrieve.retrieve)
app.command()(costs.costs)
app.command()(stats.stats)
app.command()(stats.formats)
app.command()(demo.demo)
app.command(name="eval")(evaluate.eval)
app.add_typer(playbook.app, name="playbook")
app.command()(purge.purge)
app.add_typer(runs.app, name="runs")


def run() -> None:
    app()
