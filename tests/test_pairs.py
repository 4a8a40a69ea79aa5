import numpy as np
import pytest

from microrep.errors import DataError
from microrep.pairs import (PairSampler, crop, crops_from_plan, make_pydataset, make_tf_dataset,
                            pair_batches)

LABELS = np.array(["a"] * 6 + ["b"] * 3 + ["c"] * 1)


def sampler(**kwargs):
    shapes = [(40, 50)] * len(LABELS)
    values = dict(crop_size=16, pairs_per_epoch=400, seed=7)
    values.update(kwargs)
    return PairSampler(LABELS, shapes, **values)


def test_pairs_are_balanced_and_labels_are_right():
    pairs, same = sampler().epoch_pairs(0)
    assert same.mean() == pytest.approx(0.5)
    first, second = LABELS[pairs[:, 0]], LABELS[pairs[:, 1]]
    np.testing.assert_array_equal(same == 1, first == second)
    # positives take two different images wherever a class has more than one
    positive_multi = (same == 1) & (first != "c")
    assert np.all(pairs[positive_multi, 0] != pairs[positive_multi, 1])


def test_classes_are_drawn_uniformly_not_by_frequency():
    pairs, _ = sampler(pairs_per_epoch=3000).epoch_pairs(0)
    share = np.mean(LABELS[pairs[:, 0]] == "c")
    assert share == pytest.approx(1 / 3, abs=0.04)


def test_fresh_pairs_each_epoch_and_repeatable_per_epoch():
    s = sampler()
    first, _ = s.epoch_pairs(0)
    again, _ = sampler().epoch_pairs(0)
    later, _ = s.epoch_pairs(1)
    np.testing.assert_array_equal(first, again)
    assert np.mean(np.all(first == later, axis=1)) < 0.5


def test_plan_keeps_crops_inside_images():
    plan_a, plan_b, _ = sampler().epoch_plan(3)
    for plan in (plan_a, plan_b):
        assert plan[:, 1].max() <= 40 - 16 and plan[:, 2].max() <= 50 - 16
        assert set(plan[:, 3]) == {0, 1} and set(plan[:, 4]) == {0, 1, 2, 3}


def test_without_augmentation_no_flips_or_rotations():
    plan_a, _, _ = sampler(augment=False).epoch_plan(0)
    assert not plan_a[:, 3].any() and not plan_a[:, 4].any()


def test_crop_applies_flip_then_rotation():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    patch = crop(image, 1, 1, 1, 1, 2)
    np.testing.assert_array_equal(patch, np.rot90(image[1:3, 1:3][:, ::-1], 1))


def test_one_class_is_refused():
    with pytest.raises(DataError, match="two classes"):
        PairSampler(["a", "a"], [(8, 8)] * 2, 4)


def test_numpy_pydataset_and_tf_data_yield_identical_batches():
    pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50), dtype=np.uint8) for _ in LABELS]
    s = sampler(pairs_per_epoch=24)
    numpy_batches = list(pair_batches(s, images, 8, epoch=1))
    sequence = make_pydataset(s, images, 8, initial_epoch=1)
    tf_batches = list(make_tf_dataset(s, images, 8, initial_epoch=1).take(6).as_numpy_iterator())
    for index, ((a, b), y) in enumerate(numpy_batches):
        (sa, sb), sy = sequence[index]
        (ta, tb), ty = tf_batches[index]
        assert a.dtype == ta.dtype == np.uint8 and a.shape == (8, 16, 16, 1)
        for other in ((sa, sb, sy), (ta, tb, ty)):
            np.testing.assert_array_equal(a, other[0])
            np.testing.assert_array_equal(b, other[1])
            np.testing.assert_array_equal(y, other[2])
    # the tf.data stream runs on into the next epoch's fresh pairs
    next_epoch = list(pair_batches(s, images, 8, epoch=2))
    np.testing.assert_array_equal(tf_batches[3][0][0], next_epoch[0][0][0])
    sequence.on_epoch_end()
    np.testing.assert_array_equal(sequence[0][0][0], next_epoch[0][0][0])


def test_crops_from_plan_pads_small_images():
    image = np.full((10, 12), 7, dtype=np.uint8)
    batch = crops_from_plan([image], np.array([[0, 0, 0, 0, 0]]), 16)
    assert batch.shape == (1, 16, 16, 1) and (batch == 7).all()
