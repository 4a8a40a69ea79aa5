"""`--batch-size auto`: on an accelerator, the largest batch that fits; elsewhere the default.

Why: at the recipe's 64 pairs a VGG16 step leaves most of a large GPU idle
(on an H100, 32 pairs ran at a third of the rate of 128). The batch is found
by trying real training steps from the largest candidate down, and the
learning rate follows it by the square-root rule for Adam (Malladi et al.,
"On the SDEs and Scaling Rules for Adaptive Gradient Algorithms", 2022), from
the rate given for REFERENCE_BATCH pairs. On a CPU, or when only the head
trains on cached features (the head fits any device), the batch stays
REFERENCE_BATCH and nothing else changes.
"""

import dataclasses
import gc
import json
import math
from pathlib import Path

import keras
import numpy as np

from microrep.config import AUTO
from microrep.device import accelerator, is_out_of_memory
from microrep.errors import ConfigError
from microrep.nn.tower import build_siamese, build_tower
from microrep.registry import LOSSES
from microrep.training.compile import compile_siamese

REFERENCE_BATCH = 64  # TrainConfig's default batch: the learning rates given are for it
CANDIDATES = (1024, 512, 256, 128, 64, 32, 16, 8)
RECORD = "auto_batch.json"


def largest_fitting(try_batch, candidates=CANDIDATES):
    """The first candidate for which `try_batch(n)` runs without a device out-of-memory error."""
    for batch in candidates:
        try:
            try_batch(batch)
            return batch
        except Exception as error:
            if not is_out_of_memory(error):
                raise
        finally:
            gc.collect()
    raise ConfigError(f"not even {candidates[-1]} pairs fit in the accelerator's memory; "
                      "lower --input-size or --vgg-blocks")


def probe_training_step(config, candidates=CANDIDATES):
    """Largest candidate batch of pairs one real training step of `config`'s model fits."""
    size = config.model.input_size
    rng = np.random.default_rng(0)

    def try_batch(batch):
        keras.backend.clear_session()
        siamese = compile_siamese(build_siamese(build_tower(config.model)), config)
        pair = [rng.integers(0, 256, (batch, size, size, 1), dtype=np.uint8) for _ in range(2)]
        target = rng.integers(0, LOSSES[config.similarity].levels, batch).astype("float32")
        siamese.train_on_batch(pair, target)
        del siamese

    try:
        return largest_fitting(try_batch, candidates)
    finally:
        keras.backend.clear_session()


def resolve_batch_size(config, log=print, probe=probe_training_step):
    """`config` with a numeric batch size (and learning rate scaled for it when chosen here).

    A resumed run takes the choice recorded in its folder, so it continues as it began.
    """
    if config.batch_size != AUTO:
        return config, None
    record_path = Path(config.out) / RECORD
    if config.resume and record_path.is_file():
        record = json.loads(record_path.read_text())
        log(f"batch size auto: {record['batch_size']} pairs, as when this run began")
        return dataclasses.replace(config, batch_size=record["batch_size"],
                                   learning_rate=record["learning_rate"]), record
    device = accelerator()
    if device is None or not config.model.train_base:
        where = "a CPU" if device is None else "a frozen base (the head fits any device)"
        log(f"batch size auto: {REFERENCE_BATCH} pairs on {where}, learning rate "
            f"{config.learning_rate:g} unchanged")
        return dataclasses.replace(config, batch_size=REFERENCE_BATCH), None
    batch = probe(config)
    learning_rate = config.learning_rate * math.sqrt(batch / REFERENCE_BATCH)
    log(f"batch size auto: {batch} pairs, the largest power of two whose training step fit on "
        f"{device}; learning rate {config.learning_rate:g} x sqrt({batch}/{REFERENCE_BATCH}) = "
        f"{learning_rate:.3g}")
    record = {"requested": AUTO, "device": device, "batch_size": batch,
              "reference_batch_size": REFERENCE_BATCH, "given_learning_rate": config.learning_rate,
              "learning_rate": learning_rate, "rule": "sqrt (Adam)"}
    return dataclasses.replace(config, batch_size=batch, learning_rate=learning_rate), record
