"""Turn a DataConfig into a Dataset: generate or read, then label for the task."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from microrep.data import uhcsdb
from microrep.data.dataset import Dataset
from microrep.data.folders import archive_table, class_folder_table, csv_table
from microrep.data.images import check_header, read_image
from microrep.data.synthetic import SyntheticConfig, write_synthetic_dataset
from microrep.data.tasks import apply_task, drop_rare_classes, task_labels
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
        table = pd.read_csv(path, encoding_errors="surrogateescape")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if "path" not in table.columns:
        raise DataError(f"{path} has no 'path' column")
    return table


def source_kind(data_config):
    """(kind, location) of the configured source (DataConfig resolves --images/--csv)."""
    return data_config.data, data_config.data_dir


def labels_named(data_config):
    """What the labels are, in words: the task, or the source's own labels."""
    return f"labels of the {data_config.data}" if data_config.own_labels else data_config.task


def source_table(data_config, require_labels=True):
    """(metadata table, root, reader, note) of the configured source, brought to one pixel
    size where --um-per-px asks (`physical_scale`)."""
    table, root, reader, note = source_rows(data_config, require_labels)
    table, scale_note = physical_scale(table, data_config)
    return table, root, reader, "; ".join(n for n in (note, scale_note) if n)


def physical_scale(table, data_config):
    """(table with a `scale_factor` column, note) resampling each micrograph to
    --um-per-px, from its own `um_per_px` (UHCSDB's scale bar, or a CSV column).

    Factors are held within 1/limit and limit (--um-per-px-limit): a low-magnification
    overview enlarged 20x to match a high-magnification frame would invent pixels and
    make a frame of some 13,000 px. Micrographs without a known scale keep theirs, and
    the note says how many.
    """
    target, limit = data_config.um_per_px, data_config.um_per_px_limit
    if target <= 0:
        return table, ""
    if "um_per_px" not in table.columns:
        raise DataError(f"--um-per-px needs each micrograph's own scale: a um_per_px column "
                        f"(UHCSDB's scale bar, or a CSV column); --data {data_config.data} has none")
    own = pd.to_numeric(table["um_per_px"], errors="coerce")
    own = own.where(own > 0)
    factor = (own / target).clip(1 / limit, limit)
    table = table.assign(scale_factor=factor.fillna(1.0))
    notes = []
    if own.isna().any():
        notes.append(f"{int(own.isna().sum())} micrograph(s) have no um_per_px and keep their own scale")
    held = int(((own / target) != factor).sum())
    if held:
        notes.append(f"{held} micrograph(s) would need resampling by more than {limit:g}x to "
                     f"reach {target:g} um/px and were resampled by {limit:g}x (--um-per-px-limit)")
    return table, "; ".join(notes)


def source_rows(data_config, require_labels=True):
    """(metadata table, root, reader, note) of the configured source, as it is stored."""
    kind, location = source_kind(data_config)
    if kind in ("images", "csv") and not location:
        raise DataError(f"--data {kind} needs a location: pass --{kind} PATH")
    if kind == "images":
        table = class_folder_table(location) if require_labels else archive_table(location)
        return table, Path(location), read_image, ""
    if kind == "csv":
        return csv_table(location, require_labels), Path(location).parent, read_image, ""
    if kind == "uhcsdb":
        if not location:
            raise DataError("--data uhcsdb needs --data-dir: the folder with microstructures.sqlite")
        table, missing = uhcsdb.load_uhcsdb_table(location)
        note = f"{missing} labelled micrograph(s) listed in the database have no image file" if missing else ""
        return table, Path(location), uhcsdb.read_uhcsdb_image, note
    data_dir = Path(location or DEFAULT_SYNTHETIC_DIR)
    if kind == "synthetic":
        ensure_synthetic(data_dir, synthetic_config(data_config))
    table = read_metadata_table(data_dir)
    if "sample_key" in table.columns:
        table = table.assign(group=table["sample_key"].astype(str))
    elif "group" not in table.columns:
        table = table.assign(group=table["path"].astype(str))
    return table, data_dir, read_image, ""


def label_table(table, task, min_class_size, has_metadata):
    """Apply the task's labels (own data keeps its labels under 'constituent')."""
    if not has_metadata:
        if task != "constituent":
            raise DataError(f"task {task!r} needs UHCSDB-style metadata; a folder or CSV "
                            "dataset is classified by its own labels (task 'constituent')")
        return drop_rare_classes(table.assign(label=table["label"].astype(str)), min_class_size)
    return apply_task(table, task, min_class_size)


def labels_where_known(table, task, has_metadata):
    """Every row kept, labelled for `task` where its metadata says, else with ''."""
    if not has_metadata:
        return table.assign(label=table["label"].fillna("").astype(str))
    try:
        labels, keep = task_labels(table, task)
    except DataError:  # metadata lacks what the task needs: embed unlabelled
        return table.assign(label="")
    return table.assign(label=labels.where(keep, "").astype(str))


