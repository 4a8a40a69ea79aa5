"""`microrep search` on real embeddings of generated micrographs, and the neighbour engine."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from microrep.analysis.neighbours import nearest_neighbours
from microrep.cli import main
from microrep.embedding.archive import read_embeddings
from microrep.fileio import write_sealed_json

PRETRAINED = ["--pretrained", "--input-size", "32", "--vgg-blocks", "2",
              "--feature-layers", "block2_conv2", "--view", "tiles", "--grid", "1"]


def brute_force(index, queries, k):
    distances = np.linalg.norm(queries[:, None, :] - index[None, :, :], axis=2)
    rows = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, rows, axis=1), rows


def test_exact_search_is_the_brute_force_answer_and_skips_what_it_is_told():
    rng = np.random.default_rng(0)
    index, queries = rng.normal(size=(300, 16)), rng.normal(size=(7, 16))
    distances, rows = nearest_neighbours(index, queries, k=5)
    want_d, want_r = brute_force(index, queries, 5)
    assert (rows == want_r).all()
    np.testing.assert_allclose(distances, want_d, rtol=1e-5)
    groups = np.repeat(np.arange(30), 10).astype(str)
    own = np.array([3, 50, 299])
    _, rows = nearest_neighbours(index, index[own], k=8, index_groups=groups,
                                 query_groups=groups[own], query_rows=own)
    for q, row in enumerate(own):
        assert row not in rows[q] and not (groups[rows[q]] == groups[row]).any()
    _, rows = nearest_neighbours(index, index[own], k=3, query_rows=own)
    assert not (rows == own[:, None]).any()  # a row is never its own neighbour


def test_faiss_gives_the_exact_answer():
    import faiss  # in the test extras: CI must run this, never skip it

    assert hasattr(faiss, "IndexFlatL2")
    rng = np.random.default_rng(1)
    index, queries = rng.normal(size=(2000, 64)).astype("float32"), rng.normal(size=(20, 64))
    exact = nearest_neighbours(index, queries, k=10, backend="exact")
    fast = nearest_neighbours(index, queries, k=10, backend="faiss")
    assert (exact[1] == fast[1]).all()
    np.testing.assert_allclose(exact[0], fast[0], rtol=1e-4)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A user's archive: one folder per class of generated micrographs, embedded with `embed`."""
    from PIL import Image

    from microrep.data.synthetic import CONDITIONS, generate_micrograph

    root = tmp_path_factory.mktemp("search")
    rng = np.random.default_rng(0)
    for name in ("spheroidite", "pearlite", "network"):
        (root / "data" / name).mkdir(parents=True)
        for index in range(4):
            image, _ = generate_micrograph(rng, name, CONDITIONS[name][index % len(CONDITIONS[name])], 48)
            Image.fromarray(image).save(root / "data" / name / f"{name}_{index}.png")
    weights = root / "vgg16_notop.weights.h5"  # fixed weights: queries embed as the index did
    from microrep.nn.backbone import load_vgg16

    load_vgg16(32, "none").save_weights(weights)
    assert main(["embed", *PRETRAINED, "--weights", str(weights), "--images", str(root / "data"),
                 "--out", str(root / "index")]) == 0
    assert main(["embed", *PRETRAINED, "--weights", "none", "--images", str(root / "data"),
                 "--out", str(root / "random-index")]) == 0
    return root


