"""What every command shares: opening the bank, --json output, and turning errors into one line."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

import orjson
import typer
from rich.console import Console

from memkit.errors import MemkitError

# soft_wrap: long lines stay whole when piped or captured, so they can be grepped and compared.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

BankOption = typer.Option(Path("."), "--bank", "-b", help="Project folder holding the bank (or a folder below it).")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of text.")


def handle_errors(fn: Callable) -> Callable:
    """Library errors become `Error: ...` on stderr and exit 1; unexpected ones too, unless debugging."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MemkitError as e:
            fail(str(e))
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as e:
            if os.environ.get("MEMKIT_DEBUG") or "PYTEST_CURRENT_TEST" in os.environ:
                raise
            fail(f"unexpected {e.__class__.__name__}: {e} (set MEMKIT_DEBUG=1 for the traceback)")

    return wrapper


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def open_bank(path: Path, write: bool = False):
    import memkit

    return memkit.open(path, write=write)


def emit_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
