"""Poolings of VGG16 feature maps into vectors: a registry (name -> layer builder).

Each pooled layer is named `pool_<tapped layer>` (or `pool` for the base's own
output), and several tapped layers are concatenated into `pool`; other code
finds the pooled parts through `pooled_layers` and `pooled_widths`, never by
those names.
"""

import keras

from microrep.registry import POOLINGS

PREFIX = "pool"


@POOLINGS.register("mean")
def mean_pooling(name):
    """The mean of each channel over the map (DeCost et al.'s choice, and the paper's)."""
    return keras.layers.GlobalAveragePooling2D(name=name)


@POOLINGS.register("max")
def max_pooling(name):
    """The largest response of each channel: a feature present anywhere in the crop counts fully."""
    return keras.layers.GlobalMaxPooling2D(name=name)


def pool_maps(maps, taps, pooling="mean"):
    """Pooled vectors of the feature maps of `taps` (or of the base's output when none)."""
    build = POOLINGS[pooling]
    if not taps:
        return build(PREFIX)(maps)
    maps = maps if isinstance(maps, (list, tuple)) else [maps]
    pooled = [build(f"{PREFIX}_{name}")(m) for name, m in zip(taps, maps)]
    return pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name=PREFIX)(pooled)


def pooled_layers(model):
    """Names of a model's pooling layers, sorted (they key the feature cache)."""
    return sorted(layer.name for layer in model.layers if layer.name.startswith(PREFIX))


def pooled_widths(model, taps):
    """{tapped layer: its pooled width} of a tower built with `taps`, in order."""
    if len(taps) < 2:
        return {taps[0] if taps else PREFIX: int(model.output_shape[-1])}
    return {name: int(model.get_layer(f"{PREFIX}_{name}").output.shape[-1]) for name in taps}
