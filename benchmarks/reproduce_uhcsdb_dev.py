"""Run `microrep reproduce` on the UHCSDB development copy and print the results table.

Measures progress on real data instead of assuming it. Uses the ImageNet VGG16
weights file from ../shared/weights when present (else --weights). The settings are
the command's CPU defaults (`--preset cpu`: the frozen recipe at full resolution, on any
machine), `--quick`'s with --quick, the paper's fine-tuning with --full.

    python benchmarks/reproduce_uhcsdb_dev.py                 # CPU, the faithful path
    python benchmarks/reproduce_uhcsdb_dev.py --quick         # the few-minute smoke settings
    python benchmarks/reproduce_uhcsdb_dev.py --full          # fine-tuning per fold, for a GPU
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from microrep.config import ReproduceConfig, from_dict  # noqa: E402
from microrep.config.presets import reproduce_preset  # noqa: E402

SHARED = ROOT.parent / "shared"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(SHARED / "data" / "uhcsdb-dev"))
    parser.add_argument("--weights", default=str(SHARED / "weights" / "vgg16_imagenet_notop.weights.h5"))
    parser.add_argument("--out", default="runs/reproduce-uhcsdb-dev")
    parser.add_argument("--full", action="store_true", help="fine-tune per fold (--preset gpu)")
    parser.add_argument("--quick", action="store_true", help="reproduce --quick's settings")
    parser.add_argument("--feature-cache", default=None, help="feature cache folder (default: "
                        "the command's own)")
    parser.add_argument("--tasks", default="3phase,constituent,processing")
    parser.add_argument("--processing-images", type=int, default=10,
                        help="DeCost et al.'s images per processing condition (0: every condition)")
    parser.add_argument("--processing-pca", type=int, default=64, help="0: no PCA before the SVM")
    args = parser.parse_args()
    if not Path(args.data_dir, "microstructures.sqlite").is_file():
        sys.exit(f"no UHCSDB copy at {args.data_dir}; pass --data-dir")
    weights = args.weights if Path(args.weights).is_file() or args.weights in ("imagenet", "none") else "imagenet"
    from microrep.commands.reproduce import reproduce

    train = {"data": {"data": "uhcsdb", "data_dir": args.data_dir}, "model": {"weights": weights}}
    if args.full:
        train["preset"] = "gpu"
    if args.feature_cache is not None:
        train["feature_cache"] = args.feature_cache
    values, base = reproduce_preset({"train": train, "out": args.out, "tasks": args.tasks,
                                     "quick": args.quick,
                                     "processing_images": args.processing_images,
                                     "processing_pca": args.processing_pca}, accelerator=None)
    config = from_dict(ReproduceConfig, values, base=base)
    started = time.time()
    table = reproduce(config)
    print(f"\nUHCSDB development copy, {time.time() - started:.0f} s, weights {weights}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
