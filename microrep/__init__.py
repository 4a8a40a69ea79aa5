"""microrep: learned microstructure representations with a Siamese VGG16.

A reference implementation of Sardeshmukh, Reddy, Gautham and Bhattacharyya,
"Towards better microstructure representations using deep learning"
(MRS Communications): a Siamese network with a shared VGG16 tower trained under
contrastive loss on pairs of SEM micrographs, with PCA and SVM analysis of the
learned embeddings.

The public API: the names a notebook or a script needs, from data to search::

    import microrep
    data = microrep.load_dataset(microrep.DataConfig(data="synthetic"))
    run = microrep.train(microrep.TrainConfig(out="runs/train"), data)
    vectors = microrep.embed_images(run.tower, data.images())
    scores = microrep.evaluate_features(vectors, data.labels, data.groups, microrep.EvalConfig())

Names are imported when first used, so `import microrep` stays quick (Keras
loads with the first model). Everything else lives in the layers below:
config, data, nn, pairs, analysis, embedding, training, commands.
"""

import importlib

from microrep._version import __version__

#: public name -> the module that defines it
PUBLIC = {
    # settings
    **{name: "microrep.config" for name in (
        "DataConfig", "ModelConfig", "PairConfig", "TrainConfig", "EmbedConfig", "EvalConfig",
        "SearchConfig", "ExploreConfig", "ExportConfig", "ReproduceConfig", "DemoConfig", "ViewConfig",
        "from_dict", "apply_preset", "PRESETS")},
    # data
    "load_dataset": "microrep.data", "Dataset": "microrep.data",
    "generate_micrograph": "microrep.data.synthetic", "CONDITIONS": "microrep.data.synthetic",
    "diffusion_index": "microrep.data.synthetic",
    # model parts and their registries
    "build_tower": "microrep.nn", "build_siamese": "microrep.nn",
    "build_feature_tower": "microrep.nn", "contrastive_loss": "microrep.nn",
    "ContrastiveLoss": "microrep.nn", "LOSSES": "microrep.registry", "HEADS": "microrep.registry",
    "POOLINGS": "microrep.registry", "LAUNCHERS": "microrep.registry",
    "LossEntry": "microrep.nn.losses", "HeadEntry": "microrep.nn.heads",
    "load_vgg16": "microrep.nn.backbone",
    # pairs
    "PairSampler": "microrep.pairs", "GradedPairSampler": "microrep.pairs",
    "pair_batches": "microrep.pairs",
    # training
    "train": "microrep.training", "load_tower": "microrep.training",
    # embedding
    "embed_images": "microrep.embedding", "read_embeddings": "microrep.embedding",
    "write_embeddings": "microrep.embedding", "open_archive": "microrep.embedding.archive",
    "convert_single_file": "microrep.embedding.archive", "PartsArchive": "microrep.embedding.parts",
    # analysis
    "evaluate_features": "microrep.analysis.scores", "cross_validate": "microrep.analysis.svm",
    "cv_splits": "microrep.analysis.svm", "svm_pipeline": "microrep.analysis.svm",
    "pca_projection": "microrep.analysis.svm", "raw_pixel_features": "microrep.analysis.svm",
    "retrieval_metrics": "microrep.analysis.retrieval",
    "score_target": "microrep.analysis.targets", "fit_target": "microrep.analysis.targets",
    "read_target": "microrep.data.targets",
    "nearest_neighbours": "microrep.analysis.neighbours",
    "measure_descriptors": "microrep.analysis.descriptors",
    "pc_correlations": "microrep.analysis.descriptors",
    **{name: "microrep.analysis.plots" for name in (
        "plot_pca_scatter", "plot_training_curves", "plot_pc_extremes", "plot_pc_descriptors",
        "plot_confusion", "plot_neighbours")},
    # whole commands
    "run_embed_stage": "microrep.commands.embed", "evaluate_embeddings": "microrep.commands.evaluate",
    "run_search": "microrep.commands.search", "run_predict": "microrep.commands.predict",
    "evaluate_targets": "microrep.commands.predict", "quiet_start": "microrep.backend", "write_explorer": "microrep.commands.explore",
    "export_tower": "microrep.commands.export", "compare_on_splits": "microrep.commands.heldout",
    "cpu_has_native_bfloat16": "microrep.device",
    "reproduce": "microrep.commands.reproduce", "run_demo": "microrep.commands.demo",
}

__all__ = ["__version__", *PUBLIC]


def __getattr__(name):
    if name not in PUBLIC:
        raise AttributeError(f"module 'microrep' has no attribute {name!r}")
    value = getattr(importlib.import_module(PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
