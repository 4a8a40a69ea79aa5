"""A new loss, pooling or head is one registry entry: registered here, in the test file itself,
and trained through `microrep.train` with no other file touched."""

import dataclasses

import keras
import numpy as np
import pandas as pd
import pytest
from keras import ops

import microrep
from microrep.config import DataConfig, ModelConfig, TrainConfig, from_dict
from microrep.errors import ConfigError
from microrep.nn.losses import LossEntry
from microrep.registry import HEADS, LOSSES, POOLINGS, Registry

from conftest import TINY_INPUT


@keras.saving.register_keras_serializable(package="microrep_tests")
class SquaredHingeLoss(keras.losses.Loss):
    """A test's own pair loss: same-class pairs pulled within 0.5, others pushed past the margin."""

    def __init__(self, margin=1.0, name="squared_hinge_pairs", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true, distance):
        distance = ops.cast(distance, "float32")
        same = ops.cast(ops.reshape(y_true, ops.shape(distance)), "float32")
        return same * ops.square(ops.maximum(distance - 0.5, 0.0)) + \
            (1.0 - same) * ops.square(ops.maximum(self.margin - distance, 0.0))

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@pytest.fixture
def registered():
    """A loss, a pooling and a head of this test's own, taken out of the registries afterwards."""
    LOSSES.register("test-squared-hinge", LossEntry(lambda config: SquaredHingeLoss(config.margin)))
    POOLINGS.register("test-rms", lambda name: keras.layers.Lambda(
        lambda maps: ops.sqrt(ops.mean(ops.square(maps), axis=(1, 2)) + 1e-6), name=name))
    from microrep.nn.heads import HeadEntry

    HEADS.register("test-tanh", HeadEntry(lambda features, config: keras.layers.Dense(
        config.embedding_dim, activation="tanh", name="projection")(features)))
    yield
    for registry, name in ((LOSSES, "test-squared-hinge"), (POOLINGS, "test-rms"),
                           (HEADS, "test-tanh")):
        registry.unregister(name)


def test_a_loss_pooling_and_head_registered_here_train_through_microrep_train(
        registered, tmp_path, tiny_dataset, tiny_data_config):
    values = {"data": dataclasses.asdict(tiny_data_config), "similarity": "test-squared-hinge",
              "model": {"input_size": TINY_INPUT, "vgg_blocks": 2, "weights": "none",
                        "feature_layers": "block2_conv2", "pooling": "test-rms", "head": "test-tanh",
                        "embedding_dim": 8, "train_base": False},
              "pairs": {"pairs_per_epoch": 32}, "epochs": 2, "batch_size": 8, "feature_bank": 2,
              "feature_cache": "", "hard_pairs": 0.25, "out": str(tmp_path / "run")}
    config = from_dict(TrainConfig, values)  # the settings accept the new names
    run = microrep.train(config, tiny_dataset, verbose=0)
    log = pd.read_csv(tmp_path / "run" / "training_log.csv")
    assert len(log) == 2 and np.isfinite(log["loss"]).all()
    assert any(layer.name == "pool_block2_conv2" and layer.__class__.__name__ == "Lambda"
               for layer in run.tower.layers)
    crops = np.random.default_rng(0).integers(0, 256, (3, TINY_INPUT, TINY_INPUT, 1), dtype=np.uint8)
    vectors = keras.ops.convert_to_numpy(run.tower(crops))
    assert vectors.shape == (3, 8) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # the same loss fine-tunes the whole tower too (the other training loop)
    tuned = microrep.train(dataclasses.replace(config, out=str(tmp_path / "tuned"), epochs=1,
                                               model=dataclasses.replace(config.model, train_base=True,
                                                                         pooling="mean")),
                           tiny_dataset, verbose=0)
    assert tuned.epochs_completed == 1


def test_unknown_names_are_refused_in_one_line_naming_the_registered_ones():
    with pytest.raises(ConfigError, match="must be one of label, graded"):
        from_dict(TrainConfig, {"similarity": "triplet"})
    with pytest.raises(ConfigError, match="must be one of mean, max, meanstd, gem, gram, vlad, netvlad"):
        from_dict(ModelConfig, {"pooling": "fisher"})
    with pytest.raises(ConfigError, match="unknown head 'mlp'; registered: projection, residual"):
        HEADS["mlp"]


def test_a_registry_refuses_a_taken_name_and_loads_its_home_once():
    registry = Registry("widget", "microrep.nn.pooling")
    registry.register("round", object)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("round", int)
    assert "round" in registry and list(registry) == ["round"]
    assert set(POOLINGS) >= {"mean", "max"} and set(LOSSES) >= {"graded", "label"}


def test_no_code_outside_the_registries_branches_on_a_part_name():
    """Losses, heads and poolings are chosen through their registries only: no comparison of
    a `similarity`, `head` or `pooling` setting with a name (==, !=, in), however spelled."""
    import ast
    from pathlib import Path

    settings = {"similarity", "head", "pooling"}

    def names_a_setting(node):
        return (isinstance(node, ast.Attribute) and node.attr in settings) or \
            (isinstance(node, ast.Name) and node.id in settings)

    def holds_a_name(node):
        return isinstance(node, ast.Constant) and isinstance(node.value, str) or \
            isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(map(holds_a_name, node.elts))

    package = Path(microrep.__file__).parent
    branching = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(map(names_a_setting, sides)) and any(map(holds_a_name, sides)):
                    branching.append(f"{path.relative_to(package)}:{node.lineno}")
    assert branching == []


def test_the_public_api_names_resolve():
    for name in microrep.__all__:
        assert getattr(microrep, name) is not None, name
    with pytest.raises(AttributeError):
        microrep.no_such_name
    assert isinstance(DataConfig(), microrep.DataConfig)
