"""Learning from unlabelled micrographs: the pairs the images provide, and a plain folder
trained from the command line."""

import json

import numpy as np
import pandas as pd
from PIL import Image

from microrep.cli import main
from microrep.data.dataset import Dataset
from microrep.data.synthetic import CONDITIONS, generate_micrograph
from microrep.pairs.relations import pair_relations, pair_view

from conftest import TINY_INPUT


def table_dataset(labels, groups):
    return Dataset(pd.DataFrame({"path": [f"{i}.png" for i in range(len(labels))],
                                 "label": labels, "group": groups}))


def test_self_supervised_pairs_ignore_labels_and_use_samples_where_they_repeat():
    dataset = table_dataset(["a", "a", "b", ""], ["s1", "s1", "s2", "s3"])
    view = pair_view(dataset, "images")
    assert list(view.labels) == ["sample:s1", "sample:s1", "sample:s2", "sample:s3"]
    assert list(pair_relations(view.table)) == ["image:0", "image:1", "image:2", "image:3"]
    assert list(dataset.labels) == ["a", "a", "b", ""], "evaluation keeps the real labels"


def test_without_samples_each_micrograph_is_its_own_and_semi_keeps_the_labels_it_has():
    unique_groups = table_dataset(["a", "", "b", ""], ["f0", "f1", "f2", "f3"])
    assert list(pair_view(unique_groups, "images").labels) == ["image:0", "image:1", "image:2", "image:3"]
    assert list(pair_view(unique_groups, "classes+images").labels) == ["a", "image:1", "b", "image:3"]
    assert pair_view(unique_groups, "classes") is unique_groups


def test_a_plain_folder_trains_self_supervised_from_the_command_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "archive"
    folder.mkdir()
    for index in range(6):
        name = ("spheroidite", "pearlite")[index % 2]
        image, _ = generate_micrograph(rng, name, CONDITIONS[name][0], 64)
        Image.fromarray(image).save(folder / f"micrograph{index}.png")
    code = main(["train", "--images", str(folder), "--input-size", str(TINY_INPUT), "--vgg-blocks", "2",
                 "--weights", "none", "--feature-layers", "block2_conv2", "--epochs", "2",
                 "--feature-bank", "4", "--pairs-per-epoch", "64", "--batch-size", "16",
                 "--feature-cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run")])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "no class labels" in said.out and "training self-supervised" in said.out
    assert json.loads((tmp_path / "run" / "config.json").read_text())["similarity"] == "self"
    assert (tmp_path / "run" / "tower.keras").is_file()
