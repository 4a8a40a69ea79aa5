"""The hostile-input corpus, second part: each kind of input with the outcome a user gets.

test_hostile_inputs.py holds the first eleven kinds (truncated, empty, not an
image, 1x1, decompression bomb; 16-bit and float TIFF, RGBA, palette, unicode
names; a class of one image or none; CSV columns). Here, each row is one more
kind, generated at test time; the outcome is either "loads as ..." or one line
that names the file and says what to do. Nothing is mocked.
"""

import os
import sqlite3
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from microrep.cli import main
from microrep.config import DataConfig, FetchConfig
from microrep.data import load_dataset
from microrep.data.fetch import FetchError, fetch_uhcsdb
from microrep.data.images import read_image
from microrep.embedding.archive import read_embeddings
from microrep.errors import DataError

from test_fetch import RecordServer, build_record

RNG = np.random.default_rng(0)
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def noise(height=40, width=48, dtype=np.uint8, top=256):
    return RNG.integers(0, top, (height, width), dtype=dtype)


# ------------------------------------------------------------------ images that load

def exif_rotated_jpeg(path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(noise(40, 48)).save(path, exif=exif.tobytes())
    return (48, 40)  # shown upright: 40 wide, 48 high


def cmyk_jpeg(path):
    Image.fromarray(RNG.integers(0, 256, (40, 48, 3), dtype=np.uint8)).convert("CMYK").save(path)
    return (40, 48)


def png_16_bit(path):
    Image.fromarray(noise(40, 48, np.uint16, 65535)).save(path)
    return (40, 48)


def multi_page_tiff(path):
    tifffile.imwrite(path, noise(3 * 40, 48).reshape(3, 40, 48), photometric="minisblack")
    return (40, 48)  # the first page


def planar_rgb_tiff(path):
    tifffile.imwrite(path, RNG.integers(0, 256, (3, 40, 48), dtype=np.uint8), photometric="rgb",
                     planarconfig="separate")
    return (40, 48)


@pytest.mark.parametrize("make, suffix", [
    (exif_rotated_jpeg, ".jpg"), (cmyk_jpeg, ".jpg"), (png_16_bit, ".png"),
    (multi_page_tiff, ".tif"), (planar_rgb_tiff, ".tif")])
def test_unusual_images_load_as_a_viewer_shows_them(tmp_path, make, suffix):
    path = tmp_path / f"{make.__name__}{suffix}"
    shape = make(path)
    image = read_image(path)
    assert image.shape == shape and image.dtype == np.uint8
    assert int(image.max()) - int(image.min()) > 100  # the range is used, not clipped or flat


def test_sixteen_bit_png_keeps_its_contrast(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 48).astype(np.uint16), (40, 1))  # dark 16-bit data
    Image.fromarray(ramp).save(tmp_path / "dark.png")
    image = read_image(tmp_path / "dark.png")
    assert image[:, 0].max() < 10 and image[:, -1].min() > 245  # stretched, not divided by 256


# ------------------------------------------------------------------ one line, naming the file

def test_nan_tiff_directory_named_png_and_symlink_loop_are_named(tmp_path):
    tifffile.imwrite(tmp_path / "nan.tif", np.full((40, 48), np.nan, np.float32))
    (tmp_path / "folder.png").mkdir()
    os.symlink(tmp_path / "loop2.png", tmp_path / "loop1.png")
    os.symlink(tmp_path / "loop1.png", tmp_path / "loop2.png")
    for name, reason in [("nan.tif", "no finite pixel values"),
                         ("folder.png", "a folder, not an image"),
                         ("loop1.png", "not found (or a broken link)")]:
        with pytest.raises(DataError) as error:
            read_image(tmp_path / name)
        assert name in str(error.value) and reason in str(error.value)
        assert "\n" not in str(error.value)


def test_class_folders_skip_what_is_not_an_image_file(tmp_path):
    for label in ("a", "b"):
        for index in range(2):
            (tmp_path / label).mkdir(exist_ok=True)
            Image.fromarray(noise()).save(tmp_path / label / f"{index}.png")
    (tmp_path / "a" / "folder.png").mkdir()
    os.symlink(tmp_path / "b" / "loop2.png", tmp_path / "b" / "loop1.png")
    os.symlink(tmp_path / "b" / "loop1.png", tmp_path / "b" / "loop2.png")
    dataset = load_dataset(DataConfig(images=str(tmp_path)))
    assert len(dataset) == 4


def small_image_folder(root):
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(2):
            Image.fromarray(noise(64, 64)).save(root / label / f"{index}.png")
    Image.fromarray(noise(20, 24)).save(root / "b" / "tiny.png")


