"""Views of a micrograph: the pieces of it that the network is shown, one vector each.

Why a view: a frozen VGG16 base turns each piece into one pooled vector, and an image's
features are the mean over its pieces. Which pieces decides what the network sees:

- `tiles`: a grid x grid array of input-size tiles at native resolution (microrep's
  embedding until now; it covers a 645 x 481 UHCSDB frame, not a larger image);
- `frame`: the whole frame through the fully convolutional base at each of a set of
  scales (every pixel, at several pixel sizes);
- `panels`: DeCost et al. 2017's four input-size panels cut from the image centre
  (upper/lower, left/right), without resizing.

A view is plain data with a `key` (it keys the feature cache) and `pieces(image)`.
"""

import dataclasses

import numpy as np

from microrep.data.images import grid_tiles
from microrep.data.uhcsdb import rescale
from microrep.config.fields import parse_scales
from microrep.errors import ConfigError

#: VGG16 halves the side four times before block5: smaller pieces have no block5 map.
MIN_PIECE_SIDE = 32
KINDS = ("frame", "tiles", "panels")

__all__ = ["View", "parse_scales", "centre_panels", "rescaled"]


@dataclasses.dataclass(frozen=True)
class View:
    """Which pieces of an image the base sees: kind (KINDS), grid (tiles), scales (frame),
    size (the side of tiles and panels)."""

    kind: str = "frame"
    size: int = 224
    grid: int = 3
    scales: tuple = (1.0,)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"view must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def key(self):
        """What the cache keys on: the tile grid as before views existed, else kind and scales."""
        if self.kind == "tiles":
            return str(self.grid)
        return self.kind if self.kind == "panels" else f"frame-{','.join(f'{s:g}' for s in self.scales)}"

    @property
    def count(self):
        """Pieces per image."""
        return {"tiles": self.grid ** 2, "panels": 4}.get(self.kind, len(self.scales))

    @property
    def batched(self):
        """True when every piece has the same shape (one batch per image)."""
        return self.kind != "frame"

    def pieces(self, image):
        """The uint8 pieces of a 2-D image: an array (batched views) or a list (frames)."""
        if self.kind == "tiles":
            return grid_tiles(image, self.size, self.grid)
        if self.kind == "panels":
            return centre_panels(image, self.size)
        return [rescaled(image, scale) for scale in self.scales]

    def words(self):
        """'the whole frame at scales 1, 0.71, 0.5' (for plan lines and reports)."""
        if self.kind == "tiles":
            return f"a {self.grid} x {self.grid} grid of {self.size}-px tiles at native resolution"
        if self.kind == "panels":
            return f"DeCost et al.'s four {self.size}-px centre panels"
        return "the whole frame at scale" + ("s " if len(self.scales) > 1 else " ") + \
            ", ".join(f"{s:g}" for s in self.scales)


def centre_panels(image, size):
    """DeCost et al.'s four size x size panels around the image centre (2 x 2, touching at
    the centre), reflected out where the image is smaller than 2 x size."""
    height, width = image.shape
    pad_y, pad_x = max(2 * size - height, 0), max(2 * size - width, 0)
    if pad_y or pad_x:
        image = np.pad(image, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2)),
                       mode="reflect")
        height, width = image.shape
    top, left = height // 2 - size, width // 2 - size
    return np.stack([image[y:y + size, x:x + size]
                     for y in (top, top + size) for x in (left, left + size)])


def rescaled(image, scale):
    """The image resized by `scale` (uhcsdb.rescale), never below MIN_PIECE_SIDE on either side."""
    return rescale(image, max(scale, MIN_PIECE_SIDE / min(image.shape)))
