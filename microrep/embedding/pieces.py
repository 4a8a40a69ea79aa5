"""A tower over a view's pieces: the one computation behind every embedding of an image.

Why one module: `embed`, `embed --pretrained`, search queries, reproduce, training's
feature cache and the SavedModel's `embed_image` (its TensorFlow twin in
commands/export.py) must agree on an image's vector. Each runs this: the view's pieces
(data.views: tiles, or the whole frame at each scale, a large frame in windows) through
the base and its pooling, one pooled row per piece (a frame's windows averaged), then the
head on each row, then the mean over the rows.
"""

import keras
import numpy as np

from microrep.config.stages import ViewConfig
from microrep.data.views import View
from microrep.nn.pooling import PREFIX, pooled_layers


def as_view(view, tower):
    """A View: `view` itself; None: the default view (config.stages.ViewConfig) at the tower's
    input size; an int (as before views existed): a tiling of that grid."""
    if isinstance(view, View):
        return view
    if view is None:
        return View.of(ViewConfig(), int(tower.input_shape[1]))
    return View("tiles", int(tower.input_shape[1]), int(view))


def any_size_tower(tower):
    """The same model (same layers, same weights) taking images of any height and width:
    every input of the tower and of models nested in it gets free spatial dimensions."""
    if tower.input_shape[1] is None:
        return tower
    free = type(tower).from_config(_free_spatial(tower.get_config()))
    free.set_weights(tower.get_weights())
    return free


def _free_spatial(node):
    if isinstance(node, dict):
        return {key: ([value[0], None, None, value[3]]
                      if key == "batch_shape" and isinstance(value, (list, tuple)) and len(value) == 4
                      else _free_spatial(value)) for key, value in node.items()}
    if isinstance(node, list):
        return [_free_spatial(value) for value in node]
    return node


def split_tower(tower):
    """(feature model: images -> pooled features, head: pooled features -> embedding, or None
    for a tower that ends at its pooling). The head's layers are the tower's own (shared)."""
    names = [layer.name for layer in tower.layers]
    pooled = PREFIX if PREFIX in names else pooled_layers(tower)[-1]
    features = keras.Model(tower.input, tower.get_layer(pooled).output, name="vgg16_features")
    after = tower.layers[names.index(pooled) + 1:]
    if not after:
        return features, None
    inputs = keras.Input(tuple(features.output_shape[1:]), name="features")
    outputs = inputs
    for layer in after:  # a head is a chain of one-input layers (nn.heads)
        outputs = layer(outputs)
    return features, keras.Model(inputs, outputs, name="head")


def piece_features(feature_tower, image, view):
    """(pieces, d) pooled features of one image's pieces of `view`: one batch for tiles and
    panels; for a frame, one row per scale, the mean over that scaled frame's windows."""
    pieces = view.pieces(image)
    if view.batched:
        return features_of(feature_tower, np.asarray(pieces)[..., None])
    return np.stack([np.mean([features_of(feature_tower, window[None, ..., None])[0]
                              for window in view.windows(piece)], axis=0) for piece in pieces])


def features_of(feature_tower, batch):
    """A feature tower's float32 output for one batch of uint8 pieces (batch, H, W, 1)."""
    return np.asarray(feature_tower.predict_on_batch(batch), dtype=np.float32)


def head_outputs(head, pooled, chunk=4096):
    """The head applied to rows of pooled features, in chunks; float32 NumPy (None: the rows)."""
    if head is None:
        return np.asarray(pooled, np.float32)
    # called directly, not through predict(): one small model per fold would
    # otherwise trace a new predict function each time
    return np.concatenate([keras.ops.convert_to_numpy(head(pooled[start:start + chunk]))
                           for start in range(0, len(pooled), chunk)]).astype(np.float32)


def mean_head_outputs(head, pieces):
    """(n, pieces, d) pooled features -> (n, embedding): the head on every piece, averaged."""
    count, per_image, dim = pieces.shape
    return head_outputs(head, pieces.reshape(-1, dim)).reshape(count, per_image, -1).mean(axis=1)


class FrameTower:
    """A tower as a frame view runs it: any-size feature model, then its head per piece."""

    def __init__(self, tower, view):
        self.view = view
        self.features, self.head = split_tower(any_size_tower(tower))

    def embed(self, image):
        """One image's embedding: the head on each scale's pooled features, averaged."""
        return mean_head_outputs(self.head, piece_features(self.features, image, self.view)[None])[0]
