"""Beyond one database: a model trained on UHCSDB, embedding micrographs of another kind.

A lab's micrographs are not UHCSDB's. This trains `microrep train --preset cpu` on the
whole UHCSDB development copy, then embeds a different, labelled set it never saw:
microrep's synthetic SEM micrographs (their own generator, seed and image size; seven
classes, martensite among them, which UHCSDB's dev copy does not hold), with the trained
tower and with `embed --pretrained` (block4_conv3). Both are scored the same way on the
synthetic labels: linear-SVM accuracy under sample-grouped cross-validation, and MAP@R
leaving out each query's own sample. The learned embedding may lose here; the point is
to know.

    python benchmarks/beyond_uhcsdb.py [--seeds 0 1 2]
"""

import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microrep.analysis.retrieval import retrieval_metrics  # noqa: E402
from microrep.analysis.svm import cross_validate, cv_splits  # noqa: E402
from microrep.commands.embed import run_embed_stage  # noqa: E402
from microrep.config import DataConfig, EmbedConfig, ModelConfig  # noqa: E402
from microrep.data import load_dataset  # noqa: E402
from microrep.embedding.archive import read_embeddings  # noqa: E402
from microrep.training import train  # noqa: E402
from heldout_uhcsdb_dev import dev_arguments, train_config  # noqa: E402  (beside this script)


def scores(vectors, labels, groups, seed):
    """Grouped 4-fold linear-SVM accuracy and MAP@R among other samples."""
    splits = cv_splits(labels, folds=4, groups=groups, seed=seed)
    retrieval = retrieval_metrics(vectors, labels, query_groups=groups, reference_groups=groups)
    return {"linear SVM (grouped CV)": cross_validate(vectors, labels, splits).mean,
            "MAP@R other samples": retrieval["other_samples"]["map_at_r"]}


def main():
    parser = dev_arguments(__doc__.splitlines()[0])
    parser.add_argument("--synthetic-size", type=int, default=320, help="synthetic image side (px)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        config = train_config(args, Path(scratch) / "run")
        train(config, load_dataset(DataConfig(data="uhcsdb", data_dir=args.data_dir, min_class_size=1)),
              verbose=0)
        other = DataConfig(data="synthetic", data_dir=str(Path(scratch) / "synthetic"), synthetic_seed=7,
                           synthetic_samples_per_class=4, synthetic_images_per_sample=5,
                           synthetic_image_size=args.synthetic_size)
        run_embed_stage(EmbedConfig(data=other, model_path=config.out, out=f"{scratch}/learned"),
                        log=lambda _: None)
        base = ModelConfig(weights=args.weights, vgg_blocks=4, feature_layers="block4_conv3",
                           train_base=False, mixed_precision=config.model.mixed_precision)
        run_embed_stage(EmbedConfig(data=other, pretrained=True, model=base, out=f"{scratch}/pretrained"),
                        log=lambda _: None)
        rows = []
        for method in ("pretrained", "learned"):
            vectors, table = read_embeddings(f"{scratch}/{method}")
            labels, groups = table["label"].astype(str).to_numpy(), table["group"].astype(str).to_numpy()
            for seed in args.seeds:
                for metric, value in scores(vectors, labels, groups, seed).items():
                    rows.append(dict(method=method, seed=seed, metric=metric, value=value))
    table = pd.DataFrame(rows).groupby(["metric", "method"])["value"].mean().unstack("method")
    table["difference"] = table["learned"] - table["pretrained"]
    print(f"\nsynthetic micrographs ({len(labels)} images, {len(set(labels))} classes, "
          f"{len(set(groups))} samples), trained on UHCSDB dev only; mean over CV seeds {args.seeds} (%):")
    print((100 * table).round(1).to_string())


if __name__ == "__main__":
    main()
