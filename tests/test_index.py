"""`microrep index`: a persistent faiss index built from an archive's parts, its recall
measured at build time, and `search --index` reading it as a memory map."""

import json

import numpy as np
import pandas as pd
import pytest

from microrep.cli import main
from microrep.embedding.index import build_index, open_index, search_index
from microrep.embedding.manifest import publish_manifest
from microrep.embedding.parts import PROVENANCE, PartWriter
from microrep.fileio import write_json

faiss = pytest.importorskip("faiss", reason="faiss is the index's engine: pip install microrep[faiss]")

IDENTITY = {"model": "m", "settings": "s"}


def clustered(count, dim=16, clusters=40, seed=0):
    """Vectors in clusters (as embeddings are), not uniform noise that no index can prune."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 4
    return (centres[rng.integers(0, clusters, count)] + rng.normal(size=(count, dim))).astype(np.float32)


def write_archive(folder, vectors, part_size, groups=None):
    """An archive of parts holding `vectors`, written by the part writer embed uses."""
    table = pd.DataFrame({"path": [f"/img/{i}.png" for i in range(len(vectors))], "label": "",
                          "group": groups if groups is not None else [str(i) for i in range(len(vectors))]})
    info = publish_manifest(folder, table, "/", part_size, {"data": "images", "location": "/img",
                                                            "reader": "image", "task": ""})
    identity = {**IDENTITY, "manifest": info["sha256"]}
    write_json(folder / PROVENANCE, identity)
    for part in range(info["parts"]):
        rows = range(part * part_size, min((part + 1) * part_size, len(vectors)))
        writer = PartWriter(folder, part, rows, vectors.shape[1])
        writer.put(0, vectors[rows.start:rows.stop])
        writer.finish(table.iloc[rows.start:rows.stop], {}, identity)
    return folder


@pytest.mark.parametrize("kind", ["flat", "ivf-flat", "ivf-pq"])
def test_each_kind_reaches_the_recall_it_records(kind, tmp_path):
    vectors = clustered(6000)
    write_archive(tmp_path / "emb", vectors, part_size=1000)
    info = build_index(tmp_path / "emb", tmp_path / "index", kind, target_recall=0.9, queries=200,
                       log=lambda _: None)
    assert info["rows"] == 6000 and info["kind"] == kind
    index, stored = open_index(tmp_path / "index")
    assert stored == json.loads((tmp_path / "index" / "index.json").read_text())
    truth = faiss.IndexFlatL2(16)
    truth.add(vectors)
    queries = clustered(100, seed=7)
    _, exact = truth.search(queries, 10)
    _, found = search_index(index, queries, 10)
    measured = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
    if kind == "flat":
        assert info["recall_at_10"] == 1.0 and measured == 1.0
    else:
        assert info["recall_at_10"] >= 0.9 and info["nprobe"] >= 1
        assert measured >= 0.8, "the recall measured at build time holds for new queries"


def test_search_index_skips_the_query_row_and_its_group():
    vectors = clustered(500)
    groups = np.array([str(i // 5) for i in range(500)])
    index = faiss.IndexFlatL2(16)
    index.add(vectors)
    rows = np.array([0, 17, 255])
    distances, found = search_index(index, vectors[rows], 10, groups, groups[rows], rows)
    assert (found >= 0).all() and not (found == rows[:, None]).any()
    assert all(groups[f] != groups[r] for r, fs in zip(rows, found) for f in fs)
    assert (np.diff(distances, axis=1) >= 0).all()


@pytest.mark.slow
def test_index_and_search_from_the_command_line(tmp_path, capsys):
    vectors = clustered(3000)
    write_archive(tmp_path / "emb", vectors, part_size=700,
                  groups=[str(i // 3) for i in range(3000)])
    assert main(["index", str(tmp_path / "emb"), "--out", str(tmp_path / "index"),
                 "--kind", "ivf-flat", "--queries", "100"]) == 0
    assert "recall@10" in capsys.readouterr().out
    assert main(["index", str(tmp_path / "emb"), "--out", str(tmp_path / "index")]) == 2
    for where, out in ((tmp_path / "index", "a"), (tmp_path / "emb", "b")):
        assert main(["search", "--index", str(where), "--query-rows", "0,5,2999", "--k", "5",
                     "--exclude-same-group", "--out", str(tmp_path / out)]) == 0
    by_index = pd.read_csv(tmp_path / "a" / "neighbours.csv")
    exact = pd.read_csv(tmp_path / "b" / "neighbours.csv")
    assert len(by_index) == len(exact) == 15
    assert (by_index["query"].str.split("/").str[-1] != by_index["path"].str.split("/").str[-1]).all()
    overlap = len(set(zip(by_index["query"], by_index["row"])) & set(zip(exact["query"], exact["row"])))
    assert overlap >= 12, "the approximate index finds (nearly) the exact neighbours"


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_search_part_by_part_is_the_whole_matrix_answer(backend, tmp_path):
    from microrep.analysis.neighbours import nearest_neighbours
    from microrep.embedding.archive_search import search_parts
    from microrep.embedding.parts import PartsArchive

    vectors = clustered(2300)
    groups = np.array([str(i // 7) for i in range(2300)])
    archive = PartsArchive(write_archive(tmp_path / "emb", vectors, part_size=500, groups=groups))
    rows = np.array([3, 499, 500, 1777, 2299])
    for skip in ({}, {"query_rows": rows}, {"query_rows": rows, "query_groups": groups[rows]}):
        expected = nearest_neighbours(vectors, vectors[rows], 12, groups, backend="exact", **skip)
        found = search_parts(archive, vectors[rows], 12, groups, backend=backend, **skip)
        assert (found[1] == expected[1]).all()
        np.testing.assert_allclose(found[0], expected[0], rtol=1e-4)
    assert not (found[1] == rows[:, None]).any()


def test_an_archive_reads_the_rows_asked_for_in_their_order(tmp_path):
    from microrep.embedding.parts import PartsArchive

    vectors = clustered(1100)
    archive = PartsArchive(write_archive(tmp_path / "emb", vectors, part_size=300))
    rows = np.array([1099, 5, 299, 300, 5, 0])  # unsorted, a repeat, part edges
    np.testing.assert_array_equal(archive[rows], vectors[rows])
    assert archive.shape == (1100, 16) and archive[np.array([], int)].shape == (0, 16)


def test_evaluating_a_partly_labelled_archive_reads_only_its_labelled_rows(tmp_path):
    from microrep.analysis.scores import relabel
    from microrep.embedding.archive import read_embeddings

    vectors = clustered(900)
    folder = write_archive(tmp_path / "emb", vectors, part_size=200)
    lazy, table = read_embeddings(folder, mmap=True)
    table["label"] = [("a", "b", "c")[i % 3] if i % 10 == 0 else "" for i in range(900)]
    chosen, kept, notes = relabel(lazy, table, "", folds=3)
    assert len(chosen) == 90 and set(kept["label"]) == {"a", "b", "c"}
    np.testing.assert_array_equal(chosen, vectors[::10])
    assert "left out 810 unlabelled image(s)" in notes
