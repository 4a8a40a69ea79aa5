"""Learned vs pretrained on micrographs the training never saw, over seeded splits.

Why: cross-validation of a fixed embedding says how separable the classes are;
whether *learning* helps needs the training itself kept away from the test
images. Each split (`microrep.analysis.heldout`) trains the frozen-base recipe
on one half only, through `train()`, and scores both embeddings on the other
half with SVMs fitted on the first.

Two baselines, both untrained: `pretrained` is `microrep embed --pretrained`, the
first tapped layer's maps (block4_conv3 in the recipe) mean-pooled over the same
tiles; `recipe input` is what the recipe starts from, every tapped layer (block4
and block5) standardised on the fit half and L2-normalised per tile, i.e. the
head before its first step. Learned minus pretrained is the gain a user sees;
learned minus recipe input is what training itself adds. The VGG16 features are
computed once for all splits (and cached); the learned embeddings are the
trained head on the cached tile features, which the tests show equal the
assembled tower's.
"""

import dataclasses
import time

import numpy as np
import pandas as pd

from microrep.analysis.heldout import SPLITS, score_embedding, split_mask
from microrep.config import TASKS
from microrep.embedding.towers import embed_from_tiles, head_from_tower
from microrep.nn.backbone import feature_layer_names
from microrep.nn.pooling import pooled_widths
from microrep.training import train
from microrep.training.frozen import frozen_features, start_head


def compare_on_splits(train_config, dataset, seeds, kinds=SPLITS, tasks=TASKS, log=print,
                      view=None):
    """Rows (split, seed, task, metric, method, value) of pretrained vs learned, and timings.

    `train_config` is a TrainConfig with a frozen base (the recipe); it is trained
    once per split on the fit half only, with the split's seed. `view` is how each
    image is seen (a data.views View, or the side of a tile grid).
    """
    started = time.time()
    features = frozen_features(train_config, dataset.images(), log, view=view)
    timings = {"features_s": time.time() - started, "head_s": []}
    baseline = features.tiles[..., :first_layer_width(train_config, features.feature_tower)].mean(axis=1)
    rows = []
    for kind in kinds:
        for seed in seeds:
            fit = split_mask(kind, dataset, seed)
            started = time.time()
            rows_fit = np.flatnonzero(fit)
            run = train(dataclasses.replace(train_config, seed=seed), dataset.subset(rows_fit),
                        verbose=0, features=features.subset(rows_fit))
            timings["head_s"].append(time.time() - started)
            head = head_from_tower(run.tower, features.tiles.shape[-1], train_config.model)
            learned = embed_from_tiles(head, features)
            start = embed_from_tiles(start_head(dataclasses.replace(train_config, seed=seed),
                                                features, rows_fit), features)
            for method, embeddings in (("pretrained", baseline), ("recipe input", start),
                                       ("learned", learned)):
                for (task, metric), value in score_embedding(dataset.table, embeddings, fit,
                                                             tasks).items():
                    rows.append(dict(split=kind, seed=seed, task=task, metric=metric,
                                     method=method, value=value))
            log(f"held-out {kind} split, seed {seed}: head trained in {timings['head_s'][-1]:.0f} s")
    return pd.DataFrame(rows), timings


def first_layer_width(train_config, feature_tower):
    """Channels of the first tapped layer: the part of the features `embed --pretrained` pools."""
    widths = pooled_widths(feature_tower, feature_layer_names(train_config.model))
    return next(iter(widths.values()))
