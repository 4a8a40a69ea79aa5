"""Launchers on real engines: a one-node SLURM cluster and a local Ray instance embed the
same parts, bit for bit, as one `microrep embed` process; and a kill mid-archive followed
by the same command ends with the archive an uninterrupted run writes."""

import numpy as np
import pytest
from PIL import Image

from microrep.cli import main
from microrep.embedding.archive import read_embeddings
from microrep.embedding.parts import part_files


TINY = ["--pretrained", "--weights", "none", "--input-size", "32", "--vgg-blocks", "1",
        "--feature-layers", "", "--view", "tiles", "--grid", "2", "--part-size", "3", "--read-workers", "0"]


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


def fill(write_end):
    """Fill a pipe to the brim from our own copy of its write end: the child's next write
    then blocks until the pipe is read, so it stops at a point we chose (not a moment)."""
    import os

    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 4096)
    except BlockingIOError:
        pass


@pytest.mark.slow
def test_a_kill_mid_archive_then_the_same_command_equals_an_uninterrupted_run(images, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    argv = ["embed", *TINY, "--part-size", "1", "--images", str(images)]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    read_end, write_end = os.pipe()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.Popen([sys.executable, "-m", "microrep", *argv, "--out", str(tmp_path / "emb")],
                             stdout=write_end, stderr=write_end, env=env)
    lines = os.fdopen(read_end, "rb", buffering=0)
    seen = b""
    while b"part 3 (4 of 11" not in seen:  # the child has done parts 0-2 and started part 3
        chunk = lines.read(256)
        assert chunk, f"the embedding ended before part 3: {seen.decode(errors='replace')}"
        seen += chunk
    fill(write_end)  # its next progress line blocks it inside part 3 or 4
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    os.close(write_end)
    lines.close()
    assert child.returncode == -signal.SIGKILL
    assert main(["status", str(tmp_path / "emb")]) == 3, "killed half-way: parts are missing"
    assert main([*argv, "--out", str(tmp_path / "emb")]) == 0  # the same command again
    assert main(["status", str(tmp_path / "emb"), "--verify"]) == 0
    assert_same_archive(tmp_path / "emb", read_embeddings(tmp_path / "whole"))
    assert not list((tmp_path / "emb" / "parts").glob(".*tmp*")), "no temporary file is left"


@pytest.mark.slow
def test_ray_data_embeds_the_parts_one_process_would(images, one_process, tmp_path, capsys):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'microrep[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        argv = ["embed", *TINY, "--images", str(images), "--out", str(tmp_path / "emb"),
                "--launcher", "ray"]
        assert main(argv) == 0
        said = capsys.readouterr().out
        assert "embedded part(s) 0-3 with Ray" in said and "4 of 4 part(s) done" in said
        assert_same_archive(tmp_path / "emb", one_process)
        for path in part_files(tmp_path / "emb", 1):
            path.unlink()
        assert main(argv) == 0
        assert "embedded part(s) 1 with Ray" in capsys.readouterr().out
        assert_same_archive(tmp_path / "emb", one_process)
    finally:
        ray.shutdown()
