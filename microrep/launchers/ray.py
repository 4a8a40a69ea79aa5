"""The Ray launcher: Ray Data decodes images in CPU tasks and embeds them in an actor pool.

Why Ray Data: clusters and clouds run it; it streams (decoding, embedding and writing
overlap, with bounded memory), places actors on GPUs where there are any, and retries
failed tasks. The work is cut exactly as one `microrep embed` process cuts it (the same
batches of whole images within each part), so the parts it writes are the same.
Optional: pip install microrep[ray].
"""

from microrep.embedding.archive import TolerantImages, part_dataset
from microrep.embedding.features import image_keys
from microrep.config.fields import ranges_text
from microrep.embedding.manifest import manifest_info
from microrep.embedding.parts import PartWriter, part_manifest, part_state
from microrep.embedding.tiles import embed_images
from microrep.errors import ConfigError

RAY_HINT = "--launcher ray needs Ray Data: pip install 'microrep[ray]'"


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(RAY_HINT) from None
    return ray


def batch_plan(out, parts, images_per_batch):
    """(one descriptor per batch of whole images: part, start, its manifest rows; each part's
    manifest rows, which its done file is written with)."""
    plan, tables = [], {}
    for part in parts:
        rows, tables[part], _ = part_manifest(out, part)
        for start in range(0, len(rows), images_per_batch):
            chunk = tables[part].iloc[start:start + images_per_batch]
            plan.append({"part": part, "start": start, "rows": len(rows),
                         "table": chunk.to_dict("list")})
    return plan, tables


def decoder(info, tile):
    """A Ray task body: decode one batch's images (bad ones recorded, not fatal), sent as their
    pixels end to end with their shapes, and each image's key for the feature cache."""
    import numpy as np
    import pandas as pd

    def decode(item):
        images = TolerantImages(part_dataset(pd.DataFrame(item["table"]), info), tile)
        decoded = [images[index] for index in range(len(images))]
        bad = [f"{row}\t{why}" for row, why in images.bad.items()]
        return {"part": item["part"], "start": item["start"], "rows": item["rows"],
                "pixels": np.concatenate([image.ravel() for image in decoded]),
                "shapes": np.asarray([image.shape for image in decoded], np.int64),
                "keys": "\n".join(image_keys(decoded)), "bad": "\n".join(bad)}

    return decode


def unpacked(pixels, shapes):
    """The images a decoder sent: `pixels` cut at the products of `shapes`."""
    import numpy as np

    ends = np.cumsum([int(h) * int(w) for h, w in shapes])
    return [piece.reshape(int(h), int(w))
            for piece, (h, w) in zip(np.split(pixels, ends[:-1]), shapes)]


class Embedder:
    """A Ray actor holding the tower: embeds one batch of images under the job's view, as a
    local process does (the same `embed_images`, all of the batch's images at once).

    For a frozen-base run with a feature cache, as a local process does: VGG16 piece
    features from the cache (computed and cached where missing), then only the head.
    """

    def __init__(self, config, view, archive):
        from microrep.training.embedder import CachedHead, embedding_tower, frozen_run

        self.tower, self.view = embedding_tower(config, archive), view
        run = frozen_run(config)
        self.cached = CachedHead(self.tower, run, view) if run else None

    def __call__(self, batch):
        images = unpacked(batch["pixels"][0], batch["shapes"][0])
        if self.cached is None:
            mean = embed_images(self.tower, images, self.view, batch_size=len(images) * self.view.count,
                                workers=0)
        else:
            keys = str(batch["keys"][0]).split("\n")
            mean = self.cached.embed(keys, lambda index: images[index])
        return {"part": batch["part"], "start": batch["start"], "rows": batch["rows"],
                "bad": batch["bad"], "vectors": mean[None]}


def start_ray(ray, address):
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)


def run_ray(job):
    """Embed the job's missing parts with Ray Data; the driver writes each part as it completes."""
    ray = import_ray()
    config, out = job.config, job.out
    missing = [p for p in job.parts if part_state(out, p, job.identity, verify=True) != "done"]
    summary = {"launcher": "ray", "embedded": [], "skipped": [p for p in job.parts if p not in missing],
               "bad": 0, "bad_images": []}
    if not missing:
        return {**summary, "message": "every part asked for is done: nothing to embed"}
    start_ray(ray, config.ray_address)
    tile, per_image = int(job.tower.input_shape[1]), job.view.count
    plan, tables = batch_plan(out, missing, max(config.batch_size // per_image, 1))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = config.ray_actors or max(gpus, 1)
    data = (ray.data.from_items(plan)
            .map(decoder(manifest_info(out), tile))
            .map_batches(Embedder, fn_constructor_args=(config, job.view, str(job.out)), batch_size=1,
                         concurrency=actors, num_gpus=1 if gpus else 0))
    dim = int(job.tower.output_shape[-1])
    writers, filled, bad = {}, {}, {}
    for row in data.iter_rows():
        part, start = int(row["part"]), int(row["start"])
        if part not in writers:
            writers[part] = PartWriter(out, part, range(int(row["rows"])), dim)
            filled[part], bad[part] = 0, {}
        writers[part].put(start, row["vectors"])
        filled[part] += len(row["vectors"])
        for line in filter(None, str(row["bad"]).split("\n")):
            index, why = line.split("\t", 1)
            bad[part][start + int(index)] = why
        if filled[part] == int(row["rows"]):
            record = writers.pop(part).finish(tables.pop(part), bad[part], job.identity)
            summary["embedded"].append(part)
            summary["bad"] += record["bad"]
            summary["bad_images"] += record["bad_images"]
    summary["embedded"].sort()
    from microrep.training.embedder import frozen_run

    cached = "; VGG16 features from the run's feature cache" if frozen_run(config) else ""
    return {**summary, "message": f"embedded part(s) {ranges_text(summary['embedded'])} with Ray "
                                  f"({actors} embedding actor(s), {gpus} GPU(s){cached})"}
