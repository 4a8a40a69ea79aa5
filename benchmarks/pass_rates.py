"""Long passes as a share of the model-only rate, and what bfloat16 costs in accuracy.

Prints, in one run on this machine:

1. the model-only rate of `embed --pretrained`'s network (VGG16 to block4_conv3, 224-px
   tiles already cut and in memory, `predict_on_batch` only), in float32 and in mixed
   bfloat16;
2. the whole `microrep embed --pretrained` pass (listing, decoding, tiling, the model,
   writing the archive) on the first N micrographs of the UHCSDB dev copy, in each
   precision, as tiles/s and as a ratio to (1) of the same precision;
3. the feature-cache fill of `train --preset cpu` (bank crops and tiles of every image
   through the recipe's block4+5 feature tower, written to an empty cache) against that
   tower's model-only rate;
4. `microrep embed` of the trained run through its whole tower (no cache) against the
   tower's model-only rate, and from the run's warm feature cache (images/s);
5. `microrep index` of 100,000 clustered 64-d vectors (build, tune nprobe, measure
   recall, write) against faiss adding the same vectors from memory;
6. with --accuracy, every dev micrograph embedded in both precisions and scored on the
   20 seeded held-out `within` splits (linear SVM fit on one half, scored on the other):
   the mean per task in each precision and their difference.

    python benchmarks/pass_rates.py [--images 60] [--accuracy] [--seeds 0 ... 19]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microrep.cli import main  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEV = SHARED / "data" / "uhcsdb-dev"
WEIGHTS = SHARED / "weights" / "vgg16_imagenet_notop.weights.h5"


def model_only_rate(weights, mixed, batch=63, repeats=3):
    """Tiles/s of the pretrained feature tower on tiles already in memory."""
    import dataclasses

    from microrep.config import EmbedConfig
    from microrep.config.stages import pretrained_model_config

    from microrep.training.embedder import embedding_tower

    model = dataclasses.replace(pretrained_model_config(), weights=str(weights), mixed_precision=mixed)
    tower = embedding_tower(EmbedConfig(pretrained=True, model=model))
    tiles = np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 1)).astype(np.uint8)
    tower.predict_on_batch(tiles)  # the graph is built once, outside the timing
    started = time.perf_counter()
    for _ in range(repeats):
        tower.predict_on_batch(tiles)
    return batch * repeats / (time.perf_counter() - started)


def timed_embed(work, name, source, weights, mixed):
    """Seconds of one `microrep embed --pretrained` run in this process (`source`: flags)."""
    started = time.perf_counter()
    flag = "--mixed-precision" if mixed else "--no-mixed-precision"
    code = main(["embed", "--pretrained", *source, "--weights", str(weights),
                 flag, "--out", str(work / name)])
    assert code == 0, f"embed {name} failed"
    return time.perf_counter() - started


def first_images_csv(data_dir, count, out):
    """A CSV (path,label,group) of the first `count` dev micrographs (all with count 0)."""
    from microrep.config import DataConfig
    from microrep.data import load_dataset

    dataset = load_dataset(DataConfig(data="uhcsdb", data_dir=str(data_dir), task="constituent"))
    table = dataset.table if count <= 0 else dataset.table.iloc[:count]
    paths = [str(dataset.root / p) if not Path(p).is_absolute() else p for p in table["path"]]
    table.assign(path=paths)[["path", "label", "group"]].to_csv(out, index=False)
    return dataset, table


def index_ratio(work, count=100_000, dim=64):
    """(vectors/s of `microrep index`, vectors/s of faiss adding them from memory)."""
    import faiss
    import pandas as pd

    from microrep.embedding.archive import write_embeddings

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(64, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 64, count)] + 0.3 * rng.normal(size=(count, dim)).astype(np.float32)
    table = pd.DataFrame({"path": [f"/v/{i}" for i in range(count)], "label": "", "group": ""})
    write_embeddings(work / "vectors", vectors, table)
    started = time.perf_counter()
    assert main(["index", str(work / "vectors"), "--out", str(work / "index")]) == 0
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    faiss.IndexFlatL2(dim).add(vectors)
    return count / seconds, count / max(time.perf_counter() - started, 1e-9)


def feature_tower_rate(tower, batch=50, repeats=2):
    tiles = np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 1)).astype(np.uint8)
    tower.predict_on_batch(tiles)
    started = time.perf_counter()
    for _ in range(repeats):
        tower.predict_on_batch(tiles)
    return batch * repeats / (time.perf_counter() - started)


def recipe_passes(work, data_dir, weights, count):
    """The feature-cache fill and a trained run's embed, each against its model-only rate."""
    from microrep.config import DataConfig, TrainConfig, apply_preset, from_dict
    from microrep.data import load_dataset
    from microrep.training.embedder import embedding_tower
    from microrep.config import EmbedConfig
    from microrep.nn.backbone import dtype_policy, policy_for
    from microrep.nn.tower import build_feature_tower
    from microrep.training import train
    from microrep.training.frozen import GRID, frozen_features

    dataset = load_dataset(DataConfig(data="uhcsdb", data_dir=str(data_dir)))
    dataset = dataset.subset(np.arange(count))
    config = from_dict(TrainConfig, apply_preset({
        "preset": "cpu", "data": {"data": "uhcsdb", "data_dir": str(data_dir)},
        "model": {"weights": str(weights)}, "feature_cache": str(work / "cache"),
        "out": str(work / "run"), "epochs": 1, "overwrite": True}))
    with dtype_policy(policy_for(config.model.mixed_precision)):
        rate = feature_tower_rate(build_feature_tower(config.model))
    crops = count * (config.feature_bank + GRID * GRID)
    started = time.perf_counter()
    features = frozen_features(config, dataset.images(), lambda _: None)
    seconds = time.perf_counter() - started
    print(f"feature cache fill ({policy_for(config.model.mixed_precision)}): model only "
          f"{rate:.1f} crops/s; whole pass {crops / seconds:.1f} crops/s ({seconds:.0f} s) = "
          f"{crops / seconds / rate:.0%} of the model-only rate")
    train(config, dataset, verbose=0, features=features)
    tower = embedding_tower(EmbedConfig(model_path=str(work / "run" / "tower.keras")))
    rate = feature_tower_rate(tower)
    pd_csv = work / "first.csv"
    started = time.perf_counter()
    assert main(["embed", "--csv", str(pd_csv), "--model-path", str(work / "run" / "tower.keras"),
                 "--out", str(work / "embed-tower")]) == 0
    seconds = time.perf_counter() - started
    print(f"embed of the trained run through its whole tower: model only {rate:.1f} tiles/s; "
          f"whole pass {count * 9 / seconds:.1f} tiles/s ({seconds:.0f} s) = "
          f"{count * 9 / seconds / rate:.0%} of the model-only rate")
    started = time.perf_counter()
    assert main(["embed", "--csv", str(pd_csv), "--model-path", str(work / "run"),
                 "--out", str(work / "embed-cache")]) == 0
    print(f"embed of the trained run from its warm feature cache: "
          f"{count / (time.perf_counter() - started):.1f} images/s")