def test_an_image_smaller_than_the_crops_is_named_before_training(tmp_path, capsys):
    small_image_folder(tmp_path / "imgs")
    argv = ["train", "--images", str(tmp_path / "imgs"), "--input-size", "64", "--weights",
            "none", "--vgg-blocks", "2", "--epochs", "1", "--pairs-per-epoch", "8",
            "--batch-size", "4", "--feature-bank", "2", "--feature-cache", "",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "tiny.png is 24x20 pixels, too small for 64x64 crops" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_csv_not_utf8_and_sqlite_without_sample_table(tmp_path):
    (tmp_path / "list.csv").write_bytes("path,label\nx.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="cannot read CSV .*list.csv.*utf-8"):
        load_dataset(DataConfig(csv=str(tmp_path / "list.csv")))
    with sqlite3.connect(tmp_path / "microstructures.sqlite") as db:
        db.execute("CREATE TABLE micrograph (micrograph_id INTEGER)")
    with pytest.raises(DataError, match="not a readable UHCSDB database.*no such table: sample"):
        load_dataset(DataConfig(data="uhcsdb", data_dir=str(tmp_path)))


@pytest.mark.parametrize("separator, bom", [(";", False), ("\t", False), (",", True)])
def test_csv_from_spreadsheets_semicolons_tabs_and_byte_order_mark(tmp_path, separator, bom):
    rows = ["path,label"] + [f"{label}{i}.png,{label}" for label in "ab" for i in range(2)]
    for label in "ab":
        for i in range(2):
            Image.fromarray(noise()).save(tmp_path / f"{label}{i}.png")
    text = "\n".join(row.replace(",", separator) for row in rows) + "\n"
    (tmp_path / "list.csv").write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    dataset = load_dataset(DataConfig(csv=str(tmp_path / "list.csv")))
    assert list(dataset.table["label"]) == ["a", "a", "b", "b"]
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "list.csv").write_text(text + separator.join(["folder.png", "a"]) + "\n")
    with pytest.raises(DataError, match="folders, not images, first: .*folder.png"):
        load_dataset(DataConfig(csv=str(tmp_path / "list.csv")))


# ------------------------------------------------------------------ end to end, as typed

@pytest.mark.slow
def test_odd_file_names_and_labels_survive_training_and_embedding(tmp_path):
    """File names that are not UTF-8, class names with commas and quotes: train, embed, read back."""
    root = os.fsencode(tmp_path / "imgs")
    for label in ('ferrite, "coarse"', "pearlite; lamellar"):
        folder = root + b"/" + label.encode()
        os.makedirs(folder)
        for name in (b"caf\xe9.png", b"plain.png"):
            with open(folder + b"/" + name, "wb") as handle:
                Image.fromarray(noise(64, 64)).save(handle, format="PNG")
    common = ["--images", str(tmp_path / "imgs"), "--input-size", "32", "--vgg-blocks", "2",
              "--weights", "none"]
    assert main(["train", *common, "--epochs", "1", "--pairs-per-epoch", "8", "--batch-size", "4",
                 "--feature-bank", "2", "--feature-cache", "", "--out", str(tmp_path / "run")]) == 0
    assert main(["embed", "--model-path", str(tmp_path / "run"), "--images",
                 str(tmp_path / "imgs"), "--out", str(tmp_path / "emb")]) == 0
    table = read_embeddings(tmp_path / "emb")[1]
    assert sorted(set(table["label"])) == ['ferrite, "coarse"', "pearlite; lamellar"]
    assert len(table) == 4 and all(os.path.isfile(path) for path in table["path"])


def tiny_embeddings_and_tower(folder):
    """A tiny tower file and an embeddings folder, made with the real commands."""
    small_image_folder(folder / "imgs")
    os.remove(folder / "imgs" / "b" / "tiny.png")
    assert main(["train", "--images", str(folder / "imgs"), "--input-size", "32", "--vgg-blocks",
                 "1", "--weights", "none", "--epochs", "1", "--pairs-per-epoch", "8",
                 "--batch-size", "4", "--feature-bank", "2", "--feature-cache", "",
                 "--out", str(folder / "run")]) == 0
    assert main(["embed", "--model-path", str(folder / "run"), "--images", str(folder / "imgs"),
                 "--out", str(folder / "emb")]) == 0


FILE_SIZE_LIMIT = (
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "limit = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
    "from microrep.cli import main; sys.exit(main(sys.argv[2:]))")


@pytest.mark.slow
def test_a_full_disk_during_embed_and_export_is_one_line_and_leaves_no_half_file(tmp_path):
    tiny_embeddings_and_tower(tmp_path)
    tower_bytes = (tmp_path / "run" / "tower.keras").stat().st_size
    for limit, argv, what in [
            (100, ["embed", "--model-path", str(tmp_path / "run"), "--images",
                   str(tmp_path / "imgs"), "--out", str(tmp_path / "full-emb")], "no space left"),
            (tower_bytes + 20_000, ["export", "--model-path", str(tmp_path / "run"),
                                    "--out", str(tmp_path / "full-export")],
             "cannot write the SavedModel")]:
        done = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, str(limit), *argv],
                              env=QUIET, capture_output=True, text=True, timeout=600)
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert what in last and "Traceback" not in done.stderr
        out = tmp_path / argv[-1].rsplit("/", 1)[-1]
        assert not list(out.rglob(".*tmp*")) and not list(out.glob(".savedmodel.*"))
        assert not (out / "savedmodel").exists() and not (out / "embeddings.npy").exists()


