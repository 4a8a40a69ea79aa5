"""VLAD pooling against a direct NumPy version, its state's round trip, and DeCost et al.'s
panel encoding on a tiny base."""

import keras
import numpy as np
import pytest

from microrep.config import ModelConfig
from microrep.embedding.vlad import VladFeatures, fit_dictionary, panel_maps, vlad_sums
from microrep.nn.pooling import VladPooling


def numpy_vlad(maps, centres, normalize=True):
    """VLAD written out: nearest centre, residuals summed, intra- then global L2."""
    out = []
    for image in maps:
        local = image.reshape(-1, image.shape[-1]).astype(np.float64)
        nearest = ((local[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        sums = np.zeros_like(centres, dtype=np.float64)
        for word in range(len(centres)):
            sums[word] = (local[nearest == word] - centres[word]).sum(0)
        if normalize:
            sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
            sums = sums.ravel() / max(np.linalg.norm(sums), 1e-12)
        out.append(sums.ravel())
    return np.array(out)


@pytest.mark.parametrize("normalize", [True, False])
def test_vlad_pooling_equals_numpy(normalize):
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 5, 4, 6)).astype(np.float32)
    centres = rng.normal(size=(4, 6)).astype(np.float32)
    layer = VladPooling(4, normalize=normalize)
    layer.build(maps.shape)
    layer.set_weights([centres])
    got = keras.ops.convert_to_numpy(layer(maps))
    np.testing.assert_allclose(got, numpy_vlad(maps, centres, normalize), rtol=1e-4, atol=1e-5)


def test_vlad_centres_survive_save_and_load(tmp_path):
    rng = np.random.default_rng(1)
    inputs = keras.Input((5, 4, 6))
    model = keras.Model(inputs, VladPooling(3, name="vlad")(inputs))
    model.get_layer("vlad").set_weights([rng.normal(size=(3, 6)).astype(np.float32)])
    maps = rng.normal(size=(2, 5, 4, 6)).astype(np.float32)
    model.save(tmp_path / "vlad.keras")
    again = keras.saving.load_model(tmp_path / "vlad.keras")
    np.testing.assert_array_equal(again.predict_on_batch(maps), model.predict_on_batch(maps))


def test_panel_sums_add_up_to_the_micrograph_vlad(tmp_path):
    """Four panels' raw sums, added, give the VLAD of all their local features at once; the
    maps are cached, so a second pass reads them."""
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, (70, 90), dtype=np.uint8) for _ in range(3)]
    config = ModelConfig(input_size=32, weights="none", mixed_precision=False)
    keras.utils.set_random_seed(0)  # random weights: the same base both times
    maps = panel_maps(config, images, cache_dir=tmp_path)
    assert maps["block4_conv3"].shape == (3, 4, 4, 4, 512)
    assert len(list(tmp_path.rglob("*.npz"))) == 3
    keras.utils.set_random_seed(0)
    again = panel_maps(config, images, cache_dir=tmp_path)
    assert len(list(tmp_path.rglob("*.npz"))) == 3
    np.testing.assert_array_equal(again["block5_conv3"], maps["block5_conv3"])
    local = maps["block4_conv3"].astype(np.float32) + rng.normal(size=maps["block4_conv3"].shape)
    centres = fit_dictionary(local, clusters=4, share=0.5, restarts=2)
    sums = vlad_sums(local, centres)
    features = VladFeatures({"block4_conv3": sums}, clusters=4)
    whole = numpy_vlad(local.reshape(3, -1, 1, 512), centres)
    np.testing.assert_allclose(features.images("block4_conv3"), whole, rtol=1e-3, atol=1e-5)
    assert features.panels("block4_conv3").shape == (12, 4 * 512)


def test_mean_std_and_gem_poolings_equal_numpy_and_survive_saving(tmp_path):
    from microrep.registry import POOLINGS

    rng = np.random.default_rng(3)
    maps = np.abs(rng.normal(size=(2, 5, 4, 6))).astype(np.float32)
    expected = {"meanstd": np.concatenate([maps.mean(axis=(1, 2)), maps.std(axis=(1, 2))], -1),
                "gem": (maps ** 3).mean(axis=(1, 2)) ** (1 / 3)}
    for name, want in expected.items():
        inputs = keras.Input((5, 4, 6))
        model = keras.Model(inputs, POOLINGS[name]("pool")(inputs))
        np.testing.assert_allclose(model.predict_on_batch(maps), want, rtol=1e-4, atol=1e-5)
        model.save(tmp_path / f"{name}.keras")
        again = keras.saving.load_model(tmp_path / f"{name}.keras")
        np.testing.assert_array_equal(again.predict_on_batch(maps), model.predict_on_batch(maps))


