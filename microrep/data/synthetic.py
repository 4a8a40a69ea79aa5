"""Procedural SEM-like micrographs of ultrahigh carbon steel, with ground truth.

Why: the demo, the tests and the notebooks need micrographs that anyone can make
in seconds without a download, whose classes look like UHCSDB's primary
microconstituents, and whose physical factors are known exactly, so that the
learned embedding can be checked against them (the paper reads PC1 as particle
morphology and PC2 as isotropy).

Each sample gets a processing condition (anneal temperature, time, cooling
method) that drives its factors: longer and hotter anneals coarsen particles,
faster cooling refines lamellae and laths. Every image records the factors
measured from its own clean carbide mask (particle size, aspect ratio, volume
fraction, orientation isotropy), then is degraded with SEM-like blur, noise,
brightness drift and polishing scratches so the task is not trivial.
"""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from microrep.config import option
from microrep.errors import ConfigError
from microrep.fileio import atomic_path, write_text

#: The primary microconstituent classes of UHCSDB (DeCost et al. 2017).
CLASSES = (
    "spheroidite",
    "network",
    "pearlite",
    "pearlite+spheroidite",
    "spheroidite+widmanstatten",
    "martensite",
    "pearlite+widmanstatten",
)

#: Processing conditions (temperature in C, time in minutes, cooling method)
#: plausible for each class; a sample draws one of them.
CONDITIONS = {
    "spheroidite": [(700, 1440, "FC"), (750, 5100, "FC"), (800, 90, "Q"), (800, 1440, "AR")],
    "network": [(970, 90, "FC"), (1100, 180, "FC"), (1000, 90, "650-1H")],
    "pearlite": [(800, 90, "AR"), (900, 90, "AR"), (900, 5, "650-1H")],
    "pearlite+spheroidite": [(750, 90, "AR"), (800, 5, "AR")],
    "spheroidite+widmanstatten": [(900, 1440, "Q"), (970, 90, "AR")],
    "martensite": [(970, 5, "Q"), (1100, 90, "Q")],
    "pearlite+widmanstatten": [(900, 180, "AR"), (970, 5, "650-1H")],
}

#: How much each cooling method refines structure (smaller is finer).
COOLING_COARSENESS = {"Q": 0.65, "AR": 1.0, "650-1H": 1.25, "FC": 1.5}


@dataclasses.dataclass
class SyntheticConfig:
    """What `make_synthetic_dataset` generates."""

    classes: str = option(",".join(CLASSES), "comma-separated classes to generate")
    samples_per_class: int = option(4, "samples per class (each with its processing condition)",
                                    at_least=1)
    images_per_sample: int = option(5, "micrographs per sample", at_least=1)
    image_size: int = option(160, "image side in pixels", at_least=32)
    seed: int = option(0, "random seed")
    noise: float = option(1.0, "scale of SEM degradations (blur, noise, drift, scratches); 0: clean",
                          at_least=0.0)


def diffusion_index(temperature_c, time_min):
    """A coarsening index that grows with anneal temperature and log time."""
    return math.log10(max(time_min, 1.0)) + (temperature_c - 700.0) / 150.0


# ----------------------------------------------------------------- drawing

def _grid(size):
    coords = np.arange(size, dtype=np.float32)
    return np.meshgrid(coords, coords, indexing="xy")


def draw_ellipses(mask, centers, semi_major, semi_minor, angles):
    """Draw anti-aliased filled ellipses into `mask` (max-composited), in place."""
    height, width = mask.shape
    for (cx, cy), a, b, theta in zip(centers, semi_major, semi_minor, angles):
        reach = int(math.ceil(a)) + 2
        x0, x1 = max(int(cx) - reach, 0), min(int(cx) + reach + 1, width)
        y0, y1 = max(int(cy) - reach, 0), min(int(cy) + reach + 1, height)
        if x0 >= x1 or y0 >= y1:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = xs - cx, ys - cy
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        u = (dx * cos_t + dy * sin_t) / a
        v = (-dx * sin_t + dy * cos_t) / b
        rho = np.sqrt(u * u + v * v)
        alpha = np.clip(0.5 - (rho - 1.0) * b, 0.0, 1.0)
        np.maximum(mask[y0:y1, x0:x1], alpha, out=mask[y0:y1, x0:x1])
    return mask


