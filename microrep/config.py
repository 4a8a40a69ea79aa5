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
import typing
from pathlib import Path

from microrep.errors import ConfigError


def option(default, help, choices=None):
    """A dataclass field with the help text (and choices) its CLI flag shows."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


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
                       ("constituent", "3phase", "processing"))
    min_class_size: int = option(2, "drop classes with fewer images (with a message)")
    skip_bad: bool = option(False, "leave out unreadable or unusable images (with a message) "
                            "instead of refusing to start")
    um_per_px: float = option(0.0, "rescale every image to this many micrometres per pixel "
                              "(UHCSDB only; 0 keeps each image's own scale)")
    synthetic_samples_per_class: int = option(4, "synthetic data: samples per class")
    synthetic_images_per_sample: int = option(5, "synthetic data: micrographs per sample")
    synthetic_image_size: int = option(160, "synthetic data: image side in pixels")
    synthetic_seed: int = option(0, "synthetic data: random seed")


# Settings of the VGG16 base, declared once and used by every stage that builds one.

def input_size_option(default=224):
    return option(default, "side of the square crops the model sees (>= 32)")


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
    embedding_dim: int = option(64, "size of the embedding vector (--head projection)")
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

    pairs_per_epoch: int = option(2048, "pairs drawn afresh each epoch")
    positive_fraction: float = option(0.5, "share of same-class pairs")
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
    epochs: int = option(10, "training epochs")
    batch_size: int = option(64, "pairs per batch")
    learning_rate: float = option(1e-4, "Adam learning rate")
    similarity: str = option("graded", "'graded': pairs from one sample (or processing condition) "
                             "are pulled closest, other pairs of one class less, different "
                             "classes pushed past --margin; 'label': the paper's contrastive loss "
                             "on same/different class", ("graded", "label"))
    margin: float = option(1.8, "contrastive margin: different-class pairs are pushed this far apart")
    same_class_within: float = option(1.25, "graded: same-class pairs are pulled within this distance")
    same_sample_within: float = option(0.8, "graded: pairs of one sample are pulled within this distance")
    feature_bank: int = option(16, "frozen base: augmented crops per image whose VGG16 features "
                               "are computed once (and cached) to train the head on")
    feature_cache: str = option("~/.cache/microrep/features", "frozen base: folder caching "
                                "each image's VGG16 features (keyed by weights, image bytes and "
                                "crops); empty: no cache")
    val_fraction: float = option(0.0, "share of samples held out of training to validate each "
                                 "epoch (validation loss and MAP@R); the best epoch is kept")
    patience: int = option(0, "stop after this many epochs without improvement (0: never); "
                           "with --val-fraction on validation MAP@R, else on the training loss")
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
    grid: int = option(3, "each image's embedding is the mean over a grid x grid tiling")
    batch_size: int = option(64, "tiles per batch")
    read_workers: int = option(-1, "threads that decode images ahead of the model "
                               "(-1: one per CPU core, at most 8; 0: read in the main thread)")
    num_shards: int = option(1, "split the images into this many shards (one process each)")
    shard_index: int = option(0, "which shard this process embeds (0 .. num_shards-1)")


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
                       ("", "constituent", "3phase", "processing"))
    folds: int = option(5, "cross-validation folds")
    repeats: int = option(1, "repeat the k-fold split with new shuffles")
    kernel: str = option("linear", "SVM kernel", ("linear", "rbf"))
    C: float = option(1.0, "SVM regularisation")
    seed: int = option(0, "seed of the CV splits")


@dataclasses.dataclass
class ExportConfig:
    """Export the embedding tower for other tools."""

    model_path: str = option("runs/train", "a run folder or a tower .keras file")
    out: str = option("runs/export", "folder for the SavedModel and the .keras file")


@dataclasses.dataclass
class DemoConfig:
    """The whole pipeline at demo scale."""

    out: str = option("microrep-demo", "report folder (data, run, embeddings, figures, export)")
    input_size: int = option(48, "crop side the model sees")
    vgg_blocks: int = option(3, "VGG16 blocks kept (3 suits 48x48 crops and random weights)",
                             (1, 2, 3, 4, 5))
    embedding_dim: int = option(32, "embedding size")
    weights: str = option("none", "VGG16 weights: 'none', 'imagenet' (needs internet) or a file")
    epochs: int = option(12, "training epochs")
    pairs_per_epoch: int = option(640, "pairs per epoch")
    batch_size: int = option(32, "pairs per batch")
    learning_rate: float = option(1e-4, "Adam learning rate")
    margin: float = option(1.0, "contrastive margin")
    samples_per_class: int = option(4, "synthetic samples per class")
    images_per_sample: int = option(5, "synthetic micrographs per sample")
    image_size: int = option(160, "synthetic image side")
    grid: int = option(3, "embedding tiles per side")
    folds: int = option(5, "CV folds")
    seed: int = option(0, "seed for data, weights and pairs")
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
    timeout: float = option(30.0, "seconds to wait for a server before trying the next source")
    verify_images: bool = option(True, "decode every image after unpacking")


@dataclasses.dataclass
class ReproduceConfig:
    """Redo the paper's experiments: baseline and Siamese, every task, both CV flavours."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    out: str = option("microrep-reproduce", "report folder; an interrupted run resumes from it")
    tasks: str = option("3phase,constituent,processing", "comma-separated tasks to run")
    quick: bool = option(False, "CPU-sized run: 96x96 crops of downscaled images, four frozen "
                         "VGG16 blocks, a projection head trained per fold, 3 folds (the "
                         "model and training settings below are then ignored)")
    weights: str = option("imagenet", "VGG16 weights for both the baseline and the Siamese "
                          "tower: 'imagenet', 'none' or a local file")
    input_size: int = option(224, "crop side")
    vgg_blocks: int = option(5, "VGG16 blocks kept", (1, 2, 3, 4, 5))
    image_scale: float = option(1.0, "resize every micrograph by this factor before cropping "
                                "(0: shrink so the shorter side is 4 crops long)")
    embedding_dim: int = option(64, "Siamese embedding size")
    train_base: bool = option(True, "fine-tune the VGG16 base inside each fold (else only the "
                              "projection learns, on frozen features)")
    feature_bank: int = option(32, "with a frozen base: augmented crops per image whose VGG16 "
                               "features are computed once and shared by every fold's training")
    epochs: int = option(20, "Siamese training epochs per fold")
    pairs_per_epoch: int = option(2048, "pairs per epoch")
    batch_size: int = option(32, "pairs per batch")
    learning_rate: float = option(1e-5, "Adam learning rate (fine-tuning a pretrained tower)")
    margin: float = option(1.0, "contrastive margin")
    grid: int = option(3, "embedding tiles per side")
    folds: int = option(5, "cross-validation folds")
    processing_images: int = option(10, "processing condition as DeCost et al.: only conditions "
                                    "with at least this many micrographs, this many drawn from "
                                    "each (with --folds equal to it, leave one image per class "
                                    "out); 0: every condition with at least --folds images")
    processing_pca: int = option(64, "processing condition: PCA to this many dimensions inside "
                                 "each fold before the SVM, as DeCost et al. (0: none)")
    heldout_splits: int = option(3, "also train microrep's own recipe (a residual head on the "
                                 "frozen base, graded similarity; at this run's input size and "
                                 "blocks) on half of the images and score it against the "
                                 "pretrained features on the other half, over this many seeded "
                                 "splits (0: skip)")
    seed: int = option(0, "seed of splits, weights and pairs")


