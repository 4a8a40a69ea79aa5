"""One settings dataclass per stage; each setting declared once and composed where used.

Stages that run another stage's work nest its dataclass (`demo` and `reproduce`
hold a TrainConfig with their own defaults) instead of repeating its settings.
"""

import dataclasses
import os

from microrep.config.fields import (parse_paths, count_option, group, option, parse_batch_size,
                                    scales_text)
from microrep.registry import HEADS, LAUNCHERS, LOSSES, POOLINGS

#: The paper's classification tasks (what each means: microrep.data.tasks), declared once.
TASKS = ("constituent", "3phase", "processing")

@dataclasses.dataclass
class DataConfig:
    """Which micrographs a stage reads and which task labels them."""

    data: str = option("synthetic", "dataset: 'synthetic' (generated, built in), 'uhcsdb' "
                       "(a folder with microstructures.sqlite and the micrographs), 'folder' "
                       "(metadata.csv, as `microrep generate` writes), 'images' (one sub-folder "
                       "per class) or 'csv' (a file with path,label[,group] columns)",
                       ("synthetic", "uhcsdb", "folder", "images", "csv"))
    data_dir: str = option("", "dataset folder (a CSV file for --data csv); empty for "
                           "'synthetic' means microrep-data/synthetic, generated there if missing")
    images: str = option("", "shortcut for --data images --data-dir DIR: for training one "
                         "sub-folder per class; to embed, any folder (tree) of images")
    csv: str = option("", "shortcut for --data csv --data-dir FILE: columns path,label[,group]")
    task: str = option("constituent", "what to classify: every primary microconstituent, "
                       "DeCost's 3 phases, or the processing condition",
                       TASKS)
    min_class_size: int = count_option(2, "drop classes with fewer images (with a message)")
    skip_bad: bool = option(False, "leave out unreadable or unusable images (with a message) "
                            "instead of refusing to start")
    um_per_px: float = option(0.0, "resample every micrograph to this many micrometres per "
                              "pixel, from its own scale (UHCSDB's scale bar, or a CSV's um_per_px "
                              "column); 0 keeps each image's own pixels", at_least=0.0)
    um_per_px_limit: float = option(4.0, "the most a micrograph is enlarged or shrunk to "
                                    "reach --um-per-px", at_least=1.0)
    synthetic_samples_per_class: int = count_option(4, "synthetic data: samples per class",
                                                    aliases=("samples_per_class",))
    synthetic_images_per_sample: int = count_option(5, "synthetic data: micrographs per sample",
                                                    aliases=("images_per_sample",))
    synthetic_image_size: int = count_option(160, "synthetic data: image side in pixels", 32,
                                             aliases=("image_size",))
    synthetic_seed: int = option(0, "synthetic data: random seed")

    def __post_init__(self):
        """--images DIR and --csv FILE stand for --data images/csv --data-dir PATH (absolute), so a
        run records where its images came from, whichever way they were named."""
        for kind in ("images", "csv"):
            if getattr(self, kind):
                self.data, self.data_dir = kind, os.path.abspath(getattr(self, kind))
                setattr(self, kind, "")

    @property
    def own_labels(self):
        """True where labels come with the images (class folders, a CSV), not from a task."""
        return self.data in ("images", "csv")


# Settings of the VGG16 base, declared once and used by every stage that builds one.

def input_size_option(default=224):
    return count_option(default, "side of the square crops the model sees (>= 32)", 32)


def vgg_blocks_option(default=5):
    return option(default, "VGG16 blocks to keep (1-5); fewer suit small inputs and train "
                  "faster from random weights; block 4 alone gives the best pretrained "
                  "features of micrographs", (1, 2, 3, 4, 5))


#: The view of `--view auto`: the run's own (as its config.json records it), else the default.
AUTO_VIEW = "auto"


@dataclasses.dataclass
class ViewConfig:
    """How a micrograph becomes the network's input (data.views.View), one setting for every
    path: training crops and bank, the feature cache, embed, search, reproduce, export."""

    view: str = option("frame", "how the network sees a micrograph: 'frame' (the whole frame, "
                       "every pixel, at each of --scales, through the fully convolutional base, "
                       "in windows of at most --window px), 'tiles' (a --grid x --grid grid of "
                       "input-size tiles at native resolution: microrep before views; larger "
                       "images are seen only in part), or 'auto' where a trained run gives it: "
                       "the run's own view", ("frame", "tiles", AUTO_VIEW))
    scales: str = option("1,0.71,0.5", "--view frame: scales of the whole frame, comma-separated "
                         "(each image's embedding is the mean over them)", parse=scales_text)
    grid: int = count_option(3, "--view tiles: each image's embedding is the mean over a grid x "
                             "grid tiling")
    window: int = count_option(1024, "--view frame: largest side, in pixels, of what the base is "
                               "shown at once; a larger scaled frame is seen as overlapping "
                               "windows whose pooled features are averaged (memory stays "
                               "bounded: about 1 GiB at 1024)", 32)


