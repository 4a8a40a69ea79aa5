import keras
import numpy as np
import pytest

from microrep.config import ModelConfig
from microrep.errors import ConfigError, WeightsError
from microrep.nn.tower import build_siamese, build_tower

from conftest import TINY_INPUT


def tiny_tower(**overrides):
    values = dict(input_size=TINY_INPUT, embedding_dim=8, weights="none")
    values.update(overrides)
    keras.utils.set_random_seed(0)
    return build_tower(ModelConfig(**values))


def test_tower_takes_uint8_gray_and_gives_unit_embeddings():
    tower = tiny_tower()
    assert tower.input.dtype == "uint8" and tower.input_shape == (None, TINY_INPUT, TINY_INPUT, 1)
    images = np.random.default_rng(0).integers(0, 256, (3, TINY_INPUT, TINY_INPUT, 1), dtype=np.uint8)
    embeddings = tower.predict(images, verbose=0)
    assert embeddings.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_siamese_shares_every_weight_between_its_branches():
    tower = tiny_tower(l2_normalize=False)
    siamese = build_siamese(tower)
    assert siamese.count_params() == tower.count_params()
    assert len(siamese.trainable_weights) == len(tower.trainable_weights)
    images = np.random.default_rng(1).integers(0, 256, (2, TINY_INPUT, TINY_INPUT, 1), dtype=np.uint8)
    distance = siamese.predict([images, images[::-1]], verbose=0)
    embeddings = tower.predict(images, verbose=0)
    expected = np.linalg.norm(embeddings - embeddings[::-1], axis=1)
    np.testing.assert_allclose(distance, expected, rtol=1e-4)
    assert np.allclose(siamese.predict([images, images], verbose=0), 0.0, atol=1e-5)


def test_input_below_vgg_minimum_is_refused():
    with pytest.raises(ConfigError, match="minimum of 32"):
        tiny_tower(input_size=24)


@pytest.mark.slow
def test_local_weights_file_is_loaded(tmp_path):
    source = tiny_tower()
    path = tmp_path / "vgg16_notop.weights.h5"
    source.get_layer("vgg16").save_weights(path)
    keras.utils.set_random_seed(99)
    loaded = build_tower(ModelConfig(input_size=64, embedding_dim=8, weights=str(path)))
    for a, b in zip(source.get_layer("vgg16").get_weights(), loaded.get_layer("vgg16").get_weights(),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_missing_or_wrong_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        tiny_tower(weights=str(tmp_path / "nope.h5"))
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"junk")
    with pytest.raises(WeightsError, match="cannot load"):
        tiny_tower(weights=str(junk))


def test_mixed_precision_keeps_float32_embeddings_and_leaves_global_policy():
    before = keras.config.dtype_policy().name
    tower = tiny_tower(mixed_precision=True)
    assert tower.get_layer("vgg16").layers[1].compute_dtype == "bfloat16"
    images = np.zeros((1, TINY_INPUT, TINY_INPUT, 1), dtype=np.uint8)
    assert tower.predict(images, verbose=0).dtype == np.float32
    assert keras.config.dtype_policy().name == before


def test_frozen_base_trains_only_the_projection():
    tower = tiny_tower(train_base=False, vgg_blocks=2)
    assert [w.name for w in tower.trainable_weights] == ["kernel", "bias"]
    assert tower.get_layer("projection").trainable


def classic_siamese(tower):
    """The step of earlier microrep versions: MaxPooling2D in VGG16, the tower called per side."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from variants import build_variant

    return build_variant(tower, pool="max", tower_call="twice")


@pytest.mark.slow
def test_faster_step_computes_what_the_earlier_step_did(tmp_path):
    tower = tiny_tower(l2_normalize=False, vgg_blocks=5)
    assert any(type(layer).__name__ == "ReshapeMaxPool" for layer in tower.get_layer("vgg16").layers)
    old_tower, old_siamese = classic_siamese(tower)
    assert any(isinstance(layer, keras.layers.MaxPooling2D) for layer in old_tower.get_layer("vgg16").layers)
    rng = np.random.default_rng(5)
    pair = [rng.integers(0, 256, (3, TINY_INPUT, TINY_INPUT, 1), dtype=np.uint8) for _ in range(2)]
    new = build_siamese(tower).predict(pair, verbose=0)
    np.testing.assert_allclose(new, old_siamese.predict(pair, verbose=0), rtol=1e-5)
    # a Siamese checkpoint and a tower saved by the earlier step still load and agree
    old_siamese.save(tmp_path / "old_checkpoint.keras")
    old_tower.save(tmp_path / "old_tower.keras")
    reloaded = keras.saving.load_model(tmp_path / "old_checkpoint.keras")
    np.testing.assert_allclose(reloaded.predict(pair, verbose=0), new, rtol=1e-5)
    from microrep.training.run_dir import load_tower

    np.testing.assert_allclose(load_tower(tmp_path / "old_tower.keras").predict(pair[0], verbose=0),
                               tower.predict(pair[0], verbose=0), rtol=1e-5)


@pytest.mark.slow
def test_faster_step_trains_like_the_earlier_step():
    """One optimiser step on the same batch moves both models' weights the same way."""
    from microrep.nn.losses import ContrastiveLoss

    tower = tiny_tower(l2_normalize=False, vgg_blocks=3)
    _, old_siamese = classic_siamese(tower)
    new_siamese = build_siamese(tiny_tower(l2_normalize=False, vgg_blocks=3))
    rng = np.random.default_rng(6)
    pair = [rng.integers(0, 256, (4, TINY_INPUT, TINY_INPUT, 1), dtype=np.uint8) for _ in range(2)]
    target = np.array([1, 0, 1, 0], dtype="float32")
    for model in (old_siamese, new_siamese):
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=ContrastiveLoss(1.0))
        model.train_on_batch(pair, target)
    for old, new in zip(old_siamese.get_weights(), new_siamese.get_weights(), strict=True):
        np.testing.assert_allclose(new, old, rtol=1e-4, atol=1e-6)
