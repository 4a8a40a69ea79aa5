"""The one archive format: vectors in memory are written as an archive of one part, and a
folder of the format before parts (embeddings.npy + embeddings.csv) is read as one."""

import numpy as np
import pandas as pd

from microrep.cli import main
from microrep.embedding.archive import (SingleFileArchive, convert_single_file, open_archive,
                                        read_embeddings, write_embeddings)
from microrep.embedding.parts import PartsArchive


def vectors_and_table(count=12, dim=6):
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"path": [f"/img/{i}.png" for i in range(count)],
                          "label": [f"class{i % 3}" for i in range(count)],
                          "group": [f"sample{i // 2}" for i in range(count)]})
    return rng.normal(size=(count, dim)).astype(np.float32), table


def test_vectors_in_memory_are_written_as_one_part_that_every_reader_takes(tmp_path):
    vectors, table = vectors_and_table()
    write_embeddings(tmp_path / "emb", vectors, table, {"note": "test"})
    assert not (tmp_path / "emb" / "embeddings.npy").exists()
    archive = open_archive(tmp_path / "emb")
    assert isinstance(archive, PartsArchive) and archive.numbers == [0]
    np.testing.assert_array_equal(archive.vectors(), vectors)
    assert archive.table["label"].tolist() == table["label"].tolist()
    assert main(["search", "--index", str(tmp_path / "emb"), "--query-rows", "0", "--k", "2",
                 "--exclude-same-group", "--out", str(tmp_path / "search")]) == 0
    found = pd.read_csv(tmp_path / "search" / "neighbours.csv")
    assert "sample0" not in found["group"].tolist() and found["query_label"].iloc[0] == "class0"


def test_a_folder_of_the_older_format_is_read_as_one_part_and_converts(tmp_path):
    vectors, table = vectors_and_table()
    old = tmp_path / "old"
    old.mkdir()
    np.save(old / "embeddings.npy", vectors)
    table.to_csv(old / "embeddings.csv", index=False)
    archive = open_archive(old)
    assert isinstance(archive, SingleFileArchive) and archive.shape == vectors.shape
    np.testing.assert_array_equal(archive[[5, 1, 5]], vectors[[5, 1, 5]])
    assert main(["index", str(old), "--out", str(tmp_path / "index")]) == 0
    assert main(["search", "--index", str(tmp_path / "index"), "--query-rows", "3", "--k", "4",
                 "--out", str(tmp_path / "search")]) == 0
    convert_single_file(old, tmp_path / "new")
    converted, converted_table = read_embeddings(tmp_path / "new")
    np.testing.assert_array_equal(converted, vectors)
    assert converted_table["path"].tolist() == table["path"].tolist()


def test_converting_in_place_keeps_relative_paths_where_their_images_are(tmp_path):
    """Folder datasets recorded paths relative to their data_dir; conversion keeps them
    pointing at the images, and the old files go only once the archive is whole."""
    import json

    vectors, table = vectors_and_table()
    old = tmp_path / "old"
    old.mkdir()
    np.save(old / "embeddings.npy", vectors)
    table.assign(path=[f"img/{i}.png" for i in range(len(table))]).to_csv(old / "embeddings.csv",
                                                                          index=False)
    (old / "embed.json").write_text(json.dumps({"data_dir": str(tmp_path / "data"), "grid": 3}))
    convert_single_file(old)
    assert not (old / "embeddings.npy").exists() and not (old / ".converting").exists()
    converted, converted_table = read_embeddings(old)
    np.testing.assert_array_equal(converted, vectors)
    assert converted_table["path"].iloc[3] == str(tmp_path / "data" / "img" / "3.png")


def test_commands_pairing_two_folders_refuse_vectors_of_another_model(tmp_path, capsys):
    vectors, table = vectors_and_table()
    write_embeddings(tmp_path / "a", vectors, table, {"pretrained": True, "grid": 3})
    write_embeddings(tmp_path / "b", vectors[:, :4], table, {"pretrained": True, "grid": 3})
    for argv in (["evaluate", "--embeddings", str(tmp_path / "a"), "--test-embeddings",
                  str(tmp_path / "b"), "--out", str(tmp_path / "eval")],
                 ["explore", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                  str(tmp_path / "map.html")]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "another model" in err and "embedding size 4 vs 6" in err
        assert len(err.strip().splitlines()) == 1 and "internal error" not in err
