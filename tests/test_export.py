import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from microrep.config import ModelConfig
from microrep.commands.export import export_tower
from microrep.nn.tower import build_tower

from conftest import TINY_INPUT


@pytest.mark.slow
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


@pytest.mark.slow
def test_whole_image_endpoint_gives_what_microrep_embed_gives(tmp_path):
    """Images of any size, larger and smaller than a tile, odd sides, in plain TensorFlow."""
    pytest.importorskip("tensorflow")
    from microrep.embedding.tiles import embed_images

    keras.utils.set_random_seed(1)
    tower = build_tower(ModelConfig(input_size=TINY_INPUT, embedding_dim=8, weights="none",
                                    vgg_blocks=2))
    savedmodel, _ = export_tower(tower, tmp_path / "export", view=3)
    rng = np.random.default_rng(2)
    shapes = [(97, 131), (32, 32), (40, 33), (20, 50), (9, 7)]  # 9x7: padded in several steps
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in shapes]
    expected = embed_images(tower, images, view=3, workers=0)
    np.savez(tmp_path / "images.npz", *images)
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf, sys
        model = tf.saved_model.load({str(savedmodel)!r})
        stored = np.load({str(tmp_path / 'images.npz')!r})
        images = [stored[f"arr_{{i}}"] for i in range(len(stored.files))]
        out = [model.embed_image(tf.constant(image)).numpy() for image in images]
        assert "microrep" not in sys.modules
        np.save({str(tmp_path / 'whole.npy')!r}, np.stack(out))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "whole.npy"), expected, rtol=1e-5, atol=1e-6)
    info = json.loads((tmp_path / "export" / "export.json").read_text())
    assert info["embed_image"]["view"]["grid"] == 3 and info["embed_image"]["output"]["shape"] == [8]
