"""Run `microrep reproduce` on the UHCSDB development copy and print the results table.

Measures progress on real data instead of assuming it. Uses the ImageNet VGG16
weights file from ../shared/weights when present (else --weights), and the
--quick settings unless --full is given.

    python benchmarks/reproduce_uhcsdb_dev.py                 # CPU, minutes
    python benchmarks/reproduce_uhcsdb_dev.py --full          # paper-sized, for a GPU
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from microrep.config import ReproduceConfig, TrainConfig, from_dict, paper_train_config  # noqa: E402

SHARED = ROOT.parent / "shared"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(SHARED / "data" / "uhcsdb-dev"))
    parser.add_argument("--weights", default=str(SHARED / "weights" / "vgg16_imagenet_notop.weights.h5"))
    parser.add_argument("--out", default="runs/reproduce-uhcsdb-dev")
    parser.add_argument("--full", action="store_true", help="paper-sized settings instead of --quick")
    parser.add_argument("--tasks", default="3phase,constituent,processing")
    parser.add_argument("--processing-images", type=int, default=10,
                        help="DeCost et al.'s images per processing condition (0: every condition)")
    parser.add_argument("--processing-pca", type=int, default=64, help="0: no PCA before the SVM")
    args = parser.parse_args()
    if not Path(args.data_dir, "microstructures.sqlite").is_file():
        sys.exit(f"no UHCSDB copy at {args.data_dir}; pass --data-dir")
    weights = args.weights if Path(args.weights).is_file() or args.weights in ("imagenet", "none") else "imagenet"
    from microrep.commands.reproduce import reproduce

    train = from_dict(TrainConfig, {"data": {"data": "uhcsdb", "data_dir": args.data_dir},
                                    "weights": weights}, base=paper_train_config())
    config = ReproduceConfig(train=train, out=args.out, tasks=args.tasks, quick=not args.full,
                             processing_images=args.processing_images,
                             processing_pca=args.processing_pca)
    started = time.time()
    table = reproduce(config)
    print(f"\nUHCSDB development copy, {time.time() - started:.0f} s, weights {weights}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
