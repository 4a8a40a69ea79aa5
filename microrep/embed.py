"""Embed micrographs: each image's embedding is the mean over a grid of tiles.

Why tiles: micrographs (645x484 in UHCSDB) are larger than the model's input
(224x224 by default); averaging the embeddings of a regular grid of tiles
covers the whole image, so its embedding does not depend on one crop.
Embeddings are written with the dataset's metadata beside them:

    embeddings.npy   float32 (n_images, embedding_dim)
    embeddings.csv   one row per image: path, label, group and metadata
    embed.json       the settings and model used
"""

from pathlib import Path

import numpy as np
import pandas as pd

from microrep.data.images import grid_tiles
from microrep.fileio import atomic_path, write_json, write_text

EMBEDDINGS = "embeddings.npy"
TABLE = "embeddings.csv"


def iter_tile_batches(images, tile, grid, batch_size):
    """Yield (image indices, uint8 tile batch) with whole images per batch."""
    per_image = grid * grid
    images_per_batch = max(batch_size // per_image, 1)
    for start in range(0, len(images), images_per_batch):
        chunk = range(start, min(start + images_per_batch, len(images)))
        tiles = np.concatenate([grid_tiles(images[i], tile, grid) for i in chunk])
        yield list(chunk), tiles[..., None]


def embed_images(tower, images, grid=3, batch_size=64, progress=False):
    """Mean tile embedding of each image, float32 (n_images, embedding_dim).

    `images` is a sequence of 2-D uint8 arrays (a Dataset's images, or a lazy
    list); they are read batch by batch.
    """
    tile = int(tower.input_shape[1])
    per_image = grid * grid
    batches = iter_tile_batches(images, tile, grid, batch_size)
    if progress:
        from tqdm.auto import tqdm

        total = -(-len(images) // max(batch_size // per_image, 1))
        batches = tqdm(batches, total=total, desc="embedding", unit="batch")
    outputs = []
    for indices, tiles in batches:
        vectors = np.asarray(tower.predict_on_batch(tiles), dtype=np.float32)
        outputs.append(vectors.reshape(len(indices), per_image, -1).mean(axis=1))
    return np.concatenate(outputs) if outputs else np.zeros((0, tower.output_shape[-1]), np.float32)


class LazyImages:
    """A sequence view of a Dataset's images, decoded on access."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset.image(index)


def write_embeddings(out_dir, embeddings, table, info=None):
    """Write embeddings.npy, embeddings.csv (and embed.json) into `out_dir`."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir / EMBEDDINGS) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, embeddings.astype(np.float32))
    write_text(out_dir / TABLE, table.to_csv(index=False))
    if info is not None:
        write_json(out_dir / "embed.json", info)


def read_embeddings(folder):
    """(embeddings, table) written by `write_embeddings`."""
    from microrep.errors import DataError

    folder = Path(folder)
    if not (folder / EMBEDDINGS).is_file() or not (folder / TABLE).is_file():
        raise DataError(f"{folder} holds no {EMBEDDINGS} and {TABLE}; run `microrep embed` first")
    embeddings = np.load(folder / EMBEDDINGS, allow_pickle=False)
    table = pd.read_csv(folder / TABLE)
    if len(table) != len(embeddings):
        raise DataError(f"{folder}: {len(embeddings)} embeddings but {len(table)} table rows")
    return embeddings, table
