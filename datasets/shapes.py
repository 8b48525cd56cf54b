"""Synthetic images of drawn shapes: a small image task with real spatial structure.

Each image holds one shape (a disc, a ring, a square, ...) at a random position, size
and rotation, with random contrast and Gaussian pixel noise.  The class is the kind
of shape, so a classifier has to recognise an outline wherever it is drawn: a
convolutional network learns that (``cynn train --dataset shapes`` reaches about 90%
test accuracy with its defaults), a linear model on the raw pixels does not (a
logistic regression scores about 35% on the same split; chance is 17%), because no
single pixel template fits a shape that moves and turns.

With ``channels=3`` every image is a shape of one random colour on a background of
another, both drawn independently of the class: the colours say nothing about the
label, so a model has to learn the outline (a logistic regression on the three
channel means scores at chance).

Drawing is vectorized: every shape is a signed distance function evaluated on a
coordinate grid for a whole batch of samples at once, and the distance to the outline
becomes an anti-aliased coverage ``clip(0.5 - distance, 0, 1)``.
"""
import numpy as np

from cynn._random import as_generator
from cynn._validation import choice, integer, non_negative_float, positive_int

from .loaders import register, split

#: The shapes `make_shapes` draws, in label order; ``n_classes`` takes the first ones.
SHAPE_NAMES = ("disc", "ring", "square", "triangle", "cross", "bars", "frame", "ellipse")

# Samples drawn per pass: bounds the temporaries (a few float32 arrays of
# _CHUNK x size x size, about 3 MB each at 28 x 28) whatever n_samples is.
_CHUNK = 1024

# The bounding radius r of a shape (every shape fits in the circle of radius r
# around its centre) is drawn in [_MIN_RADIUS, _MAX_RADIUS] * image_size.
_MIN_RADIUS, _MAX_RADIUS = 0.2, 0.34
# Background level and shape-minus-background contrast, drawn per sample, so that
# the overall brightness of an image says little about its class.
_BACKGROUND = (0.0, 0.2)
_CONTRAST = (0.5, 0.8)
# With channels=3: the background and the shape colours are uniform in the RGB cube,
# redrawn while they are closer than this (Euclidean distance), so that every shape
# stands out.  The rule is symmetric in the two colours, so both have the same mean
# whatever the class, and the mean colour of an image carries no linear trace of it.
_MIN_COLOUR_DISTANCE = 0.5


# Signed distances, in pixels, from local coordinates (u, v) (the shape's centre at
# the origin, its rotation undone) to the outline of each shape: negative inside.
# ``r`` is the bounding radius and ``t`` the half-width of strokes, both (m, 1, 1).
# The box distance max(|u| - a, |v| - b) is exact along the edges and slightly off
# near outside corners, which only changes the anti-aliasing of a corner pixel.

def _box(u, v, a, b):
    return np.maximum(np.abs(u) - a, np.abs(v) - b)


def _disc(u, v, r, t):
    return np.sqrt(u * u + v * v) - 0.8 * r


def _ring(u, v, r, t):
    return np.abs(np.sqrt(u * u + v * v) - (0.9 * r - t)) - t


def _square(u, v, r, t):
    return _box(u, v, 0.65 * r, 0.65 * r)


# Python floats, not NumPy float64 scalars, so that they keep the arrays float32.
_TRIANGLE_NORMALS = [(float(np.cos(a)), float(np.sin(a))) for a in np.deg2rad([90.0, 210.0, 330.0])]


def _triangle(u, v, r, t):
    # An equilateral triangle is the intersection of three half-planes; its
    # inradius is half its circumradius (0.95 r, so it fits the bounding circle).
    edges = [cos_a * u + sin_a * v for cos_a, sin_a in _TRIANGLE_NORMALS]
    return np.maximum(np.maximum(edges[0], edges[1]), edges[2]) - 0.475 * r


def _cross(u, v, r, t):
    return np.minimum(_box(u, v, 0.9 * r, t), _box(u, v, t, 0.9 * r))


def _bars(u, v, r, t):
    # Two parallel strokes, mirrored about the u axis.
    return _box(u, np.abs(v) - 0.45 * r, 0.75 * r, t)


def _frame(u, v, r, t):
    return np.abs(np.maximum(np.abs(u), np.abs(v)) - (0.65 * r - t)) - t