#: Root ignores file permissions; without these capabilities they apply to it too.
AS_ROOT_WITHOUT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner",
                            "--inh-caps=-all", "--"]


@pytest.mark.slow
def test_a_read_only_output_folder_is_one_line(tmp_path):
    tiny_embeddings_and_tower(tmp_path)
    (tmp_path / "locked").mkdir(mode=0o555)
    os.chmod(tmp_path / "locked", 0o555)
    prefix = AS_ROOT_WITHOUT_OVERRIDE if os.geteuid() == 0 else []
    for argv in (["evaluate", "--embeddings", str(tmp_path / "emb"), "--folds", "2",
                  "--out", str(tmp_path / "locked" / "eval")],
                 ["embed", "--model-path", str(tmp_path / "run"), "--images",
                  str(tmp_path / "imgs"), "--out", str(tmp_path / "locked" / "emb")],
                 ["export", "--model-path", str(tmp_path / "run"),
                  "--out", str(tmp_path / "locked" / "export")]):
        done = subprocess.run([*prefix, sys.executable, "-m", "microrep", *argv], env=QUIET,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert "cannot write" in last and "Permission denied" in last, done.stderr
        assert "Traceback" not in done.stderr
    assert not any((tmp_path / "locked").iterdir())


@pytest.mark.slow
def test_a_keras_file_of_another_model_is_one_line(tmp_path, capsys):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.save(tmp_path / "other.keras")
    Image.fromarray(noise()).save(tmp_path / "x.png")
    assert main(["embed", "--model-path", str(tmp_path / "other.keras"), "--images", str(tmp_path),
                 "--out", str(tmp_path / "emb")]) == 2
    err = capsys.readouterr().err
    assert "other.keras is a Keras model but not a microrep embedding tower" in err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ hostile servers

class StalledServer:
    """Accepts connections on 127.0.0.1 and never answers (a hung mirror)."""

    def __init__(self):
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/stalled/"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.socket.close()


@pytest.mark.slow
def test_a_stalled_source_and_an_html_page_with_status_200_give_way_to_the_next(tmp_path):
    folder = build_record(tmp_path / "record")
    page = b"<!DOCTYPE html><html><body>Please log in</body></html>"
    files = {f"/mirror/{name}": (folder / name).read_bytes()
             for name in ("microstructures.sqlite", "micrographs.zip")}
    files.update({"/login/microstructures.sqlite": page, "/login/micrographs.zip": page})
    with RecordServer(files) as server, StalledServer() as stalled:
        config = FetchConfig(dest=str(tmp_path / "u"), timeout=2,
                             source=f"{stalled.url},{server.url}/login/,{server.url}/mirror/")
        summary = fetch_uhcsdb(config, progress=False, log=lambda *_: None)
        assert summary["files"]["microstructures.sqlite"]["source"].startswith(server.url + "/mirror")
        only_bad = FetchConfig(dest=str(tmp_path / "v"), timeout=2,
                               source=f"{stalled.url},{server.url}/login/")
        import microrep.data.fetch as fetch

        saved, fetch.SOURCES = fetch.SOURCES, ()
        try:
            with pytest.raises(FetchError) as error:
                fetch_uhcsdb(only_bad, progress=False, log=lambda *_: None)
        finally:
            fetch.SOURCES = saved
    message = str(error.value)
    assert "timed out" in message and "answered with an HTML page instead of" in message
    assert not (tmp_path / "v" / "microstructures.sqlite").exists()


@pytest.mark.slow
def test_a_corrupt_image_met_while_embedding_is_named_and_recorded_not_fatal(tmp_path, capsys):
    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for index in range(2):
            Image.fromarray(noise(64, 64)).save(tmp_path / "imgs" / label / f"{index}.png")
    whole = (tmp_path / "imgs" / "b" / "1.png").read_bytes()
    (tmp_path / "imgs" / "b" / "1.png").write_bytes(whole[:80])  # cut short
    argv = ["embed", "--pretrained", "--weights", "none", "--input-size", "32", "--vgg-blocks",
            "1", "--feature-layers", "", "--images", str(tmp_path / "imgs"),
            "--out", str(tmp_path / "emb")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "1 image(s) could not be read" in captured.out and "1.png" in captured.out
    assert "Traceback" not in captured.err
    from microrep.embedding.parts import PartsArchive

    archive = PartsArchive(tmp_path / "emb")
    assert len(archive) == 3 and list(archive.bad["path"]) == [str(tmp_path / "imgs" / "b" / "1.png")]
