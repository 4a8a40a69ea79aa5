"""Data sources: synthetic micrographs, dataset folders, and the paper's tasks."""

from microrep.fileio import python_string_tables

python_string_tables()  # before any table is made: file names need not be UTF-8

from microrep.data.dataset import Dataset  # noqa: E402
from microrep.data.loaders import load_dataset  # noqa: E402

__all__ = ["Dataset", "load_dataset"]
