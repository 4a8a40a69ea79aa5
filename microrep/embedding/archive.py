"""The embeddings archive on disk: the one format every command writes and reads.

    embed.json        the settings and model used, and the archive's identity
    manifest.parquet  the images, listed once (see `manifest`)
    parts/            fixed-size parts with done files (see `parts`)

`microrep embed` fills an archive part by part; `write_embeddings` (demo, notebooks)
writes vectors already in memory as an archive of one part. A folder of the format
before parts (embeddings.npy + embeddings.csv) is still read, as an archive of one part
(`open_archive`), and `convert_single_file` rewrites it as parts.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from microrep.embedding.manifest import MANIFEST, MANIFEST_INFO, publish_manifest, read_manifest
from microrep.embedding.pool_fit import STATE_FILE
from microrep.embedding.parts import (PARTS, PROVENANCE, PartsArchive, PartWriter, digest_of,
                                     is_parts_archive, part_manifest)
from microrep.embedding.tiles import iter_embeddings
from microrep.errors import DataError
from microrep.fileio import read_checked, read_json, write_sealed_json

EMBEDDINGS = "embeddings.npy"
TABLE = "embeddings.csv"


class TolerantImages:
    """A part's images, decoded on access and never cached; an image that cannot be
    decoded is recorded in `bad` (row -> reason) and stands in as a blank tile, so one
    bad file never stops an archive (its row is marked bad and zeroed)."""

    def __init__(self, dataset, tile):
        self.dataset, self.tile, self.bad = dataset, tile, {}

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset.read(index)
        except Exception as error:  # decoders raise many kinds; the reason is kept, per row
            self.bad[index] = (str(error).splitlines() or [type(error).__name__])[0]
            return np.zeros((self.tile, self.tile), np.uint8)

    def shape_hint(self, index):
        return self.dataset.shape_hint(index)


def part_dataset(table, info):
    """The Dataset of some manifest rows (absolute paths; the reader the manifest names)."""
    from microrep.data.dataset import Dataset
    from microrep.data.loaders import READERS

    return Dataset(table, root=Path("/"), name="archive", reader=READERS[info["source"]["reader"]])


def embed_part(out, part, tower, identity, view=None, batch_size=64, progress=True, workers=None,
               log=None, embed=None):
    """Embed part `part` of archive `out` (its manifest rows) and write its files, done file last.

    `embed(images)` yields (indices, embeddings) in order; by default the tower runs over
    each image's pieces of `view` (`iter_embeddings`). Returns the part's done record.
    """
    rows, table, info = part_manifest(out, part)
    images = TolerantImages(part_dataset(table, info), int(tower.input_shape[1]))
    writer = PartWriter(out, part, rows, int(tower.output_shape[-1]))
    try:
        batches = embed(images) if embed is not None else \
            iter_embeddings(tower, images, view, batch_size, progress, workers, log)
        for indices, vectors in batches:
            writer.put(indices[0], vectors)
    except BaseException:
        writer.abandon()
        raise
    return writer.finish(table, images.bad, identity)


def clear_archive(out):
    """Remove what an earlier archive wrote to `out` (nothing else)."""
    out = Path(out)
    for name in (MANIFEST, MANIFEST_INFO, PROVENANCE, EMBEDDINGS, TABLE, STATE_FILE):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / PARTS, ignore_errors=True)


#: Columns an archive adds to its images' metadata (the manifest's and the parts').
ARCHIVE_COLUMNS = ("row_id", "size", "mtime_ns", "status", "reason", "part", "row")


def write_embeddings(out_dir, embeddings, table, info=None, written_by="python", root="/"):
    """Write `embeddings` (n, d) and their `table` (path, label, group, metadata) into
    `out_dir` as an archive of one part, replacing an earlier archive there.

    The format `microrep embed` writes, so index, search, evaluate, explore and export
    read it alike. `info` (the settings and model) goes into embed.json; its "model"
    entry, if given, is the model's identity (else the vectors' own digest).
    """
    out, info = Path(out_dir), dict(info or {})
    embeddings = np.asarray(embeddings, np.float32)
    if len(embeddings) != len(table):
        raise DataError(f"{len(embeddings)} embeddings but {len(table)} table rows")
    clear_archive(out)
    # an archive's own table read back (row ids, file sizes, part and status) is listed anew
    table = table.drop(columns=[c for c in ARCHIVE_COLUMNS if c in table]).reset_index(drop=True)
    if "path" not in table:
        table = table.assign(path=[f"row-{row}" for row in range(len(table))])
    listed = publish_manifest(out, table, root, max(1, len(table)),
                              {"data": str(info.get("data", "table")),
                               "location": str(info.get("data_dir", "")), "reader": "image",
                               "task": str(info.get("task", ""))})
    identity = {"model": str(info.pop("model", None) or digest_of(embeddings.tobytes())),
                "settings": digest_of(info), "manifest": listed["sha256"]}
    write_sealed_json(out / PROVENANCE, {**info, **identity, "written_by": written_by,
                                  "images": len(table), "part_size": listed["part_size"],
                                  "parts": 1})
    writer = PartWriter(out, 0, range(len(table)), embeddings.shape[1])
    writer.put(0, embeddings)
    writer.finish(read_manifest(out)[0], {}, identity)
    return out


class SingleFileArchive(PartsArchive):
    """A folder of the format before parts (embeddings.npy + embeddings.csv), read as an
    archive of one part: the interface of PartsArchive (table, parts(), [rows], vectors())."""

    def __init__(self, folder):
        self.folder = Path(folder)
        advice = "make the embeddings again (`microrep embed`)"
        self.matrix = read_checked(self.folder / EMBEDDINGS,
                                   lambda path: np.load(path, mmap_mode="r", allow_pickle=False), advice)
        table = read_checked(self.folder / TABLE,
                             lambda path: pd.read_csv(path, encoding_errors="surrogateescape"), advice)
        if self.matrix.ndim != 2 or len(table) != len(self.matrix):
            raise DataError(f"{self.folder}: {len(self.matrix)} embeddings but {len(table)} table rows")
        self.table = table.assign(part=0, row=np.arange(len(table)))
        self.bad = self.table.iloc[:0]
        self.numbers, self.dim = [0], int(self.matrix.shape[1])
        self.identity = {"model": None, "settings": None, "manifest": None}

    def __getitem__(self, rows):
        return np.asarray(self.matrix[np.asarray(rows, np.int64)], np.float32)

    def parts(self):
        yield 0, self.matrix, np.arange(len(self))

    def vectors(self):
        return np.asarray(self.matrix, np.float32)


def is_archive(folder):
    """True for a folder holding an embeddings archive (of parts, or of the older format)."""
    folder = Path(folder)
    return folder.is_dir() and (is_parts_archive(folder) or (folder / MANIFEST_INFO).is_file()
                                or (folder / EMBEDDINGS).is_file() or (folder / TABLE).is_file())


def open_archive(folder):
    """The archive in `folder` (a PartsArchive, or a SingleFileArchive for the older format),
    its files checked: a damaged one is named in one DataError."""
    folder = Path(folder)
    if is_parts_archive(folder) or (folder / MANIFEST_INFO).is_file():
        return PartsArchive(folder)
    if is_archive(folder):
        return SingleFileArchive(folder)
    raise DataError(f"{folder} holds no embeddings archive; run `microrep embed` to make one")


def convert_single_file(folder, out=None):
    """Rewrite an older single-file folder as an archive of one part (in `out`, or in place).

    Relative paths are taken from where that folder's embed.json says its images were
    (`data_dir`, or the CSV's folder). In place, the archive is written beside the old
    files first and the old files go only once it is complete, so nothing is lost to a
    crash or a full disk.
    """
    folder = Path(folder)
    archive = SingleFileArchive(folder)
    info_path = folder / PROVENANCE
    info = read_checked(info_path, read_json, "remove it") if info_path.is_file() else {}
    root = Path(info.get("data_dir") or "/")
    root = root.parent if root.suffix.lower() == ".csv" else root
    vectors, table = archive.vectors(), archive.table
    written_by = info.get("written_by", "embed")
    if out is not None:
        return write_embeddings(out, vectors, table, info, written_by, root)
    staged = folder / ".converting"
    shutil.rmtree(staged, ignore_errors=True)
    write_embeddings(staged, vectors, table, info, written_by, root)
    for name in (EMBEDDINGS, TABLE, PROVENANCE):
        (folder / name).unlink(missing_ok=True)
    for path in staged.iterdir():
        os.replace(path, folder / path.name)
    staged.rmdir()
    return folder


#: embed.json entries that must agree for two archives' vectors to be compared (the same
#: model and view): a map of both, SVMs fitted on one and scored on the other.
SAME_MODEL = ("pretrained", "model_path", "weights", "input_size", "vgg_blocks", "feature_layers",
              "pooling", "view")


def refuse_other_model(first, other, purpose):
    """DataError unless two archives, each (folder, embed.json dict, dimension), were embedded
    by the same model and tiling: distances across two models mean nothing."""
    (first_folder, first_info, first_dim), (folder, info, dim) = first, other
    differing = [key for key in SAME_MODEL if info.get(key) != first_info.get(key)]
    if differing or dim != first_dim:
        size = f"embedding size {dim} vs {first_dim}"
        raise DataError(f"{folder} was embedded with another model or tiling than {first_folder} "
                        f"({', '.join(differing) or size} differ); {purpose} needs one model: "
                        "embed both with the same --model-path (or both --pretrained)")


def archive_info(folder):
    """embed.json of an archive as a dict ({} for an older folder without one)."""
    path = Path(folder) / PROVENANCE
    return read_checked(path, read_json, "restore it, or make the archive again") \
        if path.is_file() else {}


def read_embeddings(folder, mmap=False):
    """(embeddings, table) of an archive: its usable rows (status ok) of every part, in
    manifest order.

    Without `mmap`, the vectors are one array in memory. With `mmap`, nothing is read
    yet: the archive is returned as itself (PartsArchive or SingleFileArchive), whose
    `[rows]` reads only those rows (so a command that needs some rows, such as the
    labelled ones, never holds the rest).
    """
    archive = open_archive(folder)
    return (archive if mmap else archive.vectors()), archive.table