def _random_particles(rng, size, radius, aspect, fraction, angle_sampler, box=None):
    """Centers and axes of enough particles to cover about `fraction` of the area.

    `box` = (x0, y0, x1, y1) limits the particles to part of the image.
    """
    x0, y0, x1, y1 = box if box is not None else (0, 0, size, size)
    radii = radius * rng.lognormal(0.0, 0.25, size=8192)
    aspects = aspect * rng.lognormal(0.0, 0.15, size=8192)
    areas = np.pi * radii * radii
    count = int(np.searchsorted(np.cumsum(areas), fraction * (x1 - x0) * (y1 - y0))) + 1
    radii, aspects = radii[:count], np.maximum(aspects[:count], 1.0)
    semi_major = radii * np.sqrt(aspects)
    semi_minor = radii / np.sqrt(aspects)
    centers = rng.uniform((x0 - 2, y0 - 2), (x1 + 2, y1 + 2), size=(count, 2))
    return centers, semi_major, semi_minor, angle_sampler(count)


def voronoi_regions(rng, size, mean_cell):
    """Label map and boundary distance of a random Voronoi tessellation."""
    count = max(int((size / mean_cell) ** 2), 2)
    seeds = rng.uniform(0, size, size=(count, 2)).astype(np.float32)
    xs, ys = _grid(size)
    dist = np.sqrt((xs[..., None] - seeds[:, 0]) ** 2 + (ys[..., None] - seeds[:, 1]) ** 2)
    order = np.argsort(dist, axis=-1)
    labels = order[..., 0]
    nearest = np.take_along_axis(dist, order[..., :2], axis=-1)
    return labels, (nearest[..., 1] - nearest[..., 0]) / 2.0


def draw_lamellae(rng, size, labels, spacing, fraction):
    """Pearlite: parallel carbide lamellae with one orientation per colony."""
    xs, ys = _grid(size)
    waviness = ndimage.gaussian_filter(rng.normal(size=(size, size)), size / 10)
    waviness *= 2.0 / (waviness.std() + 1e-6)
    mask = np.zeros((size, size), np.float32)
    for region in np.unique(labels):
        theta = rng.uniform(0, np.pi)
        local_spacing = spacing * rng.lognormal(0.0, 0.15)
        phase = (xs * math.cos(theta) + ys * math.sin(theta)) / local_spacing
        wave = 0.5 + 0.5 * np.cos(2 * np.pi * phase + waviness + rng.uniform(0, 2 * np.pi))
        layer = np.clip((wave - (1.0 - fraction)) * local_spacing, 0.0, 1.0)
        inside = labels == region
        mask[inside] = layer[inside]
    return mask


def draw_spheroids(rng, size, radius, fraction):
    """Spheroidite: dispersed rounded carbide particles."""
    mask = np.zeros((size, size), np.float32)
    parts = _random_particles(rng, size, radius, 1.2, fraction,
                              lambda n: rng.uniform(0, np.pi, n))
    return draw_ellipses(mask, *parts)


def draw_needles(rng, size, length, width, fraction):
    """Widmanstatten: long carbide needles in two or three orientation families."""
    mask = np.zeros((size, size), np.float32)
    families = rng.uniform(0, np.pi) + np.arange(rng.integers(2, 4)) * np.pi / 3

    def angles(count):
        return rng.choice(families, count) + rng.normal(0, 0.06, count)

    radius = math.sqrt(length * width)
    parts = _random_particles(rng, size, radius, length / width, fraction, angles)
    return draw_ellipses(mask, *parts)


def draw_laths(rng, size, width, packet_size):
    """Martensite: packets of fine parallel laths of varying contrast."""
    labels, _ = voronoi_regions(rng, size, packet_size)
    mask = np.zeros((size, size), np.float32)
    for region in np.unique(labels):
        inside = labels == region
        ys, xs = np.nonzero(inside)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        layer = np.zeros((size, size), np.float32)
        theta = rng.uniform(0, np.pi)
        parts = _random_particles(rng, size, width * 2.5, 7.0, 0.45,
                                  lambda n: theta + rng.normal(0, 0.05, n), box)
        draw_ellipses(layer, *parts)
        mask[inside] = layer[inside] * rng.uniform(0.5, 1.0)
    return mask


