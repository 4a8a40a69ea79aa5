"""`microrep train`: load the images, say what will be trained, train through `train()`."""

import dataclasses

from microrep.data import load_dataset
from microrep.data.loaders import labels_named, load_unlabelled_dataset
from microrep.device import precision_words
from microrep.nn.backbone import feature_layer_names
from microrep.training import train
from microrep.training.multihost import join_processes
from microrep.errors import DataError
from microrep.registry import LOSSES
from microrep.training.train import check_before_reading, training_dataset


def describe_training(config):
    """One line: what is trained, how, and in which precision."""
    model = config.model
    precision = "bfloat16" if model.mixed_precision else "float32"
    if not model.train_base:
        layers = "+".join(feature_layer_names(model)) or f"{model.vgg_blocks} blocks"
        return (f"frozen VGG16 ({layers} {model.pooling}-pooled, "
                f"{model.input_size} px, {precision_words(model.mixed_precision)}); {model.head} head under "
                f"{config.similarity} contrastive loss, {config.epochs} epoch(s) x "
                f"{config.pairs.pairs_per_epoch} pairs" +
                (f", {config.hard_pairs:.0%} of them hard pairs from epoch 2 on (the loss rises "
                 "there: those pairs are the ones it gets wrong)" if config.hard_pairs else ""))
    return (f"fine-tuning VGG16 ({model.vgg_blocks} blocks, {model.input_size} px, {precision}), "
            f"{model.head} head under {config.similarity} contrastive loss, {config.epochs} epoch(s) "
            f"x {config.pairs.pairs_per_epoch} pairs; on a CPU at 224 px this takes hours")


def run_train(config, log=print):
    """The train command: the dataset's notes and classes, the plan in one line, then training.

    Settings, weights file and run folder are checked before any image is decoded.
    """
    config = join_processes(config)  # --distribute multihost: only process 0 writes --out
    check_before_reading(config)
    config = self_supervised_if_unlabelled(config, log)
    dataset = training_dataset(config)
    for note in dataset.notes:
        log(f"note: {note}")
    counts = dataset.table["label"].astype(str).replace("", "(unlabelled)").value_counts()
    if LOSSES[config.similarity].pairs_from == "images":
        log(f"training on {len(dataset)} images without their labels: pairs from the images themselves")
    else:
        log(f"training on {len(dataset)} images of {len(counts)} classes ({labels_named(config.data)}): "
            + ", ".join(f"{label} {count}" for label, count in counts.items()))
    log(describe_training(config))
    return train(config, dataset)


def self_supervised_if_unlabelled(config, log):
    """A source without any class labels (a plain folder of images, a CSV without a label
    column) trains self-supervised instead of failing: said in one line, recorded in the run."""
    if LOSSES[config.similarity].pairs_from != "classes":
        return config
    try:
        load_dataset(config.data, validate=False)
        return config
    except DataError:
        unlabelled = load_unlabelled_dataset(config.data)
        if (unlabelled.table["label"].astype(str) != "").any():
            raise  # labelled, but not enough: the loader's message says why
    log(f"no class labels in {labels_named(config.data)}: training self-supervised "
        "(--similarity self: two crops of one micrograph, or micrographs of one sample, are alike)")
    return dataclasses.replace(config, similarity="self")
