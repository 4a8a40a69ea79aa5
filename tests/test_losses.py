import numpy as np
import pytest
from keras import ops

from microrep.nn.losses import ContrastiveLoss, PairAccuracy, contrastive_loss


def test_contrastive_loss_matches_hand_computed_values():
    # y = 1 (same class): d**2. y = 0: max(margin - d, 0)**2.
    y_true = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    distance = np.array([0.0, 0.5, 0.25, 1.0, 1.5])
    expected = [0.0, 0.25, 0.5625, 0.0, 0.0]
    result = ops.convert_to_numpy(contrastive_loss(y_true, distance, margin=1.0))
    np.testing.assert_allclose(result, expected, atol=1e-7)


def test_margin_changes_only_dissimilar_pairs():
    y_true = np.array([1.0, 0.0])
    distance = np.array([0.5, 0.5])
    result = ops.convert_to_numpy(contrastive_loss(y_true, distance, margin=2.0))
    np.testing.assert_allclose(result, [0.25, 2.25], atol=1e-7)


def test_loss_class_reduces_to_mean_and_round_trips_config():
    loss = ContrastiveLoss(margin=1.0)
    value = float(loss(np.array([1.0, 0.0]), np.array([0.5, 0.25])))
    assert value == pytest.approx((0.25 + 0.5625) / 2)
    clone = ContrastiveLoss.from_config(ContrastiveLoss(margin=0.7).get_config())
    assert clone.margin == pytest.approx(0.7)


def test_pair_accuracy_uses_half_margin_threshold():
    metric = PairAccuracy(margin=1.0)
    metric.update_state(np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.2, 0.8, 0.9, 0.1]))
    assert float(metric.result()) == pytest.approx(0.5)


def test_pair_accuracy_config_chains_to_keras_and_round_trips():
    from microrep.nn.losses import PairAccuracy

    metric = PairAccuracy(margin=0.6, name="acc")
    config = metric.get_config()
    assert config["margin"] == 0.6 and config["name"] == "acc" and "dtype" in config
    clone = PairAccuracy.from_config(config)
    assert clone.margin == 0.6 and clone.name == "acc"


def test_processing_aware_loss_asks_distances_that_follow_processing():
    """The loss against NumPy, the conditions' places (standardised temperature and log time,
    one-hot cooling), and a sampler whose targets are the distances between those places."""
    from microrep.data.tasks import condition_coordinates
    from microrep.nn.losses import processing_distance_loss
    from microrep.pairs.samplers import GradedPairSampler, pair_targets_of
    from microrep.registry import LOSSES

    target, distance = np.array([0.0, 0.5, 3.0]), np.array([0.2, 1.0, 1.0])
    expected = (distance - 1.8 * np.tanh(target)) ** 2
    np.testing.assert_allclose(np.asarray(processing_distance_loss(target, distance, 1.8)), expected,
                               rtol=1e-5)
    conditions = ["800C-90M-AR", "800C-90M-AR", "970C-24H-WQ", "700C-5M-FC"]
    places = condition_coordinates(conditions)
    temperatures = np.array([700, 800, 970.0])
    np.testing.assert_allclose([places[c][0] for c in ("700C-5M-FC", "800C-90M-AR", "970C-24H-WQ")],
                               (temperatures - temperatures.mean()) / temperatures.std())
    assert abs(np.linalg.norm(places["800C-90M-AR"][2:] - places["970C-24H-WQ"][2:]) - 1) < 1e-9
    with pytest.raises(Exception, match="not a processing condition"):
        condition_coordinates(["sample-17"])
    entry = LOSSES["processing"]
    sampler = GradedPairSampler(["a", "a", "b", "b"], conditions, [(64, 64)] * 4, 32, 64, seed=0,
                                targets=pair_targets_of(entry, np.array(conditions)))
    pairs, targets = sampler.epoch_pairs(0)
    distances = [np.linalg.norm(places[conditions[i]] - places[conditions[j]]) for i, j in pairs]
    np.testing.assert_allclose(targets, distances, rtol=1e-6)
    assert (targets[np.array(conditions)[pairs[:, 0]] == np.array(conditions)[pairs[:, 1]]] == 0).all()
