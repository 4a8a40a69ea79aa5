"""Load the UltraHigh Carbon Steel micrograph DataBase (DeCost et al. 2017).

Reads `microstructures.sqlite` (tables `micrograph` and `sample`, joined on
`sample_key`), keeps the micrographs whose primary microconstituent is a
microstructure class (dropping `crack`, `figure`, `quality`, NULL and the like),
and finds each image by its `path` (`micrograph<ID>.tif` in the original) or as
an already-cropped PNG with the same stem. Original images carry a scale-bar
band at the bottom, which is cropped as DeCost et al. did: the standard frame
keeps its top 484 rows; for other heights the band is detected.

Data: NIST Materials Data Repository, handle 11256/940, CC BY 3.0 US.
"""

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from microrep.data.images import read_image
from microrep.errors import DataError

CLASSES = ("spheroidite", "network", "pearlite", "pearlite+spheroidite",
           "spheroidite+widmanstatten", "martensite", "pearlite+widmanstatten")
STANDARD_WIDTH, STANDARD_HEIGHT = 645, 484
SQLITE = "microstructures.sqlite"
IMAGE_FOLDERS = ("", "micrographs", "images")


def read_sqlite(path):
    """micrograph rows joined with their sample's processing metadata."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found; fetch UHCSDB first or point --data-dir at the "
                        f"folder holding {SQLITE}")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            micrographs = pd.read_sql("SELECT * FROM micrograph", connection)
            samples = pd.read_sql("SELECT * FROM sample", connection)
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as error:
        raise DataError(f"{path} is not a readable UHCSDB database: {error}") from None
    samples = samples.drop(columns=["label"], errors="ignore")
    return micrographs.merge(samples, how="left", left_on="sample_key", right_on="sample_id")


def find_image(data_dir, stored_path):
    """The file of a micrograph: its stored path, or a .png of the same stem."""
    name = Path(str(stored_path)).name
    stem = Path(name).stem
    for folder in IMAGE_FOLDERS:
        for candidate in (name, f"{stem}.png", f"{stem}.tif", f"{stem}.tiff"):
            path = Path(data_dir) / folder / candidate
            if path.is_file():
                return path
    return None


def scale_bar_rows(image):
    """How many bottom rows hold the scale-bar band (0 if none).

    The standard UHCSDB frame is 645 wide with 484 rows of micrograph; for
    other sizes, the band is the run of bottom rows that are mostly saturated
    (pure black or pure white), as the data bar is.
    """
    height, width = image.shape
    if width == STANDARD_WIDTH and height > STANDARD_HEIGHT:
        return height - STANDARD_HEIGHT
    saturated = ((image == 0) | (image == 255)).mean(axis=1)
    rows = 0
    while rows < height // 3 and saturated[height - 1 - rows] > 0.5:
        rows += 1
    return rows if rows >= 4 else 0


def crop_scale_bar(image):
    rows = scale_bar_rows(image)
    return image[:-rows] if rows else image


def load_uhcsdb_table(data_dir):
    """The labelled micrographs present in `data_dir`, and how many were missing.

    Returns (table, missing) where table has `path` (absolute), `group`
    (`sample_key`), the sqlite metadata, and `um_per_px` from the scale bar.
    """
    data_dir = Path(data_dir).absolute()  # paths stay valid whatever the dataset's root
    table = read_sqlite(data_dir / SQLITE)
    table = table[table["primary_microconstituent"].isin(CLASSES)].copy()
    table["path"] = [find_image(data_dir, p) for p in table["path"]]
    missing = int(table["path"].isna().sum())
    table = table[table["path"].notna()].copy()
    if table.empty:
        raise DataError(f"no UHCSDB micrographs found under {data_dir} "
                        f"(looked in {', '.join(f or '.' for f in IMAGE_FOLDERS)})")
    table["path"] = table["path"].astype(str)
    table["group"] = table["sample_key"].astype("Int64").astype(str)
    bar_px = pd.to_numeric(table["micron_bar_px"], errors="coerce")
    table["um_per_px"] = pd.to_numeric(table["micron_bar"], errors="coerce") / bar_px.where(bar_px > 0)
    return table.reset_index(drop=True), missing


def read_uhcsdb_image(path):
    """A UHCSDB micrograph as uint8 gray with its scale-bar band cropped."""
    return crop_scale_bar(read_image(path))


def rescale(image, factor):
    """Resize an image by `factor` (used to bring micrographs to a common um/px)."""
    from PIL import Image

    if abs(factor - 1.0) < 1e-3:
        return image
    height, width = image.shape
    size = (max(int(round(width * factor)), 1), max(int(round(height * factor)), 1))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
