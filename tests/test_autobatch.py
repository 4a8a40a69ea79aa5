"""--batch-size auto: parsing, the largest-fitting search on real out-of-memory errors, CPU default."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from microrep.config import parse_batch_size
from microrep.training.autobatch import (REFERENCE_BATCH, largest_fitting, probe_training_step, resolve_batch_size)
from microrep.config import TrainConfig, from_dict
from microrep.device import is_out_of_memory
from microrep.errors import ConfigError
from microrep.training import train

from conftest import tiny_train_config


def test_batch_size_is_a_positive_integer_or_auto():
    assert parse_batch_size("auto") == parse_batch_size(" AUTO ") == "auto"
    assert parse_batch_size("16") == parse_batch_size(16) == 16
    for bad in ("x", "1.5", 2.5, None):
        with pytest.raises(ConfigError, match="positive integer or 'auto'"):
            parse_batch_size(bad)
    assert from_dict(TrainConfig, {"batch_size": "auto"}).batch_size == "auto"
    with pytest.raises(ConfigError, match="--batch-size must be at least 1"):
        from_dict(TrainConfig, {"batch-size": 0})


def device_holding(pairs):
    """A step that needs more memory than any machine has above `pairs` pairs (real MemoryError)."""

    def try_batch(batch):
        np.ones((1 << 42) if batch > pairs else 1024, dtype=np.float64)  # 32 TiB fits nowhere

    return try_batch


@pytest.mark.slow
def test_search_steps_down_on_out_of_memory_errors():
    assert largest_fitting(device_holding(16), (64, 32, 16, 8)) == 16
    assert largest_fitting(device_holding(1000), (64, 32)) == 64
    with pytest.raises(ConfigError, match="not even 8 pairs fit"):
        largest_fitting(device_holding(4), (16, 8))
    with pytest.raises(ZeroDivisionError):  # any other failure is not hidden as "too big"
        largest_fitting(lambda batch: 1 / 0, (8,))


@pytest.mark.slow  # TensorFlow's allocator retries for about 10 s before it gives up
def test_the_backends_own_out_of_memory_error_is_recognised():
    with pytest.raises(Exception) as caught:
        keras.ops.convert_to_numpy(keras.ops.zeros((1 << 40,)) + 1.0)  # 4 TiB of float32
    assert is_out_of_memory(caught.value)
    assert not is_out_of_memory(ValueError("shapes do not match"))


@pytest.mark.slow
def test_probe_runs_real_training_steps(tiny_data_config, tmp_path):
    config = tiny_train_config(tmp_path / "run", tiny_data_config)
    config.model.train_base = True
    assert probe_training_step(config, candidates=(4, 2)) == 4
    # a probe that answered without running the step would not meet this loss's failure
    # (a batch too large for any machine is no test here: TensorFlow may crash, not raise)
    from microrep.nn.losses import LossEntry
    from microrep.registry import LOSSES

    def broken(y_true, y_pred):
        raise ValueError("the step ran this loss")

    LOSSES.register("test-broken", LossEntry(lambda c: broken))
    try:
        with pytest.raises(ValueError, match="the step ran this loss"):
            probe_training_step(dataclasses.replace(config, similarity="test-broken"), candidates=(4, 2))
    finally:
        LOSSES.unregister("test-broken")


@pytest.mark.slow
def test_auto_on_a_cpu_keeps_the_reference_batch_and_learning_rate(tmp_path, tiny_data_config,
                                                                    tiny_dataset):
    said = []
    config = tiny_train_config(tmp_path / "run", tiny_data_config, batch_size="auto",
                               epochs=1, learning_rate=3e-4)
    resolved, record = resolve_batch_size(config, log=said.append)
    assert (resolved.batch_size, resolved.learning_rate, record) == (REFERENCE_BATCH, 3e-4, None)
    assert "batch size auto: 64 pairs on a CPU" in said[0]
    result = train(config, tiny_dataset, verbose=0)
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["batch_size"] == REFERENCE_BATCH and saved["learning_rate"] == 3e-4


def test_auto_on_an_accelerator_scales_the_learning_rate_and_resume_keeps_the_choice(tmp_path,
                                                                                      monkeypatch):
    """The accelerator's answer is stood in for (no GPU here); the choice and its record are real."""
    import microrep.training.autobatch as autobatch

    monkeypatch.setattr(autobatch, "accelerator", lambda: "gpu:test")
    config = from_dict(TrainConfig, {"batch_size": "auto", "learning_rate": 1e-5,
                                     "model": {"train_base": True}, "out": str(tmp_path / "run")})
    resolved, record = resolve_batch_size(config, log=lambda *_: None, probe=lambda c: 256)
    assert resolved.batch_size == 256
    np.testing.assert_allclose(resolved.learning_rate, 2e-5)
    assert record["batch_size"] == 256 and record["device"] == "gpu:test"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "auto_batch.json").write_text(json.dumps(record))
    resumed, _ = resolve_batch_size(dataclasses.replace(config, resume=True),
                                    log=lambda *_: None, probe=lambda c: pytest.fail("probed again"))
    assert (resumed.batch_size, resumed.learning_rate) == (256, resolved.learning_rate)
