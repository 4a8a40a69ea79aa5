"""The UHCSDB loader against a small database built at test time."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from microrep.config import DataConfig
from microrep.data import load_dataset
from microrep.data.uhcsdb import crop_scale_bar, load_uhcsdb_table, scale_bar_rows
from microrep.errors import DataError

from conftest import write_uhcsdb_sqlite

ROWS = [  # micrograph_id, primary_microconstituent, sample_key, micron_bar, micron_bar_px, file
    (1, "spheroidite", 10, 5.0, 100, "tif"),
    (2, "spheroidite", 10, 5.0, 100, "png"),
    (3, "pearlite+spheroidite", 11, 10.0, 50, "tif"),
    (4, "network", 12, 10.0, 100, "tif"),
    (5, "network", 12, 10.0, 100, None),       # listed but no file: counted, not fatal
    (6, "crack", 12, 10.0, 100, "tif"),        # not a microstructure class
    (7, None, 12, 10.0, 100, "tif"),
    (8, "martensite", 13, 10.0, 100, "tif"),
    (9, "network", 12, 10.0, 100, "tif"),
]
SAMPLES = [(10, 800, "C", 90, "M", "Q"), (11, 750, "C", 5, "M", "WQ"),
           (12, 970, "C", 24, "H", "FC"), (13, 1100, "C", 5, "M", "Q")]


def original_micrograph(rng):
    """A 645-wide original: 484 rows of texture, then a 38-row data bar."""
    image = rng.integers(30, 220, (484 + 38, 645), dtype=np.uint8)
    image[484:] = 0
    image[495:505, 20:150] = 255
    return image


@pytest.fixture
def uhcsdb_dir(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "micrographs").mkdir()
    write_uhcsdb_sqlite(tmp_path / "microstructures.sqlite", SAMPLES,
                        [(mid, bar, bar_px, sample, label) for mid, label, sample, bar, bar_px, _ in ROWS])
    for mid, label, sample, bar, bar_px, kind in ROWS:
        if kind == "tif":
            tifffile.imwrite(tmp_path / "micrographs" / f"micrograph{mid}.tif", original_micrograph(rng))
        elif kind == "png":  # already cropped, as in the development copy
            Image.fromarray(original_micrograph(rng)[:481]).save(
                tmp_path / "micrographs" / f"micrograph{mid}.png")
    return tmp_path


def test_loader_keeps_classes_finds_files_and_counts_missing(uhcsdb_dir):
    table, missing = load_uhcsdb_table(uhcsdb_dir)
    assert missing == 1
    assert sorted(table["micrograph_id"]) == [1, 2, 3, 4, 8, 9]
    assert table.loc[table["micrograph_id"] == 2, "path"].iloc[0].endswith("micrograph2.png")
    assert table.loc[table["micrograph_id"] == 3, "um_per_px"].iloc[0] == pytest.approx(0.2)
    assert set(table["group"]) == {"10", "11", "12", "13"}
    assert table.loc[table["micrograph_id"] == 4, "cool_method"].iloc[0] == "FC"


def test_images_lose_the_scale_bar_band(uhcsdb_dir):
    dataset = load_dataset(DataConfig(data="uhcsdb", data_dir=str(uhcsdb_dir)))
    shapes = {int(mid): dataset.image(i).shape for i, mid in enumerate(dataset.table["micrograph_id"])}
    assert shapes[1] == (484, 645) and shapes[2] == (481, 645)
    assert any("no image file" in note for note in dataset.notes)


def test_a_relative_data_dir_finds_its_images(uhcsdb_dir, monkeypatch):
    monkeypatch.chdir(uhcsdb_dir.parent)  # --data-dir given relative to where the user stands
    dataset = load_dataset(DataConfig(data="uhcsdb", data_dir=uhcsdb_dir.name))
    assert dataset.image(0).shape[1] == 645


def test_band_detection_for_non_standard_frames():
    image = np.full((300, 400), 120, dtype=np.uint8)
    image[280:] = 0
    assert scale_bar_rows(image) == 20
    assert crop_scale_bar(image).shape == (280, 400)
    assert scale_bar_rows(np.full((300, 400), 120, dtype=np.uint8)) == 0


def test_tasks_on_uhcsdb(uhcsdb_dir):
    def classes(task, **kwargs):
        config = DataConfig(data="uhcsdb", data_dir=str(uhcsdb_dir), task=task, **kwargs)
        return load_dataset(config, min_per_class=1).class_counts().to_dict()

    assert classes("constituent") == {"martensite": 1, "network": 2, "pearlite+spheroidite": 1,
                                      "spheroidite": 2}
    # DeCost's rule: first word before "+", martensite dropped
    assert classes("3phase") == {"network": 2, "pearlite": 1, "spheroidite": 2}
    assert classes("processing") == {"1100C-5M-Q": 1, "750C-5M-WQ": 1, "800C-90M-Q": 2,
                                     "970C-24H-FC": 2}


def test_rescaling_to_a_common_pixel_size(uhcsdb_dir):
    config = DataConfig(data="uhcsdb", data_dir=str(uhcsdb_dir), um_per_px=0.1)
    dataset = load_dataset(config, min_per_class=1)
    index = int(np.flatnonzero(dataset.table["micrograph_id"] == 3)[0])
    assert dataset.image(index).shape == (968, 1290)  # 0.2 um/px brought to 0.1


def test_rare_classes_are_dropped_with_a_note(uhcsdb_dir):
    config = DataConfig(data="uhcsdb", data_dir=str(uhcsdb_dir), min_class_size=2)
    dataset = load_dataset(config)
    assert dataset.classes == ["network", "spheroidite"]
    assert any("martensite" in note and "pearlite+spheroidite" in note for note in dataset.notes)
    with pytest.raises(DataError, match="at least two are needed"):
        load_dataset(DataConfig(data="uhcsdb", data_dir=str(uhcsdb_dir), min_class_size=3))


def test_missing_or_broken_database_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="microstructures.sqlite"):
        load_uhcsdb_table(tmp_path)
    (tmp_path / "microstructures.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(DataError, match="not a readable UHCSDB database"):
        load_uhcsdb_table(tmp_path)
