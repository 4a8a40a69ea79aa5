"""One view, every path: `embed`, `embed --pretrained`, the SavedModel's `embed_image` and a
search query give one image the same vector under each view (issue: every pixel, at the
right scale), and a view that differs from the run's is refused in one line."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from microrep.cli import main
from microrep.config import ModelConfig
from microrep.embedding.archive import read_embeddings
from microrep.nn.tower import build_feature_tower, build_tower

#: Each view as flags: tiles, and a frame at two scales whose larger frames are cut into
#: 48-px windows (so the windowed pass is on every path too).
VIEWS = {"tiles": ["--view", "tiles", "--grid", "2"],
         "frame": ["--view", "frame", "--scales", "1,0.5", "--window", "48"]}
#: Pillow (microrep) and TensorFlow (the SavedModel) resize within one grey level of each
#: other; the frame's resized scales agree to this, exact pieces (tiles, scale 1) to float.
TOLERANCE = {"tiles": 1e-5, "frame": 2e-2}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    for number, shape in enumerate([(90, 130), (64, 64), (40, 100), (120, 70)]):
        smooth = rng.integers(0, 256, (shape[0] // 4 + 1, shape[1] // 4 + 1)).astype(np.uint8)
        image = Image.fromarray(smooth).resize(shape[::-1], Image.BILINEAR)
        image.save(folder / f"micrograph{number}.png")
    return folder


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    """A trained-tower stand-in (a .keras tower with a head) and the pretrained feature tower,
    both saved as files the commands load."""
    folder = tmp_path_factory.mktemp("towers")
    keras.utils.set_random_seed(0)
    config = ModelConfig(input_size=32, embedding_dim=8, weights="none", vgg_blocks=2,
                         feature_layers="", mixed_precision=False)
    build_tower(config).save(folder / "tower.keras")
    # a weights file (search rebuilds a pretrained model from it to embed its queries)
    keras.applications.VGG16(include_top=False, weights=None,
                             input_shape=(32, 32, 3)).save_weights(folder / WEIGHTS)
    build_feature_tower(dataclasses.replace(config, weights=str(folder / WEIGHTS))).save(
        folder / "pretrained.keras")
    return folder


WEIGHTS = "vgg16.weights.h5"


def pretrained_flags(towers):
    return ["--pretrained", "--weights", str(towers / WEIGHTS), "--input-size", "32",
            "--vgg-blocks", "2", "--feature-layers", "", "--no-mixed-precision"]


def savedmodel_vectors(export, files, out):
    """embed_image of each file, in a process that imports only TensorFlow."""
    script = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        from PIL import Image
        model = tf.saved_model.load({str(export / 'savedmodel')!r})
        files = {[str(f) for f in files]!r}
        out = [model.embed_image(tf.constant(np.asarray(Image.open(f).convert('L')))).numpy()
               for f in files]
        assert "microrep" not in sys.modules
        np.save({str(out)!r}, np.stack(out))
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    return np.load(out)


def query_distance(index, query, out):
    """The distance from `query` (an image file) to its nearest row of the archive `index`."""
    assert main(["search", "--index", str(index), "--query", str(query), "--k", "1",
                 "--out", str(out), "--overwrite"]) == 0
    found = pd.read_csv(out / "neighbours.csv")
    return int(found.loc[0, "row"]), float(found.loc[0, "distance"])


@pytest.mark.slow
@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("model", ["trained", "pretrained"])
def test_embed_export_and_search_agree_on_each_image(images, towers, tmp_path, view, model):
    pytest.importorskip("tensorflow")
    source = ["--images", str(images), "--read-workers", "0"]
    chooses = pretrained_flags(towers) if model == "pretrained" else ["--model-path", str(towers / "tower.keras")]
    assert main(["embed", *source, *chooses, *VIEWS[view], "--feature-cache", "",
                 "--out", str(tmp_path / "archive")]) == 0
    vectors, table = read_embeddings(tmp_path / "archive")
    recorded = json.loads((tmp_path / "archive" / "embed.json").read_text())
    assert recorded["view"]["view"] == view

    model_file = towers / ("pretrained.keras" if model == "pretrained" else "tower.keras")
    assert main(["export", "--model-path", str(model_file), *VIEWS[view],
                 "--out", str(tmp_path / "export")]) == 0
    exported = savedmodel_vectors(tmp_path / "export", list(table["path"]), tmp_path / "saved.npy")
    np.testing.assert_allclose(exported, vectors, rtol=0, atol=TOLERANCE[view])

    for row, path in enumerate(table["path"]):
        neighbour, distance = query_distance(tmp_path / "archive", path, tmp_path / f"search{row}")
        assert neighbour == row and distance < 1e-5, (row, neighbour, distance)


@pytest.mark.slow
def test_a_view_other_than_the_runs_is_refused_in_one_line(tiny_data_config, tmp_path, capsys):
    source = ["--data", "synthetic", "--data-dir", tiny_data_config.data_dir,
              "--synthetic-samples-per-class", "2", "--synthetic-images-per-sample", "3",
              "--synthetic-image-size", "64", "--synthetic-seed", "1"]
    model = ["--weights", "none", "--input-size", "32", "--vgg-blocks", "2", "--no-mixed-precision"]
    assert main(["train", *source, *model, "--epochs", "1", "--pairs-per-epoch", "8",
                 "--batch-size", "4", "--feature-bank", "2", "--feature-cache", "",
                 "--scales", "1,0.5", "--out", str(tmp_path / "run")]) == 0
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["image_view"]["view"] == "frame" and recorded["image_view"]["scales"] == "1,0.5"
    capsys.readouterr()
    assert main(["embed", *source, "--model-path", str(tmp_path / "run"), "--view", "tiles",
                 "--out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip()
    assert "was trained seeing the whole frame at scales 1, 0.5" in err and len(err.splitlines()) == 1
    assert main(["embed", *source, "--model-path", str(tmp_path / "run"),
                 "--out", str(tmp_path / "own")]) == 0  # --view auto: the run's own
    assert json.loads((tmp_path / "own" / "embed.json").read_text())["view"]["scales"] == "1,0.5"
