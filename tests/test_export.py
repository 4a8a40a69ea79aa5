import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from microrep.config import ModelConfig
from microrep.export import export_tower
from microrep.model import build_tower

from conftest import TINY_INPUT


def test_savedmodel_reloads_in_plain_tensorflow_with_same_embeddings(tmp_path):
    pytest.importorskip("tensorflow")
    keras.utils.set_random_seed(0)
    tower = build_tower(ModelConfig(input_size=TINY_INPUT, embedding_dim=8, weights="none"))
    savedmodel, keras_file = export_tower(tower, tmp_path / "export")
    images = np.random.default_rng(0).integers(0, 256, (4, TINY_INPUT, TINY_INPUT, 1), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    expected = tower.predict(images, verbose=0)

    # a fresh process that imports only TensorFlow, not microrep or keras
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf, sys
        assert "microrep" not in sys.modules
        model = tf.saved_model.load({str(savedmodel)!r})
        images = np.load({str(tmp_path / 'images.npy')!r})
        np.save({str(tmp_path / 'out.npy')!r}, model.serve(tf.constant(images)).numpy())
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)

    reloaded = keras.saving.load_model(keras_file)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, atol=1e-6)
    info = json.loads((tmp_path / "export" / "export.json").read_text())
    assert info["input"]["dtype"] == "uint8"
