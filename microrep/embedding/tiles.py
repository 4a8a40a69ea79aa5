"""Running a tower over images under a view: each image's embedding is the mean over its
view's pieces (data.views: a grid of tiles, or the whole frame at each scale).

Why: micrographs are larger than the model's input (224x224 by default); averaging over
pieces that cover the image makes its embedding independent of one crop. Tiles of many
images are batched together; a frame view runs image by image (`pieces.FrameTower`).
"""

import collections
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from microrep.data.images import grid_tiles
from microrep.embedding.pieces import FrameTower, as_view


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


def duration_words(seconds):
    """'about 31 min' / 'about 40 s' / 'about 2.5 h': an expected duration for people."""
    if seconds >= 5400:
        return f"about {seconds / 3600:.1f} h"
    return f"about {seconds / 60:.0f} min" if seconds >= 90 else f"about {seconds:.0f} s"


def mean_tile_embeddings(tower, tiles, per_image):
    """Each image's embedding, the mean over its `per_image` consecutive tiles, float32:
    the one computation every launcher runs, so their parts are the same."""
    vectors = np.asarray(tower.predict_on_batch(tiles), dtype=np.float32)
    return vectors.reshape(len(tiles) // per_image, per_image, -1).mean(axis=1)


def iter_embeddings(tower, images, view=None, batch_size=64, progress=False, workers=None, log=None):
    """Yield (image indices, their mean piece embeddings), batch by batch.

    `view` is a data.views View (None: the default view, the whole frame at three scales)
    or, as before views existed, the side of a tile grid.
    `workers` threads read images ahead (None: `default_read_workers()`; 0: none).
    `log` gets one line with the time the whole pass will take on this machine,
    measured on its second batch (the first also builds the model's graph).
    """
    view = as_view(view, tower)
    workers = default_read_workers() if workers is None else workers
    if view.batched:
        per_image = view.count
        total = -(-len(images) // max(batch_size // per_image, 1))
        batches = ((indices, mean_tile_embeddings(tower, tiles, per_image)) for indices, tiles in
                   iter_tile_batches(images, view.size, view.grid, batch_size, workers))
        what = f"{per_image} tiles each"
    else:
        frames = FrameTower(tower, view)
        total = len(images)
        batches = (([index], frames.embed(images[index])[None]) for index in range(len(images)))
        what = view.words()
        # only for the estimate line: the header reads are not paid where no one logs
        shown = pixels_shown(images, view) if log is not None else None
        if shown is not None:  # frames differ in size: the estimate goes by pixels
            total = sum(shown) / max(shown[1] if len(shown) > 1 else shown[0], 1)
            what += f"; {sum(shown) / 1e6:,.1f} megapixels shown to the network"
    bar = None
    started = time.perf_counter()
    try:
        for number, (indices, vectors) in enumerate(batches):
            if progress and bar is None:  # after the first batch: bad input stays one line
                from tqdm import tqdm  # text bars: no ipywidgets needed in a notebook

                bar = tqdm(total=len(images), desc="embedding", unit="image")  # with an ETA
            if bar is not None:
                bar.update(len(indices))
            yield indices, vectors
            if number == 1 and log is not None:
                log(f"embedding {len(images)} images ({what}): "
                    f"{duration_words(total * (time.perf_counter() - started))} on this machine "
                    "(measured on the second batch)")
            started = time.perf_counter()
    finally:
        if bar is not None:
            bar.close()


def pixels_shown(images, view):
    """Pixels the base is shown for each image under a frame `view`, from the images'
    headers (`shape_hint`), or None when a sequence cannot tell without decoding."""
    hint = getattr(images, "shape_hint", None)
    if hint is None:
        return None
    shapes = [hint(index) for index in range(len(images))]
    if any(shape is None for shape in shapes):
        return None
    return [view.pixels(shape) for shape in shapes]


def embed_images(tower, images, view=None, batch_size=64, progress=False, workers=None):
    """Mean piece embedding of each image under `view` (a View; None: the default view;
    or a tile grid's side), float32 (n_images, embedding_dim).

    `images` is a sequence of 2-D uint8 arrays (a Dataset's images, or a lazy
    list); they are read batch by batch.
    """
    outputs = [vectors for _, vectors in
               iter_embeddings(tower, images, view, batch_size, progress, workers)]
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

    def shape_hint(self, index):
        return self.dataset.shape_hint(self.rows[index])