def view_group(view="frame"):
    """A stage's ViewConfig group with its own default kind ('auto' follows a trained run)."""
    return group(lambda: ViewConfig(view=view))


def folds_option(default=5):
    return count_option(default, "cross-validation folds", 2)


#: Every spelling of "no pretrained weights" a setting, a file or a caller may use.
RANDOM_WEIGHTS = (None, "", "none", "None")


def is_random_weights(weights):
    """True for a setting that asks for VGG16 at random initialisation (--weights none)."""
    return weights in RANDOM_WEIGHTS


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
    pooling: str = option("mean", "how each tapped layer's maps become a vector: 'mean' (the "
                          "paper's), 'max', 'meanstd' (mean and standard deviation of each "
                          "channel), 'gem' (generalised mean, p learned when the base trains), "
                          "'gram' (channel Gram matrix), 'vlad' (DeCost et al.'s), 'netvlad' "
                          "(the last three fitted on a sample of the images first), or "
                          "another pooling registered in microrep.registry",
                          POOLINGS)
    head: str = option("projection", "'projection': a dense layer to --embedding-dim; "
                       "'residual': standardised pooled features plus a learned correction that "
                       "starts at zero, so training starts from the pretrained representation "
                       "(--embedding-dim is then the pooled feature size); or another head "
                       "registered in microrep.registry", HEADS)
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
    """`microrep train`'s default tower: the measured recipe (presets add only the precision).

    Frozen ImageNet VGG16 at 224 px, block4_conv3 and block5_conv3 mean-pooled,
    a residual head: training cannot damage the pretrained features, only add to them.
    """
    return ModelConfig(feature_layers="auto", head="residual", train_base=False)


def pretrained_model_config():
    """`embed --pretrained`'s features: DeCost et al.'s best single layer, block4_conv3, mean-pooled."""
    return ModelConfig(vgg_blocks=4, feature_layers="block4_conv3", train_base=False)


#: ModelConfig settings of the head, which a stage that only runs a base does not show.
HEAD_SETTINGS = ("embedding_dim", "head", "l2_normalize", "train_base")


