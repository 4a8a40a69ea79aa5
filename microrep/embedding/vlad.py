"""DeCost et al. 2017's VLAD baseline: local VGG16 features of four centre panels, a k-means
dictionary, residuals summed per word.

Why here: VLAD needs the base's local features (unpooled maps), and a dictionary fitted
on them, before any image has a vector. This module computes the maps once per image
(cached, float16), fits the dictionary as their code did (MiniBatchKMeans with 32 words
on a seeded 10 % subsample of the descriptors of all images: a mild leak across folds
that their numbers carry too; docs/results.md says what their code did) and encodes every panel with
`nn.pooling.VladPooling`. Panel sums add up to a micrograph's VLAD, so one pass gives
both the crop-level rows their folds used and one vector per micrograph.
"""

import dataclasses
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from microrep.data.views import View
from microrep.embedding.features import cache_entries, image_keys, stored_or_computed
from microrep.nn.backbone import dtype_policy, policy_for
from microrep.nn.pooling import VladPooling, normalise_vlad
from microrep.nn.tower import build_map_tower

#: DeCost et al.'s layers, dictionary size, subsample share and k-means restarts.
LAYERS = ("block4_conv3", "block5_conv3")
CLUSTERS = 32
SAMPLE_SHARE = 0.1
RESTARTS = 25


@dataclasses.dataclass
class VladFeatures:
    """Residual sums of each image's panels: {layer: (n_images, panels, clusters * d)}, and
    the panels' mean-pooled maps {layer: (n_images, panels, d)} (the pretrained features of
    the same crops)."""

    sums: dict
    means: dict = dataclasses.field(default_factory=dict)
    clusters: int = CLUSTERS

    def panels(self, layer):
        """(n_images * panels, clusters * d) normalised VLAD of every panel (crop-level rows)."""
        sums = self.sums[layer]
        return _normalised(sums.reshape(-1, sums.shape[-1]), self.clusters)

    def images(self, layer):
        """(n_images, clusters * d) normalised VLAD of each image's panels together."""
        return _normalised(self.sums[layer].sum(axis=1), self.clusters)


def _normalised(sums, clusters):
    return keras.ops.convert_to_numpy(normalise_vlad(sums, clusters)).astype(np.float32)


def panel_maps(model_config, images, cache_dir=None, progress=False):
    """{layer: (n_images, 4, h, w, d) float16} local features of DeCost et al.'s centre panels,
    each image's read from the cache or computed and stored."""
    view = View("panels", int(model_config.input_size))
    with dtype_policy(policy_for(model_config.mixed_precision)):
        tower = build_map_tower(model_config, list(LAYERS))
        entries = cache_entries(tower, image_keys(images), view, f"{','.join(LAYERS)}-maps")
    cache = Path(cache_dir) if cache_dir else None
    maps = {layer: [] for layer in LAYERS}
    for image, entry in tqdm(list(zip(images, entries)), desc="VGG16 local features", unit="image",
                             disable=not progress):
        stored = stored_or_computed(cache, entry, lambda: {
            layer: np.asarray(out, np.float16) for layer, out in
            zip(LAYERS, tower.predict_on_batch(view.pieces(image)[..., None]))})
        for layer in LAYERS:
            maps[layer].append(stored[layer])
    return {layer: np.stack(found) for layer, found in maps.items()}


def fit_dictionary(maps, clusters=CLUSTERS, share=SAMPLE_SHARE, seed=0, restarts=RESTARTS):
    """(clusters, d) k-means centres of a seeded `share` of the local features in `maps`."""
    from sklearn.cluster import MiniBatchKMeans

    descriptors = maps.reshape(-1, maps.shape[-1])
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(descriptors), max(clusters, int(len(descriptors) * share)), replace=False)
    kmeans = MiniBatchKMeans(clusters, n_init=restarts, random_state=seed)
    kmeans.fit(descriptors[np.sort(chosen)].astype(np.float32))
    return kmeans.cluster_centers_.astype(np.float32)


def vlad_sums(maps, centres, chunk=64):
    """(n_images, panels, clusters * d) residual sums of every panel's local features."""
    layer = VladPooling(len(centres), normalize=False)
    layer.build(maps.shape[2:] if maps.ndim == 5 else maps.shape[1:])
    layer.set_weights([centres])
    flat = maps.reshape(-1, *maps.shape[2:])
    sums = np.concatenate([keras.ops.convert_to_numpy(layer(flat[start:start + chunk].astype(np.float32)))
                           for start in range(0, len(flat), chunk)])
    return sums.reshape(maps.shape[0], maps.shape[1], -1)


def decost_vlad(model_config, images, cache_dir=None, seed=0, progress=False, log=None):
    """VladFeatures of every image, for each of DeCost et al.'s layers (their dictionary)."""
    maps = panel_maps(model_config, images, cache_dir, progress)
    sums, means = {}, {}
    for layer, local in maps.items():
        means[layer] = local.mean(axis=(2, 3), dtype=np.float32)
        if log is not None:
            log(f"VLAD dictionary of {layer}: {CLUSTERS} words from {SAMPLE_SHARE:.0%} of "
                f"{local[..., 0].size:,} local features")
        sums[layer] = vlad_sums(local, fit_dictionary(local, seed=seed))
    return VladFeatures(sums, means)