@pytest.mark.slow
def test_search_by_image_files_and_by_rows(archive, tmp_path, capsys):
    table = read_embeddings(archive / "index")[1]
    query = table["path"].iloc[4]
    assert main(["search", "--index", str(archive / "index"), "--query", query,
                 str(archive / "data" / "pearlite"), "--k", "3",
                 "--out", str(tmp_path / "by-file")]) == 0
    found = pd.read_csv(tmp_path / "by-file" / "neighbours.csv")
    first = found[found["query"] == query].sort_values("rank")
    assert first["path"].iloc[0] == query and first["distance"].iloc[0] < 1e-4  # itself, re-embedded
    assert first["row"].iloc[0] == 4
    assert (tmp_path / "by-file" / "neighbours.png").stat().st_size > 1000
    assert len(found) == (1 + 4) * 3  # the file, then every image of the folder, 3 nearest each
    assert main(["search", "--index", str(archive / "index"), "--query-rows", "0,5",
                 "--exclude-same-group", "--k", "4", "--out", str(tmp_path / "by-row")]) == 0
    rows = pd.read_csv(tmp_path / "by-row" / "neighbours.csv")
    for row in (0, 5):
        hits = rows[rows["query"] == table["path"].iloc[row]]
        assert len(hits) == 4 and (hits["group"] != table["group"].iloc[row]).all()
        assert (hits["query_label"] == table["label"].iloc[row]).all(), "the query's own label"
    capsys.readouterr()
    assert main(["search", "--index", str(archive / "index"), "--query-rows", "999",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "outside the index's rows" in capsys.readouterr().err
    assert main(["search", "--index", str(archive / "index"), "--out", str(tmp_path / "none")]) == 2
    assert "either --query" in capsys.readouterr().err
    info = json.loads((archive / "index" / "embed.json").read_text())
    assert info["pretrained"] is True  # what the query images were embedded with
    assert main(["search", "--index", str(archive / "random-index"), "--query", query,
                 "--out", str(tmp_path / "random")]) == 2
    assert "random VGG16 weights" in capsys.readouterr().err

    # a list file (names with spaces), and an embeddings folder as queries: the answer printed
    spaced = tmp_path / "a query with spaces.png"
    spaced.write_bytes(Path(query).read_bytes())
    (tmp_path / "queries.txt").write_text(f"{spaced}\n")
    capsys.readouterr()
    assert main(["search", "--index", str(archive / "index"), "--query",
                 str(tmp_path / "queries.txt"), "--k", "2"]) == 0
    printed = capsys.readouterr().out
    assert str(spaced) in printed and f"  1  0.0000  {table['label'].iloc[4]}  {query}" in printed
    assert main(["search", "--index", str(archive / "index"), "--query", str(archive / "index"),
                 "--k", "1", "--out", str(tmp_path / "archive-queries")]) == 0
    by_archive = pd.read_csv(tmp_path / "archive-queries" / "neighbours.csv")
    assert len(by_archive) == len(table) and (by_archive["distance"] < 1e-5).all()
    assert (by_archive["query_label"] == by_archive["label"]).all()


@pytest.mark.slow
def test_bad_search_input_is_one_line(archive, tmp_path, capsys):
    """Not an index, an unreadable query, k beyond the index, an index whose model changed."""
    import shutil

    (tmp_path / "junk.png").write_bytes(b"not an image")
    index = str(archive / "index")
    moved = tmp_path / "other-model"
    shutil.copytree(archive / "index", moved)
    info = json.loads((moved / "embed.json").read_text())
    info["feature_layers"] = "block1_conv2"  # a 64-channel layer: not the index's 128-d model
    info["embedder"]["model"]["feature_layers"] = "block1_conv2"
    write_sealed_json(moved / "embed.json", {k: v for k, v in info.items() if k != "checksum"})
    cases = [(["--index", str(tmp_path), "--query-rows", "0"], "holds no embeddings archive"),
             (["--index", index, "--query", str(tmp_path / "junk.png")], "junk.png"),
             (["--index", index, "--query-rows", "0", "--k", "50"], "--k 50 is more than the 11"),
             (["--index", str(moved), "--query", str(archive / "data" / "pearlite")],
              "is not the one that made the index")]
    for number, (argv, message) in enumerate(cases):
        capsys.readouterr()
        assert main(["search", *argv, "--out", str(tmp_path / f"out{number}")]) == 2, message
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (message, err)


def test_an_empty_query_list_is_one_line(tmp_path, capsys):
    from microrep.embedding.archive import write_embeddings

    rng = np.random.default_rng(0)
    write_embeddings(tmp_path / "emb", rng.normal(size=(6, 4)).astype(np.float32),
                     pd.DataFrame({"path": [f"/x/{i}.png" for i in range(6)], "label": "a",
                                   "group": [str(i) for i in range(6)]}))
    (tmp_path / "empty.txt").write_text("\n")
    assert main(["search", "--index", str(tmp_path / "emb"), "--query", str(tmp_path / "empty.txt")]) == 2
    err = capsys.readouterr().err
    assert "names no micrographs" in err and len(err.strip().splitlines()) == 1