@dataclasses.dataclass
class TrainConfig:
    """Train the Siamese model under contrastive loss."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=recipe_model_config)
    pairs: PairConfig = dataclasses.field(default_factory=PairConfig)
    image_view: ViewConfig = group(ViewConfig)
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
                                  parse=parse_batch_size)
    learning_rate: float = option(1e-4, "Adam learning rate", above=0.0)
    similarity: str = option("graded", "'graded': pairs from one sample (or processing condition) "
                             "are pulled closest, other pairs of one class less, different "
                             "classes pushed past --margin; 'label': the paper's contrastive loss "
                             "on same/different class; 'self': no labels used, two crops of one micrograph (or "
                             "micrographs of one sample) are alike (chosen by itself for a source "
                             "without labels); 'semi': classes where labelled, 'self' where not; "
                             "'processing': distances follow the distance between processing "
                             "conditions (standardised anneal temperature, log time, cooling; "
                             "needs those columns); or another loss registered in microrep.registry",
                             LOSSES)
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
                                     "are computed once (and cached) to train the head on; 0: "
                                     "the image's own embedding pieces (tiles, or a whole-frame "
                                     "view's scales) instead of crops", 0)
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
                             "tf.distribute.MirroredStrategy (TensorFlow); 'multihost': over "
                             "several processes or hosts (JAX, --train-base), each feeding its "
                             "slice of every batch", ("none", "data", "multihost"))
    coordinator: str = option("", "--distribute multihost: HOST:PORT of process 0 (default: "
                              "from SLURM's environment under srun)")
    num_processes: int = option(0, "--distribute multihost: how many processes train together",
                                at_least=0)
    process_id: int = option(0, "--distribute multihost: this process's index (0 writes the run)",
                             at_least=0)
    resume: bool = option(False, "continue the run in --out from its last checkpoint")
    overwrite: bool = option(False, "replace a different run already in --out")


@dataclasses.dataclass
class EmbedConfig:
    """Embed micrographs with a trained tower."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model_path: str = option("runs/train", "a run folder or a tower .keras file")
    pretrained: bool = option(False, "embed with the untrained VGG16 instead of --model-path: "
                              "its feature maps mean-pooled over the same tiles, the baseline a "
                              "learned embedding must beat (--weights, --input-size, --vgg-blocks, --feature-layers, --mixed-precision)")
    recipe_input: bool = option(False, "embed with --model-path's head as training found it: "
                                "the run's VGG16 features standardised on its training images, "
                                "without the learned correction (residual head only); the "
                                "like-for-like baseline that shows what training added")
    model: ModelConfig = group(lambda: pretrained_model_config(), hidden=HEAD_SETTINGS)
    out: str = option("runs/embeddings", "the archive folder: manifest.parquet, parts/ (an "
                      "embeddings .npy, a table and a done file per part) and embed.json")
    image_view: ViewConfig = view_group(AUTO_VIEW)
    batch_size: int = count_option(64, "tiles per batch")
    feature_cache: str = option("~/.cache/microrep/features", "--pretrained: where `train` "
                                "cached its frozen VGG16 features (as train's --feature-cache); "
                                "images whose block4 tile features are there are not run "
                                "through VGG16 again; empty: never read it")
    read_workers: int = option(-1, "threads that decode images ahead of the model "
                               "(-1: one per CPU core, at most 8; 0: read in the main thread)",
                               at_least=-1)
    overwrite: bool = option(False, "start the archive in --out again (otherwise parts already "
                             "done are kept and only the rest is embedded); one process only, "
                             "not with --num-shards or --parts")
    part_size: int = count_option(10000, "images per part: the unit that is embedded, resumed "
                                  "and scheduled (fixed when the archive is first listed)")
    parts: str = option("", "embed only these parts, e.g. 0-3,7 (default: all)")
    num_shards: int = count_option(1, "split the parts into this many shards (one process each)")
    shard_index: int = option(0, "which shard this process embeds (0 .. num_shards-1): parts "
                              "shard_index, shard_index + num_shards, ...", at_least=0)
    launcher: str = option("local", "who embeds the parts: 'local' (this process), 'slurm' (an "
                           "sbatch job array, one task per part range, missing parts only) or "
                           "'ray' (Ray Data: decoding tasks and an embedding actor pool; "
                           "pip install microrep[ray]), or another launcher registered in "
                           "microrep.registry", LAUNCHERS)
    slurm_args: str = option("", "extra sbatch options for --launcher slurm, e.g. "
                             "'--partition gpu --gres gpu:1 --time 2:00:00'")
    parts_per_task: int = count_option(1, "--launcher slurm: parts embedded by each array task")
    wait: bool = option(False, "--launcher slurm: wait for the job array to end (sbatch --wait) "
                        "and report the archive's status")
    ray_address: str = option("", "--launcher ray: the cluster to join (default: start a local Ray)")
    ray_actors: int = option(0, "--launcher ray: embedding actors (0: one per GPU, else one)",
                             at_least=0)


@dataclasses.dataclass
class IndexConfig:
    """A persistent faiss index of an embedded archive, for `microrep search --index`."""

    embeddings: str = option("runs/embeddings", "the archive folder written by `microrep embed` "
                             "(also the first argument)")
    out: str = option("runs/index", "folder for index.faiss and index.json")
    kind: str = option("auto", "'flat' (exact), 'ivf-flat' or 'ivf-pq'; auto: flat up to 200,000 "
                       "vectors, IVF-Flat up to 20 million, IVF-PQ above",
                       ("auto", "flat", "ivf-flat", "ivf-pq"))
    target_recall: float = option(0.95, "the recall@10 against exact search that nprobe is "
                                  "tuned to reach on held-out queries", above=0.0, at_most=1.0)
    queries: int = count_option(1000, "held-out queries that measure recall@10 at build time")
    seed: int = option(0, "seed of the training sample and the held-out queries")
    overwrite: bool = option(False, "replace an index already in --out")


