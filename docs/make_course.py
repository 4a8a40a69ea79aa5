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
    parser.add_argument("--data-dir", required=True, help="UHCSDB folder with microstructures.sqlite")
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


def figures(book):
    return sum("image/png" in output.get("data", {}) for cell in book.cells
               if cell.cell_type == "code" for output in cell.outputs)


def main():
    args = arguments()
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
                       "MICROREP_NOTEBOOK_CACHE": args.cache or str(Path(scratch) / "cache"),
                       "TQDM_DISABLE": "1"}  # the executed copies keep log lines, not bars
        for source in chapters:
            workdir = Path(scratch) / source.stem
            workdir.mkdir()
            book, seconds = execute(source, workdir, environment)
            for cell in book.cells:
                cell.metadata.pop("execution", None)
            nbformat.write(book, OUT / source.name)
            timings[source.stem] = {"seconds": round(seconds), "figures": figures(book)}
            print(f"{source.stem}: {seconds:.0f} s, {figures(book)} figures", flush=True)
    timings["_machine"] = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                           "python": sys.version.split()[0]}
    timings_path.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
