"""Turn a DataConfig into a Dataset: generate or read, then label for the task."""

import dataclasses
import json
from pathlib import Path

import pandas as pd

from microrep.data.dataset import Dataset
from microrep.data.synthetic import SyntheticConfig, write_synthetic_dataset
from microrep.data.tasks import apply_task
from microrep.errors import DataError

DEFAULT_SYNTHETIC_DIR = "microrep-data/synthetic"


def synthetic_config(data_config):
    return SyntheticConfig(
        samples_per_class=data_config.synthetic_samples_per_class,
        images_per_sample=data_config.synthetic_images_per_sample,
        image_size=data_config.synthetic_image_size,
        seed=data_config.synthetic_seed,
    )


def ensure_synthetic(data_dir, config):
    """Generate the synthetic set in `data_dir` unless the same set is already there."""
    data_dir = Path(data_dir)
    marker = data_dir / "synthetic.json"
    wanted = json.loads(json.dumps(dataclasses.asdict(config)))
    if (data_dir / "metadata.csv").is_file() and marker.is_file():
        if json.loads(marker.read_text()) == wanted:
            return
    write_synthetic_dataset(data_dir, config)


def read_metadata_table(data_dir):
    """Read a dataset folder's metadata.csv (as written by `microrep generate`)."""
    path = Path(data_dir) / "metadata.csv"
    if not path.is_file():
        raise DataError(f"{data_dir} has no metadata.csv; point --data-dir at a dataset "
                        "folder or generate one with `microrep generate`")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if "path" not in table.columns:
        raise DataError(f"{path} has no 'path' column")
    return table


def load_dataset(data_config, min_per_class=2):
    """The Dataset that `data_config` describes, labelled for its task."""
    data_dir = Path(data_config.data_dir or DEFAULT_SYNTHETIC_DIR)
    if data_config.data == "synthetic":
        ensure_synthetic(data_dir, synthetic_config(data_config))
    table = read_metadata_table(data_dir)
    if "sample_key" in table.columns:
        table = table.assign(group=table["sample_key"].astype(str))
    elif "group" not in table.columns:
        table = table.assign(group=table["path"].astype(str))
    table, dropped = apply_task(table, data_config.task, min_per_class)
    dataset = Dataset(table, root=data_dir, name=f"{data_config.data}:{data_config.task}")
    dataset.dropped_classes = dropped
    return dataset
