"""Embed micrographs: each image's embedding is the mean over a grid of tiles.

Why tiles: micrographs (645x484 in UHCSDB) are larger than the model's input
(224x224 by default); averaging the embeddings of a regular grid of tiles
covers the whole image, so its embedding does not depend on one crop.
Embeddings are written with the dataset's metadata beside them:

    embeddings.npy   float32 (n_images, embedding_dim)
    embeddings.csv   one row per image: path, label, group and metadata
    embed.json       the settings and model used
"""

import collections
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from microrep.data.images import grid_tiles
from microrep.errors import DataError
from microrep.fileio import atomic_path, write_json, write_text

EMBEDDINGS = "embeddings.npy"
TABLE = "embeddings.csv"


def default_read_workers():
    """Threads that decode images ahead of the model: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def iter_tile_batches(images, tile, grid, batch_size, workers=0, lookahead=2):
    """Yield (image indices, uint8 tile batch) with whole images per batch, in order.

    With `workers` > 1, images are decoded and tiled by a thread pool up to
    `lookahead` batches ahead, while the model embeds the current batch: PNG
    and TIFF decoding releases the GIL, and decoding a 645x484 micrograph costs
    about as much host time as the GPU needs to embed all its tiles. Memory stays
    bounded by the batches in flight.
    """
    per_image = grid * grid
    images_per_batch = max(batch_size // per_image, 1)
    chunks = [range(start, min(start + images_per_batch, len(images)))
              for start in range(0, len(images), images_per_batch)]

    def tiles_of(index):
        return grid_tiles(images[index], tile, grid)

    if workers <= 1:
        for chunk in chunks:
            yield list(chunk), np.concatenate([tiles_of(i) for i in chunk])[..., None]
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="microrep-read")
    try:
        in_flight = collections.deque()
        for chunk in chunks:
            in_flight.append((chunk, [pool.submit(tiles_of, i) for i in chunk]))
            if len(in_flight) > lookahead:
                done, futures = in_flight.popleft()
                yield list(done), np.concatenate([f.result() for f in futures])[..., None]
        while in_flight:
            done, futures = in_flight.popleft()
            yield list(done), np.concatenate([f.result() for f in futures])[..., None]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def iter_embeddings(tower, images, grid=3, batch_size=64, progress=False, workers=None):
    """Yield (image indices, their mean tile embeddings), batch by batch.

    `workers` threads read images ahead (None: `default_read_workers()`; 0: none).
    """
    tile = int(tower.input_shape[1])
    per_image = grid * grid
    workers = default_read_workers() if workers is None else workers
    batches = iter_tile_batches(images, tile, grid, batch_size, workers)
    if progress:
        from tqdm.auto import tqdm

        total = -(-len(images) // max(batch_size // per_image, 1))
        batches = tqdm(batches, total=total, desc="embedding", unit="batch")
    for indices, tiles in batches:
        vectors = np.asarray(tower.predict_on_batch(tiles), dtype=np.float32)
        yield indices, vectors.reshape(len(indices), per_image, -1).mean(axis=1)


def embed_images(tower, images, grid=3, batch_size=64, progress=False, workers=None):
    """Mean tile embedding of each image, float32 (n_images, embedding_dim).

    `images` is a sequence of 2-D uint8 arrays (a Dataset's images, or a lazy
    list); they are read batch by batch.
    """
    outputs = [vectors for _, vectors in
               iter_embeddings(tower, images, grid, batch_size, progress, workers)]
    return np.concatenate(outputs) if outputs else np.zeros((0, tower.output_shape[-1]), np.float32)


class LazyImages:
    """A sequence view of some of a Dataset's images, decoded on access, never cached.

    Used for archives too large to hold in memory: each image is read when its
    batch is embedded and dropped afterwards.
    """

    def __init__(self, dataset, rows):
        self.dataset, self.rows = dataset, list(rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.dataset.read(self.rows[index])


def shard_rows(count, shard_index, num_shards):
    """Rows of shard `shard_index` out of `num_shards` (every num_shards-th row)."""
    from microrep.errors import ConfigError

    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ConfigError(f"--shard-index must lie in 0..{num_shards - 1}, got {shard_index}")
    return range(shard_index, count, num_shards)


def shard_name(stem, suffix, shard_index, num_shards):
    if num_shards == 1:
        return stem + suffix
    return f"{stem}.shard-{shard_index}-of-{num_shards}{suffix}"


def embed_to_disk(tower, dataset, out_dir, grid=3, batch_size=64, shard_index=0, num_shards=1,
                  progress=True, workers=None):
    """Embed one shard of `dataset` straight into a .npy on disk, batch by batch.

    Neither all images nor all embeddings are held in memory: the array is a
    memory map written in place, renamed into its final name when complete.
    Returns the path of the embeddings file.
    """
    out_dir = Path(out_dir)
    rows = shard_rows(len(dataset), shard_index, num_shards)
    images = LazyImages(dataset, rows)
    target = out_dir / shard_name("embeddings", ".npy", shard_index, num_shards)
    with atomic_path(target) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                          shape=(len(images), int(tower.output_shape[-1])))
        for indices, vectors in iter_embeddings(tower, images, grid, batch_size, progress, workers):
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
    from microrep.errors import DataError

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
    from microrep.errors import DataError

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


def embedding_tower(config):
    """The tower an EmbedConfig asks for: a trained one, or the untrained VGG16's features."""
    if config.pretrained:
        from microrep.model import build_feature_tower, dtype_policy, mixed_policy_name

        with dtype_policy(mixed_policy_name() if config.mixed_precision else "float32"):
            return build_feature_tower(config.input_size, config.weights, config.vgg_blocks,
                                       config.feature_layers)
    from microrep.train import load_tower

    return load_tower(config.model_path)


