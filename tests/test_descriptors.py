import numpy as np
import pandas as pd

from microrep.analysis.descriptors import isotropy, measure_descriptors, pc_correlations
from microrep.data.synthetic import draw_ellipses


def canvas_with(semi_major, semi_minor, angles, size=128, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.float32)
    centers = rng.uniform(8, size - 8, (40, 2))
    draw_ellipses(mask, centers, [semi_major] * 40, [semi_minor] * 40, angles)
    return (40 + 180 * mask).astype(np.uint8)


def test_needles_measure_more_elongated_and_aligned_than_spheres():
    spheres = canvas_with(3.0, 3.0, np.zeros(40))
    needles = canvas_with(12.0, 1.5, np.full(40, 0.3))
    table = measure_descriptors([spheres, needles])
    assert table.at[1, "aspect_ratio"] > 2 * table.at[0, "aspect_ratio"]
    assert table.at[0, "isotropy"] > 0.8 and table.at[1, "isotropy"] < 0.5


def test_lamellae_are_anisotropic():
    xs = np.arange(96)
    stripes = np.tile(((np.sin(xs / 2.0) > 0) * 200 + 20).astype(np.uint8), (96, 1))
    assert isotropy(stripes) < 0.05


def test_pc_correlations_find_the_driving_descriptor():
    rng = np.random.default_rng(0)
    driver = rng.normal(size=50)
    scores = np.stack([driver + rng.normal(0, 0.1, 50), rng.normal(size=50)], axis=1)
    table = pc_correlations(scores, pd.DataFrame({"a": driver, "b": rng.normal(size=50)}))
    pc1_a = table[(table.pc == "PC1") & (table.descriptor == "a")]["spearman"].iloc[0]
    assert pc1_a > 0.9 and len(table) == 4


def test_interpret_takes_embeddings_and_trains_nothing(tmp_path):
    """Analysis takes embeddings and returns numbers; importing it pulls in no training code."""
    import subprocess
    import sys

    from microrep.analysis.interpret import interpret

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64), dtype=np.uint8) for _ in range(12)]
    table = pd.DataFrame({"label": ["a", "b", "c"] * 4, "aspect_ratio": np.arange(12.0)})
    signal = np.arange(12.0)
    embeddings = np.c_[signal, signal, signal, rng.normal(size=(12, 2))]  # PC1 = the signal
    summary = interpret(embeddings, table, images, tmp_path)
    assert len(summary["explained_variance"]) == 2 and (tmp_path / "pc_correlations.csv").is_file()
    truth = summary["correlations"].query("source == 'ground truth' and pc == 'PC1'")
    assert abs(float(truth["spearman"].iloc[0])) > 0.9  # PC1 follows the varying column
    loaded = subprocess.run([sys.executable, "-c", "import sys, microrep.analysis.interpret; "
                             "print(sorted(m for m in sys.modules if m in ("
                             "'microrep.commands.reproduce', 'microrep.training', "
                             "'microrep.training.train', 'microrep.training.frozen')))"],
                            capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