def _ellipse(u, v, r, t):
    # Not an exact distance, but its gradient is about 1 near the outline along the
    # short axis, which is what the anti-aliasing needs.
    a, b = 0.95 * r, 0.45 * r
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * b


_DISTANCES = (_disc, _ring, _square, _triangle, _cross, _bars, _frame, _ellipse)
assert len(_DISTANCES) == len(SHAPE_NAMES)


def make_shapes(n_samples, image_size=28, n_classes=6, noise=0.1, random_state=None,
                channels=1):
    """Generate images of randomly placed, sized and rotated shapes.

    Class ``k`` is the shape ``SHAPE_NAMES[k]``: disc, ring, square, triangle, cross,
    bars (two parallel strokes), frame (a hollow square) and ellipse.  Each sample
    draws its own centre, bounding radius (20% to 34% of ``image_size``), rotation
    and colours; the shape always lies wholly inside the image.  Grayscale images
    (``channels=1``) have a background level of 0 to 0.2 and a shape level 0.5 to
    0.8 above it.  Colour images (``channels=3``) have a background colour and a
    shape colour drawn uniformly from the RGB cube, independently of the class and
    at least 0.5 apart, so the colour does not reveal the class.  Gaussian noise of
    standard deviation ``noise`` is added to every channel and the result clipped to
    [0, 1].

    Parameters
    ----------
    n_samples : int
        Number of images, at least 1.
    image_size : int, default=28
        Height and width in pixels, at least 8.
    n_classes : int, default=6
        Number of shapes, between 2 and ``len(SHAPE_NAMES)`` (8); the first
        ``n_classes`` entries of `SHAPE_NAMES` are used.
    noise : float, default=0.1
        Standard deviation of the pixel noise, ``>= 0``.
    random_state : None, int or numpy.random.Generator, default=None
        Seed of every random choice.  A given int gives the same images on every
        call; a Generator advances.
    channels : {1, 3}, default=1
        1 for grayscale, 3 for colour (RGB).  The grayscale images are the same,
        bit for bit, as before colour existed.

    Returns
    -------
    X : ndarray of shape (n_samples, channels, image_size, image_size), float32
        Images with values in [0, 1].
    y : ndarray of shape (n_samples,), int64
        Labels in ``0 .. n_classes - 1``, balanced: every class has
        ``n_samples // n_classes`` or one more samples, in random order.

    Raises
    ------
    ValueError
        An argument of the wrong type or out of its range.

    Examples
    --------
    >>> X, y = make_shapes(100, random_state=0)
    >>> X.shape, X.dtype, y.dtype
    ((100, 1, 28, 28), dtype('float32'), dtype('int64'))
    >>> make_shapes(10, image_size=16, channels=3, random_state=0)[0].shape
    (10, 3, 16, 16)
    """
    n_samples = positive_int(n_samples, "n_samples")
    size = integer(image_size, "image_size", low=8)
    n_classes = integer(n_classes, "n_classes", low=2, high=len(SHAPE_NAMES))
    noise = non_negative_float(noise, "noise")
    channels = choice(channels, "channels", None, (1, 3))
    rng = as_generator(random_state)

    # Every per-sample parameter is drawn up front, as arrays, so the images depend
    # only on the seed and not on how the work is split into chunks.
    y = rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
    radius = rng.uniform(_MIN_RADIUS, _MAX_RADIUS, n_samples) * size
    # Pixel centres sit at 0 .. size - 1; keep a half-pixel margin for the edge blur.
    low = radius + 0.5
    high = size - 1.5 - radius
    cx = low + (high - low) * rng.random(n_samples)
    cy = low + (high - low) * rng.random(n_samples)
    angle = rng.uniform(0.0, 2.0 * np.pi, n_samples)
    if channels == 1:
        # Levels as (n_samples, 1) columns: background + contrast * coverage.
        background = rng.uniform(*_BACKGROUND, n_samples)[:, None]
        contrast = rng.uniform(*_CONTRAST, n_samples)[:, None]
    else:
        background, foreground = _colour_pairs(rng, n_samples)
        contrast = foreground - background
    # Strokes at least 1.5 px wide so that thin shapes survive at image_size 8.
    stroke = np.maximum(0.75, 0.16 * radius)

    X = np.empty((n_samples, channels, size, size), dtype=np.float32)
    grid = np.arange(size, dtype=np.float32)
    coverage = np.empty((min(_CHUNK, n_samples), size, size), dtype=np.float32)
    for start in range(0, n_samples, _CHUNK):
        stop = min(start + _CHUNK, n_samples)
        chunk_coverage = coverage[:stop - start]
        _draw(chunk_coverage, y[start:stop], grid, radius[start:stop], cx[start:stop],
              cy[start:stop], angle[start:stop], stroke[start:stop])
        level = background[start:stop].astype(np.float32)[:, :, None, None]
        gain = contrast[start:stop].astype(np.float32)[:, :, None, None]
        np.add(level, gain * chunk_coverage[:, None], out=X[start:stop])
        if noise > 0:
            chunk = X[start:stop]
            chunk += np.float32(noise) * rng.standard_normal(chunk.shape, dtype=np.float32)
            np.clip(chunk, 0.0, 1.0, out=chunk)
    return X, y