def accuracy_check(work, data_dir, weights, seeds):
    """Mean held-out accuracy per task, bfloat16 vs float32 archives of every dev image."""
    import pandas as pd

    from microrep.analysis.heldout import score_embedding, split_mask
    from microrep.embedding.archive import read_embeddings

    from microrep.config import DataConfig
    from microrep.data import load_dataset

    dataset = load_dataset(DataConfig(data="uhcsdb", data_dir=str(data_dir)))
    rows = []
    for name, mixed in (("bfloat16", True), ("float32", False)):
        seconds = timed_embed(work, f"all-{name}", ["--data", "uhcsdb", "--data-dir", str(data_dir)],
                              weights, mixed)
        vectors, table = read_embeddings(work / f"all-{name}")
        assert len(vectors) == len(dataset.table), "every dev image embeds"
        print(f"  every dev image, {name}: {seconds:.0f} s")
        for seed in seeds:
            fit = split_mask("within", dataset, seed)
            for (task, metric), value in score_embedding(dataset.table, vectors, fit).items():
                rows.append(dict(precision=name, seed=seed, task=task, metric=metric, value=value))
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index=["task", "metric"], columns="precision", values="value") * 100
    table["bf16 - fp32"] = table["bfloat16"] - table["float32"]
    print(table.round(2).to_string())


def run(args):
    from microrep.device import cpu_has_native_bfloat16

    work = Path(tempfile.mkdtemp(prefix="microrep-pass-rates-"))
    first_images_csv(args.data_dir, args.images, work / "first.csv")
    tiles = args.images * 9
    print(f"CPU bfloat16 native: {cpu_has_native_bfloat16()}; {args.images} micrographs x 9 tiles")
    for name, mixed in (("bfloat16", True), ("float32", False)):
        rate = model_only_rate(args.weights, mixed)
        seconds = timed_embed(work, name, ["--csv", str(work / "first.csv")], args.weights, mixed)
        print(f"embed --pretrained, {name}: model only {rate:.1f} tiles/s; whole pass "
              f"{tiles / seconds:.1f} tiles/s ({seconds:.0f} s) = {tiles / seconds / rate:.0%} "
              "of the model-only rate")
    recipe_passes(work, args.data_dir, args.weights, args.images)
    built, raw = index_ratio(work)
    print(f"index of 100,000 vectors: {built:.0f} vectors/s (build, tune, measure recall, write) "
          f"vs faiss add {raw:.0f} vectors/s = {built / raw:.2%}")
    if args.accuracy:
        accuracy_check(work, args.data_dir, args.weights, args.seeds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEV))
    parser.add_argument("--weights", default=str(WEIGHTS))
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(20)))
    run(parser.parse_args())
