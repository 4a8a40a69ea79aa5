"""The same tiny end-to-end run on every Keras backend that is installed.

JAX and torch runs also hide TensorFlow (as on a machine without it), so they
exercise the NumPy pair source and the path that needs no TensorFlow at all.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

BACKENDS = [name for name in ("tensorflow", "jax", "torch") if importlib.util.find_spec(name)]
TINY = ["demo", "--input-size", "32", "--embedding-dim", "8", "--epochs", "2",
        "--pairs-per-epoch", "32", "--batch-size", "8", "--samples-per-class", "2",
        "--images-per-sample", "3", "--image-size", "48", "--folds", "2", "--grid", "1"]
WITHOUT_TENSORFLOW = ("import sys; sys.modules['tensorflow'] = None; "
                      "from microrep.cli import main; sys.exit(main(sys.argv[1:]))")


def run_demo(backend, out):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if backend == "tensorflow":
        command = [sys.executable, "-m", "microrep"]
    else:
        command = [sys.executable, "-c", WITHOUT_TENSORFLOW]
    return subprocess.run(command + TINY + ["--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=900)


def test_tensorflow_and_jax_are_both_installed_for_ci():
    assert {"tensorflow", "jax"} <= set(BACKENDS)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_runs_on_backend(backend, tmp_path):
    done = run_demo(backend, tmp_path / backend)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / backend / "metrics.json").read_text())
    assert metrics["backend"] == backend
    assert metrics["training"]["epochs_completed"] == 2
    assert set(metrics["methods"]) == {"learned embedding", "untrained tower", "raw pixels"}
    assert (tmp_path / backend / "export" / "tower.keras").is_file()
    if backend != "tensorflow":
        assert metrics["export"]["savedmodel"] is None and "TensorFlow" in metrics["export"]["note"]
