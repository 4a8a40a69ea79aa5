"""Embedding an archive at scale: two parts' processes in parallel vs one, and memory per
process as the archive grows, measured in one run with a tiny tower on generated images.

For each archive size asked for (default 10^4 and 10^5 images of 48x48 px), writes the
images into a folder tree, then runs the real command, `python -m microrep embed
--pretrained --weights none --vgg-blocks 1 --input-size 32`, as

- one process over every part, and
- two processes at once (--num-shards 2 --shard-index 0/1) on the same archive,

and prints images/s of each (wall clock, process start-up included), their ratio, and
the peak resident memory of each process (from wait4), which must not grow with the
archive: parts are streamed from the files and written through memory maps.

    python benchmarks/archive_scale.py --sizes 10000 100000
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

TINY = ["embed", "--pretrained", "--weights", "none", "--vgg-blocks", "1", "--input-size", "32",
        "--feature-layers", "", "--grid", "1", "--batch-size", "256"]


def write_images(root, count, seed=0):
    """`count` 48x48 PNGs in sub-folders of 1,000 (a lab's tree by date, say)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    for index in range(count):
        folder = root / f"batch-{index // 1000:04d}"
        if index % 1000 == 0:
            folder.mkdir(parents=True)
        y, x = rng.integers(0, 16, 2)
        Image.fromarray(base[y:y + 48, x:x + 48]).save(folder / f"{index:07d}.png")


def run(argv_list):
    """Start the commands at once; (wall seconds, peak RSS MiB of each) when all have ended."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    logs = [tempfile.TemporaryFile() for _ in argv_list]
    children = [subprocess.Popen([sys.executable, "-m", "microrep", *argv], env=env,
                                 stdout=log, stderr=subprocess.STDOUT)
                for argv, log in zip(argv_list, logs)]
    peaks = []
    for child in children:
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            log = logs[children.index(child)]
            log.seek(0)
            raise SystemExit(f"microrep embed failed: {log.read().decode()[-2000:]}")
        peaks.append(usage.ru_maxrss / 1024)
    return time.perf_counter() - started, peaks


def measure(count, part_size):
    with tempfile.TemporaryDirectory(prefix="microrep-scale-") as folder:
        root = Path(folder) / "images"
        write_images(root, count)
        common = [*TINY, "--images", str(root), "--part-size", str(part_size)]
        one_s, one_peak = run([[*common, "--out", f"{folder}/one"]])
        # the manifest is listed once, before the two shards start (as a launcher does)
        run([[*common, "--out", f"{folder}/two", "--parts", "0"]])
        two_s, two_peaks = run([[*common, "--out", f"{folder}/two", "--num-shards", "2",
                                 "--shard-index", str(k)] for k in range(2)])
    return {"images": count, "one_images_per_s": count / one_s, "two_images_per_s": count / two_s,
            "one_peak_mib": one_peak[0], "two_peak_mib": max(two_peaks)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--part-size", type=int, default=5000)
    args = parser.parse_args()
    rows = [measure(count, args.part_size) for count in args.sizes]
    for row in rows:
        print(f"{row['images']:>9,d} images: one process {row['one_images_per_s']:.0f} images/s, "
              f"two parts in parallel {row['two_images_per_s']:.0f} images/s "
              f"(x{row['two_images_per_s'] / row['one_images_per_s']:.2f}); peak memory per "
              f"process {row['one_peak_mib']:.0f} MiB (one), {row['two_peak_mib']:.0f} MiB (two)")
    if len(rows) > 1:
        print(f"peak memory, {rows[-1]['images']:,d} vs {rows[0]['images']:,d} images: "
              f"x{rows[-1]['one_peak_mib'] / rows[0]['one_peak_mib']:.2f} (1.0: flat in the archive size)")


if __name__ == "__main__":
    main()
