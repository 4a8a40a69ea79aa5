"""`microrep embed` after `microrep train --preset cpu`: tile features from the run's feature
cache vs every tile through VGG16 again (the tower file), on the UHCSDB development copy.

Trains the recipe first (its feature pass fills the cache, or finds it filled), then
embeds the same images both ways, times both, and checks they agree.

    python benchmarks/embed_from_cache.py [--data-dir ../shared/data/uhcsdb-dev]
        [--weights ../shared/weights/vgg16_imagenet_notop.weights.h5] [--feature-cache DIR]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microrep.cli import main  # noqa: E402
from microrep.embedding.archive import read_embeddings  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def timed(argv):
    started = time.perf_counter()
    assert main(argv) == 0, argv
    return time.perf_counter() - started


def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(SHARED / "data" / "uhcsdb-dev"))
    parser.add_argument("--weights", default=str(SHARED / "weights" / "vgg16_imagenet_notop.weights.h5"))
    parser.add_argument("--feature-cache", default=str(Path("~/.cache/microrep/features").expanduser()))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="microrep-embed-cache-"))
    data = ["--data", "uhcsdb", "--data-dir", args.data_dir]
    trained = timed(["train", "--preset", "cpu", *data, "--weights", args.weights,
                     "--feature-cache", args.feature_cache, "--out", str(work / "run")])
    cached = timed(["embed", *data, "--model-path", str(work / "run"), "--out", str(work / "cached")])
    direct = timed(["embed", *data, "--model-path", str(work / "run" / "tower.keras"),
                    "--out", str(work / "tower")])
    a, b = (read_embeddings(work / name)[0] for name in ("cached", "tower"))
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"\ntrain --preset cpu (features from the cache where present): {trained:.0f} s")
    print(f"embed {len(a)} images from the run's feature cache: {cached:.1f} s")
    print(f"embed {len(b)} images through the whole tower:      {direct:.1f} s")
    print(f"ratio: {direct / cached:.1f}x faster from the cache; embeddings agree to cosine "
          f">= {cosine.min():.5f} (the tower computes its head in bfloat16, the cached path in float32)")


if __name__ == "__main__":
    run()