def draw_network(rng, size, grain_size, thickness, interior_radius):
    """Network: carbide films along prior austenite grain boundaries."""
    labels, boundary_distance = voronoi_regions(rng, size, grain_size)
    film = np.clip(thickness / 2 - boundary_distance + 0.5, 0.0, 1.0)
    interior = 0.6 * draw_spheroids(rng, size, interior_radius, 0.08)
    return np.maximum(film, interior), labels


def _mix(rng, size, cell, first, second, share):
    """Combine two masks by colony: each Voronoi region shows one of them."""
    labels, _ = voronoi_regions(rng, size, cell)
    chosen = rng.random(labels.max() + 1) < share
    return np.where(chosen[labels], first, second)


# ----------------------------------------------------------------- factors

def structure_isotropy(mask):
    """1 - coherence of the mask's global structure tensor (1 = isotropic)."""
    smooth = ndimage.gaussian_filter(mask.astype(np.float64), 1.0)
    gy, gx = np.gradient(smooth)
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    trace = jxx + jyy
    if trace <= 1e-12:
        return 1.0
    coherence = math.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / trace
    return float(1.0 - coherence)


def particle_factors(mask):
    """Mean equivalent diameter and aspect ratio of the connected carbide regions."""
    binary = mask > 0.5
    labels, count = ndimage.label(binary)
    if count == 0:
        return 0.0, 1.0
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(binary, labels, index)
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    mean_x = np.bincount(lab, xs)[1:] / areas
    mean_y = np.bincount(lab, ys)[1:] / areas
    dx, dy = xs - mean_x[lab - 1], ys - mean_y[lab - 1]
    cxx = np.bincount(lab, dx * dx)[1:] / areas + 1 / 12
    cyy = np.bincount(lab, dy * dy)[1:] / areas + 1 / 12
    cxy = np.bincount(lab, dx * dy)[1:] / areas
    spread = np.sqrt(((cxx - cyy) / 2) ** 2 + cxy ** 2)
    major, minor = (cxx + cyy) / 2 + spread, np.maximum((cxx + cyy) / 2 - spread, 1e-6)
    weights = areas / areas.sum()
    diameter = float(np.sum(weights * 2 * np.sqrt(areas / np.pi)))
    aspect = float(np.sum(weights * np.sqrt(major / minor)))
    return diameter, aspect


def measure_factors(mask):
    """Ground-truth factors measured from a clean carbide mask."""
    diameter, aspect = particle_factors(mask)
    return {
        "particle_size": diameter,
        "aspect_ratio": aspect,
        "volume_fraction": float(mask.mean()),
        "isotropy": structure_isotropy(mask),
    }


# ----------------------------------------------------------------- classes

def carbide_mask(rng, constituent, condition, size):
    """The clean carbide mask (0..1) of one micrograph of `constituent`."""
    temperature, time_min, cooling = condition
    coarsening = diffusion_index(temperature, time_min)
    refine = COOLING_COARSENESS[cooling]
    radius = 1.2 + 0.55 * coarsening
    spacing = 3.2 * refine + 0.3 * coarsening
    needle_length = 9.0 + 2.0 * coarsening

    def part(name):
        if name == "spheroidite":
            return draw_spheroids(rng, size, radius, rng.uniform(0.14, 0.22))
        if name == "pearlite":
            labels, _ = voronoi_regions(rng, size, size / 3)
            return draw_lamellae(rng, size, labels, spacing, 0.32)
        if name == "widmanstatten":
            return draw_needles(rng, size, needle_length, 1.3 * refine, 0.16)
        if name == "martensite":
            return draw_laths(rng, size, 0.9 * refine, size / 2.5)
        if name == "network":
            return draw_network(rng, size, size / 2.5, 1.5 + 0.4 * coarsening, radius * 0.7)[0]
        raise ValueError(f"unknown constituent {name!r}")

    names = constituent.split("+")
    if len(names) == 1:
        return part(names[0])
    if "widmanstatten" in names:
        # needles grow across the matrix constituent rather than in separate colonies
        return np.maximum(part(names[0]), part(names[1]))
    return _mix(rng, size, size / 2.5, part(names[0]), part(names[1]), 0.5)


