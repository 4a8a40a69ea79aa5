"""Before the long work: what can be checked cheaply is refused before any image is decoded.

Each case gives `microrep train` a folder with an unreadable image: a refusal that names
the weights file or the run folder, not the image, shows the check came first.
"""

import json

import pytest

from microrep.cli import main
from microrep.embedding.archive import read_embeddings

from conftest import write_class_folders


@pytest.fixture
def folder_with_a_bad_image(tmp_path):
    write_class_folders(tmp_path / "images")
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
            "--input-size", "32", "--vgg-blocks", "1", "--feature-layers", "", "--view", "tiles", "--grid", "1"]
    assert main([*args, "--out", str(tmp_path / "emb")]) == 0  # an archive: bad files never stop it
    out = capsys.readouterr().out
    assert "2 image(s) could not be read" in out and "broken.png" in out and "empty.png" in out
    embeddings, table = read_embeddings(tmp_path / "emb")
    assert len(table) == 4 and not table["path"].str.contains("broken|empty").any()


def test_imagenet_weights_are_fetched_before_any_image_and_offline_fails_in_one_line(tmp_path):
    """A real HTTP server on 127.0.0.1 stands for Keras' weights host: a file whose hash
    matches is fetched and cached; a wrong file or no server is one WeightsError."""
    import hashlib
    import http.server
    import socket
    import threading

    from microrep.errors import WeightsError
    from microrep.nn.backbone import fetch_imagenet_weights

    served = tmp_path / "served"
    served.mkdir()
    payload = b"\x89HDF\r\n\x1a\n" + bytes(range(200))
    (served / "vgg16_notop.h5").write_bytes(payload)
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/vgg16_notop.h5"
        path = fetch_imagenet_weights(url, hashlib.md5(payload).hexdigest(), tmp_path / "keras")
        assert open(path, "rb").read() == payload
        with pytest.raises(WeightsError, match="--weights FILE"):
            fetch_imagenet_weights(url.replace("notop", "other"), None, tmp_path / "keras")
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as closed:  # a port nothing listens on: the offline case
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(WeightsError, match="could not download the ImageNet VGG16 weights"):
        fetch_imagenet_weights(f"http://127.0.0.1:{port}/x_notop.h5", None, tmp_path / "keras2")
