"""One configuration dataclass per stage, filled from a YAML/JSON file and flags.

Why dataclasses: the CLI, the notebooks and the reports all need the same
settings with the same defaults, and a run must record exactly what it used.
Every field carries its help text, so CLI flags are generated from the fields
and never drift from them. Nothing here is global: each stage receives its
config as an argument.
"""

import argparse
import dataclasses
import json
import math
import sys
import textwrap
import typing
from pathlib import Path

from microrep.errors import ConfigError

#: The paper's classification tasks (what each means: microrep.data.tasks), declared once.
TASKS = ("constituent", "3phase", "processing")


def option(default, help, choices=None, at_least=None, above=None, at_most=None, below=None,
           parse=None, aliases=(), nargs=None):
    """A dataclass field with the help text (and choices) its CLI flag shows.

    The bounds (`at_least`, `above`, `at_most`, `below`) are checked by `validate`
    whenever a config is built, so a bad setting is refused before a stage writes
    anything; `parse` reads values the field's type cannot (e.g. 'auto'); `aliases` are
    older names of the setting (flags and file keys) that keep working.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "parse": parse, "aliases": tuple(aliases), "nargs": nargs,
        "bounds": {"at_least": at_least, "above": above, "at_most": at_most, "below": below}})


def group(factory, hidden=()):
    """A nested settings group (a dataclass made by `factory`, the stage's own defaults).

    `hidden`: settings of the group the stage sets itself (a run folder per fold, say);
    they get no flag, and a config file may still set them.
    """
    return dataclasses.field(default_factory=factory, metadata={"hidden": tuple(hidden)})


def count_option(default, help, minimum=1, **kwargs):
    """An integer setting that counts something: at least `minimum` (1 unless said)."""
    return option(default, help, at_least=minimum, **kwargs)


def _batch_size(value):
    from microrep.autobatch import parse_batch_size

    return parse_batch_size(value)


@dataclasses.dataclass
class DataConfig:
    """Which micrographs a stage reads and which task labels them."""

    data: str = option("synthetic", "dataset: 'synthetic' (generated, built in), 'uhcsdb' "
                       "(a folder with microstructures.sqlite and the micrographs), 'folder' "
                       "(metadata.csv, as `microrep generate` writes), 'images' (one sub-folder "
                       "per class) or 'csv' (a file with path,label[,group] columns)",
                       ("synthetic", "uhcsdb", "folder", "images", "csv"))
    data_dir: str = option("", "dataset folder (a CSV file for --data csv); for 'synthetic' "
                           "it is generated there if missing (default: microrep-data/synthetic)")
    images: str = option("", "shortcut for --data images --data-dir DIR: one sub-folder per class")
    csv: str = option("", "shortcut for --data csv --data-dir FILE: columns path,label[,group]")
    task: str = option("constituent", "what to classify: every primary microconstituent, "
                       "DeCost's 3 phases, or the processing condition",
                       TASKS)
    min_class_size: int = count_option(2, "drop classes with fewer images (with a message)")
    skip_bad: bool = option(False, "leave out unreadable or unusable images (with a message) "
                            "instead of refusing to start")
    um_per_px: float = option(0.0, "rescale every image to this many micrometres per pixel "
                              "(UHCSDB only; 0 keeps each image's own scale)", at_least=0.0)
    synthetic_samples_per_class: int = count_option(4, "synthetic data: samples per class",
                                                    aliases=("samples_per_class",))
    synthetic_images_per_sample: int = count_option(5, "synthetic data: micrographs per sample",
                                                    aliases=("images_per_sample",))
    synthetic_image_size: int = count_option(160, "synthetic data: image side in pixels", 32,
                                             aliases=("image_size",))
    synthetic_seed: int = option(0, "synthetic data: random seed")


# Settings of the VGG16 base, declared once and used by every stage that builds one.

def input_size_option(default=224):
    return count_option(default, "side of the square crops the model sees (>= 32)", 32)


def vgg_blocks_option(default=5):
    return option(default, "VGG16 blocks to keep (1-5); fewer suit small inputs and train "
                  "faster from random weights; block 4 alone gives the best pretrained "
                  "features of micrographs", (1, 2, 3, 4, 5))


def weights_option(default="imagenet"):
    return option(default, "VGG16 weights: 'imagenet' (downloaded by Keras), 'none' (random), "
                  "or a path to a .weights.h5 file")


@dataclasses.dataclass
class ModelConfig:
    """The embedding tower and the Siamese model around it."""

    input_size: int = input_size_option()
    embedding_dim: int = count_option(64, "size of the embedding vector (--head projection)")
    vgg_blocks: int = vgg_blocks_option()
    weights: str = weights_option()
    feature_layers: str = option("", "VGG16 layers whose maps are mean-pooled, comma-separated "
                                 "(e.g. block4_conv3,block5_conv3); 'auto': blocks 4 and 5 with "
                                 "all 5 kept, else the last block's last convolution; empty: the "
                                 "last block's output")
    head: str = option("projection", "'projection': a dense layer to --embedding-dim; "
                       "'residual': standardised pooled features plus a learned correction that "
                       "starts at zero, so training starts from the pretrained representation "
                       "(--embedding-dim is then the pooled feature size)",
                       ("projection", "residual"))
    l2_normalize: bool = option(True, "L2-normalise embeddings (distances then lie in [0, 2])")
    train_base: bool = option(True, "fine-tune the VGG16 base (a GPU's job); frozen, only the "
                              "head trains, on VGG16 features computed once per crop, which keeps "
                              "what the pretrained features know")
    mixed_precision: bool = option(False, "compute in bfloat16/float16 where the device supports it")


@dataclasses.dataclass
class PairConfig:
    """How training pairs are drawn."""

    pairs_per_epoch: int = count_option(2048, "pairs drawn afresh each epoch")
    positive_fraction: float = option(0.5, "share of same-class pairs", at_least=0.0, at_most=1.0)
    augment: bool = option(True, "random flips and 90-degree rotations of each crop")


def recipe_model_config():
    """`microrep train`'s default tower: the measured CPU recipe's (PRESETS['cpu']).

    Frozen ImageNet VGG16 at 224 px, block4_conv3 and block5_conv3 mean-pooled,
    a residual head: training cannot damage the pretrained features, only add to them.
    """
    return ModelConfig(feature_layers="auto", head="residual", train_base=False)


@dataclasses.dataclass
class TrainConfig:
    """Train the Siamese model under contrastive loss."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=recipe_model_config)
    pairs: PairConfig = dataclasses.field(default_factory=PairConfig)
    out: str = option("runs/train", "run folder: checkpoints, log, final model")
    preset: str = option("none", "a recipe: 'cpu' (measured: frozen VGG16 at 224 px, features "
                         "cached on disk, residual head under graded similarity, bfloat16 where "
                         "the CPU computes it natively: the defaults plus the precision choice), "
                         "'gpu' (the same head and loss while fine-tuning all of VGG16 at a "
                         "learning rate of 1e-5; not yet measured); flags given still override it",
                         ("none", "cpu", "gpu"))
    epochs: int = count_option(10, "training epochs")
    batch_size: int = count_option(64, "pairs per batch, or 'auto': on a GPU/TPU the largest "
                                  "power of two whose training step fits, the learning rate "
                                  "scaled by sqrt(batch/64) (both said and recorded); 64 on a CPU",
                                  parse=_batch_size)
    learning_rate: float = option(1e-4, "Adam learning rate", above=0.0)
    similarity: str = option("graded", "'graded': pairs from one sample (or processing condition) "
                             "are pulled closest, other pairs of one class less, different "
                             "classes pushed past --margin; 'label': the paper's contrastive loss "
                             "on same/different class", ("graded", "label"))
    margin: float = option(1.8, "contrastive margin: different-class pairs are pushed this far apart",
                           above=0.0)
    same_class_within: float = option(1.25, "graded: same-class pairs are pulled within this "
                                      "distance", at_least=0.0)
    same_sample_within: float = option(0.8, "graded: pairs of one sample are pulled within this "
                                       "distance", at_least=0.0)
    same_class_beyond: float = option(0.0, "graded: pairs of one class from different samples "
                                      "(processing conditions) are pushed at least this far "
                                      "apart (0: not pushed)", at_least=0.0)
    hard_pairs: float = option(0.3, "frozen base: share of each epoch's pairs (after the first) "
                               "replaced by pairs the current head gets most wrong: another "
                               "class's nearest crops, the own sample's farthest, the own "
                               "class's nearest from other samples (0: random pairs only)",
                               at_least=0.0, at_most=1.0)
    feature_bank: int = count_option(16, "frozen base: augmented crops per image whose VGG16 features "
                               "are computed once (and cached) to train the head on")
    feature_cache: str = option("~/.cache/microrep/features", "frozen base: folder caching "
                                "each image's VGG16 features (keyed by weights, image bytes and "
                                "crops); empty: no cache")
    val_fraction: float = option(0.0, "share of samples held out of training to validate each "
                                 "epoch (validation loss and MAP@R); the best epoch is kept",
                                 at_least=0.0, below=1.0)
    patience: int = option(0, "stop after this many epochs without improvement (0: never); "
                           "with --val-fraction on validation MAP@R, else on the training loss",
                           at_least=0)
    seed: int = option(0, "seed for weights, pairs and crops")
    distribute: str = option("none", "'data': data-parallel training over every local "
                             "accelerator (or every CPU device) with keras.distribution (JAX) or "
                             "tf.distribute.MirroredStrategy (TensorFlow)", ("none", "data"))
    resume: bool = option(False, "continue the run in --out from its last checkpoint")
    overwrite: bool = option(False, "replace a different run already in --out")


@dataclasses.dataclass
class EmbedConfig:
    """Embed micrographs with a trained tower."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model_path: str = option("runs/train", "a run folder or a tower .keras file")
    pretrained: bool = option(False, "embed with the untrained VGG16 instead of --model-path: "
                              "its feature maps mean-pooled over the same tiles, the baseline a "
                              "learned embedding must beat (--weights, --input-size, --vgg-blocks)")
    weights: str = weights_option()
    input_size: int = input_size_option()
    vgg_blocks: int = vgg_blocks_option(4)
    feature_layers: str = option("block4_conv3", "--pretrained: VGG16 layers whose maps are "
                                 "mean-pooled (comma-separated); block4_conv3 is DeCost et al.'s "
                                 "best single layer")
    mixed_precision: bool = option(False, "--pretrained: compute in bfloat16 (about 4x faster "
                                   "on CPUs with AMX or AVX-512 BF16)")
    out: str = option("runs/embeddings", "folder for embeddings.npy and embeddings.csv")
    grid: int = count_option(3, "each image's embedding is the mean over a grid x grid tiling")
    batch_size: int = count_option(64, "tiles per batch")
    read_workers: int = option(-1, "threads that decode images ahead of the model "
                               "(-1: one per CPU core, at most 8; 0: read in the main thread)",
                               at_least=-1)
    overwrite: bool = option(False, "replace embeddings an earlier run wrote to --out")
    num_shards: int = count_option(1, "split the images into this many shards (one process each)")
    shard_index: int = option(0, "which shard this process embeds (0 .. num_shards-1)", at_least=0)


@dataclasses.dataclass
class EvalConfig:
    """Analyse embeddings: PCA and SVM cross-validation."""

    embeddings: str = option("runs/embeddings", "folder written by `microrep embed`")
    test_embeddings: str = option("", "a second embeddings folder: fit the SVMs on --embeddings "
                                  "and score them on this one (held-out evaluation, linear and "
                                  "RBF, with retrieval metrics), instead of cross-validating")
    out: str = option("runs/evaluation", "folder for metrics.json and figures")
    task: str = option("", "relabel the embeddings for this task from their metadata "
                       "(default: the labels they were embedded with); classes with fewer "
                       "images than folds are dropped with a message",
                       ("", *TASKS))
    folds: int = count_option(5, "cross-validation folds", 2)
    repeats: int = count_option(1, "repeat the k-fold split with new shuffles")
    kernel: str = option("linear", "SVM kernel", ("linear", "rbf"))
    C: float = option(1.0, "SVM regularisation", above=0.0)
    seed: int = option(0, "seed of the CV splits")
    overwrite: bool = option(False, "replace an earlier evaluation in --out")


def _paths(value):
    """One or more paths: a list (from the flag) or a string (a settings file), ', '-separated."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if not isinstance(value, str):
        raise ConfigError(f"expected one or more paths, got {value!r}")
    return value


@dataclasses.dataclass
class SearchConfig:
    """Find the micrographs of an embedded archive nearest to query images or rows."""

    index: str = option("runs/embeddings", "the archive: a folder written by `microrep embed`")
    query: str = option("", "query image files or folders (embedded with the index's model, as "
                        "embed.json records it)", parse=_paths, nargs="+")
    query_rows: str = option("", "queries that are rows of the index, comma-separated (0-based)")
    k: int = count_option(10, "neighbours per query")
    exclude_same_group: bool = option(False, "skip neighbours from the query's own sample "
                                      "(the index's group column)")
    backend: str = option("auto", "'exact' (scikit-learn), 'faiss' (pip install microrep[faiss]) "
                          "or 'auto' (faiss above 200,000 rows when installed)",
                          ("auto", "exact", "faiss"))
    out: str = option("runs/search", "folder for neighbours.csv and neighbours.png")
    overwrite: bool = option(False, "replace an earlier search in --out")


@dataclasses.dataclass
class ExploreConfig:
    """An offline, interactive map of an embedded archive (one HTML file), and TensorBoard's."""

    embeddings: str = option("runs/embeddings", "a folder written by `microrep embed` (also the "
                             "first argument)")
    out: str = option("explorer.html", "the HTML file to write (self-contained: no network)")
    projection: str = option("pca", "the 2-D map: PCA, t-SNE, or UMAP (pip install umap-learn)",
                             ("pca", "tsne", "umap"))
    neighbours: int = count_option(8, "nearest neighbours shown when a point is clicked")
    thumbnail_size: int = count_option(96, "thumbnail side in pixels (JPEG, inlined)", 16)
    tensorboard: str = option("", "also write TensorBoard projector files (tensor, metadata.tsv, "
                              "sprite, projector_config.pbtxt) into this folder")
    seed: int = option(0, "seed of t-SNE / UMAP")


@dataclasses.dataclass
class ExportConfig:
    """Export the embedding tower for other tools."""

    model_path: str = option("runs/train", "a run folder or a tower .keras file")
    out: str = option("runs/export", "folder for the SavedModel and the .keras file")
    grid: int = count_option(3, "the SavedModel's embed_image endpoint averages a grid x grid "
                             "tiling of each whole image, as `microrep embed --grid`")


def demo_train_config():
    """The demo's training: small crops, three VGG16 blocks from random weights, the paper's loss.

    Sized to run every stage in minutes on a laptop CPU without downloads.
    """
    return TrainConfig(
        data=DataConfig(data="synthetic", task="constituent"),
        model=ModelConfig(input_size=48, embedding_dim=32, weights="none", vgg_blocks=3,
                          head="projection", feature_layers="", train_base=True),
        pairs=PairConfig(pairs_per_epoch=640), epochs=12, batch_size=32, learning_rate=1e-4,
        similarity="label", margin=1.0, seed=0)


#: Settings of a stage's training that the stage sets itself (run folders per fold or demo).
STAGE_OWNED = ("out", "resume", "overwrite")


@dataclasses.dataclass
class DemoConfig:
    """The whole pipeline at demo scale."""

    train: TrainConfig = group(demo_train_config, hidden=STAGE_OWNED)
    out: str = option("microrep-demo", "report folder (data, run, embeddings, figures, export)")
    grid: int = count_option(3, "embedding tiles per side")
    folds: int = count_option(5, "CV folds", 2)
    overwrite: bool = option(False, "replace an earlier demo in --out")


@dataclasses.dataclass
class FetchConfig:
    """Where to put UHCSDB and where to get it from."""

    dest: str = option("microrep-data/uhcsdb", "folder to hold microstructures.sqlite, "
                       "micrographs/ and manifest.json")
    source: str = option("", "extra source URL(s) to try first, comma-separated (a folder URL "
                         "holding microstructures.sqlite and micrographs.zip)")
    from_dir: str = option("", "use files you downloaded by hand from this folder "
                           "(microstructures.sqlite and micrographs.zip or a micrographs/ folder)")
    timeout: float = option(30.0, "seconds to wait for a server before trying the next source",
                            above=0.0)
    verify_images: bool = option(True, "decode every image after unpacking")


def paper_train_config():
    """The paper's training, as `microrep reproduce` runs it inside each fold.

    ImageNet VGG16 at 224 px fine-tuned under the contrastive loss on class labels,
    a 64-d projection head; unpublished settings (epochs, batch, learning rate,
    margin) as recorded in PROTOCOL.md.
    """
    return TrainConfig(
        model=ModelConfig(input_size=224, embedding_dim=64, weights="imagenet", vgg_blocks=5,
                          head="projection", feature_layers="", train_base=True),
        pairs=PairConfig(pairs_per_epoch=2048), epochs=20, batch_size=32, learning_rate=1e-5,
        similarity="label", margin=1.0, feature_bank=32, hard_pairs=0.0, seed=0)


@dataclasses.dataclass
class ReproduceConfig:
    """Redo the paper's experiments: baseline and Siamese, every task, both CV flavours.

    `train` holds every setting of `microrep train` (with the paper's defaults); the
    Siamese model of each fold trains under them, and --seed also seeds the splits.
    """

    train: TrainConfig = group(paper_train_config, hidden=STAGE_OWNED)
    out: str = option("microrep-reproduce", "report folder; an interrupted run resumes from it")
    tasks: str = option(",".join(TASKS), "comma-separated tasks to run")
    quick: bool = option(False, "CPU-sized run: 96x96 crops of downscaled images, four frozen "
                         "VGG16 blocks, a projection head trained per fold, 3 folds (these "
                         "replace the model and training settings)")
    image_scale: float = option(1.0, "resize every micrograph by this factor before cropping "
                                "(0: shrink so the shorter side is 4 crops long)", at_least=0.0)
    grid: int = count_option(3, "embedding tiles per side")
    folds: int = count_option(5, "cross-validation folds", 2)
    processing_images: int = option(10, "processing condition as DeCost et al.: only conditions "
                                    "with at least this many micrographs, this many drawn from "
                                    "each (with --folds equal to it, leave one image per class "
                                    "out); 0: every condition with at least --folds images")
    processing_pca: int = option(64, "processing condition: PCA to this many dimensions inside "
                                 "each fold before the SVM, as DeCost et al. (0: none)",
                                 at_least=0)
    heldout_splits: int = option(3, "also train microrep's own recipe (a residual head on the "
                                 "frozen base, graded similarity; at this run's input size and "
                                 "blocks) on half of the images and score it against the "
                                 "pretrained features on the other half, over this many seeded "
                                 "splits (0: skip)", at_least=0)


#: --quick: 96x96 crops of images shrunk so 4 crops span the shorter side, four VGG16
#: blocks kept frozen (their features of 16 crops per image and of every tile computed
#: once), a contrastive projection head trained per fold, 3 folds. Chosen on the UHCSDB
#: development copy against 48x48 crops with three blocks (baseline 3phase / constituent /
#: processing 88.6 / 79.9 / 52.5% there, 94.5 / 87.7 / 61.7% here).
QUICK_SETTINGS = {"model": dict(input_size=96, vgg_blocks=4, train_base=False, embedding_dim=128),
                  "pairs": dict(pairs_per_epoch=1024),
                  "train": dict(feature_bank=16, epochs=30, learning_rate=1e-3),
                  "": dict(image_scale=0.0, grid=3, folds=3)}


#: `microrep train --preset NAME`: settings applied under those given in a file or as flags.
#: 'cpu' is the recipe measured on the UHCSDB development copy (README, results); its
#: precision is chosen from the processor at start. 'gpu' fine-tunes the base and has
#: not been measured on a GPU yet.
PRESETS = {
    "cpu": {"model": dict(input_size=224, vgg_blocks=5, feature_layers="auto",
                          head="residual", train_base=False, mixed_precision="auto"),
            "pairs": dict(pairs_per_epoch=2048),
            "": dict(similarity="graded", learning_rate=1e-4, epochs=10, batch_size=64, margin=1.8,
                     feature_bank=16, hard_pairs=0.3)},
    "gpu": {"model": dict(input_size=224, vgg_blocks=5, feature_layers="auto",
                          head="residual", train_base=True, mixed_precision=True),
            "pairs": dict(pairs_per_epoch=2048),
            "": dict(similarity="graded", learning_rate=1e-5, epochs=10, batch_size=64, margin=1.8)},
}


def apply_preset(values):
    """Fill a settings dict with its preset's values wherever it does not set them itself."""
    values = nest_flat_keys(TrainConfig, values)
    name = values.get("preset") or "none"
    if name == "none":
        return values
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    for section, settings in PRESETS[name].items():
        node = values if not section else values.setdefault(section, {})
        for key, value in settings.items():
            if key == "mixed_precision" and value == "auto":
                from microrep.device import cpu_has_native_bfloat16

                value = cpu_has_native_bfloat16()
            node.setdefault(key, value)
    return values


# ----------------------------------------------------------------- reading

def _is_dataclass_type(tp):
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value, field_type, name, parse=None):
    """`value` as the field's type, or ConfigError: lists, mappings and empty values never pass.

    Numbers written as text ("1e-4") are read; bools are not numbers; floats must be finite.
    """
    def refuse():
        kind = "true or false" if field_type is bool else f"a{'n' if field_type is int else ''} " \
            f"{ {int: 'integer', float: 'number', str: 'text'}.get(field_type, field_type.__name__)}"
        return ConfigError(f"{setting_name(name)} must be {kind}, got {value!r}")

    if parse is not None and isinstance(value, (list, tuple)):
        return parse(value)  # a flag that takes several values
    if value is None or isinstance(value, (list, tuple, dict, set)):
        raise refuse()
    if parse is not None:
        return parse(value)
    if field_type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise refuse()
    if isinstance(value, bool):
        raise refuse()
    if field_type is str:
        if isinstance(value, (str, int, float)):  # YAML reads `data-dir: 2024` as a number
            return str(value)
        raise refuse()
    try:
        if field_type is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if field_type is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
    except (TypeError, ValueError, OverflowError):
        raise refuse() from None
    return value


