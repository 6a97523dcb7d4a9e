"""Every notebook runs top to bottom in a fresh kernel, in under a minute, and its committed outputs are current.

Committed outputs are compared with a fresh execution after normalising what legitimately varies
(temporary paths, timestamps, memory addresses, image bytes). To refresh them after a deliberate
change:  MEMKIT_UPDATE_NOTEBOOKS=1 python -m pytest tests/test_notebooks.py
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
UPDATE = os.environ.get("MEMKIT_UPDATE_NOTEBOOKS") == "1"
TIME_LIMIT = 60.0

_NORMALISE = [
    (re.compile(r"\S*memkit-nb\d+-\w+"), "<TMP>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?"), "<TIME>"),
    (re.compile(r"0x[0-9a-fA-F]{6,}"), "<ADDR>"),
]


@pytest.fixture(scope="session")
def kernel_env(tmp_path_factory):
    """A `python3` kernel spec for this interpreter, first on JUPYTER_PATH, so a kernel spec installed
    elsewhere on the machine (another Python) cannot run the notebooks."""
    folder = tmp_path_factory.mktemp("jupyter")
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python", "metadata": {"debugger": False},
    }))
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "MPLCONFIGDIR")}
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(folder)] + ([saved["JUPYTER_PATH"]] if saved["JUPYTER_PATH"] else []))
    # matplotlib's own cache, built before any notebook runs: building it inside one prints a warning there.
    os.environ["MPLCONFIGDIR"] = str(folder / "matplotlib")
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], check=False, capture_output=True)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def execute(path: Path):
    """A fresh execution of the notebook at `path` (its committed outputs dropped first), and the seconds it took."""
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = nbclient.NotebookClient(book, timeout=120, kernel_name="python3", record_timing=False, coalesce_streams=True,
                                     resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return book, time.perf_counter() - start


def _text(value) -> str:
    text = "".join(value) if isinstance(value, list) else str(value)
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    return text


def normalised(book) -> list[str]:
    """One line-oriented text per code cell: each output's kind and its text, images as placeholders."""
    cells = []
    for index, cell in enumerate(c for c in book.cells if c.cell_type == "code"):
        parts = [f"--- cell {index}: {cell.source.splitlines()[0] if cell.source else ''}"]
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                text = f"[{out.name}]\n"
                if parts[-1].startswith(text):  # a stream arrives in chunks that split wherever it was flushed
                    parts[-1] += _text(out.text)
                else:
                    parts.append(text + _text(out.text))
            elif out.output_type == "error":
                parts.append(f"[error] {out.ename}: {out.evalue}")
            else:
                for mime, data in sorted(out.get("data", {}).items()):
                    parts.append(f"[{out.output_type} {mime}]\n" + ("<image>" if mime.startswith("image/") else _text(data)))
        cells.append("\n".join(parts))
    return cells


def test_the_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_explore_runs.ipynb", "02_playbook_evolution.ipynb",
                                           "03_context_budget.ipynb", "04_item_scores.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_a_fresh_kernel_and_matches_its_committed_outputs(path, kernel_env):
    fresh, seconds = execute(path)  # a cell error raises CellExecutionError and fails the test
    print(f"{path.name}: {seconds:.1f}s")
    assert seconds < TIME_LIMIT, f"{path.name} took {seconds:.0f}s; notebooks must run in under {TIME_LIMIT:.0f}s"
    if UPDATE:
        nbformat.write(fresh, path)
        return
    committed = nbformat.read(path, as_version=4)
    want, got = "\n".join(normalised(committed)), "\n".join(normalised(fresh))
    if want != got:
        diff = "\n".join(list(difflib.unified_diff(want.splitlines(), got.splitlines(), "committed", "fresh",
                                                   lineterm=""))[:60])
        pytest.fail(f"{path.name}: committed outputs are stale; refresh them with "
                    f"MEMKIT_UPDATE_NOTEBOOKS=1 python -m pytest tests/test_notebooks.py\n{diff}")


def test_committed_notebooks_have_outputs_and_no_errors():
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert any(c.outputs for c in code), f"{path.name} was committed without outputs"
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{path.name} was committed with an error output"
        counts = [c.execution_count for c in code]
        assert counts == list(range(1, len(code) + 1)), f"{path.name} was not run top to bottom in one kernel"
