"""The embeddings archive on disk, which embed writes and analysis, search and explore read.

    embeddings.npy   float32 (n_images, embedding_dim)
    embeddings.csv   one row per image: path, label, group and metadata
    embed.json       the settings and model used

A sharded run writes `embeddings.shard-K-of-N.npy/.csv` per process; readers join them.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from microrep.embedding.tiles import LazyImages, iter_embeddings
from microrep.errors import ConfigError, DataError
from microrep.fileio import atomic_path, write_json, write_text

EMBEDDINGS = "embeddings.npy"
TABLE = "embeddings.csv"
PROVENANCE = "embed.json"


def shard_rows(count, shard_index, num_shards):
    """Rows of shard `shard_index` out of `num_shards` (every num_shards-th row)."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ConfigError(f"--shard-index must lie in 0..{num_shards - 1}, got {shard_index}")
    return range(shard_index, count, num_shards)


def shard_name(stem, suffix, shard_index, num_shards):
    if num_shards == 1:
        return stem + suffix
    return f"{stem}.shard-{shard_index}-of-{num_shards}{suffix}"


def embed_to_disk(tower, dataset, out_dir, grid=3, batch_size=64, shard_index=0, num_shards=1,
                  progress=True, workers=None, log=None, embed=None):
    """Embed one shard of `dataset` straight into a .npy on disk, batch by batch.

    Neither all images nor all embeddings are held in memory: the array is a
    memory map written in place, renamed into its final name when complete.
    `embed(images)` yields (indices, embeddings) in order; by default the tower
    runs over each image's tiles (`iter_embeddings`). Returns the embeddings file.
    """
    out_dir = Path(out_dir)
    rows = shard_rows(len(dataset), shard_index, num_shards)
    images = LazyImages(dataset, rows)
    target = out_dir / shard_name("embeddings", ".npy", shard_index, num_shards)
    with atomic_path(target) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                          shape=(len(images), int(tower.output_shape[-1])))
        batches = embed(images) if embed is not None else \
            iter_embeddings(tower, images, grid, batch_size, progress, workers, log)
        for indices, vectors in batches:
            array[indices[0]:indices[-1] + 1] = vectors
        array.flush()
        del array
    table = dataset.table.iloc[list(rows)]
    write_text(out_dir / shard_name("embeddings", ".csv", shard_index, num_shards),
               table.to_csv(index=False))
    return target


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
    """(embeddings, table) written by `write_embeddings` or by every shard of `embed_to_disk`.

    With `mmap`, a single embeddings file is memory-mapped instead of read (shards are joined).
    """
    folder = Path(folder)
    if not (folder / EMBEDDINGS).is_file() or not (folder / TABLE).is_file():
        shards = sorted(folder.glob("embeddings.shard-*-of-*.npy"))
        if not shards:
            raise DataError(f"{folder} holds no {EMBEDDINGS} and {TABLE}; run `microrep embed` first")
        return read_shards(folder, shards)
    embeddings = np.load(folder / EMBEDDINGS, mmap_mode="r" if mmap else None, allow_pickle=False)
    table = pd.read_csv(folder / TABLE, encoding_errors="surrogateescape")
    if len(table) != len(embeddings):
        raise DataError(f"{folder}: {len(embeddings)} embeddings but {len(table)} table rows")
    return embeddings, table


def read_shards(folder, shards):
    """Join the shards of one sharded embedding run, refusing an incomplete set."""
    num_shards = int(shards[0].name.split("-of-")[1].split(".")[0])
    arrays, tables, missing = [], [], []
    for index in range(num_shards):
        npy = folder / shard_name("embeddings", ".npy", index, num_shards)
        csv = folder / shard_name("embeddings", ".csv", index, num_shards)
        if not npy.is_file() or not csv.is_file():
            missing.append(str(index))
            continue
        arrays.append(np.load(npy, allow_pickle=False))
        tables.append(pd.read_csv(csv, encoding_errors="surrogateescape"))
    if missing:
        raise DataError(f"{folder}: shard(s) {', '.join(missing)} of {num_shards} are missing; "
                        "run `microrep embed --shard-index K` for each")
    return np.concatenate(arrays), pd.concat(tables, ignore_index=True)
