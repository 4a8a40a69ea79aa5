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
