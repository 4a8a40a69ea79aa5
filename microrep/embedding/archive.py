"""The embeddings archive on disk, which embed writes and analysis, search and explore read.

    embeddings.npy   float32 (n_images, embedding_dim)
    embeddings.csv   one row per image: path, label, group and metadata
    embed.json       the settings and model used

An archive embedded by `microrep embed` is in parts instead (a manifest, then fixed-size
parts with done files: see `manifest` and `parts`); `read_embeddings` reads either.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from microrep.embedding.parts import (PROVENANCE, PartsArchive, PartWriter, is_parts_archive,
                                     part_manifest)
from microrep.embedding.tiles import iter_embeddings
from microrep.errors import DataError
from microrep.fileio import atomic_path, write_json, write_text

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


def part_dataset(table, info):
    """The Dataset of some manifest rows (absolute paths; the reader the manifest names)."""
    from microrep.data.dataset import Dataset
    from microrep.data.loaders import READERS

    return Dataset(table, root=Path("/"), name="archive", reader=READERS[info["source"]["reader"]])


def embed_part(out, part, tower, identity, grid=3, batch_size=64, progress=True, workers=None,
               log=None, embed=None):
    """Embed part `part` of archive `out` (its manifest rows) and write its files, done file last.

    `embed(images)` yields (indices, embeddings) in order; by default the tower runs over
    each image's tiles (`iter_embeddings`). Returns the part's done record.
    """
    rows, table, info = part_manifest(out, part)
    images = TolerantImages(part_dataset(table, info), int(tower.input_shape[1]))
    writer = PartWriter(out, part, rows, int(tower.output_shape[-1]))
    try:
        batches = embed(images) if embed is not None else \
            iter_embeddings(tower, images, grid, batch_size, progress, workers, log)
        for indices, vectors in batches:
            writer.put(indices[0], vectors)
    except BaseException:
        writer.abandon()
        raise
    return writer.finish(table, images.bad, identity)


def write_embeddings(out_dir, embeddings, table, info=None):
    """Write embeddings.npy, embeddings.csv (and embed.json) into `out_dir`."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir / EMBEDDINGS) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, embeddings.astype(np.float32))
    write_text(out_dir / TABLE, table.to_csv(index=False))
    if info is not None:
        write_json(out_dir / "embed.json", info)


def read_embeddings(folder, mmap=False):
    """(embeddings, table) of an archive: its usable rows (status ok) of every part, in
    manifest order, or a single embeddings.npy that `write_embeddings` wrote.

    Without `mmap`, the vectors are one array in memory. With `mmap`, nothing is read
    yet: a single embeddings file is memory-mapped, and an archive of parts is returned
    as its PartsArchive, whose `[rows]` reads only those rows from the parts (so a
    command that needs some rows, such as the labelled ones, never holds the rest).
    """
    folder = Path(folder)
    if is_parts_archive(folder):
        archive = PartsArchive(folder)
        return (archive if mmap else archive.vectors()), archive.table
    if not (folder / EMBEDDINGS).is_file() or not (folder / TABLE).is_file():
        raise DataError(f"{folder} holds no embeddings (parts/ or {EMBEDDINGS}); run `microrep embed` first")
    embeddings = np.load(folder / EMBEDDINGS, mmap_mode="r" if mmap else None, allow_pickle=False)
    table = pd.read_csv(folder / TABLE, encoding_errors="surrogateescape")
    if len(table) != len(embeddings):
        raise DataError(f"{folder}: {len(embeddings)} embeddings but {len(table)} table rows")
    return embeddings, table
