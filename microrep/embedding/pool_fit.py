"""The fit step of a pooling with state: its weights computed from an archive's local features.

Why its own step: a VLAD dictionary, a Gram matrix's channel reduction or NetVLAD's
starting centres are fitted on the base's local features (the unpooled maps) before any
image has a vector. Every pooling layer with a `fit_weights(local, seed)` method (nn.pooling)
is fitted here on a seeded subsample of the images, read one at a time (an archive of parts
is never held in memory), each seen as the view sees it. The weights then live in the
tower: they are saved with a run, copied by every rebuild (embedding.towers.copy_weights)
and hashed into the feature cache's key (features.model_key), so features pooled with one
dictionary are never served for another.
"""

from pathlib import Path

import keras
import numpy as np

from microrep.embedding.pieces import any_size_tower, as_view
from microrep.nn.pooling import pooled_layers

#: Images sampled, and local features kept per image and scale, for a fit.
SAMPLE_IMAGES = 64
PER_PIECE = 1024


def fitted_poolings(tower):
    """Names of a tower's pooling layers that have state to fit."""
    return [name for name in pooled_layers(tower) if hasattr(tower.get_layer(name), "fit_weights")]


def fit_poolings(tower, images, view=None, seed=0, sample=SAMPLE_IMAGES, log=None):
    """Fit every pooling with state of `tower` (in place) on local features of a seeded
    subsample of `images` (a sequence, read lazily); returns the names fitted.

    Each sampled image is seen under `view` (data.views; None: the default view): every
    piece (tile, or scaled frame in windows of the view), `PER_PIECE` local features drawn
    from each (seeded). A tower without such poolings is left as it is.
    """
    names = fitted_poolings(tower)
    if not names:
        return []
    view = as_view(view, tower)
    free = any_size_tower(tower)
    maps_model = keras.Model(free.input, [free.get_layer(name).input for name in names])
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(images), min(sample, len(images)), replace=False))
    local = {name: [] for name in names}
    for index in chosen:
        for piece in view.pieces(images[int(index)]):
            for window in view.windows(piece) if view.kind == "frame" else [piece]:
                outputs = maps_model.predict_on_batch(np.asarray(window)[None, ..., None])
                for name, maps in zip(names, outputs if len(names) > 1 else [outputs]):
                    rows = np.asarray(maps, np.float32).reshape(-1, maps.shape[-1])
                    keep = rng.choice(len(rows), min(PER_PIECE, len(rows)), replace=False)
                    local[name].append(rows[keep])
    for name in names:
        layer = tower.get_layer(name)
        layer.set_weights(layer.fit_weights(np.concatenate(local[name]), seed))
    if log is not None:
        log(f"pooling fitted ({', '.join(names)}) on {sum(len(v) for v in local[names[0]])} local "
            f"features of {len(chosen)} images (seed {seed})")
    return names


#: Where an embeddings folder keeps the fitted state of a pretrained tower's poolings.
STATE_FILE = "pooling_state.npz"


def save_pooling_state(tower, folder):
    """Write the fitted poolings' weights beside an archive (atomically): every later part,
    shard, Ray actor and search query of the archive loads the same state."""
    from microrep.fileio import atomic_path

    arrays = {f"{name}/{i}": weight for name in fitted_poolings(tower)
              for i, weight in enumerate(tower.get_layer(name).get_weights())}
    with atomic_path(Path(folder) / STATE_FILE) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def load_pooling_state(tower, folder):
    """Set the fitted poolings' weights from an archive's state file; False when it has none."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return False
    with np.load(path) as stored:
        for name in fitted_poolings(tower):
            count = len(tower.get_layer(name).get_weights())
            tower.get_layer(name).set_weights([stored[f"{name}/{i}"] for i in range(count)])
    return True
