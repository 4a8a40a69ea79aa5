"""The course: every chapter runs top to bottom with tiny settings, exercises included, as a
student would run it; its executed copy for the site matches it; it teaches what it promises."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXECUTED = ROOT / "docs" / "course"


def code_cells(book):
    return [cell.source for cell in book.cells if cell.cell_type == "code"]


def markdown(book):
    return "\n".join(cell.source for cell in book.cells if cell.cell_type == "markdown")


def test_notebooks_are_committed_without_outputs():
    assert len(NOTEBOOKS) >= 8, "the course has a chapter per notebook"
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_chapter_has_goals_time_and_exercises_with_solutions(path):
    text = markdown(nbformat.read(path, as_version=4))
    assert "**Learning goals.**" in text and "**Time on a laptop CPU:**" in text, path.name
    exercises = text.split("## Exercises", 1)[1] if "## Exercises" in text else ""
    assert "\n2. " in exercises, f"{path.name}: at least two exercises"
    assert exercises.count("### Solution") >= 2, f"{path.name}: a worked solution per exercise"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_copy_matches_its_chapter_and_shows_real_figures(path):
    executed = EXECUTED / path.name
    assert executed.is_file(), f"no executed copy of {path.name}: run docs/make_course.py"
    copy, source = nbformat.read(executed, as_version=4), nbformat.read(path, as_version=4)
    assert code_cells(copy) == code_cells(source), \
        f"{path.name} changed since docs/course/ was made: run docs/make_course.py"
    outputs = [output for cell in copy.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert sum("image/png" in output.get("data", {}) for output in outputs) >= 3
    first_stream = next(output.text for output in outputs if output.output_type == "stream")
    assert first_stream.startswith("data: uhcsdb"), "executed copies are run on real micrographs"


def test_timings_cover_every_chapter():
    timings = json.loads((EXECUTED / "timings.json").read_text())
    assert {path.stem for path in NOTEBOOKS} <= set(timings)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROREP_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MICROREP_NOTEBOOK_WEIGHTS", "none")
    monkeypatch.setenv("MICROREP_NOTEBOOK_DATA_DIR", str(tmp_path / "no-uhcsdb"))
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    streams = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code"
                      for o in c.outputs if o.output_type == "stream")
    assert streams.startswith("data: synthetic, weights: none, quick run")
    for chatter in ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers"):
        assert chatter not in streams, f"TensorFlow's start-up line in the output: {chatter}"
