"""What pairs images: relations ("the same sample") and sample-disjoint validation splits."""

import dataclasses

import numpy as np
import pandas as pd

from microrep.data.tasks import processing_condition
from microrep.errors import DataError
from microrep.registry import LOSSES


def pair_relations(table):
    """What makes two images 'the same sample': their processing condition where known, else sample.

    A self-supervised view (`pair_view`) says it itself: each image is its own."""
    if "pair_relation" in table.columns:
        return table["pair_relation"].astype(str).to_numpy()
    needed = ("anneal_temperature", "anneal_time", "cool_method")
    if all(column in table.columns for column in needed) and table[list(needed)].notna().all().all():
        return processing_condition(table).astype(str).to_numpy()
    return table["group"].astype(str).to_numpy()


def pair_view(dataset, pairs_from):
    """The dataset as its loss's pairs see it (`LossEntry.pairs_from`).

    "classes": unchanged. "images": labels ignored; an image's pair label is its sample
    where samples hold several images (micrographs of one sample count as alike), else
    the image itself, and its relation is the image (two crops of it are the closest
    pair). "classes+images": the class where an image has one, else as "images". Only
    training sees this view; evaluation keeps the real labels.
    """
    if pairs_from == "classes":
        return dataset
    table = dataset.table.copy()
    image = pd.Series([f"image:{row}" for row in range(len(table))], index=table.index)
    own = image
    if "group" in table.columns and table["group"].astype(str).duplicated().any():
        own = ("sample:" + table["group"].astype(str)).where(table["group"].notna(), image)
    known = (table["label"].fillna("").astype(str) if "label" in table.columns
             else pd.Series("", index=table.index))
    keep = (known != "") if pairs_from == "classes+images" else pd.Series(False, index=table.index)
    table["label"] = known.where(keep, own)
    table["pair_relation"] = image
    return dataclasses.replace(dataset, table=table)


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
