"""Run every course chapter on real micrographs and write its executed copy for the site.

Why: the notebooks in notebooks/ are committed without outputs (reviewable
diffs); readers of the site should still see every figure, drawn from real
UHCSDB micrographs. This script executes each chapter top to bottom, as a
student would, and writes docs/course/<chapter>.ipynb with its outputs, plus
docs/course/timings.json (the wall time of each chapter on this machine).
tests/test_notebooks.py fails when an executed copy's code no longer matches
its source, so a changed chapter means running this again.

    python docs/make_course.py --data-dir ../shared/data/uhcsdb-dev \\
        --weights ../shared/weights/vgg16_imagenet_notop.weights.h5

Chapters share one feature cache (VGG16 features are computed once), so later
chapters run faster than they would alone; timings.json says so.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "notebooks"
OUT = ROOT / "docs" / "course"


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="UHCSDB folder with microstructures.sqlite")
    parser.add_argument("--prose-only", action="store_true", help="copy the chapters' markdown "
                        "into the executed copies without running anything (their code must "
                        "be unchanged): for corrections of the text")
    parser.add_argument("--weights", default="imagenet", help="VGG16 weights: imagenet or a local file")
    parser.add_argument("--cache", default="", help="feature cache shared by the chapters "
                        "(default: a new temporary folder, so the first chapter that needs "
                        "features computes them)")
    parser.add_argument("--only", default="", help="comma-separated chapter numbers, e.g. 01,05")
    return parser.parse_args()


def execute(source, workdir, environment):
    """The executed notebook and its wall time; raises on the first cell that fails."""
    book = nbformat.read(source, as_version=4)
    previous = dict(os.environ)
    os.environ.update(environment)
    try:
        started = time.time()
        NotebookClient(book, timeout=3600, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
        return book, time.time() - started
    finally:
        os.environ.clear()
        os.environ.update(previous)


def as_a_terminal_shows(text):
    """Progress bars redraw their line with carriage returns; keep each line's last drawing."""
    lines = [[part for part in line.split("\r") if part] for line in text.split("\n")]
    return "\n".join(parts[-1] if parts else "" for parts in lines)


def tidy(book):
    """The executed copy as a reader should see it: bars at their end, no run timestamps."""
    for cell in book.cells:
        cell.metadata.pop("execution", None)
        merged = []
        for output in cell.get("outputs", []):  # a bar's redraws arrive as many stream outputs
            if (output.output_type == "stream" and merged and merged[-1].output_type == "stream"
                    and merged[-1].name == output.name):
                merged[-1].text += output.text
            else:
                merged.append(output)
        for output in merged:
            if output.output_type == "stream":
                output.text = as_a_terminal_shows(output.text)
        if cell.cell_type == "code":
            cell.outputs = merged
    return book


def figures(book):
    return sum("image/png" in output.get("data", {}) for cell in book.cells
               if cell.cell_type == "code" for output in cell.outputs)


def copy_prose(source, executed):
    """The source's markdown cells into the executed copy, whose code cells must match."""
    book, copy = nbformat.read(source, as_version=4), nbformat.read(executed, as_version=4)
    if [c.source for c in book.cells if c.cell_type == "code"] != \
            [c.source for c in copy.cells if c.cell_type == "code"] or len(book.cells) != len(copy.cells):
        sys.exit(f"{source.name}: its code changed since it was executed; run it again without --prose-only")
    for mine, theirs in zip(copy.cells, book.cells):
        if mine.cell_type == "markdown":
            mine.source = theirs.source
    nbformat.write(tidy(copy), executed)


def main():
    args = arguments()
    if args.prose_only:
        for source in sorted(SOURCES.glob("[0-9][0-9]_*.ipynb")):
            copy_prose(source, OUT / source.name)
        return
    if not args.data_dir:
        sys.exit("--data-dir is needed to run the chapters (a UHCSDB folder)")
    chapters = sorted(SOURCES.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        chapters = [path for path in chapters if path.name[:2] in args.only.split(",")]
    OUT.mkdir(parents=True, exist_ok=True)
    timings_path = OUT / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    with tempfile.TemporaryDirectory(prefix="microrep-course-") as scratch:
        environment = {"MICROREP_NOTEBOOK_DATA_DIR": str(Path(args.data_dir).resolve()),
                       "MICROREP_NOTEBOOK_WEIGHTS": args.weights if args.weights == "imagenet"
                       else str(Path(args.weights).resolve()),
                       "MICROREP_NOTEBOOK_CACHE": args.cache or str(Path(scratch) / "cache")}
        for source in chapters:
            workdir = Path(scratch) / source.stem
            workdir.mkdir()
            book, seconds = execute(source, workdir, environment)
            nbformat.write(tidy(book), OUT / source.name)
            timings[source.stem] = {"seconds": round(seconds), "figures": figures(book)}
            print(f"{source.stem}: {seconds:.0f} s, {figures(book)} figures", flush=True)
    timings["_machine"] = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                           "python": sys.version.split()[0]}
    timings_path.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