def embed_provenance(config, dataset):
    """What embed.json records: the model, the images and how they were tiled."""
    from microrep.data.loaders import source_kind

    kind, location = source_kind(config.data)
    model = ({"pretrained": True, "weights": config.weights, "input_size": config.input_size,
              "vgg_blocks": config.vgg_blocks, "feature_layers": config.feature_layers,
              "mixed_precision": config.mixed_precision} if config.pretrained
             else {"pretrained": False, "model_path": str(config.model_path)})
    return {**model, "data": kind, "data_dir": str(location), "task": config.data.task,
            "images": len(dataset), "grid": config.grid, "num_shards": config.num_shards}


def run_embed_stage(config, log=print):
    """The embed stage of an EmbedConfig: every image given, labelled or not.

    Returns (dataset, path of the embeddings file). Images are streamed (each
    read once, while embedding) unless bad files are to be skipped, which needs
    every image decoded first.
    """
    from microrep.data.loaders import load_unlabelled_dataset
    from microrep.fileio import refuse_earlier_output

    refuse_earlier_output(Path(config.out) / shard_name("embeddings", ".npy", config.shard_index,
                                                        config.num_shards),
                          "embeddings", config.overwrite)
    tower = embedding_tower(config)
    dataset = load_unlabelled_dataset(config.data, validate=config.data.skip_bad)
    for note in dataset.notes:
        log(note)
    workers = None if config.read_workers < 0 else config.read_workers
    out = Path(config.out)
    created = not out.exists()
    try:
        path = embed_to_disk(tower, dataset, out, config.grid, config.batch_size,
                             config.shard_index, config.num_shards, workers=workers)
    except DataError as error:  # an image that could not be read half-way: say what to do
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing was written: leave no empty folder behind
        raise DataError(f"{error}; nothing was written. Pass --skip-bad to check every image "
                        "first and leave the unusable ones out") from None
    write_json(out / "embed.json", embed_provenance(config, dataset))
    return dataset, path
