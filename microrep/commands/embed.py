"""`microrep embed`: every image given, labelled or not, embedded into an archive of parts
(a trained tower, or with --pretrained the untrained VGG16's pooled features, the baseline).

The first process lists the images into the archive's manifest; each part is then
embedded by the launcher asked for (this process, a SLURM job array, Ray). Parts already
done with the same model, settings and manifest are skipped, so the same command run
again after a kill, a failed array task or a lost node finishes the archive.
"""

from pathlib import Path

from microrep.data.loaders import labels_named, reader_name, source_kind, unlabelled_table
from microrep.embedding.archive import EMBEDDINGS, TolerantImages, clear_archive, part_dataset
from microrep.config.fields import parse_parts
from microrep.embedding.manifest import (MANIFEST, MANIFEST_INFO, manifest_info, publish_manifest,
                                         read_manifest)
from microrep.embedding.pool_fit import (fit_poolings, fitted_poolings, load_pooling_state,
                                         save_pooling_state)
from microrep.embedding.parts import (IDENTITY_KEYS, PROVENANCE, provenance, archive_status,
                                      digest_of, weights_digest)
from microrep.config import to_dict
from microrep.device import precision_words
from microrep.errors import ConfigError, OutputExistsError
from microrep.fileio import refuse_earlier_output, write_sealed_json
from microrep.launchers import LAUNCHERS, EmbedJob
from microrep.training.embedder import embedding_tower, embedding_view
from microrep.nn.backbone import feature_layer_names


def precision_of(tower):
    """'bfloat16' when the tower's weighted layers compute in it, else 'float32'."""
    computed = {layer.compute_dtype for layer in tower.layers if layer.weights}
    return "bfloat16" if "bfloat16" in computed else "float32"


def embed_settings(config, tower, view):
    """The settings that change the vectors (and so key the archive's identity)."""
    base = config.model
    model = ({"pretrained": True, "weights": base.weights, "input_size": base.input_size,
              "vgg_blocks": base.vgg_blocks, "feature_layers": base.feature_layers,
              "pooling": base.pooling, "mixed_precision": base.mixed_precision} if config.pretrained
             else {"pretrained": False, "recipe_input": config.recipe_input})
    return {**model, "view": view.settings(), "precision": precision_of(tower)}


def list_archive(config, out, log):
    """The manifest of `out`: listed now from the images given, or the one listed before."""
    kind, location = source_kind(config.data)
    source = {"data": kind, "location": str(location)}
    if (out / MANIFEST_INFO).is_file():
        info = manifest_info(out)
        listed = {key: info["source"].get(key) for key in source}
        if listed != source:
            raise OutputExistsError(f"{out} is the archive of {listed['data']} {listed['location']}, "
                                    f"not of {kind} {location}; use another --out, or --overwrite")
        if info["part_size"] != config.part_size:
            log(f"note: {out} was listed in parts of {info['part_size']} images; keeping that "
                f"(not --part-size {config.part_size})")
        return info
    table, root, reader, note = unlabelled_table(config.data)
    if note:
        log(f"note: {note}")
    log(f"listing {len(table)} images into {out / MANIFEST} (parts of {config.part_size})")
    return publish_manifest(out, table, root, config.part_size,
                            {**source, "reader": reader_name(reader),
                             "task": labels_named(config.data)})


def claim_identity(config, out, info, tower, view):
    """The archive's identity (model, settings, manifest), recorded in embed.json by the first
    process; a later one with another model or settings is refused, so parts never mix."""
    settings = embed_settings(config, tower, view)
    identity = {"model": weights_digest(tower), "settings": digest_of(settings),
                "manifest": info["sha256"]}
    path = out / PROVENANCE
    if path.is_file():
        recorded = provenance(out)
        other = [key for key in IDENTITY_KEYS if recorded.get(key) != identity[key]]
        if other:
            raise OutputExistsError(
                f"{out} holds parts embedded with another {' and '.join(other)} "
                f"({recorded.get('model_path') or 'pretrained VGG16'}); parts never mix: use "
                "another --out, or --overwrite to start again")
        return identity
    model_path = None if config.pretrained else str(config.model_path)
    embedder = {"pretrained": config.pretrained, "view": view.settings(), "model_path": model_path,
                "recipe_input": config.recipe_input,
                "model": to_dict(config.model) if config.pretrained else None}
    write_sealed_json(path, {**settings, **identity, "model_path": model_path,
                             "written_by": "embed", "embedder": embedder,
                             "data": info["source"]["data"], "data_dir": info["source"]["location"],
                             "task": info["source"]["task"], "images": info["rows"],
                             "part_size": info["part_size"], "parts": info["parts"]})
    return identity


def prepare_job(config, log=print):
    """List (or read) the manifest, claim the identity, and choose the parts asked for."""
    out = Path(config.out)
    if config.overwrite:
        clear_archive(out)
    refuse_earlier_output(out / EMBEDDINGS, "single-file embeddings", config.overwrite)
    tower = embedding_tower(config, out)
    view = embedding_view(config, tower)
    log(f"each image is seen as {view.words()}")
    if config.pretrained:
        model = config.model
        log(f"pretrained VGG16 ({'+'.join(feature_layer_names(model)) or f'{model.vgg_blocks} blocks'} "
            f"{model.pooling}-pooled, "
            f"{precision_words(model.mixed_precision)}"
            + ("; --no-mixed-precision for float32" if model.mixed_precision else "") + ")")
    info = list_archive(config, out, log)
    if config.pretrained:
        fit_archive_pooling(tower, out, info, view, log)
    identity = claim_identity(config, out, info, tower, view)
    parts = parse_parts(config.parts, info["parts"])[config.shard_index::config.num_shards]
    return EmbedJob(config, out, info, identity, parts, tower, log, view)


def fit_archive_pooling(tower, out, info, view, log):
    """A pretrained tower's pooling with state (VLAD, Gram, NetVLAD) fitted on a seeded
    subsample of the archive's images, once: kept beside the archive, so every part and
    shard, and the search queries, use the same state (read back where it exists)."""
    if not fitted_poolings(tower) or load_pooling_state(tower, out):
        return
    table, _ = read_manifest(out)
    images = TolerantImages(part_dataset(table, info), int(tower.input_shape[1]))
    fit_poolings(tower, images, view, seed=0, log=log)
    save_pooling_state(tower, out)


def run_embed_stage(config, log=print):
    """The embed stage of an EmbedConfig: returns what the launcher did and the archive's Status."""
    if config.shard_index >= config.num_shards:
        raise ConfigError(f"--shard-index must lie in 0..{config.num_shards - 1}, got {config.shard_index}")
    if config.recipe_input and config.pretrained:
        raise ConfigError("--recipe-input embeds with a trained run's head (--model-path), "
                          "--pretrained with no run at all: give one of them")
    if config.overwrite and (config.num_shards > 1 or config.parts):
        raise ConfigError("--overwrite starts the whole archive again, so it cannot go with "
                          "--num-shards or --parts (processes clearing one archive at once would "
                          f"delete each other's parts): remove {config.out} first, then start "
                          "the shards without --overwrite")
    job = prepare_job(config, log)
    summary = LAUNCHERS[config.launcher](job)
    return {**summary, "archive": str(job.out), "asked": job.parts,
            "status": archive_status(job.out)}
