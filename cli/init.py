from pathlib import Path

import typer

from memkit.cli.common import JsonOption, console, emit_json, handle_errors


@handle_errors
def init(directory: Path = typer.Argument(Path("."), help="Project folder for the bank."), json: bool = JsonOption):
    """Create memkit.yaml and the bank (.memkit/) in DIRECTORY. Running it twice is harmless.

    Example: memkit init my-agent
    """
    from memkit.bank import Bank

    bank, created = Bank.init(directory)
    bank.close()
    if json:
        emit_json({"bank": str(bank.root), "created": created})
    elif created:
        console.print(f"Initialised memkit bank in {bank.root} (created {', '.join(created)})")
    else:
        console.print(f"memkit bank already initialised in {bank.root}; nothing to do")
