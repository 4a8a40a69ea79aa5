"""Which pooling of the VGG16 maps: every registered pooling, pretrained and learned, on
held-out splits of the UHCSDB development copy, with the time and disk each costs.

For each pooling, the frozen base's features of every image are computed under the run's
view (the whole frame at scales 1, 0.71, 0.5 by default) into a cache folder of its own
(so its disk is measured), a pooling with state being fitted first on a seeded subsample
(embedding/pool_fit.py); then `commands.heldout.compare_on_splits` trains the recipe's head
on one half of each seeded split and scores pretrained, recipe input and learned on the
other half: linear and RBF SVM accuracy and MAP@R, mean over seeds.

    python benchmarks/poolings.py --poolings mean,meanstd,gram,vlad --seeds 0 1 2
    python benchmarks/poolings.py --poolings gem --set feature_bank=16
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


def disk_bytes(folder):
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def main():
    parser = dev_arguments(__doc__.splitlines()[0])
    parser.add_argument("--poolings", default="mean,meanstd,gem,gram,vlad,netvlad")
    parser.add_argument("--cache-root", default=str(Path(tempfile.gettempdir()) / "microrep-poolings"))
    args = parser.parse_args()
    dataset = load_dataset(DataConfig(data="uhcsdb", data_dir=args.data_dir, min_class_size=1))
    base = list(args.set) or ["feature_bank=0"]
    for pooling in args.poolings.split(","):
        cache = Path(args.cache_root) / pooling
        args.set, args.feature_cache = base + [f"model.pooling={pooling}"], str(cache)
        config = train_config(args, Path(tempfile.mkdtemp(prefix="microrep-poolings-")) / "run")
        started = time.time()
        rows, timings = compare_on_splits(config, dataset, args.seeds, log=lambda line: None)
        table = summarise_splits(rows) * 100
        print(f"\npooling {pooling} ({' '.join(args.set)}): features {timings['features_s']:.0f} s "
              f"for {len(dataset)} images (about 1 s when cached), cache {disk_bytes(cache) / 1e6:,.0f} MB, "
              f"head {np.mean(timings['head_s']):.0f} s per split, {time.time() - started:.0f} s in "
              f"all; mean over seeds {args.seeds}")
        print(table[["pretrained", "learned", "difference"]].round(1).to_string())


if __name__ == "__main__":
    main()
