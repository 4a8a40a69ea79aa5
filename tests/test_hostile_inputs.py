"""A corpus of broken and hostile inputs, generated at test time.

Each bad file gets a one-line message naming it; with --skip-bad the good
images are still used; without it the run refuses before any training starts.
"""

import json
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from microrep.cli import main
from microrep.config import DataConfig
from microrep.data import load_dataset
from microrep.data.images import read_image
from microrep.errors import DataError

from conftest import FINE_TUNE_FLAGS


def good(path, value=120, size=(48, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)).save(path)
    return path


def make_corpus(root):
    """{file: what is wrong with it}; every file sits in class folder 'a' or 'b'."""
    bad = {}
    png = good(root / "a" / "whole.png")
    truncated = root / "a" / "truncated.png"
    truncated.write_bytes(png.read_bytes()[:60])
    bad[truncated] = "truncated"
    (root / "a" / "empty.png").write_bytes(b"")
    bad[root / "a" / "empty.png"] = "empty"
    (root / "b" / "text.jpg").parent.mkdir(parents=True, exist_ok=True)
    (root / "b" / "text.jpg").write_text("this is not a JPEG")
    bad[root / "b" / "text.jpg"] = "cannot read"
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(root / "b" / "one-pixel.png")
    bad[root / "b" / "one-pixel.png"] = "only 1x1"
    bomb_header(good(root / "b" / "bomb.png"), 40000, 40000)
    bad[root / "b" / "bomb.png"] = "decompression bomb"
    return bad


def bomb_header(path, width, height):
    """Rewrite a PNG's IHDR to claim a huge size (a decompression bomb in a few bytes)."""
    data = bytearray(path.read_bytes())
    start = data.index(b"IHDR")
    data[start + 4:start + 12] = struct.pack(">II", width, height)
    data[start + 17:start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start:start + 17])))
    path.write_bytes(bytes(data))


def make_valid_variants(root):
    """Unusual but valid images: all must load."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(root / "a" / "sixteen-bit.tif", rng.integers(0, 65535, (40, 48), dtype=np.uint16))
    tifffile.imwrite(root / "a" / "float.tif", rng.random((40, 48), dtype=np.float32))
    Image.fromarray(rng.integers(0, 256, (40, 48, 4), dtype=np.uint8), "RGBA").save(root / "b" / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).convert("P").save(
        root / "b" / "palette.png")
    good(root / "b" / "spaces and ünïcode é.png")
    good(root / "a" / "more.png")
    return 6


def test_every_bad_file_is_named_and_explained(tmp_path):
    bad = make_corpus(tmp_path)
    for path, reason in bad.items():
        with pytest.raises(DataError) as error:
            read_image(path)
        message = str(error.value)
        assert path.name in message and reason in message and "\n" not in message


def test_unusual_valid_images_load(tmp_path):
    count = make_valid_variants(tmp_path)
    dataset = load_dataset(DataConfig(images=str(tmp_path)))
    assert len(dataset) == count
    assert all(dataset.image(i).dtype == np.uint8 for i in range(count))


@pytest.mark.slow
def test_bad_files_stop_training_before_it_starts_unless_skipped(tmp_path, capsys):
    data = tmp_path / "data"
    bad = make_corpus(data)
    make_valid_variants(data)
    train = ["train", "--images", str(data), "--input-size", "32", "--vgg-blocks", "2",
             "--embedding-dim", "8", "--weights", "none", "--epochs", "1",
             "--pairs-per-epoch", "8", "--batch-size", "8", "--out", str(tmp_path / "run"),
             *FINE_TUNE_FLAGS]
    assert main(train) == 2
    err = capsys.readouterr().err
    assert "--skip-bad" in err and "cannot be used" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists(), "nothing may be written before the data is usable"
    assert main(train + ["--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert f"left out {len(bad)} unusable image(s)" in out
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epochs_completed"] == 1


def test_a_class_left_with_one_image_and_an_empty_folder(tmp_path):
    good(tmp_path / "a" / "1.png")
    good(tmp_path / "a" / "2.png")
    good(tmp_path / "b" / "1.png")
    good(tmp_path / "c" / "1.png")
    good(tmp_path / "c" / "2.png")
    dataset = load_dataset(DataConfig(images=str(tmp_path)))
    assert dataset.classes == ["a", "c"] and "b" in " ".join(dataset.notes)
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="without images.*d"):
        load_dataset(DataConfig(images=str(tmp_path)))


@pytest.mark.parametrize("text, message", [
    ("path\nx.png\n", "lacks column(s) label"),
    ("path,label,group,extra\n{a1},a,s1,?\n{a2},a,s1,?\n{b1},b,s2,?\n{b2},b,s2,?\n", None),
    ("path,label\n{a1},a\n{b1},b\n", "at least two are needed"),
])
def test_csv_columns_and_labels(tmp_path, text, message):
    files = {name: good(tmp_path / f"{name}.png") for name in ("a1", "a2", "b1", "b2")}
    (tmp_path / "list.csv").write_text(text.format(**{k: v.name for k, v in files.items()}))
    config = DataConfig(csv=str(tmp_path / "list.csv"))
    if message is None:  # extra columns are kept as metadata
        assert "extra" in load_dataset(config).table.columns
    else:
        with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_dataset(config)
