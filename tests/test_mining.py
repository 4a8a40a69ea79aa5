"""Hard pairs from the crop bank: who gets paired with whom, and at what level."""

import numpy as np

from microrep.pairs.mining import hard_pairs
from microrep.pairs import pair_levels


def line_of_crops():
    """Crops on a line at 0, 1, 2, ...: classes a/b alternate in blocks, relations finer."""
    positions = np.arange(24, dtype=np.float32)
    embeddings = np.stack([positions, np.zeros_like(positions)], axis=1)
    labels = np.repeat(["a", "b", "a", "b"], 6)
    relations = np.repeat(["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"], 3)
    owners = np.repeat(np.arange(12), 2)
    return embeddings, labels, relations, owners


def test_levels_say_what_the_two_crops_share():
    labels = np.array(["a", "a", "a", "b"])
    relations = np.array(["r1", "r1", "r2", "r1"])
    levels = pair_levels(labels, relations, np.array([0, 0, 0]), np.array([1, 2, 3]))
    np.testing.assert_array_equal(levels, [2, 1, 0])


def test_partners_are_the_hardest_of_their_kind_and_never_the_same_image():
    embeddings, labels, relations, owners = line_of_crops()
    pairs, levels = hard_pairs(embeddings, labels, relations, owners, 300,
                               np.random.default_rng(0), pool=1)
    anchors, partners = pairs[:, 0], pairs[:, 1]
    assert (owners[anchors] != owners[partners]).all()
    np.testing.assert_array_equal(levels, pair_levels(labels, relations, anchors, partners))
    distance = np.abs(embeddings[anchors, 0] - embeddings[partners, 0])
    for row, (anchor, partner) in enumerate(pairs):
        others = owners != owners[anchor]
        same_label, same_relation = labels == labels[anchor], relations == relations[anchor]
        kind = row % 3
        pool = [~same_label, same_label & same_relation, same_label & ~same_relation][kind] & others
        gaps = np.abs(embeddings[pool, 0] - embeddings[anchor, 0])
        hardest = gaps.max() if kind == 1 else gaps.min()
        assert distance[row] == hardest, (row, anchor, partner)
    assert set(np.unique(levels)) == {0, 1, 2}


def test_a_wider_pool_draws_among_the_few_hardest_partners():
    embeddings, labels, relations, owners = line_of_crops()
    pairs, _ = hard_pairs(embeddings, labels, relations, owners, 900, np.random.default_rng(1), pool=4)
    negatives = pairs[0::3]
    for anchor, partner in negatives:
        others = np.flatnonzero(labels != labels[anchor])
        gaps = np.abs(embeddings[others, 0] - embeddings[anchor, 0])
        rank = np.sum(gaps < abs(embeddings[partner, 0] - embeddings[anchor, 0]))
        assert rank < 4, "a partner among the four nearest crops of another class"
    chosen = {}
    for anchor, partner in negatives:
        chosen.setdefault(int(anchor), set()).add(int(partner))
    assert max(len(partners) for partners in chosen.values()) > 1, "not always the single nearest"


def test_anchors_in_blocks_find_the_same_partners(monkeypatch):
    embeddings, labels, relations, owners = line_of_crops()
    whole = hard_pairs(embeddings, labels, relations, owners, 50, np.random.default_rng(2))
    monkeypatch.setattr("microrep.pairs.mining.ANCHOR_BLOCK", 7)
    blocks = hard_pairs(embeddings, labels, relations, owners, 50, np.random.default_rng(2))
    np.testing.assert_array_equal(whole[0], blocks[0])
    np.testing.assert_array_equal(whole[1], blocks[1])
