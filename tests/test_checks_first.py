"""Before the long work: what can be checked cheaply is refused before any image is decoded.

Each case gives `microrep train` a folder with an unreadable image: a refusal that names
the weights file or the run folder, not the image, shows the check came first.
"""

import json

import numpy as np
import pytest
from PIL import Image

from microrep.cli import main
from microrep.embedding.archive import read_embeddings


@pytest.fixture
def folder_with_a_bad_image(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for index in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(
                tmp_path / "images" / label / f"{index}.png")
    (tmp_path / "images" / "a" / "broken.png").write_bytes(b"not a png")
    return tmp_path / "images"


def run_train(capsys, images, *extra):
    code = main(["train", "--images", str(images), "--input-size", "32", "--vgg-blocks", "1",
                 *extra])
    return code, capsys.readouterr().err


def test_a_missing_weights_file_is_named_before_any_image_is_read(tmp_path, capsys,
                                                                   folder_with_a_bad_image):
    code, err = run_train(capsys, folder_with_a_bad_image, "--weights", str(tmp_path / "no.h5"),
                          "--out", str(tmp_path / "run"))
    assert code == 2 and "weights file not found" in err and "broken" not in err
    assert not (tmp_path / "run").exists()


def test_a_run_folder_in_the_way_is_named_before_any_image_is_read(tmp_path, capsys,
                                                                   folder_with_a_bad_image):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"epochs": 3}))
    code, err = run_train(capsys, folder_with_a_bad_image, "--weights", "none", "--out", str(run))
    assert code == 2 and "already holds a training run" in err and "broken" not in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, err = run_train(capsys, folder_with_a_bad_image, "--weights", "none", "--out",
                          str(tmp_path / "other"))
    assert code == 2 and "is not empty" in err and "broken" not in err
    # with the checks passed, the image is what is refused
    code, err = run_train(capsys, folder_with_a_bad_image, "--weights", "none", "--out",
                          str(tmp_path / "fresh"))
    assert code == 2 and "broken" in err


def test_embed_checks_every_header_first_and_names_every_image_it_leaves_out(tmp_path, capsys,
                                                                            folder_with_a_bad_image):
    (folder_with_a_bad_image / "b" / "empty.png").write_bytes(b"")
    args = ["embed", "--pretrained", "--weights", "none", "--images", str(folder_with_a_bad_image),
            "--input-size", "32", "--vgg-blocks", "1", "--feature-layers", "", "--grid", "1"]
    assert main([*args, "--out", str(tmp_path / "emb")]) == 0  # an archive: bad files never stop it
    out = capsys.readouterr().out
    assert "2 image(s) could not be read" in out and "broken.png" in out and "empty.png" in out
    embeddings, table = read_embeddings(tmp_path / "emb")
    assert len(table) == 4 and not table["path"].str.contains("broken|empty").any()
