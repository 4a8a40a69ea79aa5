"""Every notebook runs top to bottom with tiny settings, as a student would run it."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_are_committed_without_outputs():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROREP_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MICROREP_NOTEBOOK_DATA_DIR", str(tmp_path / "data"))
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    streams = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code"
                      for o in c.outputs if o.output_type == "stream")
    for chatter in ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers"):
        assert chatter not in streams, f"TensorFlow's start-up line in the output: {chatter}"
