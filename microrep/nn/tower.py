"""The embedding tower and the Siamese model (Keras functional API, keras.ops only).

The tower takes uint8 grayscale crops and does its own preprocessing, so users
and exported models feed raw micrograph pixels: cast to float, copy gray to
three channels, VGG16's "caffe" preprocessing (BGR mean subtraction), the
VGG16 convolutional base, pooling of the tapped layers (`microrep.nn.pooling`),
a head (`microrep.nn.heads`), and optional L2 normalisation. The Siamese model
applies the one tower to both images of a pair, so every weight is shared, and
outputs their Euclidean distance for the contrastive loss.
"""

import dataclasses

import keras

from microrep.errors import ConfigError
from microrep.nn.backbone import (build_vgg16_base, check_input_size, dtype_policy, policy_for,
                                  feature_layer_names)
from microrep.nn.layers import GrayToVGGInput, HalvesDistance, L2Normalize, StackPair
from microrep.nn.pooling import pool_maps
from microrep.registry import HEADS


def pooled_features(images, config, any_size=False):
    """uint8 crops -> VGG16 maps of the tapped layers, pooled (and concatenated when several).

    With `any_size`, the base takes images of any height and width (a whole frame)."""
    size = None if any_size else int(config.input_size)
    if size is not None:
        check_input_size(size)
    features = GrayToVGGInput(name="to_vgg_input")(images)
    taps = feature_layer_names(config)
    base = build_vgg16_base(size, config.weights, config.vgg_blocks)
    if taps:
        known = [layer.name for layer in base.layers]
        unknown = [name for name in taps if name not in known]
        if unknown:
            raise ConfigError(f"feature layer(s) {', '.join(unknown)} are not among the "
                              f"{config.vgg_blocks} VGG16 blocks kept; choose from "
                              f"{', '.join(n for n in known if 'conv' in n or 'pool' in n)}")
        base = keras.Model(base.input, [base.get_layer(n).output for n in taps], name="vgg16")
    base.trainable = config.train_base
    return pool_maps(base(features), taps, config.pooling)


def head_layers(features, config):
    """The head (registry `HEADS`) and L2 normalisation of pooled features: what a frozen base trains."""
    embedding = HEADS[config.head].build(features, config)
    if config.l2_normalize:
        return L2Normalize(name="l2_normalize", dtype="float32")(embedding)
    return keras.layers.Activation("linear", dtype="float32", name="embedding")(embedding)


def precision_policy(config):
    """The dtype policy a ModelConfig asks for: mixed bfloat16, or float32."""
    return policy_for(config.mixed_precision)


def build_tower(config):
    """The embedding tower of a ModelConfig: uint8 (S, S, 1) -> embedding."""
    size = int(config.input_size)
    check_input_size(size)
    with dtype_policy(precision_policy(config)):
        images = keras.Input((size, size, 1), dtype="uint8", name="image")
        embedding = head_layers(pooled_features(images, config), config)
    return keras.Model(images, embedding, name="embedding_tower")


def build_head(feature_dim, config):
    """The tower's trainable part alone, on pooled features (feature_dim,): a frozen base's model."""
    features = keras.Input((feature_dim,), name="features")
    return keras.Model(features, head_layers(features, config), name="head")


def build_siamese(tower):
    """Two inputs shaped like the tower's, one shared tower, their Euclidean distance.

    The tower is the image tower (uint8 crops in, inputs `image_a`/`image_b`)
    or, for a frozen base, the head on cached features. Both sides go through
    the tower as one stacked batch of 2B (one kernel launch and one weight
    gradient per layer instead of two).
    """
    shape, dtype, name = tower.input_shape[1:], tower.inputs[0].dtype, tower.inputs[0].name
    first = keras.Input(shape, dtype=dtype, name=f"{name}_a")
    second = keras.Input(shape, dtype=dtype, name=f"{name}_b")
    both = StackPair(name="stack_pair", dtype=dtype)([first, second])
    distance = HalvesDistance(name="distance", dtype="float32")(tower(both))
    return keras.Model([first, second], distance, name="siamese")


def build_feature_tower(config, any_size=False):
    """uint8 gray crops -> pooled VGG16 feature maps of a ModelConfig's base: no head, frozen.

    As in DeCost et al. 2017, the features are ImageNet VGG16 activations
    without any training on micrographs (mean pooling rather than VLAD); with
    `feature_layers`, the maps of those layers, pooled and concatenated. With
    `any_size`, it takes images of any height and width (whole frames: a view of
    the `frame` kind). Built under Keras' current dtype policy (callers choose the
    precision).
    """
    config = dataclasses.replace(config, train_base=False)
    size = None if any_size else int(config.input_size)
    images = keras.Input((size, size, 1), dtype="uint8", name="image")
    return keras.Model(images, pooled_features(images, config, any_size), name="vgg16_features")


def build_map_tower(config, layers):
    """uint8 gray crops (input size) -> the unpooled maps of VGG16 `layers` (a list), frozen:
    the local features a fitted pooling (VLAD's dictionary) is fitted on and encodes.
    Built under Keras' current dtype policy."""
    size = int(config.input_size)
    check_input_size(size)
    images = keras.Input((size, size, 1), dtype="uint8", name="image")
    base = build_vgg16_base(size, config.weights, 5)
    base = keras.Model(base.input, [base.get_layer(name).output for name in layers], name="vgg16")
    base.trainable = False
    maps = base(GrayToVGGInput(name="to_vgg_input")(images))
    return keras.Model(images, list(maps) if len(layers) > 1 else [maps], name="vgg16_maps")