@dataclasses.dataclass
class StatusConfig:
    """Which parts of an embedded archive are done, missing, bad or inconsistent."""

    archive: str = option("runs/embeddings", "the archive folder written by `microrep embed` "
                          "(also the first argument)")
    verify: bool = option(False, "also check every done part's embeddings against the "
                          "checksum in its done file (reads the whole archive)")


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
    folds: int = folds_option()
    repeats: int = count_option(1, "repeat the k-fold split with new shuffles")
    kernel: str = option("linear", "SVM kernel", ("linear", "rbf"))
    C: float = option(1.0, "SVM regularisation", above=0.0)
    seed: int = option(0, "seed of the CV splits")
    target: str = option("", "instead of classes, predict these metadata targets, comma-separated: "
                         "anneal_temperature (°C), log_anneal_time (log10 hours), cool_method, "
                         "or any column (numeric or categorical); cross-validated by sample, "
                         "beside the no-information predictor, with 90 per cent conformal intervals")
    baseline_embeddings: str = option("", "with --target: a second embeddings folder of the same "
                                      "images (e.g. `embed --pretrained`) scored the same way")
    overwrite: bool = option(False, "replace an earlier evaluation in --out")


@dataclasses.dataclass
class PredictConfig:
    """Predict metadata targets of new micrographs from their embeddings, with 90 per cent intervals."""

    fit_embeddings: str = option("", "embeddings whose metadata carry the targets: fit a "
                                 "predictor on them (saved in --out/predictor)")
    target: str = option("", "with --fit-embeddings: the targets, comma-separated "
                         "(as `evaluate --target`)")
    predictor: str = option("", "a predictor folder saved earlier (instead of --fit-embeddings)")
    embeddings: str = option("", "the embeddings to predict (an archive of the same model)")
    images: str = option("", "or image files or folders to predict, embedded first with the "
                         "fit embeddings' model", parse=parse_paths, nargs="+")
    out: str = option("runs/predict", "folder for predictions.csv (and predictor/)")
    seed: int = option(0, "seed of the calibration split")
    overwrite: bool = option(False, "replace earlier predictions in --out")


@dataclasses.dataclass
class SearchConfig:
    """Find the micrographs of an embedded archive nearest to query images or rows."""

    index: str = option("runs/embeddings", "the archive: a folder written by `microrep embed`, "
                        "or an index folder written by `microrep index` (memory-mapped)")
    query: str = option("", "queries: image files, folders of images, list files (.txt, one "
                        "path a line; .csv with a path and an optional label column) embedded "
                        "with the index's model as embed.json records it, or embeddings folders "
                        "of the same model (their vectors, not re-embedded)", parse=parse_paths,
                        nargs="+")
    query_rows: str = option("", "queries that are rows of the index, comma-separated (0-based)")
    k: int = count_option(10, "neighbours per query")
    exclude_same_group: bool = option(False, "skip neighbours from the query's own sample "
                                      "(the index's group column)")
    conditions: bool = option(False, "the inverse question: which processing gives a "
                              "microstructure like this? each query's neighbours' processing "
                              "conditions, ranked (how many of the k, their mean distance)")
    backend: str = option("auto", "'exact' (scikit-learn), 'faiss' or 'auto' (faiss above "
                          "200,000 rows)",
                          ("auto", "exact", "faiss"))
    out: str = option("", "also write neighbours.csv (every query) and neighbours.png (the "
                      "first 12) into this folder; the answer is printed either way")
    overwrite: bool = option(False, "replace an earlier search in --out")


@dataclasses.dataclass
class ExploreConfig:
    """An offline, interactive map of an embedded archive (one HTML file), and TensorBoard's."""

    embeddings: str = option("runs/embeddings", "one or more folders written by `microrep embed` "
                             "with one model (also the first arguments): an archive and a new "
                             "batch on one map, coloured by `folder`", parse=parse_paths, nargs="+")
    out: str = option("explorer.html", "the HTML file to write (self-contained: no network)")
    projection: str = option("pca", "the 2-D map: PCA, t-SNE, or UMAP (pip install umap-learn)",
                             ("pca", "tsne", "umap"))
    neighbours: int = count_option(8, "nearest neighbours shown when a point is clicked")
    thumbnail_size: int = count_option(96, "thumbnail side in pixels (JPEG, inlined)", 16)
    tensorboard: str = option("", "also write TensorBoard projector files (tensor, metadata.tsv, "
                              "sprite, projector_config.pbtxt) into this folder")
    max_points: int = count_option(20000, "at most this many micrographs on the map (a seeded "
                                   "random sample of a larger archive, said so; only their "
                                   "vectors are read): one page holds a thumbnail of each")
    seed: int = option(0, "seed of t-SNE / UMAP and of the sample of --max-points")
    overwrite: bool = option(False, "replace an explorer page written earlier to --out")


