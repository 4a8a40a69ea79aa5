"""Hard pairs: the pairs the current embedding gets most wrong, drawn from the crop bank.

Why: after a few epochs most random pairs already sit where the loss wants
them and teach nothing; pairs the embedding still confuses (a crop of another
class among an anchor's nearest crops, a crop of the anchor's own sample far
away) carry the remaining signal. Used by the frozen-base training, where every
bank crop's embedding costs one small matrix product.
"""

import numpy as np

from microrep.losses import DIFFERENT_CLASS, SAME_CLASS, SAME_SAMPLE


def pair_levels(labels, relations, first, second):
    """Level of each pair: 2 same relation and class, 1 same class, 0 different class."""
    same_label = labels[first] == labels[second]
    same_relation = relations[first] == relations[second]
    return np.where(same_label & same_relation, SAME_SAMPLE,
                    np.where(same_label, SAME_CLASS, DIFFERENT_CLASS)).astype(np.float32)


def hard_pairs(embeddings, labels, relations, owners, count, rng, pool=8):
    """(pairs (count, 2) of rows of `embeddings`, their levels) with hard partners.

    Anchors are drawn at random; each partner is drawn from the `pool` hardest
    candidates of one of three kinds, in turn: another class's crops nearest the
    anchor, the anchor's relation's crops farthest from it, and its class's crops
    of other relations nearest it. `owners` names each row's image, so a crop is
    never paired with a crop of its own image. Anchors without a candidate of
    their kind are paired at random.
    """
    labels, relations, owners = (np.asarray(a).astype(str) for a in (labels, relations, owners))
    anchors = rng.integers(0, len(embeddings), count)
    squared = (np.sum(embeddings[anchors] ** 2, axis=1)[:, None] + np.sum(embeddings ** 2, axis=1)[None, :]
               - 2.0 * embeddings[anchors] @ embeddings.T)
    same_label = labels[anchors][:, None] == labels[None, :]
    same_relation = relations[anchors][:, None] == relations[None, :]
    other_image = owners[anchors][:, None] != owners[None, :]
    kinds = np.arange(count) % 3
    candidates = np.where(kinds[:, None] == 0, ~same_label,
                          np.where(kinds[:, None] == 1, same_label & same_relation,
                                   same_label & ~same_relation)) & other_image
    # nearest first for kinds 0 and 2, farthest first for kind 1; non-candidates last
    order_key = np.where(kinds[:, None] == 1, -squared, squared)
    order_key = np.where(candidates, order_key, np.inf)
    nearest = np.argsort(order_key, axis=1)[:, :pool]
    available = np.minimum(candidates.sum(axis=1), pool)
    picks = rng.integers(0, np.maximum(available, 1))
    partners = np.where(available > 0, nearest[np.arange(count), picks],
                        rng.integers(0, len(embeddings), count))
    return np.stack([anchors, partners], axis=1), pair_levels(labels, relations, anchors, partners)
