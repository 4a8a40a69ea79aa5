"""Export the embedding tower: a TensorFlow SavedModel and a native .keras file.

This module is one of the two places that need TensorFlow (with tf.data in
`pairs`): `model.export(..., format="tf_saved_model")` writes a SavedModel that
plain TensorFlow (`tf.saved_model.load`) and TF Serving reload without microrep
or Keras. Two endpoints:

- `serve`: uint8 grayscale crops (batch, S, S, 1) -> embeddings (batch, D);
- `embed_image`: one whole uint8 grayscale micrograph (H, W) of any size -> its
  embedding (D,), the mean over a grid x grid tiling, exactly as `microrep embed`
  computes it (same tile origins, same reflection padding of small images), so
  other tools get microrep's per-image result without reimplementing the tiling.
"""

import importlib.util
import shutil
import tempfile
from pathlib import Path

from microrep.errors import ExportError
from microrep.fileio import atomic_path, replace_dir, write_json

SAVEDMODEL = "savedmodel"
KERAS_FILE = "tower.keras"


def tile_origins_tf(length, tile, count):
    """`microrep.data.images.tile_origins` in TensorFlow ops (float64, round half to even)."""
    import tensorflow as tf

    if count <= 1:
        return tf.reshape(tf.maximum((length - tile) // 2, 0), (1,))
    steps = tf.cast(tf.range(count), tf.float64) * tf.cast(length - tile, tf.float64) / (count - 1)
    spread = tf.cast(tf.round(steps), tf.int32)
    centred = tf.fill((count,), tf.maximum((length - tile) // 2, 0))
    return tf.where(length <= tile, centred, spread)


def pad_to_tile_tf(image, tile):
    """np.pad(image, ..., mode='reflect') up to tile x tile, as `grid_tiles` pads small images.

    NumPy reflects repeatedly when the padding exceeds the side; TensorFlow's
    REFLECT takes at most side - 1 per call, so the padding is applied in steps.
    """
    import tensorflow as tf

    def needs_more(image):
        return tf.reduce_any(tf.shape(image) < tile)

    def pad_once(image):
        shape = tf.shape(image)
        missing = tf.maximum(tile - shape, 0)
        step = tf.minimum(missing, tf.maximum(shape - 1, 0))
        return tf.pad(image, tf.stack([tf.zeros(2, tf.int32), step], axis=1), mode="REFLECT")

    return tf.while_loop(needs_more, pad_once, [image],
                         shape_invariants=[tf.TensorShape([None, None])])[0]


def whole_image_endpoint(tower, grid):
    """A tf.function: one uint8 (H, W) micrograph -> the mean embedding of its grid tiles."""
    import tensorflow as tf

    tile = int(tower.input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.uint8, name="image")])
    def embed_image(image):
        image = pad_to_tile_tf(image, tile)
        rows = tile_origins_tf(tf.shape(image)[0], tile, grid)
        cols = tile_origins_tf(tf.shape(image)[1], tile, grid)
        tiles = [image[rows[i]:rows[i] + tile, cols[j]:cols[j] + tile]
                 for i in range(grid) for j in range(grid)]
        embeddings = tower(tf.stack(tiles)[..., None], training=False)
        return tf.reduce_mean(tf.cast(embeddings, tf.float32), axis=0)

    return embed_image


#: How TensorFlow's file errors say the disk is full or the folder cannot be written.
UNWRITABLE_MESSAGES = ("file too large", "no space left", "disk quota", "read-only file system",
                       "permission denied")


def unwritable(error, path):
    """ExportError for a SavedModel the disk could not take; other errors unchanged."""
    text = str(error).lower()
    reason = next((m for m in UNWRITABLE_MESSAGES if m in text), None)
    if reason is None:
        return error
    return ExportError(f"cannot write the SavedModel {path}: {reason}; free some disk space or "
                       "choose another --out (earlier outputs are intact)")


def export_tower(tower, out_dir, grid=3):
    """Write `out_dir/savedmodel/` and `out_dir/tower.keras`; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / KERAS_FILE) as tmp:
        tower.save(tmp)
    if importlib.util.find_spec("tensorflow") is None:
        raise ExportError("exporting a SavedModel needs TensorFlow: pip install tensorflow "
                          f"(the .keras file was written to {out_dir / KERAS_FILE})")
    import keras
    import tensorflow as tf

    size = int(tower.input_shape[1])
    archive = keras.export.ExportArchive()
    archive.track(tower)
    archive.add_endpoint("serve", lambda crops: tower(crops, training=False),
                         input_signature=[tf.TensorSpec((None, size, size, 1), tf.uint8)])
    archive.add_endpoint("embed_image", whole_image_endpoint(tower, grid))
    staging = Path(tempfile.mkdtemp(prefix=".savedmodel.", dir=out_dir))
    try:
        try:
            archive.write_out(str(staging / "model"), verbose=False)
        except Exception as error:  # TensorFlow reports a full disk as its own error types
            raise unwritable(error, out_dir / SAVEDMODEL) from None
        replace_dir(staging / "model", out_dir / SAVEDMODEL)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    dim = int(tower.output_shape[-1])
    write_json(out_dir / "export.json", {
        "savedmodel": SAVEDMODEL, "keras": KERAS_FILE, "endpoint": "serve",
        "input": {"shape": [None, size, size, 1], "dtype": "uint8",
                  "meaning": "grayscale micrograph crops, raw pixel values 0-255"},
        "output": {"shape": [None, dim], "dtype": "float32"},
        "embed_image": {"input": {"shape": [None, None], "dtype": "uint8",
                                  "meaning": "one whole grayscale micrograph, any size"},
                        "output": {"shape": [dim], "dtype": "float32"}, "grid": grid,
                        "meaning": "mean embedding of a grid x grid tiling, as microrep embed"}})
    return out_dir / SAVEDMODEL, out_dir / KERAS_FILE