#: --quick: 96x96 crops of images shrunk so 4 crops span the shorter side, four VGG16
#: blocks kept frozen (their features of 16 crops per image and of every tile computed
#: once), a contrastive projection head trained per fold, 3 folds. Chosen on the UHCSDB
#: development copy against 48x48 crops with three blocks (baseline 3phase / constituent /
#: processing 88.6 / 79.9 / 52.5% there, 94.5 / 87.7 / 61.7% here).
QUICK_SETTINGS = dict(input_size=96, vgg_blocks=4, image_scale=0.0, train_base=False,
                      feature_bank=16, epochs=30, pairs_per_epoch=1024, grid=3, folds=3,
                      embedding_dim=128, learning_rate=1e-3)


#: `microrep train --preset NAME`: settings applied under those given in a file or as flags.
#: 'cpu' is the recipe measured on the UHCSDB development copy (README, results); its
#: precision is chosen from the processor at start. 'gpu' fine-tunes the base and has
#: not been measured on a GPU yet.
PRESETS = {
    "cpu": {"model": dict(input_size=224, vgg_blocks=5, feature_layers="auto",
                          head="residual", train_base=False, mixed_precision="auto"),
            "pairs": dict(pairs_per_epoch=2048),
            "": dict(similarity="graded", learning_rate=1e-4, epochs=10, batch_size=64, margin=1.8,
                     feature_bank=16)},
    "gpu": {"model": dict(input_size=224, vgg_blocks=5, feature_layers="auto",
                          head="residual", train_base=True, mixed_precision=True),
            "pairs": dict(pairs_per_epoch=2048),
            "": dict(similarity="graded", learning_rate=1e-5, epochs=10, batch_size=64, margin=1.8)},
}


