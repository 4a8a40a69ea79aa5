import numpy as np
import pandas as pd
import pytest

from microrep.data import synthetic
from microrep.data.synthetic import SyntheticConfig, generate_micrograph, write_synthetic_dataset
from microrep.errors import ConfigError


def test_same_seed_same_images_other_seed_different():
    def images(seed):
        config = SyntheticConfig(classes="spheroidite,pearlite", samples_per_class=1,
                                 images_per_sample=2, image_size=48, seed=seed)
        return [image for _, image in synthetic.generate_records(config)]

    first, again, other = images(5), images(5), images(6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not any(np.array_equal(a, b) for a, b in zip(first, other))
    assert first[0].dtype == np.uint8 and first[0].shape == (48, 48)


@pytest.mark.parametrize("constituent", synthetic.CLASSES)
def test_every_class_renders_with_sane_factors(constituent):
    rng = np.random.default_rng(0)
    image, factors = generate_micrograph(rng, constituent, synthetic.CONDITIONS[constituent][0], 96)
    assert image.shape == (96, 96) and image.std() > 5
    assert 0.03 < factors["volume_fraction"] < 0.8
    assert 0.0 <= factors["isotropy"] <= 1.0
    assert factors["aspect_ratio"] >= 1.0


def mean_factor(constituent, condition, factor, repeats=6):
    rng = np.random.default_rng(1)
    return np.mean([generate_micrograph(rng, constituent, condition, 128)[1][factor]
                    for _ in range(repeats)])


def test_longer_hotter_anneals_coarsen_spheroidite():
    short = mean_factor("spheroidite", (700, 5, "AR"), "particle_size")
    long = mean_factor("spheroidite", (800, 5100, "AR"), "particle_size")
    assert long > 1.3 * short


def test_quench_refines_martensite_laths():
    # finer laths give more, smaller carbide regions
    quenched = mean_factor("martensite", (970, 5, "Q"), "particle_size")
    furnace = mean_factor("martensite", (970, 5, "FC"), "particle_size")
    assert furnace > 1.2 * quenched


def test_needles_are_elongated_and_spheroids_are_not():
    needles = mean_factor("spheroidite+widmanstatten", (900, 90, "AR"), "aspect_ratio")
    spheres = mean_factor("spheroidite", (900, 90, "AR"), "aspect_ratio")
    assert needles > spheres + 0.3
    assert mean_factor("spheroidite", (900, 90, "AR"), "isotropy") > 0.9


def test_writes_uhcsdb_like_folder(tmp_path):
    config = SyntheticConfig(classes="network,pearlite", samples_per_class=2,
                             images_per_sample=2, image_size=40)
    table = write_synthetic_dataset(tmp_path, config)
    on_disk = pd.read_csv(tmp_path / "metadata.csv")
    for column in ("micrograph_id", "primary_microconstituent", "sample_key", "anneal_temperature",
                   "anneal_time", "cool_method", "particle_size", "isotropy"):
        assert column in on_disk.columns
    assert len(on_disk) == len(table) == 8
    assert all((tmp_path / path).is_file() for path in on_disk["path"])
    assert on_disk.groupby("sample_key")["primary_microconstituent"].nunique().max() == 1


def test_unknown_class_is_a_config_error():
    with pytest.raises(ConfigError, match="bainite"):
        list(synthetic.generate_records(SyntheticConfig(classes="bainite")))
