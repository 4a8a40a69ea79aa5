"""Data-parallel training on several virtual CPU devices, per backend."""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import FINE_TUNE_FLAGS

TRAIN = ["train", "--data-dir", "{tmp}/data", "--synthetic-samples-per-class", "1",
         "--synthetic-images-per-sample", "3", "--synthetic-image-size", "40",
         "--input-size", "32", "--vgg-blocks", "2", "--embedding-dim", "8", "--weights", "none",
         "--epochs", "1", "--pairs-per-epoch", "16", "--batch-size", "8",
         "--distribute", "data", "--out", "{tmp}/run", *FINE_TUNE_FLAGS]

TF_TWO_CPUS = (
    "import sys, tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
    "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2); "
    "from microrep.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_data_parallel_training_on_two_virtual_devices(backend, tmp_path):
    if not importlib.util.find_spec(backend):
        pytest.fail(f"{backend} is part of the test install")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in TRAIN]
    if backend == "jax":
        command = [sys.executable, "-m", "microrep", *argv]
    else:
        command = [sys.executable, "-c", TF_TWO_CPUS, *argv]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 device(s)" in done.stdout
    assert (tmp_path / "run" / "tower.keras").is_file()
