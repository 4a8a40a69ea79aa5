"""Hard pairs: the pairs the current embedding gets most wrong, drawn from the crop bank.

Why: after a few epochs most random pairs already sit where the loss wants
them and teach nothing; pairs the embedding still confuses (a crop of another
class among an anchor's nearest crops, a crop of the anchor's own sample far
away) carry the remaining signal. Used by the frozen-base training, where every
bank crop's embedding costs one small matrix product.
"""

import numpy as np

from microrep.pairs.samplers import pair_levels

#: Anchors whose distances to every candidate crop are held in memory at once.
ANCHOR_BLOCK = 256


def hard_pairs(embeddings, labels, relations, owners, count, rng, pool=8):
    """(pairs (count, 2) of rows of `embeddings`, their levels) with hard partners.

    Anchors are drawn at random; each partner is drawn from the `pool` hardest
    candidates of one of three kinds, in turn: another class's crops nearest the
    anchor, the anchor's relation's crops farthest from it, and its class's crops
    of other relations nearest it. `owners` names each row's image, so a crop is
    never paired with a crop of its own image. Anchors without a candidate of
    their kind get a random partner (labelled by what the two share, like every
    pair). Memory grows with ANCHOR_BLOCK x rows.
    """
    labels, relations, owners = (np.asarray(a).astype(str) for a in (labels, relations, owners))
    embeddings = np.asarray(embeddings, dtype=np.float32)
    anchors = rng.integers(0, len(embeddings), count)
    kinds = np.arange(count) % 3
    hardest, available = np.zeros((count, pool), dtype=np.int64), np.zeros(count, dtype=np.int64)
    for start in range(0, count, ANCHOR_BLOCK):
        block = slice(start, start + ANCHOR_BLOCK)
        hardest[block], available[block] = _hardest(embeddings, labels, relations, owners,
                                                    anchors[block], kinds[block], pool)
    picks = rng.integers(0, np.maximum(available, 1))
    partners = np.where(available > 0, hardest[np.arange(count), picks],
                        rng.integers(0, len(embeddings), count))
    return np.stack([anchors, partners], axis=1), pair_levels(labels, relations, anchors, partners)


def _hardest(embeddings, labels, relations, owners, anchors, kinds, pool):
    """Per anchor, its `pool` hardest candidates (hardest first) and how many there are."""
    squared = (np.sum(embeddings[anchors] ** 2, axis=1)[:, None] + np.sum(embeddings ** 2, axis=1)[None, :]
               - 2.0 * embeddings[anchors] @ embeddings.T)
    same_label = labels[anchors][:, None] == labels[None, :]
    same_relation = relations[anchors][:, None] == relations[None, :]
    candidates = np.where(kinds[:, None] == 0, ~same_label,
                          np.where(kinds[:, None] == 1, same_label & same_relation,
                                   same_label & ~same_relation))
    candidates &= owners[anchors][:, None] != owners[None, :]
    # nearest first for kinds 0 and 2, farthest first for kind 1; non-candidates last
    order_key = np.where(candidates, np.where(kinds[:, None] == 1, -squared, squared), np.inf)
    kept = min(pool, order_key.shape[1])
    hardest = np.argpartition(order_key, kept - 1, axis=1)[:, :kept]
    hardest = np.take_along_axis(hardest, np.argsort(np.take_along_axis(order_key, hardest, axis=1),
                                                     axis=1), axis=1)
    padded = np.zeros((len(anchors), pool), dtype=np.int64)
    padded[:, :kept] = hardest
    return padded, np.minimum(candidates.sum(axis=1), kept)
