"""Which view of a micrograph: tiles at native resolution against the whole frame, on more
than one domain, pretrained and learned, on held-out splits.

For each view asked for, the VGG16 features of every image are computed once (cached),
then `commands.heldout.compare_on_splits` trains the recipe's head on one half of each
seeded split and scores it, the pretrained features (block4_conv3) and the recipe's input
on the other half (linear SVM accuracy, mean over seeds). Domains:

- `uhcsdb`: the UHCSDB development copy (645 x 481 frames), split within and disjoint;
- `synthetic`: microrep's generated SEM micrographs at --image-size px (1024, 2048: the
  frames UHCSDB does not have), split disjoint by sample;
- `--csv FILE`: any labelled list of micrographs (path,label[,group]), split disjoint by
  group; `benchmarks/metaldam_task.py` writes one for MetalDAM's 1024 x 703 SEM frames.

`--um-per-px` rescales UHCSDB micrographs to one pixel size first (physical scale).

    python benchmarks/views.py --domain uhcsdb --views tiles,frame
    python benchmarks/views.py --domain synthetic --image-size 1024 --views tiles,frame
    python benchmarks/views.py --domain uhcsdb --views frame --um-per-px 0.2 --um-per-px-limit 2
    python benchmarks/views.py --csv /tmp/metaldam-task/metaldam.csv --seeds 0 1 2 3 4
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microrep.analysis.heldout import summarise_splits  # noqa: E402
from microrep.commands.heldout import compare_on_splits  # noqa: E402
from microrep.config import DataConfig  # noqa: E402
from microrep.data import load_dataset  # noqa: E402
from heldout_uhcsdb_dev import dev_arguments, train_config  # noqa: E402  (beside this script)

#: --views names: the view settings each stands for.
VIEWS = {"tiles": {"view": "tiles", "grid": "3"},
         "frame": {"view": "frame", "scales": "1,0.71,0.5"},
         "frame1": {"view": "frame", "scales": "1"},
         "frame0.5": {"view": "frame", "scales": "0.5"}}


def dataset_of(args):
    if args.csv:
        return load_dataset(DataConfig(data="csv", data_dir=args.csv, min_class_size=1))
    if args.domain == "uhcsdb":
        return load_dataset(DataConfig(data="uhcsdb", data_dir=args.data_dir, min_class_size=1,
                                       um_per_px=args.um_per_px,
                                       um_per_px_limit=args.um_per_px_limit))
    folder = Path(tempfile.gettempdir()) / f"microrep-synthetic-{args.image_size}"
    return load_dataset(DataConfig(data="synthetic", data_dir=str(folder), task="constituent",
                                   synthetic_image_size=args.image_size,
                                   synthetic_samples_per_class=4, synthetic_images_per_sample=4,
                                   synthetic_seed=11))


def main():
    parser = dev_arguments(__doc__.splitlines()[0])
    parser.add_argument("--domain", default="uhcsdb", choices=("uhcsdb", "synthetic"))
    parser.add_argument("--csv", default="", help="a labelled CSV of micrographs instead of --domain")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--um-per-px", type=float, default=0.0)
    parser.add_argument("--um-per-px-limit", type=float, default=4.0)
    parser.add_argument("--views", default="tiles,frame")
    parser.add_argument("--kinds", default="")
    args = parser.parse_args()
    dataset = dataset_of(args)
    kinds = tuple(args.kinds.split(",")) if args.kinds else \
        (("within", "disjoint") if args.domain == "uhcsdb" and not args.csv else ("disjoint",))
    tasks = ("constituent", "3phase", "processing") if args.domain == "uhcsdb" and not args.csv \
        else ("constituent",)
    shape = dataset.read(0).shape
    print(f"{args.csv or args.domain}: {len(dataset)} images (the first {shape[1]} x {shape[0]} px)"
          + (f", resampled to {args.um_per_px} um/px (by at most {args.um_per_px_limit:g}x)"
             if args.um_per_px else ""))
    for note in dataset.notes:
        print(f"note: {note}")
    for name in args.views.split(","):
        base = list(args.set)
        args.set = base + [f"image_view.{key}={value}" for key, value in VIEWS[name].items()]
        config = train_config(args, Path(tempfile.mkdtemp(prefix="microrep-views-")) / "run")
        args.set = base
        started = time.time()
        rows, timings = compare_on_splits(config, dataset, args.seeds, kinds=kinds, tasks=tasks,
                                          log=lambda line: None)
        table = summarise_splits(rows.query("metric == 'linear SVM'")) * 100
        print(f"\nview {name} ({VIEWS[name]}): features {timings['features_s'] / len(dataset):.2f} s "
              f"per image (0 when cached), head {np.mean(timings['head_s']):.0f} s per split, "
              f"{time.time() - started:.0f} s in all; linear SVM accuracy %, mean over seeds "
              f"{args.seeds}")
        print(table.round(1).to_string())


if __name__ == "__main__":
    main()
