"""Users' own micrographs: class folders and CSV lists, with clear errors."""

import numpy as np
import pytest
from PIL import Image

from microrep.config import DataConfig
from microrep.data import load_dataset
from microrep.embedding.archive import read_embeddings
from microrep.errors import DataError


def write_image(path, value=100, mode="L", size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((size[1], size[0]), value, dtype=np.uint8)
    image = Image.fromarray(array)
    image.convert(mode).save(path)
    return path


def test_class_folders(tmp_path):
    write_image(tmp_path / "ferrite" / "a.png")
    write_image(tmp_path / "ferrite" / "nested" / "b.jpg", mode="RGB")
    write_image(tmp_path / "pearlite" / "c d é.png")
    dataset = load_dataset(DataConfig(images=str(tmp_path)), min_per_class=1)
    assert dataset.class_counts().to_dict() == {"ferrite": 2, "pearlite": 1}
    assert all(dataset.image(i).shape == (30, 40) for i in range(len(dataset)))


def test_empty_class_folder_is_named(tmp_path):
    write_image(tmp_path / "ferrite" / "a.png")
    (tmp_path / "bainite").mkdir()
    (tmp_path / "bainite" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="bainite"):
        load_dataset(DataConfig(images=str(tmp_path)))


def test_csv_with_relative_paths_and_groups(tmp_path):
    for name in ("x1", "x2", "y1", "y2"):
        write_image(tmp_path / "imgs" / f"{name}.png")
    (tmp_path / "list.csv").write_text(
        "path,label,group\nimgs/x1.png,A,s1\nimgs/x2.png,A,s1\nimgs/y1.png,B,s2\nimgs/y2.png,B,s3\n")
    dataset = load_dataset(DataConfig(csv=str(tmp_path / "list.csv")))
    assert list(dataset.groups) == ["s1", "s1", "s2", "s3"]
    assert dataset.image(3).shape == (30, 40)


@pytest.mark.parametrize("text, message", [
    ("file,class\na.png,A\n", "lacks column(s) path, label"),
    ("path,label\nmissing.png,A\n", "not found, first:"),
    ("path,label\n,A\n", "empty path or label"),
])
def test_bad_csv_is_a_one_line_error_naming_the_file(tmp_path, text, message):
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(DataError, match="list.csv") as error:
        load_dataset(DataConfig(csv=str(tmp_path / "list.csv")))
    assert message in str(error.value)


def test_own_data_has_no_processing_task(tmp_path):
    write_image(tmp_path / "a" / "1.png")
    write_image(tmp_path / "b" / "1.png")
    with pytest.raises(DataError, match="processing"):
        load_dataset(DataConfig(images=str(tmp_path), task="processing"))


def test_single_image_classes_are_dropped_leaving_too_few(tmp_path):
    write_image(tmp_path / "a" / "1.png")
    write_image(tmp_path / "a" / "2.png")
    write_image(tmp_path / "b" / "1.png")
    with pytest.raises(DataError, match="at least two are needed"):
        load_dataset(DataConfig(images=str(tmp_path)))


def test_relative_folder_and_csv_locations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "mine" / "a" / "1.png")
    write_image(tmp_path / "mine" / "a" / "2.png")
    write_image(tmp_path / "mine" / "b" / "1.png")
    write_image(tmp_path / "mine" / "b" / "2.png")
    dataset = load_dataset(DataConfig(images="mine"))
    assert dataset.image(0).shape == (30, 40)
    (tmp_path / "mine" / "list.csv").write_text("path,label\na/1.png,A\na/2.png,A\nb/1.png,B\nb/2.png,B\n")
    assert load_dataset(DataConfig(csv="mine/list.csv")).image(3).shape == (30, 40)


def test_a_plain_folder_or_any_tree_of_images_embeds_without_labels(tmp_path, capsys):
    from microrep.cli import main

    write_image(tmp_path / "archive" / "scan-001.png")
    write_image(tmp_path / "archive" / "scan-002.png")
    write_image(tmp_path / "archive" / "2024-05" / "sem-a" / "x.png")
    assert main(["embed", "--pretrained", "--weights", "none", "--images", str(tmp_path / "archive"),
                 "--input-size", "32", "--vgg-blocks", "1", "--feature-layers", "", "--view", "tiles", "--grid", "1",
                 "--out", str(tmp_path / "emb")]) == 0
    import pandas as pd

    table = read_embeddings(tmp_path / "emb")[1]
    assert sorted(table["group"]) == ["2024-05/sem-a/x.png", "scan-001.png", "scan-002.png"]
    assert list(table.sort_values("group")["label"]) == ["2024-05", "", ""]
    with pytest.raises(DataError, match="no class sub-folders"):  # training still needs classes
        load_dataset(DataConfig(images=str(tmp_path / "archive" / "2024-05" / "sem-a")))


def test_a_csv_um_per_px_column_brings_micrographs_to_one_pixel_size(tmp_path):
    """--um-per-px reads a CSV's own scale column: 0.2 um/px brought to 0.1 doubles the
    frame; a 20x enlargement is held to --um-per-px-limit; an unknown scale keeps its pixels."""
    for name in ("fine", "coarse", "unknown", "other"):
        write_image(tmp_path / f"{name}.png", size=(40, 30))
    (tmp_path / "list.csv").write_text(
        "path,label,um_per_px\nfine.png,a,0.2\ncoarse.png,a,2.0\nunknown.png,b,\nother.png,b,0.1\n")
    config = DataConfig(csv=str(tmp_path / "list.csv"), um_per_px=0.1, um_per_px_limit=4)
    dataset = load_dataset(config)
    shapes = dict(zip(dataset.table["path"].map(lambda p: p.rsplit("/", 1)[-1]),
                      (image.shape for image in dataset.images())))
    assert shapes == {"fine.png": (60, 80), "coarse.png": (120, 160),
                      "unknown.png": (30, 40), "other.png": (30, 40)}
    assert any("1 micrograph(s) have no um_per_px" in note for note in dataset.notes)
    assert any("more than 4x" in note for note in dataset.notes)


def test_um_per_px_without_a_scale_is_one_line(tmp_path):
    write_image(tmp_path / "a" / "1.png")
    write_image(tmp_path / "b" / "1.png")
    with pytest.raises(DataError, match="needs each micrograph's own scale"):
        load_dataset(DataConfig(images=str(tmp_path), um_per_px=0.1), min_per_class=1)
