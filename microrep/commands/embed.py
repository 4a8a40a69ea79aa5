"""`microrep embed`: every image given, labelled or not, embedded into an archive folder
(a trained tower, or with --pretrained the untrained VGG16's pooled features, the baseline)."""

import json
from pathlib import Path

from microrep.config import TrainConfig, from_dict
from microrep.data.loaders import labels_named, load_unlabelled_dataset, source_kind
from microrep.embedding.archive import PROVENANCE, embed_to_disk, shard_name
from microrep.embedding.features import (embed_tile_features, feature_tower_of, head_from_tower,
                                         tile_features)
from microrep.errors import DataError
from microrep.fileio import refuse_earlier_output, write_json
from microrep.nn.backbone import MIXED_POLICY, dtype_policy
from microrep.nn.tower import build_feature_tower
from microrep.training.frozen import BANK_SEED, GRID
from microrep.training.run_dir import load_tower


def embedding_tower(config):
    """The tower an EmbedConfig asks for: a trained one, or the untrained VGG16's features."""
    if config.pretrained:
        with dtype_policy(MIXED_POLICY if config.model.mixed_precision else "float32"):
            return build_feature_tower(config.model)
    return load_tower(config.model_path)


def frozen_run(config):
    """The TrainConfig of the run in --model-path when its frozen base's feature cache can
    serve this embedding (a frozen base, a cache, the tiling of its feature pass), else None."""
    settings = Path(config.model_path) / "config.json"
    if config.pretrained or not settings.is_file():
        return None
    run = from_dict(TrainConfig, json.loads(settings.read_text()), str(settings))
    if run.model.train_base or not run.feature_cache or config.grid != GRID:
        return None
    return run


def cached_embedder(tower, run, log, chunk=256):
    """`embed(images)` for embed_to_disk: tile features from the run's feature cache (computed
    and cached where missing), then only the head; chunk by chunk, so memory stays bounded."""
    policy = MIXED_POLICY if run.model.mixed_precision else "float32"
    with dtype_policy(policy):  # as in training: the precision keys the cache
        feature_tower = feature_tower_of(tower, run.model)
    head = head_from_tower(tower, int(feature_tower.output_shape[-1]), run.model)
    cache = str(Path(run.feature_cache).expanduser())
    log(f"frozen-base run: VGG16 tile features come from its feature cache {cache} where "
        "training computed them; only the head runs")

    def embed(images):
        for start in range(0, len(images), chunk):
            rows = list(range(start, min(start + chunk, len(images))))
            with dtype_policy(policy):
                tiles = tile_features(feature_tower, [images[i] for i in rows], GRID, cache,
                                      bank=(run.feature_bank, BANK_SEED), progress=True)
            yield rows, embed_tile_features(head, tiles)

    return embed


def precision_of(tower):
    """'bfloat16' when the tower's weighted layers compute in it, else 'float32'."""
    computed = {layer.compute_dtype for layer in tower.layers if layer.weights}
    return "bfloat16" if "bfloat16" in computed else "float32"


def embed_provenance(config, dataset, tower):
    """What embed.json records: the model and its precision, the images, how they were tiled."""
    kind, location = source_kind(config.data)
    base = config.model
    model = ({"pretrained": True, "weights": base.weights, "input_size": base.input_size,
              "vgg_blocks": base.vgg_blocks, "feature_layers": base.feature_layers,
              "pooling": base.pooling, "mixed_precision": base.mixed_precision} if config.pretrained
             else {"pretrained": False, "model_path": str(config.model_path)})
    return {**model, "data": kind, "data_dir": str(location), "task": labels_named(config.data),
            "images": len(dataset), "grid": config.grid, "num_shards": config.num_shards,
            "precision": precision_of(tower)}


def run_embed_stage(config, log=print):
    """The embed stage of an EmbedConfig: every image given, labelled or not.

    Returns (dataset, path of the embeddings file). Images are streamed (each
    read once, while embedding) unless bad files are to be skipped, which needs
    every image decoded first.
    """
    refuse_earlier_output(Path(config.out) / shard_name("embeddings", ".npy", config.shard_index,
                                                        config.num_shards),
                          "embeddings", config.overwrite)
    tower = embedding_tower(config)
    dataset = load_unlabelled_dataset(config.data, validate=config.data.skip_bad)
    for note in dataset.notes:
        log(f"note: {note}")
    workers = None if config.read_workers < 0 else config.read_workers
    out = Path(config.out)
    created = not out.exists()
    try:
        run = frozen_run(config)
        path = embed_to_disk(tower, dataset, out, config.grid, config.batch_size,
                             config.shard_index, config.num_shards, workers=workers, log=log,
                             embed=cached_embedder(tower, run, log) if run else None)
    except DataError as error:  # an image that could not be read half-way: say what to do
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing was written: leave no empty folder behind
        raise DataError(f"{error}; nothing was written. Pass --skip-bad to check every image "
                        "first and leave the unusable ones out") from None
    write_json(out / PROVENANCE, embed_provenance(config, dataset, tower))
    return dataset, path