def numpy_gram(maps, mean, basis):
    """Gram pooling written out: centre, reduce, channel Gram matrix, upper triangle, signed
    square root, L2."""
    out = []
    for image in maps.astype(np.float64):
        reduced = (image.reshape(-1, image.shape[-1]) - mean) @ basis
        gram = reduced.T @ reduced / len(reduced)
        upper = gram[np.triu_indices(len(gram))]
        rooted = np.sign(upper) * np.sqrt(np.abs(upper))
        out.append(rooted / np.linalg.norm(rooted))
    return np.array(out)


def numpy_netvlad(maps, centres, kernel, bias):
    """NetVLAD written out: softmax assignment, weighted residuals per centre, intra and global L2."""
    out = []
    for image in maps.astype(np.float64):
        local = image.reshape(-1, image.shape[-1])
        logits = local @ kernel + bias
        weights = np.exp(logits - logits.max(1, keepdims=True))
        weights /= weights.sum(1, keepdims=True)
        sums = weights.T @ local - weights.sum(0)[:, None] * centres
        sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        out.append(sums.ravel() / np.linalg.norm(sums))
    return np.array(out)


@pytest.mark.parametrize("name", ["gram", "vlad", "netvlad"])
def test_fitted_poolings_equal_numpy_and_keep_their_state_when_saved(name, tmp_path):
    """Each pooling with state, fitted on local features (nn.pooling's `fit_weights`), equals
    its NumPy version, and its fitted state comes back bit for bit from a saved model."""
    from microrep.registry import POOLINGS

    rng = np.random.default_rng(4)
    maps = np.abs(rng.normal(size=(3, 6, 5, 80))).astype(np.float32)
    inputs = keras.Input((6, 5, 80))
    layer = POOLINGS[name]("pool")
    model = keras.Model(inputs, layer(inputs))
    weights = layer.fit_weights(rng.normal(size=(600, 80)).astype(np.float32) + 1, seed=0)
    layer.set_weights(weights)
    expected = {"gram": lambda: numpy_gram(maps, *weights),
                "vlad": lambda: numpy_vlad(maps, weights[0]),
                "netvlad": lambda: numpy_netvlad(maps, *weights)}[name]()
    np.testing.assert_allclose(model.predict_on_batch(maps), expected, rtol=2e-3, atol=2e-5)
    model.save(tmp_path / f"{name}.keras")
    again = keras.saving.load_model(tmp_path / f"{name}.keras")
    for saved, fitted in zip(again.get_layer("pool").get_weights(), weights):
        np.testing.assert_array_equal(saved, fitted)
    np.testing.assert_array_equal(again.predict_on_batch(maps), model.predict_on_batch(maps))


def test_the_fit_step_fits_a_tower_s_pooling_on_sampled_images_and_keys_the_cache():
    """fit_poolings draws local features from a seeded subsample of the images, as the view
    sees them, and sets the pooling's state in the tower; the feature cache's key follows."""
    from microrep.data.views import View
    from microrep.embedding.features import model_key
    from microrep.embedding.pool_fit import fit_poolings
    from microrep.nn.tower import build_feature_tower

    keras.utils.set_random_seed(0)
    config = ModelConfig(input_size=32, vgg_blocks=2, weights="none", feature_layers="",
                         pooling="vlad", mixed_precision=False)
    tower = build_feature_tower(config)
    before, initial = model_key(tower), tower.get_weights()
    images = [np.random.default_rng(i).integers(0, 255, (60, 90), np.uint8) for i in range(5)]
    lines = []
    assert fit_poolings(tower, images, View("frame", 32, scales=(1.0, 0.5)), seed=1,
                        sample=3, log=lines.append) == ["pool"]
    centres = tower.get_layer("pool").get_weights()[0]
    assert np.abs(centres).sum() > 0 and model_key(tower) != before
    assert "3 images" in lines[0]
    again = build_feature_tower(config)
    again.set_weights(initial)  # the same base: the same seed draws the same features
    fit_poolings(again, images, View("frame", 32, scales=(1.0, 0.5)), seed=1, sample=3)
    np.testing.assert_array_equal(again.get_layer("pool").get_weights()[0], centres)
    plain = build_feature_tower(ModelConfig(input_size=32, vgg_blocks=2, weights="none",
                                            feature_layers="", mixed_precision=False))
    assert fit_poolings(plain, images) == []
