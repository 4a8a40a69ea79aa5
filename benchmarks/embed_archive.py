"""Is embedding an image archive host-bound? Reading vs the model, measured in one run.

Writes UHCSDB-sized (645x484) synthetic micrographs as PNG files into a
temporary class-folder archive, then times, on whatever backend KERAS_BACKEND
selects:

- the host alone: decoding and tiling the archive, in the main thread and with
  the embedder's reader threads;
- the model alone: the tower on tiles already in memory;
- `microrep embed`'s path (`embed_part`: one part, streamed from the files), with
  reading in the main thread and with reader threads.

The last line is the ratio that matters: end-to-end images/s over model-only
images/s (1.0 means the files never keep the model waiting).

    python benchmarks/embed_archive.py --input-size 64 --vgg-blocks 3 --images 96
    KERAS_BACKEND=jax python benchmarks/embed_archive.py --input-size 224 --mixed --images 1024
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from microrep.config import DataConfig, ModelConfig  # noqa: E402
from microrep.data import load_dataset  # noqa: E402
from microrep.data.synthetic import CONDITIONS, generate_micrograph  # noqa: E402
from microrep.embedding.archive import embed_part  # noqa: E402
from microrep.embedding.manifest import publish_manifest  # noqa: E402
from microrep.embedding.tiles import LazyImages, default_read_workers, iter_tile_batches  # noqa: E402
from microrep.nn.tower import build_tower  # noqa: E402

FRAME = (484, 645)
CLASSES = ("spheroidite", "pearlite", "network")


def write_archive(root, count, seed=0):
    """`count` PNG micrographs of UHCSDB's frame, a few distinct ones repeated."""
    rng = np.random.default_rng(seed)
    distinct = []
    for constituent in CLASSES:
        image, _ = generate_micrograph(rng, constituent, CONDITIONS[constituent][0], size=FRAME[1])
        distinct.append((constituent, np.ascontiguousarray(image[:FRAME[0]])))
    for index in range(count):
        constituent, image = distinct[index % len(distinct)]
        folder = root / constituent
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"micrograph_{index:05d}.png")


def host_rate(dataset, tile, grid, batch, workers):
    images = LazyImages(dataset, range(len(dataset)))
    start = time.perf_counter()
    for _ in iter_tile_batches(images, tile, grid, batch, workers):
        pass
    return len(dataset) / (time.perf_counter() - start)


def model_rate(tower, dataset, grid, batch):
    tile = int(tower.input_shape[1])
    per_image = grid * grid
    tiles = np.concatenate([b for _, b in iter_tile_batches(
        LazyImages(dataset, range(min(len(dataset), max(batch // per_image, 1) * 4))), tile, grid, batch)])
    tower.predict_on_batch(tiles[:batch])
    reps = max(1, len(dataset) * per_image // len(tiles))
    start = time.perf_counter()
    for _ in range(reps):
        for begin in range(0, len(tiles), batch):
            np.asarray(tower.predict_on_batch(tiles[begin:begin + batch]))
    return reps * len(tiles) / per_image / (time.perf_counter() - start)


def pipeline_rate(tower, dataset, grid, batch, workers, out):
    publish_manifest(out, dataset.table, dataset.root, len(dataset),
                     {"data": "images", "location": str(dataset.root), "reader": "image", "task": ""})
    tile = int(tower.input_shape[1])
    tower.predict_on_batch(np.zeros((batch, tile, tile, 1), np.uint8))  # warm up
    start = time.perf_counter()
    embed_part(out, 0, tower, {}, grid, batch, progress=False, workers=workers)
    return len(dataset) / (time.perf_counter() - start)


def run(args):
    keras.utils.set_random_seed(0)
    tower = build_tower(ModelConfig(input_size=args.input_size, embedding_dim=64, weights="none",
                                    vgg_blocks=args.vgg_blocks, mixed_precision=args.mixed))
    workers = args.workers or default_read_workers()
    with tempfile.TemporaryDirectory(prefix="microrep-archive-") as folder:
        root = Path(folder) / "images"
        write_archive(root, args.images)
        dataset = load_dataset(DataConfig(data="images", data_dir=str(root)), validate=False)
        grid, batch = args.grid, args.batch_size
        row = {
            "backend": keras.backend.backend(), "input_size": args.input_size,
            "vgg_blocks": args.vgg_blocks, "mixed_precision": args.mixed, "images": len(dataset),
            "grid": grid, "batch_tiles": batch, "reader_threads": workers,
            "host_images_per_s_main_thread": host_rate(dataset, args.input_size, grid, batch, 0),
            "host_images_per_s_threads": host_rate(dataset, args.input_size, grid, batch, workers),
            "model_images_per_s": model_rate(tower, dataset, grid, batch),
            "embed_images_per_s_main_thread": pipeline_rate(tower, dataset, grid, batch, 0,
                                                            Path(folder) / "out0"),
            "embed_images_per_s_threads": pipeline_rate(tower, dataset, grid, batch, workers,
                                                        Path(folder) / "out1"),
        }
    print(json.dumps(row), flush=True)
    model = row["model_images_per_s"]
    print(f"\nhost reading: {row['host_images_per_s_main_thread']:.1f} images/s in the main thread, "
          f"{row['host_images_per_s_threads']:.1f} with {workers} threads; "
          f"model alone: {model:.1f} images/s ({grid}x{grid} tiles of {args.input_size}px)")
    print(f"embed from files: {row['embed_images_per_s_main_thread']:.1f} images/s reading in the "
          f"main thread ({row['embed_images_per_s_main_thread'] / model:.2f} of model-only), "
          f"{row['embed_images_per_s_threads']:.1f} with reader threads "
          f"({row['embed_images_per_s_threads'] / model:.2f} of model-only)")
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--vgg-blocks", type=int, default=5)
    parser.add_argument("--mixed", action="store_true", help="bfloat16 mixed precision")
    parser.add_argument("--images", type=int, default=256, help="micrographs in the archive")
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=288, help="tiles per model call")
    parser.add_argument("--workers", type=int, default=0, help="reader threads (0: one per core, up to 8)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    row = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
