"""The Siamese model compiled for training: one optimiser, the run's loss and metrics."""

import keras

from microrep.registry import LOSSES


def compile_siamese(siamese, config):
    """Compile `siamese` under a TrainConfig: Adam at its learning rate, its loss's entry."""
    entry = LOSSES[config.similarity]
    siamese.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=entry.build(config),
                    metrics=entry.metrics(config))
    return siamese
