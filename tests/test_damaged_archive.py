"""Every file of an embeddings archive damaged in every way, then index, search and evaluate
run on it: each answers one line naming the damaged file (exit 2), never an internal error,
and a damaged part is recomputed by running the same `embed` again."""

import shutil

import numpy as np
import pytest

from microrep.cli import main
from microrep.commands.embed import run_embed_stage
from microrep.embedding.archive import read_embeddings

from test_embed import embed_config

FILES = ["embed.json", "manifest.json", "manifest.parquet", "parts/part-000001.npy",
         "parts/part-000001.parquet", "parts/part-000001.done.json"]
#: Files whose damage `embed` mends by recomputing their part.
PART_FILES = {name for name in FILES if name.startswith("parts/")}


def emptied(path):
    path.write_bytes(b"")


def truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def bit_flipped(path):
    data = bytearray(path.read_bytes())
    data[len(data) * 3 // 4] ^= 0x10
    path.write_bytes(bytes(data))


def replaced_by_text(path):
    path.write_bytes("these are not the bytes microrep wrote \xe9\n".encode("latin-1"))


def deleted(path):
    path.unlink()


DAMAGES = [emptied, truncated, bit_flipped, replaced_by_text, deleted]
COMMANDS = {
    "index": lambda folder, out: ["index", str(folder), "--out", str(out)],
    "search": lambda folder, out: ["search", "--index", str(folder), "--query-rows", "0",
                                   "--k", "2", "--out", str(out)],
    "evaluate": lambda folder, out: ["evaluate", "--embeddings", str(folder), "--folds", "2",
                                     "--out", str(out)],
}


@pytest.fixture(scope="module")
def archive(tiny_data_config, tmp_path_factory):
    """An archive of several parts (parts of 5 images), as `microrep embed` writes it."""
    folder = tmp_path_factory.mktemp("archive") / "emb"
    run_embed_stage(embed_config(tiny_data_config, folder), log=lambda _: None)
    return folder


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_intact_archive_serves_every_reader(archive, command, tmp_path):
    assert main(COMMANDS[command](archive, tmp_path / "out")) == 0


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda damage: damage.__name__)
@pytest.mark.parametrize("name", FILES)
def test_each_damaged_file_is_named_in_one_line(archive, name, damage, tmp_path, capfd):
    folder = tmp_path / "emb"
    shutil.copytree(archive, folder)
    damage(folder / name)
    for command, argv in COMMANDS.items():
        capfd.readouterr()
        code = main(argv(folder, tmp_path / command))
        err = capfd.readouterr().err.strip()
        assert code == 2, f"{command} on {name} {damage.__name__}: exit {code}, {err!r}"
        lines = err.splitlines()
        assert len(lines) == 1 and "internal error" not in err, (command, err)
        named = name.split("/")[-1] if name in PART_FILES else name
        stem = "part-000001" if name in PART_FILES else named
        assert stem in err, f"{command} on {name} {damage.__name__} does not name it: {err!r}"


@pytest.mark.parametrize("damage", [emptied, truncated, bit_flipped, deleted],
                         ids=lambda damage: damage.__name__)
@pytest.mark.parametrize("name", sorted(PART_FILES))
def test_embed_again_recomputes_just_the_damaged_part(archive, tiny_data_config, name, damage,
                                                      tmp_path):
    folder = tmp_path / "emb"
    shutil.copytree(archive, folder)
    before = {path.name: path.stat().st_mtime_ns for path in (folder / "parts").iterdir()}
    damage(folder / name)
    said = []
    summary = run_embed_stage(embed_config(tiny_data_config, folder), log=said.append)
    assert summary["embedded"] == [1], said
    assert summary["skipped"] == [part for part in range(len(before) // 3) if part != 1]
    after = {path.name: path.stat().st_mtime_ns for path in (folder / "parts").iterdir()}
    assert all(after[n] == before[n] for n in before if not n.startswith("part-000001")), \
        "only the damaged part is written again"
    vectors, table = read_embeddings(folder)
    whole, whole_table = read_embeddings(archive)
    np.testing.assert_array_equal(vectors, whole)
    assert table["path"].tolist() == whole_table["path"].tolist()


def test_an_archive_too_large_to_hash_on_every_open_is_still_checked_by_size(archive, tmp_path):
    """Above VERIFY_UP_TO bytes readers skip the sha256 of every part; a part whose size is
    not the one its done file recorded is still named (bit flips then need `status --verify`)."""
    from microrep.embedding.parts import PartsArchive

    folder = tmp_path / "emb"
    shutil.copytree(archive, folder)
    truncated(folder / "parts" / "part-000001.npy")
    with pytest.raises(Exception, match="part 1 is damaged .*not the size its done file recorded"):
        PartsArchive(folder, verify=False)
    shutil.copytree(archive, tmp_path / "flipped")
    bit_flipped(tmp_path / "flipped" / "parts" / "part-000001.npy")
    assert len(PartsArchive(tmp_path / "flipped", verify=False)) == len(PartsArchive(archive))
