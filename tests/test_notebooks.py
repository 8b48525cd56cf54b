"""Every notebook in notebooks/ runs top to bottom in quick mode.

Each notebook reads CYNN_NOTEBOOK_QUICK and cuts its epochs, grids and shapes.  The
notebook is executed from an in-memory copy: the committed outputs (those of a full run)
are never rewritten.  Needs the `notebooks` extra (nbformat, nbclient, ipykernel,
matplotlib); the `test` extra installs it.
"""
import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs nbformat (the notebooks extra)")
nbclient = pytest.importorskip("nbclient", reason="needs nbclient (the notebooks extra)")
pytest.importorskip("ipykernel", reason="needs ipykernel (the notebooks extra)")
pytest.importorskip("matplotlib", reason="needs matplotlib (the notebooks extra)")

from nbclient.exceptions import CellExecutionError, CellTimeoutError  # noqa: E402

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 240   # seconds; quick mode keeps every cell far below this
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")   # IPython colours its tracebacks


def test_notebooks_are_found():
    assert len(NOTEBOOKS) >= 5, f"expected the five notebooks in {NOTEBOOK_DIR}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch):
    # The kernel inherits this process's environment when it starts.
    monkeypatch.setenv("CYNN_NOTEBOOK_QUICK", "1")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
        # Run in a scratch folder so that nothing a notebook writes lands in the repository.
        resources={"metadata": {"path": str(tmp_path)}},
    )
    failure = None
    try:
        client.execute()
    except CellTimeoutError as error:
        failure = f"{path.name}: a cell ran longer than {CELL_TIMEOUT} s in quick mode\n{error}"
    except CellExecutionError as error:
        failing = next((i for i, cell in enumerate(notebook.cells)
                        if any(out.get("output_type") == "error"
                               for out in cell.get("outputs", []))), None)
        failure = f"{path.name}: cell {failing} raised\n{error}"
    if failure:   # outside the except block, so the report is not a chained traceback
        pytest.fail(ANSI_ESCAPE.sub("", failure), pytrace=False)
