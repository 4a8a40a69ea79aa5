"""Data sources: synthetic micrographs, dataset folders, and the paper's tasks."""

from microrep.data.dataset import Dataset
from microrep.data.loaders import load_dataset

__all__ = ["Dataset", "load_dataset"]
