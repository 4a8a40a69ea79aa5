"""What pairs images: relations ("the same sample") and sample-disjoint validation splits."""

import numpy as np
import pandas as pd

from microrep.data.tasks import processing_condition
from microrep.errors import DataError
from microrep.registry import LOSSES


def pair_relations(table):
    """What makes two images 'the same sample': their processing condition where known, else sample."""
    needed = ("anneal_temperature", "anneal_time", "cool_method")
    if all(column in table.columns for column in needed) and table[list(needed)].notna().all().all():
        return processing_condition(table).astype(str).to_numpy()
    return table["group"].astype(str).to_numpy()


def similarity_relations(config, dataset):
    """Per image, what counts as 'the same sample' for pairs and validation splits."""
    return pair_relations(dataset.table) if LOSSES[config.similarity].graded else dataset.groups


def validation_split(labels, groups, fraction, seed=0):
    """(training positions, validation positions): whole samples held out, every class kept.

    Samples are drawn at random until `fraction` of the images are held out; a
    sample is not taken when its class would be left with fewer than two
    training images.
    """
    labels, groups = np.asarray(labels).astype(str), np.asarray(groups).astype(str)
    everything = np.arange(len(labels))
    if fraction <= 0:
        return everything, everything[:0]
    rng = np.random.default_rng([seed, 11])
    held = np.zeros(len(labels), dtype=bool)
    for group in rng.permutation(np.unique(groups)):
        if held.mean() >= fraction:
            break
        members = groups == group
        left = pd.Series(labels[~held & ~members]).value_counts()
        if all(left.get(label, 0) >= 2 for label in np.unique(labels[members])):
            held |= members
    if not held.any() or len(np.unique(labels[held])) < 2:
        raise DataError(f"--val-fraction {fraction}: no sample-disjoint validation set with two "
                        "classes is possible here; lower or drop --val-fraction")
    return everything[~held], everything[held]
