"""Shared fixtures: small synthetic datasets and tiny models, made at test time."""

import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from microrep.config import DataConfig, ModelConfig, PairConfig, TrainConfig  # noqa: E402

TINY_INPUT = 32  # VGG16's smallest input: keeps every test on 2 CPU cores fast

#: `microrep train` flags of the paper's end-to-end training (fine-tuned base, projection head,
#: contrastive loss on class labels), for tests of checkpoints, resume and data parallelism;
#: the default trains a head on a frozen base instead.
FINE_TUNE_FLAGS = ["--train-base", "--head", "projection", "--feature-layers", "",
                   "--similarity", "label", "--margin", "1.0"]


@pytest.fixture(scope="session")
def tiny_data_config(tmp_path_factory):
    """Three classes, two samples each, three 64x64 micrographs per sample."""
    return DataConfig(data="synthetic", data_dir=str(tmp_path_factory.mktemp("synthetic")),
                      task="constituent", synthetic_samples_per_class=2,
                      synthetic_images_per_sample=3, synthetic_image_size=64, synthetic_seed=1)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_data_config):
    from microrep.data import load_dataset

    # restrict to three classes to keep tests fast
    dataset = load_dataset(tiny_data_config)
    keep = dataset.table["label"].isin(["spheroidite", "pearlite", "network"]).to_numpy().nonzero()[0]
    return dataset.subset(keep)


def tiny_train_config(out, data_config, **overrides):
    values = dict(data=data_config,
                  model=ModelConfig(input_size=TINY_INPUT, embedding_dim=8, weights="none"),
                  pairs=PairConfig(pairs_per_epoch=16), out=str(out), epochs=2, batch_size=8,
                  learning_rate=1e-4, similarity="label", margin=1.0, seed=3)
    values.update(overrides)
    return TrainConfig(**values)


def write_uhcsdb_sqlite(path, samples, micrographs):
    """A UHCSDB-shaped microstructures.sqlite (the tables and columns the loader reads).

    samples: (sample_id, temperature, temp unit, time, time unit, cooling) rows;
    micrographs: (micrograph_id, micron_bar, micron_bar_px, sample_key, label) rows.
    """
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE sample (sample_id INTEGER PRIMARY KEY, label VARCHAR, "
                   "anneal_temperature FLOAT, anneal_temp_unit VARCHAR, anneal_time FLOAT, "
                   "anneal_time_unit VARCHAR, cool_method VARCHAR)")
        db.execute("CREATE TABLE micrograph (micrograph_id INTEGER PRIMARY KEY, path VARCHAR, "
                   "micron_bar FLOAT, micron_bar_units VARCHAR, micron_bar_px INTEGER, "
                   "sample_key INTEGER, primary_microconstituent VARCHAR)")
        db.executemany("INSERT INTO sample VALUES (?, 'x', ?, ?, ?, ?, ?)", samples)
        db.executemany("INSERT INTO micrograph VALUES (?, 'micrograph' || ? || '.tif', ?, 'um', ?, ?, ?)",
                       [(m[0], m[0], *m[1:]) for m in micrographs])


def chrome(tmp_path, local_server=False):
    """Headless Debian chromium with every network request refused (file:// still opens; with
    `local_server`, so does 127.0.0.1)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser and driver, "the browser test needs Debian's chromium and chromium-driver " \
                               "(.ci/run installs them with apt-get)"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,950", "--proxy-server=127.0.0.1:9",
                     "--host-resolver-rules=MAP * ~NOTFOUND" + (", EXCLUDE 127.0.0.1" if local_server else ""), f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real one-node SLURM cluster (tests/slurm_cluster.py), shared by the tests that need it."""
    from slurm_cluster import SlurmCluster, missing_parts

    lacking = missing_parts()
    if lacking:
        pytest.skip(f"no SLURM here: {lacking}")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


def write_class_folders(root, classes=("a", "b"), per_class=2, size=40, seed=0):
    """A folder of one sub-folder per class holding random gray PNGs (class folders, no samples)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(
                root / label / f"{index}.png")
    return root
