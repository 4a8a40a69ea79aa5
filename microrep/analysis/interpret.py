"""Test the paper's reading of the embedding's principal components.

The paper reads PC1 as particle morphology (spherical to needle-like) and PC2
as isotropy. Given embeddings (`microrep reproduce` trains one Siamese model on
all images for them: this is description, not classification, so no held-out
fold is needed), we project them on PC1/PC2, measure the descriptors from the
images themselves
(`microrep.analysis.descriptors`) and report Spearman correlations, with
figures. On synthetic data the generator's ground-truth factors give a second,
exact check.
"""

import pandas as pd

from microrep.analysis.descriptors import measure_descriptors, pc_correlations
from microrep.analysis.svm import pca_projection
from microrep.analysis.plots import plot_pc_descriptors, plot_pc_extremes, plot_pca_scatter
from microrep.fileio import write_text

GROUND_TRUTH = ("aspect_ratio", "particle_size", "volume_fraction", "isotropy")


def interpret(embeddings, table, images, out):
    """Write the PCA interpretation figures and tables; return its summary dict.

    `embeddings` (n, d) and `images` (n 2-D arrays) belong to the rows of `table`
    (a Dataset's table: label, and on synthetic data the generator's factors).
    """
    labels = table["label"].astype(str).to_numpy()
    scores, explained, _ = pca_projection(embeddings, 2)
    descriptors = measure_descriptors(images)
    correlations = pc_correlations(scores, descriptors).assign(source="measured")
    truth_columns = [c for c in GROUND_TRUTH if c in table.columns]
    if truth_columns:
        truth = table[truth_columns].reset_index(drop=True)
        correlations = pd.concat([correlations, pc_correlations(scores, truth).assign(
            source="ground truth")], ignore_index=True)
    write_text(out / "pc_correlations.csv", correlations.to_csv(index=False))
    figures = {
        "pca_classes": plot_pca_scatter(scores, labels, explained, out / "pca_classes.png",
                                        "Siamese embedding on PC1/PC2"),
        "pc_descriptors": plot_pc_descriptors(scores, descriptors, out / "pc_descriptors.png"),
        "pc_extremes": plot_pc_extremes(scores, images, out / "pc_extremes.png"),
    }
    return {"explained_variance": [float(v) for v in explained], "correlations": correlations,
            "figures": {name: path.name for name, path in figures.items()}}


def strongest(correlations, pc):
    """The descriptor most correlated (in absolute value) with a PC, per source."""
    part = correlations[correlations["pc"] == pc].dropna(subset=["spearman"])
    if part.empty:
        return None
    return part.loc[part["spearman"].abs().idxmax()]
