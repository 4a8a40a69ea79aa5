"""Launchers on real engines: a one-node SLURM cluster and a local Ray instance embed the
same parts, bit for bit, as one `microrep embed` process; and a kill mid-archive followed
by the same command ends with the archive an uninterrupted run writes."""

import numpy as np
import pytest
from PIL import Image

from microrep.cli import main
from microrep.embedding.archive import read_embeddings
from microrep.embedding.parts import part_files

from slurm_cluster import SlurmCluster, missing_parts

TINY = ["--pretrained", "--weights", "none", "--input-size", "32", "--vgg-blocks", "1",
        "--feature-layers", "", "--grid", "2", "--part-size", "3", "--read-workers", "0"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A lab's folder tree of 11 micrographs (no classes), one of them unreadable."""
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(0)
    for index in range(10):
        folder = root / f"2024-0{index % 3 + 1}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(folder / f"{index}.png")
    (root / "2024-02" / "cut.png").write_bytes(b"\x89PNG\r\n")
    return root


@pytest.fixture(scope="module")
def one_process(images, tmp_path_factory):
    """The archive as one local `microrep embed` writes it: what every launcher must equal."""
    out = tmp_path_factory.mktemp("local") / "emb"
    assert main(["embed", *TINY, "--images", str(images), "--out", str(out)]) == 0
    return read_embeddings(out)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    lacking = missing_parts()
    if lacking:
        pytest.skip(f"no SLURM here: {lacking}")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


def assert_same_archive(folder, expected):
    embeddings, table = read_embeddings(folder)
    np.testing.assert_array_equal(embeddings, expected[0])
    assert list(table["path"]) == list(expected[1]["path"])


@pytest.mark.slow
def test_a_slurm_job_array_embeds_the_parts_one_process_would(images, one_process, slurm, tmp_path,
                                                              monkeypatch, capsys):
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    out = tmp_path / "emb"
    argv = ["embed", *TINY, "--images", str(images), "--out", str(out), "--launcher", "slurm",
            "--wait", "--parts-per-task", "2"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "ran SLURM job array" in said and "2 task(s) for part(s) 0-3" in said
    assert "4 of 4 part(s) done" in said
    assert_same_archive(out, one_process)
    for path in part_files(out, 2):  # a lost part: the same command submits only that one
        path.unlink()
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "1 task(s) for part(s) 2 " in said and "4 of 4 part(s) done" in said
    assert (out / "launch" / "tasks.txt").read_text() == "2\n"
    assert_same_archive(out, one_process)
    assert main(argv) == 0
    assert "nothing to submit" in capsys.readouterr().out
