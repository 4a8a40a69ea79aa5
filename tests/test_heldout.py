"""The held-out workflow a user runs on a new batch: embed --pretrained, evaluate --test-embeddings."""

import json

import numpy as np
import pandas as pd
import pytest

from microrep.cli import main
from microrep.embedding.archive import read_embeddings

PRETRAINED = ["--pretrained", "--weights", "none", "--input-size", "32", "--vgg-blocks", "2",
              "--feature-layers", "block2_conv2", "--view", "tiles", "--grid", "1"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    data = tmp_path_factory.mktemp("heldout") / "data"
    assert main(["generate", "--out", str(data), "--classes", "spheroidite,pearlite,network",
                 "--samples-per-class", "2", "--images-per-sample", "4", "--image-size", "48"]) == 0
    return data


def metadata(folder):
    """The generated folder's table as a user's CSV would hold it: path, label, group."""
    table = pd.read_csv(folder / "metadata.csv")
    return table.assign(path=[str(folder / p) for p in table["path"]],
                        label=table["primary_microconstituent"], group=table["sample_key"])


def write_csv(path, table, with_labels=True):
    columns = ["path", "label", "group"] if with_labels else ["path"]
    table[columns].to_csv(path, index=False)
    return path


def test_embed_takes_every_image_labelled_or_not(folder, tmp_path, capsys):
    table = metadata(folder)
    listing = write_csv(tmp_path / "unlabelled.csv", table.head(5), with_labels=False)
    assert main(["embed", *PRETRAINED, "--csv", str(listing), "--out", str(tmp_path / "emb")]) == 0
    assert "1 of 1 part(s) done (5 images listed" in capsys.readouterr().out
    embeddings, embedded = read_embeddings(tmp_path / "emb")
    assert embeddings.shape == (5, 128) and list(embedded["path"]) == list(table["path"].head(5))
    info = json.loads((tmp_path / "emb" / "embed.json").read_text())
    assert info["pretrained"] and info["data"] == "csv" and info["images"] == 5

    # a class with a single image is embedded too: rarity is for training to judge
    table.loc[0, "label"] = "lonely"
    lonely = write_csv(tmp_path / "lonely.csv", table)
    assert main(["embed", *PRETRAINED, "--csv", str(lonely), "--out", str(tmp_path / "all")]) == 0
    embeddings, embedded = read_embeddings(tmp_path / "all")
    assert len(embeddings) == len(table) and "lonely" in set(embedded["label"])


def test_fit_on_one_folder_score_another(folder, tmp_path, capsys):
    table = metadata(folder)
    fit = table.groupby("group").head(2)
    test = table.drop(fit.index)
    for name, part in (("fit", fit), ("test", test)):
        listing = write_csv(tmp_path / f"{name}.csv", part)
        assert main(["embed", *PRETRAINED, "--csv", str(listing), "--out", str(tmp_path / name)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--embeddings", str(tmp_path / "fit"), "--test-embeddings",
                 str(tmp_path / "test"), "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "MAP@R" in out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_fit"] == len(fit) and metrics["n_test"] == len(test)
    assert set(metrics["accuracy"]) == {"linear", "rbf"}
    for summary in metrics["retrieval"].values():
        assert 0.0 <= summary["map_at_r"] <= 1.0 and summary["queries"] == len(test)
    assert (tmp_path / "eval" / "confusion.png").is_file()
    confusion = np.array(metrics["heldout"]["linear"]["confusion"])
    assert confusion.sum() == len(test)


def test_unlabelled_embeddings_cannot_be_scored(folder, tmp_path, capsys):
    table = metadata(folder)
    listing = write_csv(tmp_path / "unlabelled.csv", table, with_labels=False)
    assert main(["embed", *PRETRAINED, "--csv", str(listing), "--out", str(tmp_path / "u")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--embeddings", str(tmp_path / "u"), "--test-embeddings",
                 str(tmp_path / "u"), "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert "carry no labels" in err and len(err.strip().splitlines()) == 1


def test_evaluate_and_embed_do_not_replace_earlier_results_unless_asked(folder, tmp_path, capsys):
    listing = write_csv(tmp_path / "all.csv", metadata(folder))
    embed = ["embed", *PRETRAINED, "--csv", str(listing), "--out", str(tmp_path / "emb")]
    assert main(embed) == 0
    evaluate = ["evaluate", "--embeddings", str(tmp_path / "emb"), "--folds", "2",
                "--out", str(tmp_path / "eval")]
    assert main(evaluate) == 0
    first = (tmp_path / "eval" / "metrics.json").read_text()
    capsys.readouterr()
    assert main(evaluate + ["--seed", "5"]) == 2
    assert "already holds an evaluation (metrics.json); pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "eval" / "metrics.json").read_text() == first
    assert main(evaluate + ["--seed", "5", "--overwrite"]) == 0
    assert '"seed": 5' in (tmp_path / "eval" / "metrics.json").read_text()
    assert main(embed) == 0  # the same embedding again: every part is already done
    assert "0 part(s)" in capsys.readouterr().out
    assert main(embed + ["--grid", "2"]) == 2  # other settings never mix into the archive
    assert "embedded with another settings" in capsys.readouterr().err
    assert main(embed + ["--grid", "2", "--overwrite"]) == 0


def test_evaluate_drops_classes_too_small_for_the_folds_with_a_note(folder, tmp_path, capsys):
    """As --task does: a class of 3 images under 5-fold CV is left out, and the user is told."""
    table = metadata(folder)
    table.loc[table.index[:3], "label"] = "rare"
    listing = write_csv(tmp_path / "rare.csv", table)
    assert main(["embed", *PRETRAINED, "--csv", str(listing), "--out", str(tmp_path / "emb")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--embeddings", str(tmp_path / "emb"), "--folds", "5",
                 "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "note: dropped 1 class(es) with fewer than 5 images: rare" in out
    assert "rare" not in json.loads((tmp_path / "eval" / "metrics.json").read_text())["classes"]


def test_a_split_of_a_user_s_own_labels_is_scored():
    """compare_on_splits scores the 'constituent' task on a table with only path, label and
    group (class folders, a CSV): the user's own labels, not UHCSDB's metadata columns."""
    from microrep.analysis.heldout import score_embedding, split_mask
    from microrep.data.dataset import Dataset

    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 6)
    table = pd.DataFrame({"path": [f"{i}.png" for i in range(18)], "label": labels,
                          "group": [f"s{i}" for i in range(18)]})
    embeddings = rng.normal(size=(18, 4))
    embeddings[:, :3] += 5 * (labels[:, None] == np.array(["a", "b", "c"]))
    fit = split_mask("disjoint", Dataset(table), 0)
    scores = score_embedding(table, embeddings, fit, tasks=("constituent",))
    assert scores[("constituent", "linear SVM")] == 1.0
    assert set(task for task, _ in scores) == {"constituent"}
