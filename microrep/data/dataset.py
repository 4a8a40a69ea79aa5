"""The Dataset type that every data source returns.

A pandas table with one row per micrograph (`path`, `label`, `group` and any
metadata) plus lazy, cached access to its images, so the pair pipeline, the
embedder and the baselines all read images the same way and only once.
"""

import dataclasses
import typing
from pathlib import Path

import numpy as np
import pandas as pd

from microrep.data.images import header_shape, read_image
from microrep.data.uhcsdb import rescale
from microrep.errors import DataError


@dataclasses.dataclass
class Dataset:
    """Micrographs with labels and groups.

    `table` has at least the columns `path` (absolute, or relative to `root`),
    `label` (the class for the current task) and `group` (the sample a
    micrograph comes from, for grouped cross-validation). `reader` decodes one
    file (UHCSDB's crops the scale bar); an optional `scale_factor` column
    resizes each image after reading, to bring all to one physical scale.
    """

    table: pd.DataFrame
    root: Path = Path(".")
    name: str = "dataset"
    reader: typing.Callable = read_image
    notes: list = dataclasses.field(default_factory=list)
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        missing = {"path", "label", "group"} - set(self.table.columns)
        if missing:
            raise DataError(f"dataset table lacks columns: {', '.join(sorted(missing))}")
        self.table = self.table.reset_index(drop=True)
        self.root = Path(self.root)

    def __len__(self):
        return len(self.table)

    @property
    def labels(self):
        return self.table["label"].astype(str).to_numpy()

    @property
    def groups(self):
        return self.table["group"].astype(str).to_numpy()

    @property
    def classes(self):
        return sorted(self.table["label"].astype(str).unique())

    def image_path(self, index):
        path = Path(self.table.at[index, "path"])
        return path if path.is_absolute() else self.root / path

    def image(self, index):
        """The uint8 gray image of row `index`, decoded once and cached."""
        if index not in self._cache:
            self._cache[index] = self.read(index)
        return self._cache[index]

    def read(self, index):
        """Decode the image of row `index` without caching it (for streaming)."""
        if index in self._cache:
            return self._cache[index]
        image = self.reader(self.image_path(index))
        if "scale_factor" in self.table.columns:
            image = rescale(image, float(self.table.at[index, "scale_factor"]))
        return image

    def images(self):
        return [self.image(i) for i in range(len(self))]

    def shape_hint(self, index):
        """(height, width) row `index`'s image will have, from its file's header (and its
        `scale_factor`) without decoding it; None when the header cannot be read. For cost
        lines: a reader's crop (UHCSDB's scale bar) is not counted."""
        if index in self._cache:
            return self._cache[index].shape[:2]
        try:
            height, width = header_shape(self.image_path(index))
        except Exception:  # the decode will say what is wrong with the file, in its place
            return None
        factor = float(self.table.at[index, "scale_factor"]) if "scale_factor" in self.table.columns else 1.0
        return max(int(round(height * factor)), 1), max(int(round(width * factor)), 1)

    def subset(self, indices):
        """A Dataset of the given rows (the image cache is shared, re-indexed)."""
        indices = np.asarray(indices)
        cache = {new: self._cache[old] for new, old in enumerate(indices) if old in self._cache}
        return Dataset(self.table.iloc[indices].reset_index(drop=True), self.root,
                       self.name, self.reader, list(self.notes), cache)

    def with_images(self, images):
        """This Dataset with its rows' decoded images given (row order), not read from disk:
        images already decoded or rescaled by the caller (reproduce's folds and scales)."""
        return dataclasses.replace(self, _cache=dict(enumerate(images)))

    def class_counts(self):
        return self.table["label"].astype(str).value_counts().sort_index()