@dataclasses.dataclass
class ExportConfig:
    """Export the embedding tower for other tools."""

    model_path: str = option("runs/train", "a run folder or a tower .keras file")
    out: str = option("runs/export", "folder for the SavedModel and the .keras file")
    image_view: ViewConfig = view_group(AUTO_VIEW)


def demo_train_config():
    """The demo's training: small crops, three VGG16 blocks from random weights, the paper's loss.

    Sized to run every stage in minutes on a laptop CPU without downloads.
    """
    return TrainConfig(
        data=DataConfig(data="synthetic", task="constituent"),
        model=ModelConfig(input_size=48, embedding_dim=32, weights="none", vgg_blocks=3,
                          head="projection", feature_layers="", train_base=True),
        pairs=PairConfig(pairs_per_epoch=640), epochs=12, batch_size=32, learning_rate=1e-4,
        similarity="label", margin=1.0, seed=0, image_view=ViewConfig(view="tiles"))


#: Settings of a stage's training that the stage sets itself (run folders per fold or demo).
STAGE_OWNED = ("out", "resume", "overwrite")


@dataclasses.dataclass
class DemoConfig:
    """The whole pipeline at demo scale."""

    train: TrainConfig = group(demo_train_config, hidden=STAGE_OWNED)
    recipe: str = option("auto", "what trains: 'recommended' (microrep train's defaults: frozen "
                         "pretrained VGG16, residual head, graded loss, hard pairs, at the demo's "
                         "crop size), 'scratch' (the paper's loss on a VGG16 from random weights, "
                         "the demo's settings), or 'auto': recommended when --weights names "
                         "pretrained weights (imagenet or a file), else scratch",
                         ("auto", "recommended", "scratch"))
    out: str = option("microrep-demo", "report folder (data, run, embeddings, figures, export)")
    folds: int = folds_option()
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
    margin) are not published; these are microrep's choices (README, reproduce).
    """
    return TrainConfig(
        model=ModelConfig(input_size=224, embedding_dim=64, weights="imagenet", vgg_blocks=5,
                          head="projection", feature_layers="", train_base=True),
        pairs=PairConfig(pairs_per_epoch=2048), epochs=20, batch_size=32, learning_rate=1e-5,
        similarity="label", margin=1.0, feature_bank=32, hard_pairs=0.0, seed=0)


@dataclasses.dataclass
class ReproduceConfig:
    """Redo the paper's experiments: baselines and Siamese, every task, three CV flavours.

    `train` holds every setting of `microrep train` (with the paper's defaults); the
    Siamese model of each fold trains under them, and --seed also seeds the splits.
    """

    train: TrainConfig = group(paper_train_config, hidden=STAGE_OWNED)
    out: str = option("microrep-reproduce", "report folder; an interrupted run resumes from it")
    tasks: str = option(",".join(TASKS), "comma-separated tasks to run")
    quick: bool = option(False, "a few-minute smoke run, not the paper's protocol: 96x96 crops "
                         "of downscaled images, four frozen VGG16 blocks, a projection head "
                         "trained per fold, 3 folds (these replace the model and training "
                         "settings); without it a CPU runs the paper's protocol at full "
                         "resolution on a frozen base")
    image_scale: float = option(1.0, "resize every micrograph by this factor before cropping "
                                "(0: shrink so the shorter side is 4 crops long)", at_least=0.0)
    folds: int = folds_option()
    processing_folds: int = count_option(10, "cross-validation folds of the processing-condition "
                                         "task (DeCost et al.: 10)", 2)
    processing_images: int = option(10, "processing condition as DeCost et al.: only conditions "
                                    "with at least this many micrographs, this many drawn from "
                                    "each (with --processing-folds equal to it, leave one image "
                                    "per class out); 0: every condition with at least --folds images")
    processing_pca: int = option(64, "processing condition: also scored with PCA to this many "
                                 "dimensions inside each fold before the SVM, as DeCost et al. "
                                 "(0: without PCA only)",
                                 at_least=0)
    heldout_splits: int = option(3, "also train microrep's own recipe (a residual head on the "
                                 "frozen base, graded similarity; at this run's input size and "
                                 "blocks) on half of the images and score it against the "
                                 "pretrained features on the other half, over this many seeded "
                                 "splits (0: skip)", at_least=0)