def apply_preset(values):
    """Fill a settings dict with its preset's values wherever it does not set them itself."""
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


def _coerce(value, field_type, name):
    if field_type is bool and isinstance(value, str):
        if value.lower() in ("true", "yes", "1"):
            return True
        if value.lower() in ("false", "no", "0"):
            return False
    try:
        if field_type in (int, float, str, bool) and not isinstance(value, field_type):
            if field_type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if field_type is bool:
                raise ValueError
            return field_type(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r} must be {field_type.__name__}, got {value!r}") from None
    return value


def from_dict(cls, values, where="config", base=None):
    """Build `cls` from a (possibly nested) dict; unknown keys are an error.

    Settings not given keep the stage's own defaults (`base`, by default `cls()`),
    nested groups included: `microrep train` and the demo default differently.
    """
    base = cls() if base is None else base
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of settings")
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
            kwargs[name] = _coerce(value, hints[name], name)
    return validate(dataclasses.replace(base, **kwargs))


def validate(config):
    """Check choices of every field (recursively); return the config."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            validate(value)
        choices = field.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{field.name} must be one of {', '.join(choices)}, got {value!r}")
    return config


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

def _flag_fields(cls, prefix=()):
    """(path of names, field, type) of every leaf field, nested ones flattened."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if _is_dataclass_type(hints[field.name]):
            yield from _flag_fields(hints[field.name], prefix + (field.name,))
        else:
            yield prefix + (field.name,), field, hints[field.name]


def _stage_default(instance, path):
    for name in path:
        instance = getattr(instance, name)
    return instance


def add_config_flags(parser, cls):
    """Add one flag per leaf field of `cls` (defaults None: only given flags override).

    The help shows the stage's own default (from `cls()`, nested groups included).
    """
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of settings; "
                        "flags given on the command line override it")
    defaults = cls()
    for path, field, field_type in _flag_fields(cls):
        flag = "--" + path[-1].replace("_", "-")
        default = _stage_default(defaults, path)
        help_text = field.metadata.get("help", "")
        if default != "" and "(default:" not in help_text:  # empty defaults say so in their help
            help_text += f" (default: {default})"
        if field_type is bool:
            parser.add_argument(flag, dest="_".join(path), default=None, help=help_text,
                                action=argparse.BooleanOptionalAction)
        else:
            parser.add_argument(flag, dest="_".join(path), default=None, type=field_type,
                                choices=field.metadata.get("choices"), help=help_text,
                                metavar=None if field.metadata.get("choices") else path[-1].upper())


def config_from_args(cls, args):
    """Build `cls` from --config FILE, then the flags given on the command line."""
    values = read_config_file(args.config) if getattr(args, "config", None) else {}
    for path, _, _ in _flag_fields(cls):
        given = getattr(args, "_".join(path), None)
        if given is None:
            continue
        node = values
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = given
    if cls is TrainConfig:
        values = apply_preset(values)
    return from_dict(cls, values, getattr(args, "config", None) or "settings")
