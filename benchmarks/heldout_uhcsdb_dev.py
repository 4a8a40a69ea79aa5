"""Held-out check on the UHCSDB development copy: does learning beat the pretrained features?

Splits the dev copy in two, trains `microrep train --preset cpu` on one half
only, and scores both embeddings on the other half with SVMs fitted on the
first (the product's `evaluate --test-embeddings`), for every task:

- `within`: every sample on both sides (half of each sample's micrographs each
  way, seeded), as when a new batch of micrographs of known samples arrives; the
  processing-condition task needs it.
- `disjoint`: whole samples on one side (half of each class's samples each way),
  the honest case for the microconstituent tasks.

The baseline is `microrep embed --pretrained` (VGG16 block4_conv3, mean-pooled
over the same 3x3 tiles, ImageNet weights, no training). The VGG16 features of
every image are computed once and cached (`--feature-cache`), so each split only
trains the head; the learned embeddings are the head applied to the cached
tile features, which the tests check equal the assembled tower's.

    python benchmarks/heldout_uhcsdb_dev.py [--data-dir ../shared/data/uhcsdb-dev]
        [--weights ../shared/weights/vgg16_imagenet_notop.weights.h5] [--seeds 0 1 2]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microrep.config import DataConfig, TrainConfig, apply_preset, from_dict  # noqa: E402
from microrep.data import load_dataset  # noqa: E402
from microrep.analysis.heldout import summarise_splits  # noqa: E402
from microrep.commands.heldout import compare_on_splits  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def train_config(args, out):
    """The cpu preset with this machine's weights and cache, and any --set overrides."""
    values = {"preset": "cpu", "model": {"weights": args.weights},
              "feature_cache": args.feature_cache, "out": str(out), "overwrite": True}
    for setting in args.set:
        key, value = setting.split("=", 1)
        node = values
        for part in key.split(".")[:-1]:
            node = node.setdefault(part, {})
        node[key.split(".")[-1]] = value
    return from_dict(TrainConfig, apply_preset(values))


def dev_arguments(description):
    """The flags every benchmark on the dev copy shares: data, weights, cache, seeds, overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", default=str(SHARED / "data" / "uhcsdb-dev"))
    parser.add_argument("--weights", default=str(SHARED / "weights" / "vgg16_imagenet_notop.weights.h5"))
    parser.add_argument("--feature-cache", default=str(Path("~/.cache/microrep/features").expanduser()))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", help="also write the per-split results here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training setting, e.g. --set epochs=20 or "
                             "--set model.head=projection (repeatable)")
    return parser


def main():
    args = dev_arguments(__doc__.splitlines()[0]).parse_args()

    dataset = load_dataset(DataConfig(data="uhcsdb", data_dir=args.data_dir, min_class_size=1))
    config = train_config(args, Path(tempfile.mkdtemp(prefix="microrep-heldout-")) / "run")
    started = time.time()
    rows, timings = compare_on_splits(config, dataset, args.seeds)
    if args.json:
        Path(args.json).write_text(json.dumps(rows.to_dict(orient="records"), indent=1))
    print(f"\nsettings: {' '.join(args.set) or 'the cpu preset'}")
    print(f"held-out, mean over seeds {args.seeds}; features of {len(dataset)} images ready in "
          f"{timings['features_s']:.0f} s (about 1 s when cached); head training "
          f"{np.mean(timings['head_s']):.0f} s per split; {time.time() - started:.0f} s in all")
    print((summarise_splits(rows) * 100).round(1).to_string())


if __name__ == "__main__":
    main()
