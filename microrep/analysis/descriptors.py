"""Morphology descriptors measured from the micrographs themselves.

Why: the paper reads PC1 of the embedding as particle morphology (spherical to
needle-like) and PC2 as isotropy. To test that reading rather than repeat it,
we measure both from each image and correlate them with the principal
components:

- `aspect_ratio`: area-weighted mean major/minor axis ratio of the bright
  (carbide) regions after Otsu thresholding (scikit-image region properties);
- `particle_size`: area-weighted mean equivalent diameter of those regions, px;
- `carbide_fraction`: share of pixels above the threshold;
- `isotropy`: 1 - coherence of the image's structure tensor (1: no preferred
  orientation, 0: everything aligned), averaged over the image.
"""

import numpy as np
import pandas as pd
from scipy import stats
from skimage.feature import structure_tensor
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label, regionprops_table

DESCRIPTORS = ("aspect_ratio", "particle_size", "carbide_fraction", "isotropy")


def particle_descriptors(image, min_area=4):
    """Aspect ratio, size and area fraction of Otsu-thresholded bright regions."""
    smooth = gaussian(image.astype(np.float32) / 255.0, sigma=1.0)
    mask = smooth > threshold_otsu(smooth)
    props = regionprops_table(label(mask), properties=("area", "major_axis_length",
                                                       "minor_axis_length"))
    areas = props["area"].astype(float)
    keep = areas >= min_area
    if not keep.any():
        return {"aspect_ratio": 1.0, "particle_size": 0.0, "carbide_fraction": float(mask.mean())}
    areas = areas[keep]
    weights = areas / areas.sum()
    aspect = props["major_axis_length"][keep] / np.maximum(props["minor_axis_length"][keep], 1.0)
    return {"aspect_ratio": float(np.sum(weights * aspect)),
            "particle_size": float(np.sum(weights * 2 * np.sqrt(areas / np.pi))),
            "carbide_fraction": float(mask.mean())}


def isotropy(image, sigma=2.0):
    """1 - coherence of the structure tensor summed over the image."""
    axx, axy, ayy = structure_tensor(image.astype(np.float32) / 255.0, sigma=sigma, order="rc")
    jxx, jxy, jyy = axx.sum(), axy.sum(), ayy.sum()
    trace = jxx + jyy
    if trace <= 1e-12:
        return 1.0
    return float(1.0 - np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / trace)


def measure_descriptors(images):
    """A DataFrame of DESCRIPTORS, one row per image."""
    rows = []
    for image in images:
        row = particle_descriptors(image)
        row["isotropy"] = isotropy(image)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(DESCRIPTORS))


def pc_correlations(scores, descriptors):
    """Spearman correlation (and p-value) of each PC with each descriptor column."""
    rows = []
    for column in descriptors.columns:
        values = descriptors[column].to_numpy(dtype=float)
        for pc in range(scores.shape[1]):
            if np.std(values) == 0:
                rho, p_value = float("nan"), float("nan")
            else:
                rho, p_value = stats.spearmanr(scores[:, pc], values)
            rows.append({"descriptor": column, "pc": f"PC{pc + 1}", "spearman": float(rho),
                         "p_value": float(p_value)})
    return pd.DataFrame(rows)