def sem_render(rng, mask, noise=1.0):
    """Turn a carbide mask into an SEM-like uint8 image.

    Carbide is bright on a darker etched ferrite matrix, with secondary-electron
    edge brightening, probe blur, a brightness/contrast drift across the field,
    faint polishing scratches and shot noise.
    """
    size = mask.shape[0]
    matrix_gray = rng.uniform(0.22, 0.38)
    carbide_gray = matrix_gray + rng.uniform(0.3, 0.45)
    image = matrix_gray + (carbide_gray - matrix_gray) * mask
    edges = ndimage.gaussian_gradient_magnitude(mask, 0.8)
    image = image + 0.35 * edges
    xs, ys = _grid(size)
    if noise > 0:
        image = ndimage.gaussian_filter(image, rng.uniform(0.4, 1.0) * noise)
        tilt = rng.normal(0, 0.08 * noise, size=2)
        image = image * (1 + rng.normal(0, 0.12 * noise)) + (
            tilt[0] * (xs / size - 0.5) + tilt[1] * (ys / size - 0.5))
        for _ in range(rng.poisson(2 * noise)):
            theta = rng.uniform(0, np.pi)
            offset = rng.uniform(-size / 2, size / 2)
            distance = np.abs((xs - size / 2) * math.sin(theta)
                              - (ys - size / 2) * math.cos(theta) - offset)
            image = image - rng.uniform(0.03, 0.08) * noise * np.exp(-distance ** 2)
        image = image + rng.normal(0, rng.uniform(0.04, 0.09) * noise, size=image.shape)
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def generate_micrograph(rng, constituent, condition, size=160, noise=1.0):
    """One synthetic micrograph: (uint8 image, ground-truth factors)."""
    mask = carbide_mask(rng, constituent, condition, size).astype(np.float32)
    return sem_render(rng, mask, noise), measure_factors(mask)


def class_list(classes):
    """The classes of a comma-separated string, checked against CLASSES."""
    names = [name.strip() for name in classes.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONDITIONS]
    if unknown or not names:
        raise ConfigError(f"unknown synthetic class(es) {', '.join(unknown) or '(none given)'}; "
                          f"choose from {', '.join(CLASSES)}")
    return names


def generate_records(config):
    """Yield (metadata row, image) for every micrograph `config` asks for.

    Rows carry UHCSDB's metadata columns, so the loader that reads UHCSDB reads
    these too, plus the ground-truth factors of each image.
    """
    rng = np.random.default_rng(config.seed)
    micrograph_id = 0
    for class_index, constituent in enumerate(class_list(config.classes)):
        for sample_index in range(config.samples_per_class):
            conditions = CONDITIONS[constituent]
            condition = conditions[sample_index % len(conditions)]
            sample_key = class_index * 1000 + sample_index
            for _ in range(config.images_per_sample):
                micrograph_id += 1
                image, factors = generate_micrograph(
                    rng, constituent, condition, config.image_size, config.noise)
                row = {
                    "micrograph_id": micrograph_id,
                    "path": f"micrographs/micrograph{micrograph_id}.png",
                    "primary_microconstituent": constituent,
                    "sample_key": sample_key,
                    "anneal_temperature": condition[0],
                    "anneal_temp_unit": "C",
                    "anneal_time": condition[1],
                    "anneal_time_unit": "M",
                    "cool_method": condition[2],
                    **factors,
                }
                yield row, image


def write_synthetic_dataset(out_dir, config):
    """Generate the micrographs of `config` into `out_dir` and return its table.

    Writes `micrographs/micrograph<ID>.png` and `metadata.csv` (UHCSDB's columns
    plus ground-truth factors). The table is written last, so a folder holding a
    `metadata.csv` is a complete dataset.
    """
    import pandas as pd
    from PIL import Image

    out_dir = Path(out_dir)
    rows = []
    for row, image in generate_records(config):
        with atomic_path(out_dir / row["path"]) as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
        rows.append(row)
    table = pd.DataFrame(rows)
    write_text(out_dir / "metadata.csv", table.to_csv(index=False))
    write_text(out_dir / "synthetic.json", json.dumps(dataclasses.asdict(config), indent=2))
    return table