def _colour_pairs(rng, n_samples):
    """(background, foreground) RGB colours, each (n_samples, 3), at least
    `_MIN_COLOUR_DISTANCE` apart; pairs too close are redrawn, all at once per round."""
    background = rng.random((n_samples, 3))
    foreground = rng.random((n_samples, 3))

    def too_close(rows):
        return rows[np.linalg.norm(foreground[rows] - background[rows], axis=1)
                    < _MIN_COLOUR_DISTANCE]

    redraw = too_close(np.arange(n_samples))
    while redraw.size:      # about a fifth of the pairs per round
        background[redraw] = rng.random((redraw.size, 3))
        foreground[redraw] = rng.random((redraw.size, 3))
        redraw = too_close(redraw)
    return background, foreground


def _draw(out, labels, grid, radius, cx, cy, angle, stroke):
    """Write the anti-aliased coverage of one chunk's shapes into ``out`` (m, size, size):
    1 inside a shape, 0 outside."""
    def column(a):
        return a.astype(np.float32)[:, None, None]

    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        cos, sin = column(np.cos(angle[rows])), column(np.sin(angle[rows]))
        dx = grid[None, None, :] - column(cx[rows])     # (m, 1, size): varies along x
        dy = grid[None, :, None] - column(cy[rows])     # (m, size, 1): varies along y
        # Rotate the grid by -angle around the centre: the shape is drawn upright
        # in (u, v), which turns it by +angle in the image.
        u = cos * dx + sin * dy
        v = cos * dy - sin * dx
        distance = _DISTANCES[label](u, v, column(radius[rows]), column(stroke[rows]))
        out[rows] = np.clip(0.5 - distance, 0.0, 1.0, out=distance)


def load_shapes(n_samples=6000, image_size=28, n_classes=6, noise=0.1, test_size=0.2,
                val_size=0.1, random_state=0, channels=1):
    """`make_shapes` images in stratified train / validation / test splits.

    The images and the split both come from ``random_state``.  The default
    ``n_samples`` keeps an epoch of the ``cynn train`` default model (small-cnn) at
    a few seconds; raise it for a larger benchmark (60,000 images take a few seconds
    to draw).  The colour images are registered as ``'shapes_rgb'``
    (``cynn train --dataset shapes_rgb``).

    Parameters
    ----------
    n_samples, image_size, n_classes, noise, channels
        As in `make_shapes`.
    test_size, val_size : float
        Fractions of all samples, as in `split`.
    random_state : int, default=0
        Seed of the images and of the split.

    Returns
    -------
    Dataset
        Named ``'shapes'`` (``'shapes_rgb'`` with ``channels=3``); images
        ``(N, channels, image_size, image_size)`` float32 in [0, 1]; ``class_names``
        are the first ``n_classes`` of `SHAPE_NAMES`.
    """
    X, y = make_shapes(n_samples, image_size=image_size, n_classes=n_classes, noise=noise,
                       random_state=random_state, channels=channels)
    name = "shapes" if channels == 1 else "shapes_rgb"
    return split(name, X, y, SHAPE_NAMES[:n_classes], test_size, val_size, random_state)


def _load_shapes_rgb(n_samples=6000, image_size=28, n_classes=6, noise=0.1, test_size=0.2,
                     val_size=0.1, random_state=0):
    """`load_shapes` with ``channels=3``: the colour shapes, by name."""
    return load_shapes(n_samples, image_size, n_classes, noise, test_size, val_size,
                       random_state, channels=3)


register("shapes", load_shapes)
register("shapes_rgb", _load_shapes_rgb)
