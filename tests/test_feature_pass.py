"""The frozen-base feature pass survives interruption: each image's features are cached as
soon as they are computed, a rerun computes only the rest, and the result equals an
uninterrupted pass's. The pass is stopped by real signals (SIGINT, SIGKILL) sent by the
process to itself when the pass reports an image done (its own progress event, no clock)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import TINY_INPUT

IMAGES = 10
DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np
    from microrep.config import ModelConfig
    from microrep.embedding.features import compute_frozen_features
    from microrep.nn import build_feature_tower

    weights, cache, stop_after, how, out = sys.argv[1:6]
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (48 + 3 * i, 52), dtype=np.uint8) for i in range({images})]
    tower = build_feature_tower(ModelConfig(input_size={size}, weights=weights, vgg_blocks=2))
    computed = []

    def on_image(done, total):
        computed.append(done)
        if len(computed) == int(stop_after):
            os.kill(os.getpid(), getattr(signal, how))

    try:
        features = compute_frozen_features(tower, images, grid=2, per_image=3, cache_dir=cache,
                                           on_image=on_image)
    except KeyboardInterrupt:
        print(json.dumps({{"interrupted": True, "computed": len(computed)}}))
        sys.exit(130)
    np.savez(out, bank=features.bank, tiles=features.tiles)
    print(json.dumps({{"interrupted": False, "computed": len(computed)}}))
""").format(images=IMAGES, size=TINY_INPUT)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from microrep.nn.backbone import load_vgg16

    path = tmp_path_factory.mktemp("weights") / "vgg16.weights.h5"
    load_vgg16(TINY_INPUT, "none").save_weights(path)
    return path


def run_pass(tmp_path, weights, cache, stop_after=0, how="SIGINT"):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / f"features-{cache.name}.npz"
    done = subprocess.run([sys.executable, str(driver), str(weights), str(cache), str(stop_after),
                           how, str(out)], capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
    return done.returncode, report, out


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_an_interrupted_pass_keeps_what_it_computed_and_the_rerun_does_only_the_rest(
        tmp_path, weights, how):
    code, _, whole = run_pass(tmp_path, weights, tmp_path / "uninterrupted")
    assert code == 0
    cache = tmp_path / "interrupted"
    code, report, _ = run_pass(tmp_path, weights, cache, stop_after=4, how=how)
    if how == "SIGKILL":
        assert code == -9 and report is None
    else:
        assert code == 130 and report == {"interrupted": True, "computed": 4}
    assert len(list(cache.glob("*/*.npz"))) == 4, "each finished image was cached at once"
    assert not list(cache.glob("*/.*")), "no half-written entry is left behind"
    code, report, resumed = run_pass(tmp_path, weights, cache)
    assert code == 0 and report == {"interrupted": False, "computed": IMAGES - 4}
    with np.load(whole) as expected, np.load(resumed) as got:
        assert np.array_equal(expected["bank"], got["bank"])
        assert np.array_equal(expected["tiles"], got["tiles"])
    code, report, _ = run_pass(tmp_path, weights, cache)
    assert report == {"interrupted": False, "computed": 0}, "a complete cache computes nothing"


def test_the_pass_says_how_long_it_will_take_measured_on_its_second_image(tmp_path):
    from microrep.config import ModelConfig
    from microrep.embedding.features import compute_frozen_features
    from microrep.nn import build_feature_tower

    tower = build_feature_tower(ModelConfig(input_size=TINY_INPUT, weights="none", vgg_blocks=1))
    images = [np.full((40, 40), i * 20, dtype=np.uint8) for i in range(3)]
    lines = []
    compute_frozen_features(tower, images, 2, 2, cache_dir=tmp_path, log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("VGG16 features: 3 image(s) to compute (0 cached)")
    assert "on this machine" in lines[0] and str(tmp_path) in lines[0]
    compute_frozen_features(tower, images, 2, 2, cache_dir=tmp_path, log=lines.append)
    assert len(lines) == 1, "nothing to compute, nothing to estimate"
