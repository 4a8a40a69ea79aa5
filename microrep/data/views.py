"""Views of a micrograph: the pieces of it that the network is shown, one vector each.

Why a view: a frozen VGG16 base turns each piece into one pooled vector, and an image's
features are the mean over its pieces. Which pieces decides what the network sees:

- `tiles`: a grid x grid array of input-size tiles at native resolution (microrep's
  embedding until now; it covers a 645 x 481 UHCSDB frame, not a larger image);
- `frame`: the whole frame through the fully convolutional base at each of a set of
  scales (every pixel, at several pixel sizes); a scaled frame wider or taller than
  `window` px is seen as overlapping windows of at most `window` px that cover it, whose
  pooled features are averaged, so memory stays bounded whatever the image's size;
- `panels`: DeCost et al. 2017's four input-size panels cut from the image centre
  (upper/lower, left/right), without resizing.

A view is plain data with a `key` (it keys the feature cache) and `pieces(image)`;
`View.of(settings, size)` makes one from a ViewConfig (config.stages).
"""

import dataclasses

import numpy as np

from microrep.data.images import grid_tiles, tile_origins
from microrep.data.uhcsdb import rescale
from microrep.config.fields import parse_scales
from microrep.errors import ConfigError

#: VGG16 halves the side four times before block5: smaller pieces have no block5 map.
MIN_PIECE_SIDE = 32
KINDS = ("frame", "tiles", "panels")
#: The frame view's default window: a 1024 x 1024 window through VGG16 in float32 peaks
#: near 1 GiB (benchmarks/large_image_memory.py), and a 1024 x 700 frame is one window.
WINDOW = 1024

__all__ = ["View", "parse_scales", "centre_panels", "rescaled"]


@dataclasses.dataclass(frozen=True)
class View:
    """Which pieces of an image the base sees: kind (KINDS), grid (tiles), scales (frame),
    size (the side of tiles and panels), window (frame: the largest piece side)."""

    kind: str = "frame"
    size: int = 224
    grid: int = 3
    scales: tuple = (1.0,)
    window: int = WINDOW

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"view must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.window < MIN_PIECE_SIDE:
            raise ConfigError(f"a window must be at least {MIN_PIECE_SIDE} px, got {self.window}")

    @classmethod
    def of(cls, settings, size):
        """The View a ViewConfig (`settings`: view, scales, grid, window) asks for, with
        tiles and panels of `size` px (the model's input size)."""
        return cls(settings.view, int(size), int(settings.grid), parse_scales(settings.scales),
                   int(settings.window))

    def settings(self):
        """The ViewConfig fields of this view (what a run and an archive record)."""
        return {"view": self.kind, "scales": ",".join(f"{s:g}" for s in self.scales),
                "grid": self.grid, "window": self.window}

    @property
    def key(self):
        """What the cache keys on: the tile grid as before views existed, else kind and scales."""
        if self.kind == "tiles":
            return str(self.grid)
        if self.kind == "panels":
            return self.kind
        window = "" if self.window == WINDOW else f"-w{self.window}"  # (keys from before windows)
        return f"frame-{','.join(f'{s:g}' for s in self.scales)}{window}"

    @property
    def count(self):
        """Pieces per image."""
        return {"tiles": self.grid ** 2, "panels": 4}.get(self.kind, len(self.scales))

    @property
    def batched(self):
        """True when every piece has the same shape (one batch per image)."""
        return self.kind != "frame"

    def pieces(self, image):
        """The uint8 pieces of a 2-D image: an array (batched views) or a list (frames, one
        scaled frame per scale; `windows` cuts each into what the base is shown)."""
        if self.kind == "tiles":
            return grid_tiles(image, self.size, self.grid)
        if self.kind == "panels":
            return centre_panels(image, self.size)
        return [rescaled(image, scale) for scale in self.scales]

    def windows(self, piece):
        """The windows of one scaled frame: itself when it fits in `window` x `window`, else
        ceil(side / window) evenly spaced windows along each longer side, which cover it."""
        height, width = piece.shape
        if max(height, width) <= self.window:
            return [piece]
        side_y, side_x = min(height, self.window), min(width, self.window)
        rows = tile_origins(height, side_y, -(-height // self.window))
        cols = tile_origins(width, side_x, -(-width // self.window))
        return [piece[y:y + side_y, x:x + side_x] for y in rows for x in cols]

    def pixels(self, shape):
        """Pixels the base is shown for an image of `shape` (the cost of its pass)."""
        if self.kind != "frame":
            return self.count * self.size * self.size
        height, width = shape
        return sum(max(round(height * s), 1) * max(round(width * s), 1)
                   for s in (floored(scale, shape) for scale in self.scales))

    def words(self):
        """'the whole frame at scales 1, 0.71, 0.5' (for plan lines and reports)."""
        if self.kind == "tiles":
            return f"a {self.grid} x {self.grid} grid of {self.size}-px tiles at native resolution"
        if self.kind == "panels":
            return f"DeCost et al.'s four {self.size}-px centre panels"
        return "the whole frame at scale" + ("s " if len(self.scales) > 1 else " ") + \
            ", ".join(f"{s:g}" for s in self.scales) + f" (in windows of at most {self.window} px)"


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


def floored(scale, shape):
    """`scale`, raised where it would leave a side of `shape` below MIN_PIECE_SIDE."""
    return max(scale, MIN_PIECE_SIDE / min(shape))


def rescaled(image, scale):
    """The image resized by `scale` (uhcsdb.rescale), never below MIN_PIECE_SIDE on either side."""
    return rescale(image, floored(scale, image.shape))