def unlabelled_table(data_config):
    """(table, root, reader, note) of every image of the source, labelled where it can be."""
    table, root, reader, note = source_table(data_config, require_labels=False)
    has_metadata = "primary_microconstituent" in table.columns or data_config.task == "processing"
    return labels_where_known(table, data_config.task, has_metadata), root, reader, note


#: Image readers by name, as an archive's manifest records them.
READERS = {"image": read_image, "uhcsdb": uhcsdb.read_uhcsdb_image}


def reader_name(reader):
    return next(name for name, known in READERS.items() if known is reader)


def load_unlabelled_dataset(data_config, validate=False):
    """Every image of the configured source, labelled where it can be: for embedding.

    Labels belong to training and evaluation; embedding takes every image it is
    given, whatever its class and however rare.
    """
    table, root, reader, note = unlabelled_table(data_config)
    kind, _ = source_kind(data_config)
    dataset = Dataset(table, root=root, name=kind, reader=reader, notes=[note] if note else [])
    dataset = check_headers(dataset, data_config.skip_bad)
    return validate_images(dataset, data_config.skip_bad, 1, require_classes=False) if validate else dataset


def load_dataset(data_config, min_per_class=None, validate=True):
    """The Dataset that `data_config` describes, labelled for its task.

    With `validate`, every image is decoded now (and kept), so a bad file stops
    the run before any work starts, or is left out with `skip_bad`. The
    dataset's `notes` list what was dropped or missing, for the user.
    """
    table, root, reader, note = source_table(data_config)
    has_metadata = "primary_microconstituent" in table.columns or data_config.task == "processing"
    minimum = data_config.min_class_size if min_per_class is None else min_per_class
    table, dropped = label_table(table, data_config.task, minimum, has_metadata)
    if table["label"].nunique() < 2:
        dropped_text = f" (dropped: {', '.join(dropped)})" if dropped else ""
        raise DataError(f"only {table['label'].nunique()} class(es) with at least {minimum} "
                        f"images for task {data_config.task!r}{dropped_text}; at least two are needed")
    dataset = Dataset(table, root=root, name=f"{source_kind(data_config)[0]}:{data_config.task}",
                      reader=reader, notes=[note] if note else [])
    if dropped:
        dataset.notes.append(f"dropped {len(dropped)} class(es) with fewer than {minimum} "
                             f"images: {', '.join(dropped)}")
    if validate:
        dataset = validate_images(dataset, data_config.skip_bad, minimum)
    return dataset


def named(problems, shown=5):
    """'a.png: why; b.png: why (and 3 more)': the unusable images, for one line."""
    listed = "; ".join(list(problems)[:shown])
    return listed + (f" (and {len(problems) - shown} more)" if len(problems) > shown else "")


def check_headers(dataset, skip_bad):
    """Every image file's header checked before any is decoded (`images.check_header`):
    refused in one line naming them, or left out with --skip-bad (and named)."""
    if dataset.reader is not read_image:  # a source with its own reader decodes to check
        return dataset
    bad = {}
    for index in range(len(dataset)):
        try:
            check_header(dataset.image_path(index))
        except DataError as error:
            bad[index] = str(error)
    return leave_out(dataset, bad, skip_bad)


def leave_out(dataset, bad, skip_bad):
    """The dataset without the rows of `bad` ({row: why}) with --skip-bad, else DataError."""
    if not bad:
        return dataset
    if not skip_bad:
        raise DataError(f"{len(bad)} of {len(dataset)} images cannot be used: "
                        f"{named(bad.values())}. Fix or remove them, or pass --skip-bad to leave "
                        "them out")
    kept = dataset.subset([i for i in range(len(dataset)) if i not in bad])
    kept.notes.append(f"left out {len(bad)} unusable image(s) (--skip-bad): {named(bad.values())}")
    return kept


def validate_images(dataset, skip_bad, min_per_class, require_classes=True):
    """Decode every image; refuse, or leave out (skip_bad), the ones that fail."""
    bad = {}
    for index in range(len(dataset)):
        try:
            dataset.image(index)
        except DataError as error:
            bad[index] = str(error)
    if not bad:
        return dataset
    kept = leave_out(dataset, bad, skip_bad)
    if not require_classes:
        return kept
    _, rare = drop_rare_classes(kept.table, min_per_class)
    if rare:
        kept = kept.subset(np.flatnonzero(~kept.table["label"].astype(str).isin(rare)))
        kept.notes.append(f"then dropped class(es) left with fewer than {min_per_class} images: "
                          f"{', '.join(rare)}")
    if kept.table["label"].nunique() < 2:
        raise DataError("fewer than two classes have enough usable images")
    return kept
