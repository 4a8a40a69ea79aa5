"""Export the embedding tower: a TensorFlow SavedModel and a native .keras file.

This module is one of the two places that need TensorFlow (with tf.data in
`pairs`): `model.export(..., format="tf_saved_model")` writes a SavedModel that
plain TensorFlow (`tf.saved_model.load`) and TF Serving reload without microrep
or Keras. Two endpoints:

- `serve`: uint8 grayscale crops (batch, S, S, 1) -> embeddings (batch, D);
- `embed_image`: one whole uint8 grayscale micrograph (H, W) of any size -> its
  embedding (D,) under the run's view (data.views), as `microrep embed` computes it
  (embedding.pieces): for tiles, the mean over a grid x grid tiling (same tile origins,
  same reflection padding of small images); for a frame view, each scale's frame
  (resized with TensorFlow's antialiased bicubic, within one grey level of Pillow's
  that microrep uses), in windows where larger than the view's window, pooled, the
  head on each scale's features, averaged. Other tools get microrep's per-image result
  without reimplementing the view.
"""

import importlib.util
import shutil
import tempfile
from pathlib import Path

from microrep.embedding.pieces import FrameTower, as_view
from microrep.errors import ExportError
from microrep.fileio import atomic_path, replace_dir, write_json

SAVEDMODEL = "savedmodel"
KERAS_FILE = "tower.keras"


def tile_origins_tf(length, tile, count):
    """`microrep.data.images.tile_origins` in TensorFlow ops (float64, round half to even)."""
    import tensorflow as tf

    if count <= 1:
        return tf.reshape(tf.maximum((length - tile) // 2, 0), (1,))
    spread = window_origins_tf(length, tile, count)
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


def whole_image_endpoint(tower, view):
    """A tf.function: one uint8 (H, W) micrograph -> its embedding under `view` (a View, or
    the side of a tile grid)."""
    view = as_view(view, tower)
    if view.kind == "frame":
        return frame_endpoint(FrameTower(tower, view), view)
    return tiles_endpoint(tower, view.grid)


def tiles_endpoint(tower, grid):
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


def rescaled_tf(image, scale, floor):
    """`data.views.rescaled` in TensorFlow ops: the image resized by `scale` (at least
    `floor` px on its shorter side) with antialiased bicubic, rounded to uint8."""
    import tensorflow as tf

    shape = tf.cast(tf.shape(image), tf.float64)
    factor = tf.maximum(tf.constant(scale, tf.float64), floor / tf.reduce_min(shape))
    size = tf.maximum(tf.cast(tf.round(shape * factor), tf.int32), 1)

    def resized():
        out = tf.image.resize(tf.cast(image, tf.float32)[..., None], size, method="bicubic",
                              antialias=True)[..., 0]
        return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)

    return tf.cond(tf.abs(factor - 1.0) < 1e-3, lambda: image, resized)


def window_origins_tf(length, side, count):
    """`data.images.tile_origins` for `count` windows of `side` along `length` (count >= 1)."""
    import tensorflow as tf

    steps = tf.cast(tf.range(count), tf.float64) * tf.cast(length - side, tf.float64) / \
        tf.cast(tf.maximum(count - 1, 1), tf.float64)
    return tf.cast(tf.round(steps), tf.int32)


def frame_endpoint(frames, view):
    """A tf.function: one uint8 (H, W) micrograph -> the head on each scale's pooled
    features (the mean over that scaled frame's windows), averaged over the scales."""
    import tensorflow as tf

    from microrep.data.views import MIN_PIECE_SIDE

    def scale_features(image):
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        side_y, side_x = tf.minimum(height, view.window), tf.minimum(width, view.window)
        rows = window_origins_tf(height, side_y, (height + view.window - 1) // view.window)
        cols = window_origins_tf(width, side_x, (width + view.window - 1) // view.window)
        origins = tf.reshape(tf.stack(tf.meshgrid(rows, cols, indexing="ij"), -1), (-1, 2))

        def window_features(origin):
            window = tf.slice(image, origin, tf.stack([side_y, side_x]))
            return tf.cast(frames.features(window[None, ..., None], training=False)[0], tf.float32)

        width_out = int(frames.features.output_shape[-1])
        pooled = tf.map_fn(window_features, origins,
                           fn_output_signature=tf.TensorSpec((width_out,), tf.float32))
        return tf.reduce_mean(pooled, axis=0)

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.uint8, name="image")])
    def embed_image(image):
        rows = tf.stack([scale_features(rescaled_tf(image, scale, float(MIN_PIECE_SIDE)))
                         for scale in view.scales])
        embedded = rows if frames.head is None else frames.head(rows, training=False)
        return tf.reduce_mean(tf.cast(embedded, tf.float32), axis=0)

    embed_image.models = [m for m in (frames.features, frames.head) if m is not None]
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


def export_tower(tower, out_dir, view=3):
    """Write `out_dir/savedmodel/` and `out_dir/tower.keras`; return their paths. `view` (a
    data.views View, or a tile grid's side) is what `embed_image` computes."""
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
    view = as_view(view, tower)
    whole_image = whole_image_endpoint(tower, view)
    for model in getattr(whole_image, "models", []):
        archive.track(model)
    archive.add_endpoint("embed_image", whole_image)
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
                        "output": {"shape": [dim], "dtype": "float32"}, "view": view.settings(),
                        "meaning": f"mean embedding of {view.words()}, as microrep embed"}})
    return out_dir / SAVEDMODEL, out_dir / KERAS_FILE
