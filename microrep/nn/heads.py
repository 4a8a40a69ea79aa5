"""Heads on pooled features: a registry (name -> HeadEntry).

The head is what a frozen base trains; its output is L2-normalised (or not) by
the tower. An entry builds the head's layers and, where the head needs them,
takes statistics of the training features before training (`prepare`).
"""

import dataclasses
from typing import Callable

import keras

from microrep.errors import ConfigError
from microrep.nn.layers import ResidualProjection, Standardize
from microrep.registry import HEADS


@dataclasses.dataclass(frozen=True)
class HeadEntry:
    """`build(features, model_config)` -> embedding tensor; `prepare(head, pooled)` before fitting."""

    build: Callable
    prepare: Callable = lambda head, pooled: None


def projection(features, config):
    """A dense layer to `embedding_dim`: the paper's head."""
    return keras.layers.Dense(config.embedding_dim, name="projection")(features)


#: The widest pooled features the residual head takes (its correction has width^2 weights).
MAX_RESIDUAL_WIDTH = 8192


def residual(features, config):
    """Standardised features plus a learned correction that starts at zero.

    Training then moves the pretrained representation only as far as the pairs ask.
    """
    width = int(features.shape[-1])
    if width > MAX_RESIDUAL_WIDTH:  # its correction is width x width: 4 GB at 32,768
        raise ConfigError(f"the residual head's correction would be {width} x {width} weights "
                          f"for {width}-d pooled features (a VLAD or NetVLAD pooling); use "
                          "--head projection, which maps them to --embedding-dim")
    features = Standardize(name="standardize", dtype="float32")(features)
    return ResidualProjection(name="projection")(features)


def standardize_on(head, pooled):
    """The residual head's standardisation takes the training features' mean and spread."""
    head.get_layer("standardize").set_statistics(pooled)


HEADS.register("projection", HeadEntry(projection))
HEADS.register("residual", HeadEntry(residual, standardize_on))
