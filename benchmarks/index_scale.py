"""The persistent index at archive scale: build time, size, query time and recall@10 against
exact search, for clustered 64-d vectors (as embeddings are; uniform noise cannot be pruned).

Writes an archive of parts holding N vectors (the part writer `microrep embed` uses), then
runs `build_index` (what `microrep index` runs) with the kind chosen for N, and prints the
figures index.json records: recall@10 of held-out queries against an exact scan of every
part, milliseconds a query on this machine, and bytes a vector.

    python benchmarks/index_scale.py --sizes 1000000 10000000
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microrep.embedding.index import build_index  # noqa: E402
from microrep.embedding.manifest import publish_manifest  # noqa: E402
from microrep.embedding.parts import PROVENANCE, PartWriter  # noqa: E402
from microrep.fileio import write_json  # noqa: E402


def write_archive(folder, count, dim=64, clusters=4096, part_size=1_000_000, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32) * 3
    table = pd.DataFrame({"path": np.char.add("/archive/", np.arange(count).astype(str)),
                          "label": "", "group": np.arange(count).astype(str)})
    info = publish_manifest(folder, table, "/", part_size,
                            {"data": "images", "location": "/archive", "reader": "image", "task": ""})
    identity = {"model": "benchmark", "settings": "benchmark", "manifest": info["sha256"]}
    write_json(Path(folder) / PROVENANCE, identity)
    for part in range(info["parts"]):
        rows = range(part * part_size, min((part + 1) * part_size, count))
        vectors = centres[rng.integers(0, clusters, len(rows))]
        vectors += rng.normal(size=vectors.shape).astype(np.float32)
        writer = PartWriter(folder, part, rows, dim)
        writer.put(0, vectors)
        writer.finish(table.iloc[rows.start:rows.stop], {}, identity)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--target-recall", type=float, default=0.95)
    args = parser.parse_args()
    for count in args.sizes:
        with tempfile.TemporaryDirectory(prefix="microrep-index-") as folder:
            started = time.perf_counter()
            write_archive(Path(folder) / "emb", count)
            written_s = time.perf_counter() - started
            info = build_index(Path(folder) / "emb", Path(folder) / "index",
                               target_recall=args.target_recall, log=lambda _: None)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{count:>11,d} vectors: {info['faiss']} nprobe {info['nprobe']}, built in "
              f"{info['build_s']:.0f} s (archive written in {written_s:.0f} s), "
              f"{info['bytes'] / count:.0f} bytes a vector ({info['bytes'] / 1e9:.2f} GB); "
              f"recall@10 {info['recall_at_10']:.3f} vs exact on {info['held_out_queries']} held-out "
              f"queries at {info['query_ms']:.2f} ms a query (target {args.target_recall}); "
              f"peak memory so far {peak / 1024:.1f} GiB", flush=True)


if __name__ == "__main__":
    main()