def from_dict(cls, values, where="config", base=None):
    """Build `cls` from a (possibly nested) dict; unknown keys are an error.

    Settings not given keep the stage's own defaults (`base`, by default `cls()`),
    nested groups included: `microrep train` and the demo default differently.
    """
    base = cls() if base is None else base
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of settings")
    values = nest_flat_keys(cls, values, where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) in {where}: {', '.join(unknown)}")
    kwargs = {}
    for name, value in values.items():
        if _is_dataclass_type(hints[name]):
            kwargs[name] = from_dict(hints[name], value, f"{where}.{name}", getattr(base, name))
        else:
            parse = next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get("parse")
            kwargs[name] = _coerce(value, hints[name], name, parse)
    return validate(dataclasses.replace(base, **kwargs))


def nest_flat_keys(cls, values, where="config"):
    """Settings named as their flags (`input-size`, `input_size`) moved to their nested group.

    Config files may use the flag names, flat, or the nested form that config.json
    records (`model: {input_size: ...}`); both may be mixed, but not for one setting.
    """
    paths = {}
    for path, field, _ in _flag_fields(cls):
        for name in (path[-1], *field.metadata.get("aliases", ())):
            paths.setdefault(name, path)
    hints = typing.get_type_hints(cls)
    groups = {name for name, tp in hints.items() if _is_dataclass_type(tp)}
    names = {key: str(key).lstrip("-").replace("-", "_") for key in values}
    inner = _inner_groups(cls)
    moved = {key: value for key, value in values.items()  # `data: {...}` of a group now nested
             if isinstance(value, dict) and names[key] not in hints and names[key] in inner}
    if moved:
        values = {key: value for key, value in values.items() if key not in moved}
        for key, value in moved.items():
            node = values
            for part in inner[names[key]][:-1]:
                node = node.setdefault(part, {})
            node.setdefault(inner[names[key]][-1], {}).update(value)
        return nest_flat_keys(cls, values, where)

    def as_given(key):  # a top-level setting, a group given nested, or unknown (refused later)
        name = names[key]
        return name not in paths or (name in hints and (name not in groups or
                                                        isinstance(values[key], dict)))

    nested = {names[key]: (dict(value) if isinstance(value, dict) else value)
              for key, value in values.items() if as_given(key)}
    for key, value in values.items():
        name = names[key]
        if as_given(key):
            continue
        node = nested
        for group in paths[name][:-1]:
            node = node.setdefault(group, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {group} must be a mapping of settings")
        leaf = paths[name][-1]  # an alias names its setting
        if leaf in node:
            raise ConfigError(f"{where}: {key} is given twice (flat and under {paths[name][0]})")
        node[leaf] = value
    return nested


def _inner_groups(cls, prefix=()):
    """{group name: its path} of the groups nested below the top level (e.g. train.data)."""
    found = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if _is_dataclass_type(hints[field.name]):
            if prefix:
                found.setdefault(field.name, prefix + (field.name,))
            found.update({k: v for k, v in _inner_groups(hints[field.name],
                                                         prefix + (field.name,)).items()
                          if k not in found})
    return found


def validate(config):
    """Check choices of every field (recursively); return the config."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            validate(value)
        choices = field.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{setting_name(field.name)} must be one of "
                              f"{', '.join(map(str, choices))}, got {value!r}")
        check_bounds(field, value)
    return config


def setting_name(name):
    """How a setting is named in messages: its flag, which a config file may also use."""
    return "--" + name.replace("_", "-")


#: (metadata key, test that fails on a bad value, words of the message)
_BOUNDS = (("at_least", lambda v, b: v < b, "at least"), ("above", lambda v, b: v <= b, "above"),
           ("at_most", lambda v, b: v > b, "at most"), ("below", lambda v, b: v >= b, "below"))


def check_bounds(field, value):
    """ConfigError when a numeric setting lies outside the bounds its option declares."""
    bounds = field.metadata.get("bounds") or {}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    for key, fails, words in _BOUNDS:
        bound = bounds.get(key)
        if bound is not None and (fails(value, bound) or value != value):  # NaN fails every bound
            raise ConfigError(f"{setting_name(field.name)} must be {words} {bound}, got {value!r}")


def read_config_file(path):
    """Read a YAML or JSON settings file into a dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
    except Exception as error:  # yaml and json raise many kinds
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {first_line}") from None
    return values or {}


def to_dict(config):
    return dataclasses.asdict(config)


def save_config(config, path):
    from microrep.fileio import write_json

    write_json(path, to_dict(config))


# ----------------------------------------------------------------- CLI flags

def _flag_fields(cls, prefix=(), hidden=()):
    """(path of names, field, type) of every leaf field with a flag, nested ones flattened."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in hidden:
            continue
        if _is_dataclass_type(hints[field.name]):
            yield from _flag_fields(hints[field.name], prefix + (field.name,),
                                    field.metadata.get("hidden", ()))
        else:
            yield prefix + (field.name,), field, hints[field.name]


def _stage_default(instance, path):
    for name in path:
        instance = getattr(instance, name)
    return instance


def config_example(cls):
    """A complete YAML settings file for `cls`: every setting, its help and the stage's default.

    Flat keys named as the flags, so a user can copy a line from `--help` into a
    file; `microrep <command> --config FILE` reads it back unchanged.
    """
    lines = [f"# microrep settings: {cls.__doc__.strip().splitlines()[0]}",
             "# Keys are the flag names (dashes or underscores); delete the lines you do not need.",
             "# Flags given on the command line override this file."]
    defaults, group = cls(), None
    for path, field, _ in _flag_fields(cls):
        if path[:-1] != group:
            group = path[:-1]
            lines += ["", f"# --- {group[0]} settings"] if group else []
        help_text = field.metadata.get("help", "")
        choices = field.metadata.get("choices")
        if choices:
            help_text += f" (one of: {', '.join(map(str, choices))})"
        lines += [f"# {line}" for line in textwrap.wrap(help_text, 88)]
        lines.append(f"{path[-1].replace('_', '-')}: {json.dumps(_stage_default(defaults, path))}")
    return "\n".join(lines) + "\n"


class PrintConfig(argparse.Action):
    """--print-config: print the stage's complete, commented example settings file and exit."""

    def __init__(self, option_strings, dest, config_class=None, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.config_class = config_class

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(config_example(self.config_class))
        parser.exit()


def add_config_flags(parser, cls):
    """Add one flag per leaf field of `cls` (defaults None: only given flags override).

    The help shows the stage's own default (from `cls()`, nested groups included).
    """
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of settings, keys "
                        "named as the flags (see --print-config); flags given on the command "
                        "line override it")
    parser.add_argument("--print-config", action=PrintConfig, config_class=cls,
                        help="print a complete, commented settings file with this command's "
                             "defaults, for --config, and exit")
    defaults = cls()
    for path, field, field_type in _flag_fields(cls):
        flags = ["--" + name.replace("_", "-") for name in (path[-1], *field.metadata.get("aliases", ()))]
        default = _stage_default(defaults, path)
        help_text = field.metadata.get("help", "")
        if default != "" and "(default:" not in help_text:  # empty defaults say so in their help
            help_text += f" (default: {default})"
        if field_type is bool:
            parser.add_argument(*flags, dest="_".join(path), default=None, help=help_text,
                                action=argparse.BooleanOptionalAction)
        else:
            nargs = {"nargs": field.metadata["nargs"]} if field.metadata.get("nargs") else {}
            parser.add_argument(*flags, dest="_".join(path), default=None, **nargs,
                                type=(None if nargs else _flag_type(field.metadata.get("parse")))
                                or field_type,
                                choices=field.metadata.get("choices"), help=help_text,
                                metavar=None if field.metadata.get("choices") else path[-1].upper())


def _flag_type(parse):
    """A field's `parse` as an argparse type: its ConfigError becomes argparse's one-line error."""
    if parse is None:
        return None

    def flag_type(text):
        try:
            return parse(text)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    flag_type.__name__ = parse.__name__.strip("_")
    return flag_type


def config_from_args(cls, args):
    """Build `cls` from --config FILE, then the flags given on the command line."""
    where = getattr(args, "config", None) or "settings"
    values = nest_flat_keys(cls, read_config_file(args.config), where) if getattr(args, "config", None) else {}
    for path, _, _ in _flag_fields(cls):
        given = getattr(args, "_".join(path), None)
        if given is None:
            continue
        node = values
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = given
    if cls is TrainConfig:
        stored = stored_run(values)
        if stored is not None:  # --resume: the run's own settings, then those given now
            return from_dict(cls, values, where, base=stored)
        values = apply_preset(values)
    return from_dict(cls, values, where)


def stored_run(values):
    """With --resume, the TrainConfig recorded in the --out folder (None if there is none)."""
    if not values.get("resume"):
        return None
    path = Path(values.get("out") or TrainConfig().out) / "config.json"
    if not path.is_file():
        return None
    try:
        return from_dict(TrainConfig, json.loads(path.read_text()), str(path))
    except (ValueError, ConfigError) as error:
        raise ConfigError(f"cannot resume from {path}: {error}") from None
