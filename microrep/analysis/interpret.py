"""Test the paper's reading of the embedding's principal components.

The paper reads PC1 as particle morphology (spherical to needle-like) and PC2
as isotropy. We train one Siamese model on all images (this is description,
not classification, so no held-out fold is needed), project its embeddings on
PC1/PC2, measure the descriptors from the images themselves
(`microrep.analysis.descriptors`) and report Spearman correlations, with
figures. On synthetic data the generator's ground-truth factors give a second,
exact check.
"""

import numpy as np
import pandas as pd

from microrep.analysis.descriptors import measure_descriptors, pc_correlations
from microrep.analysis.evaluate import pca_projection
from microrep.analysis.plots import plot_pc_descriptors, plot_pc_extremes, plot_pca_scatter
from microrep.fileio import write_text

GROUND_TRUTH = ("aspect_ratio", "particle_size", "volume_fraction", "isotropy")


def interpret(config, dataset, images, out, log=print, frozen=None):
    """Write the PCA interpretation figures and tables; return its summary dict.

    With `frozen` (FrozenFeatures of a frozen base) only the projection head is
    trained, on the cached crop features.
    """
    from microrep.reproduce import train_and_embed

    log("PCA interpretation: Siamese model on all images, descriptors measured from the images")
    labels = dataset.labels
    every = np.arange(len(images))
    embeddings = train_and_embed(config, images, every, labels, every,
                                 out / "runs" / "interpretation", frozen)
    scores, explained, _ = pca_projection(embeddings, 2)
    descriptors = measure_descriptors(images)
    correlations = pc_correlations(scores, descriptors).assign(source="measured")
    truth_columns = [c for c in GROUND_TRUTH if c in dataset.table.columns]
    if truth_columns:
        truth = dataset.table[truth_columns].reset_index(drop=True)
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
