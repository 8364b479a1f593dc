"""MNIST-C corruptions at their fixed severities, for 28x28 uint8 digits.

Every corruption is a function ``name(image, rng) -> image`` that maps one uint8 (28, 28) image
to another, drawing any randomness from the ``numpy.random.Generator`` it is given. Internally
images are floats in [0, 1] (``x = image / 255``); results are rounded and clipped back to uint8.

The definitions follow the MNIST-C paper (Mu & Gilmer, 2019) and the published generator that
produced the MNIST-C files (github.com/google-research/mnist-c, ``corruptions.py``) at the
severities MNIST-C used. Where that code differs from a plain reading of the definition, its
behaviour is kept, and said so here:

* ``glass_blur``: both blurs run along the first (row) axis only, sigma ``(0.7, 0)``: the
  generator calls ``skimage.filters.gaussian(x, 0.7, multichannel=True)`` on a 2-D image, and
  the scikit-image of the time then took the last axis for a channel axis and did not blur
  along it. The first blur is converted to uint8 by truncation (``np.uint8(x * 255)``), so the
  swaps move uint8 values and the second blur starts from them. Each visited pixel is swapped
  only with probability 1/2 (a coin flip before drawing the offsets), as in the reference loop.
* ``motion_blur``: ImageMagick's kernel has ``2 * radius + 1`` taps (offsets 0..20, not 0..10);
  the taps past offset 10 carry 0.04 % of the weight.
* ``shear``: the shear matrix of scikit-image before 0.21, ``[[1, -sin s], [0, cos s]]``, which
  is what ``AffineTransform(shear=s)`` meant when MNIST-C was generated (newer scikit-image
  uses ``[[1, -tan s], [0, 1]]``). It is built explicitly, so the result does not depend on the
  installed scikit-image.
* ``fog``: the plasma fractal's noise at each level is ``wibble * uniform(-wibble, wibble)``,
  i.e. amplitude ``wibble**2``, exactly as the ImageNet-C / MNIST-C code has it (so the
  amplitude falls by 1.4**2 per level). The fog is the top-left 28x28 crop of the 256x256 map.
* ``dotted_line`` / ``zigzag``: the soft line profile uses the vertical distance from the line
  (as the reference ``line_from_points``) and covers the columns ``floor(c0) .. ceil(c1) - 1``;
  the dashes of the dotted line are 2-column blocks (columns 0-1 off, 2-3 on, 4-5 off, ...).
  The random rows are drawn with the reference's exclusive upper bounds: rows 0..26 (never 27),
  and the zigzag's end row is its start row -5 .. +4.
* ``zigzag``: its vertices are the reference's: the triangle-wave vertices at baseline
  distances ``a, 3a, 5a, ...`` (alternately +b and -b) up to ``length - a``, then a last vertex
  at the end of the baseline (distance ``length``) whose offset is the previous vertex's offset
  divided by ``2 * (length - 2a * floor(length / 2a))``, not the triangle wave's value there. So
  the zigzag spans columns 2 to 25 and its last segment (columns 23-25) flattens out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
from scipy import ndimage
from skimage import feature, transform, util

from gonomaly.errors import GonomalyError

SIZE = 28
CENTRE = (SIZE - 1) / 2.0  # 13.5: the geometric corruptions keep this point fixed

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]


# --------------------------------------------------------------------------- helpers


def _to_float(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _random_sign(rng: np.random.Generator) -> int:
    return 1 if rng.integers(0, 2) else -1


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    # skimage.filters.gaussian's defaults: edge ('nearest') padding, truncate at 4 sigma.
    return ndimage.gaussian_filter(x, sigma=sigma, mode="nearest", truncate=4.0)


def _warp_about_centre(x: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """Bilinear warp whose inverse map (output (col, row) -> input) is ``linear`` about the centre.

    Pixels mapped from outside the image are 0.
    """
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = CENTRE - linear @ np.array([CENTRE, CENTRE])
    return transform.warp(x, matrix, order=1, mode="constant", cval=0.0)


def _soft_lines(c0, r0, c1, r1) -> np.ndarray:
    """Soft line profiles between (c0, r0) and (c1, r1), one per element of the (1-D) inputs.

    The profile at vertical distance d from the line is ``1 + log(1 - d / 2.3)`` for d < 2.3,
    clipped to [0, 1] (so it is nonzero within about 1.45 px), and is drawn only in the columns
    ``floor(c0) <= col < ceil(c1)``. Returns an array (K, 28, 28).
    """
    c0, r0, c1, r1 = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (c0, r0, c1, r1))
    swap = c1 < c0
    c0, c1 = np.where(swap, c1, c0), np.where(swap, c0, c1)
    r0, r1 = np.where(swap, r1, r0), np.where(swap, r0, r1)
    width = c1 - c0
    vertical = width == 0
    slope = (r1 - r0) / np.where(vertical, 1.0, width)
    slope, c0, r0, c1 = (v[:, None, None] for v in (slope, c0, r0, c1))
    cols = np.arange(SIZE, dtype=np.float64)[None, None, :]
    rows = np.arange(SIZE, dtype=np.float64)[None, :, None]
    dist = np.abs(rows - (slope * (cols - c0) + r0))
    near = dist < 2.3
    profile = np.zeros(dist.shape)
    profile[near] = 1.0 + np.log1p(-dist[near] / 2.3)
    profile = np.clip(profile, 0.0, 1.0)
    in_span = (cols >= np.floor(c0)) & (cols < np.ceil(c1))
    profile = np.where(in_span, profile, 0.0)
    profile[vertical] = 0.0  # as the reference: a segment with no horizontal extent draws nothing
    return profile


def plasma_fractal(
    rng: np.random.Generator, mapsize: int = 256, wibble_decay: float = 1.4
) -> np.ndarray:
    """A (mapsize, mapsize) diamond-square height map normalised to [0, 1] (min 0, max 1).

    Each level is filled with whole-array operations (squares, then the two diamond lattices);
    the map wraps around at its borders, as in the ImageNet-C code. The first corner is 0, the
    starting wibble is 100, and each new point is the mean of its 4 neighbours plus
    ``wibble * uniform(-wibble, wibble)``; the wibble is divided by ``wibble_decay`` per level.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise GonomalyError(f"plasma_fractal: mapsize must be a power of two >= 2, got {mapsize}")
    grid = np.zeros((mapsize, mapsize), dtype=np.float64)
    step = mapsize
    wibble = 100.0
    while step >= 2:
        half = step // 2
        amplitude = wibble * wibble
        corners = grid[0::step, 0::step]
        # Squares: the centre of each square of 4 corners.
        acc = corners + np.roll(corners, -1, axis=0)
        acc = acc + np.roll(acc, -1, axis=1)
        grid[half::step, half::step] = acc / 4 + amplitude * rng.uniform(-1.0, 1.0, acc.shape)
        centres = grid[half::step, half::step]
        # Diamonds on the corner rows: left and right corners, centres above and below.
        acc = corners + np.roll(corners, -1, axis=1) + centres + np.roll(centres, 1, axis=0)
        grid[0::step, half::step] = acc / 4 + amplitude * rng.uniform(-1.0, 1.0, acc.shape)
        # Diamonds on the corner columns: corners above and below, centres left and right.
        acc = corners + np.roll(corners, -1, axis=0) + centres + np.roll(centres, 1, axis=1)
        grid[half::step, 0::step] = acc / 4 + amplitude * rng.uniform(-1.0, 1.0, acc.shape)
        step = half
        wibble /= wibble_decay
    grid -= grid.min()
    top = grid.max()
    if top > 0:
        grid /= top
    return grid


# --------------------------------------------------------------------------- corruptions


def identity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The unchanged reference image (not an anomaly)."""
    return np.array(image, dtype=np.uint8, copy=True)


def shot_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson noise: ``Poisson(3 x) / 3``, clipped to [0, 1]."""
    x = _to_float(image)
    return _to_uint8(np.clip(rng.poisson(3.0 * x) / 3.0, 0.0, 1.0))


def impulse_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise, amount 0.17 (each pixel flipped with probability 0.17, half to 1)."""
    x = util.random_noise(_to_float(image), mode="s&p", amount=0.17, rng=rng)
    return _to_uint8(x)


GLASS_SIGMA = 0.7
_GLASS_PASSES = 2
_GLASS_VISIT = np.arange(SIZE - 1, 1, -1)  # 27 down to 2
_GLASS_POS = (_GLASS_VISIT[:, None] * SIZE + _GLASS_VISIT[None, :]).ravel()


def vertical_blur(x: np.ndarray, sigma: float = GLASS_SIGMA) -> np.ndarray:
    """Gaussian blur of a float image along its first (row) axis only: glass_blur's blur.

    This is what the published generator's ``gaussian(x, sigma, multichannel=True)`` did to a
    2-D image (sigma ``(sigma, 0)``), with scikit-image's edge ('nearest') padding and a
    truncation at 4 sigma.
    """
    return ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest", truncate=4.0)


def glass_blur_first_step(image: np.ndarray) -> np.ndarray:
    """glass_blur's first step: the vertical blur of a uint8 image, truncated back to uint8.

    The truncation (not rounding) is the published generator's ``np.uint8(x * 255)``.
    """
    x = vertical_blur(_to_float(image))
    return np.clip(x * 255.0, 0.0, 255.0).astype(np.uint8)  # the cast truncates


def glass_shuffle(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """glass_blur's local shuffle: a copy of ``pixels`` (28, 28) after two passes of swaps.

    Each pass visits rows and then columns from 27 down to 2; at each visited pixel a coin flip
    decides whether to swap it with its neighbour at (dy, dx), each drawn from {-1, 0}.
    """
    draws = rng.integers(0, 2, size=(_GLASS_PASSES, _GLASS_POS.size, 3))
    swap = draws[..., 0].astype(bool)
    partner = _GLASS_POS[None, :] - draws[..., 2] * SIZE - draws[..., 1]  # draws: coin, -dx, -dy
    sources = np.broadcast_to(_GLASS_POS, swap.shape)[swap].tolist()
    targets = partner[swap].tolist()
    values = pixels.ravel().tolist()
    for a, b in zip(sources, targets):  # sequential: later swaps see earlier ones
        values[a], values[b] = values[b], values[a]
    return np.asarray(values, dtype=pixels.dtype).reshape(SIZE, SIZE)


def glass_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vertical blur (sigma 0.7) truncated to uint8, local pixel swaps, vertical blur again."""
    shuffled = glass_shuffle(glass_blur_first_step(image), rng)
    return _to_uint8(np.clip(vertical_blur(_to_float(shuffled)), 0.0, 1.0))


_MOTION_RADIUS = 10
_MOTION_SIGMA = 3.0
_MOTION_TAPS = np.arange(2 * _MOTION_RADIUS + 1)  # ImageMagick: GetOptimalKernelWidth1D
_MOTION_KERNEL = np.exp(-(_MOTION_TAPS**2) / (2.0 * _MOTION_SIGMA**2))
_MOTION_KERNEL /= _MOTION_KERNEL.sum()
_AXIS = np.arange(SIZE)


def motion_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One-sided linear motion blur (ImageMagick's), radius 10, sigma 3, angle in [-45, 45] deg.

    ``out(row, col) = sum_i k_i * in(row + dy_i, col + dx_i)`` with ``k_i ~ exp(-i^2 / 2 sigma^2)``
    normalised, ``(dx_i, dy_i)`` = i steps along the angle rounded to pixels, and edge pixels
    replicated outside the image.
    """
    angle = np.deg2rad(rng.uniform(-45.0, 45.0))
    dx = np.ceil(_MOTION_TAPS * np.cos(angle) - 0.5).astype(np.intp)
    dy = np.ceil(_MOTION_TAPS * np.sin(angle) - 0.5).astype(np.intp)
    rows = np.clip(_AXIS[None, :, None] + dy[:, None, None], 0, SIZE - 1)
    cols = np.clip(_AXIS[None, None, :] + dx[:, None, None], 0, SIZE - 1)
    x = _to_float(image)
    return _to_uint8(np.tensordot(_MOTION_KERNEL, x[rows, cols], axes=1))


def shear(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shear by +-0.4 (random sign) about the centre, bilinear (MNIST-C's skimage shear matrix)."""
    s = 0.4 * _random_sign(rng)
    linear = np.array([[1.0, -np.sin(s)], [0.0, np.cos(s)]])
    return _to_uint8(np.clip(_warp_about_centre(_to_float(image), linear), 0.0, 1.0))


def scale(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shrink to 70 % about the centre (the inverse map scales coordinates by 1 / 0.7)."""
    linear = np.eye(2) / 0.7
    return _to_uint8(np.clip(_warp_about_centre(_to_float(image), linear), 0.0, 1.0))


def rotate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate by +-0.4 rad (random sign) about the centre, bilinear."""
    a = 0.4 * _random_sign(rng)
    linear = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return _to_uint8(np.clip(_warp_about_centre(_to_float(image), linear), 0.0, 1.0))


def brightness(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """+0.5 on the HSV value channel; for a grey image that is ``x + 0.5``, clipped."""
    return _to_uint8(np.clip(_to_float(image) + 0.5, 0.0, 1.0))


def translate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift by 3 px in x and 3 px in y, each with a random sign; vacated pixels are 0."""
    dx = 3 * _random_sign(rng)
    dy = 3 * _random_sign(rng)
    x = _to_float(image)
    out = np.zeros_like(x)
    out[max(dy, 0) : SIZE + min(dy, 0), max(dx, 0) : SIZE + min(dx, 0)] = x[
        max(-dy, 0) : SIZE + min(-dy, 0), max(-dx, 0) : SIZE + min(-dx, 0)
    ]
    return _to_uint8(out)


def stripe(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Invert columns 0-6 and 21-27."""
    x = _to_float(image)
    x[:, :7] = 1.0 - x[:, :7]
    x[:, 21:] = 1.0 - x[:, 21:]
    return _to_uint8(x)


_FOG_STRENGTH = 3.0
_FOG_DECAY = 1.4


def fog(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(x + 3 fog) * max(x) / (max(x) + 3)`` with fog the top-left crop of a plasma fractal."""
    x = _to_float(image)
    peak = x.max()
    haze = plasma_fractal(rng, 256, _FOG_DECAY)[:SIZE, :SIZE]
    x = (x + _FOG_STRENGTH * haze) * peak / (peak + _FOG_STRENGTH)
    return _to_uint8(np.clip(x, 0.0, 1.0))


SPATTER_LEVEL = 63  # the mud colour, on the 0-255 scale


def spatter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mud spatter: blobs of a thresholded blurred noise layer painted over in grey 63/255."""
    layer = _gaussian(rng.normal(0.65, 0.3, size=(SIZE, SIZE)), 1.0)
    layer[layer < 0.65] = 0.0
    mask = _gaussian((layer > 0.65).astype(np.float64), 1.5)
    mask[mask < 0.8] = 0.0
    x = _to_float(image)
    x = x * (1.0 - mask) + (SPATTER_LEVEL / 255.0) * mask
    return _to_uint8(np.clip(x, 0.0, 1.0))


_DASH_OFF = (np.arange(SIZE) // 2) % 2 == 0  # columns 0-1, 4-5, ... are gaps
_LAST_ROW = SIZE - 2  # 26: the reference draws rows with randint(0, 27), whose end is exclusive


def dotted_line_rows(rng: np.random.Generator) -> tuple[int, int]:
    """The dotted line's rows at column 0 and column 27, each in 0..26."""
    r0, r1 = rng.integers(0, _LAST_ROW + 1, size=2).tolist()
    return r0, r1


def dotted_line(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dashed soft line from (column 0, random row) to (column 27, random row), added."""
    r0, r1 = dotted_line_rows(rng)
    line = _soft_lines(0, r0, SIZE - 1, r1)[0]
    line[:, _DASH_OFF] = 0.0
    return _to_uint8(np.clip(_to_float(image) + line, 0.0, 1.0))


_ZIGZAG_HALF = 2.0  # a: baseline distance from a crossing to the next vertex
_ZIGZAG_AMPLITUDE = 2.0  # b: perpendicular distance of a vertex from the baseline
_ZIGZAG_COLUMNS = (2.0, 25.0)  # the baseline's first and last column


def zigzag_rows(rng: np.random.Generator) -> tuple[int, int]:
    """The zigzag baseline's start row (0..26) and end row (start row -5 .. +4)."""
    start = int(rng.integers(0, _LAST_ROW + 1))
    return start, start + int(rng.integers(-5, 5))  # the reference's randint(-5, 5)


def zigzag_vertices(r_start: float, r_end: float) -> tuple[np.ndarray, np.ndarray]:
    """(columns, rows) of the zigzag's vertices on the baseline from column 2 to column 25.

    Along the baseline (length L), the vertices lie at distances ``0, a, 3a, 5a, ...`` up to
    L, at offsets ``0, +b, -b, +b, ...``; then the reference adds one at distance L,
    offset ``previous offset / (2 * (L - 2a * floor(L / 2a)))`` (unless L is a multiple of 2a).
    """
    a, b = _ZIGZAG_HALF, _ZIGZAG_AMPLITUDE
    c_start, c_end = _ZIGZAG_COLUMNS
    theta = np.arctan((r_end - r_start) / (c_end - c_start))
    length = (c_end - c_start) / np.cos(theta)
    i = np.arange(int((length - a) // (2 * a)) + 1)
    along = np.concatenate([[0.0], (2 * i + 1) * a])
    offset = np.concatenate([[0.0], b * (-1.0) ** i])
    whole_periods = 2 * a * (length // (2 * a))
    if length != whole_periods:
        along = np.append(along, length)
        offset = np.append(offset, offset[-1] / (2 * (length - whole_periods)))
    cols = c_start + along * np.cos(theta) - offset * np.sin(theta)
    rows = r_start + along * np.sin(theta) + offset * np.cos(theta)
    return cols, rows


def zigzag(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft zigzag from column 2 to 25 (vertices every 2a = 4 px, amplitude 2 px), added.

    The baseline starts at a random row and falls by up to 5 rows or rises by up to 4 over its
    length (``zigzag_rows``); the zigzag is drawn on that baseline (``zigzag_vertices``).
    """
    cols, rows = zigzag_vertices(*zigzag_rows(rng))
    lines = _soft_lines(cols[:-1], rows[:-1], cols[1:], rows[1:]).sum(axis=0)
    return _to_uint8(np.clip(_to_float(image) + lines, 0.0, 1.0))


def canny_edges(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The binary Canny edge map (sigma 1): 0 or 255."""
    edges = feature.canny(_to_float(image), sigma=1.0)
    return np.where(edges, 255, 0).astype(np.uint8)


# --------------------------------------------------------------------------- registry

IDENTITY = "identity"

CORRUPTIONS: dict[str, Corruption] = {
    "identity": identity,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "brightness": brightness,
    "translate": translate,
    "stripe": stripe,
    "fog": fog,
    "spatter": spatter,
    "dotted_line": dotted_line,
    "zigzag": zigzag,
    "canny_edges": canny_edges,
}

# The 15 MNIST-C corruptions (anomalies); identity is the unchanged reference.
ALL_CORRUPTIONS: tuple[str, ...] = tuple(name for name in CORRUPTIONS if name != IDENTITY)
# The MNIST-C protocol's 14 corruptions: all but canny_edges.
PROTOCOL_CORRUPTIONS: tuple[str, ...] = tuple(n for n in ALL_CORRUPTIONS if n != "canny_edges")

_INDEX = {name: i for i, name in enumerate(CORRUPTIONS)}


def image_rng(image: np.ndarray, name: str, seed: int) -> np.random.Generator:
    """The generator that ``corrupt`` uses for one image.

    It is derived from (seed, index of the corruption in ``CORRUPTIONS``, a 128-bit hash of the
    image's pixels), so an image's corrupted version depends on nothing else: not on its
    position, nor on which other images are in the array. (Two identical images get identical
    corruptions.)
    """
    digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
    words = np.frombuffer(digest, dtype="<u4").tolist()
    return np.random.default_rng([int(seed), _INDEX[name], *words])


def corrupt(images: np.ndarray, name: str, seed: int) -> np.ndarray:
    """Apply corruption ``name`` to every image of a uint8 array (N, 28, 28); deterministic in seed.

    Corrupting ``images[5:10]`` gives exactly ``corrupt(images, name, seed)[5:10]``.
    """
    if name not in CORRUPTIONS:
        raise GonomalyError(
            f"unknown corruption {name!r}; valid names: {', '.join(CORRUPTIONS)}"
        )
    if not isinstance(images, np.ndarray):
        raise GonomalyError(
            f"corrupt: images must be a numpy array (N, {SIZE}, {SIZE}) of uint8, "
            f"got {type(images).__name__}"
        )
    if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise GonomalyError(
            f"corrupt: images must have shape (N, {SIZE}, {SIZE}), got {images.shape}"
        )
    if images.dtype != np.uint8:
        raise GonomalyError(f"corrupt: images must be uint8, got {images.dtype}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GonomalyError(f"corrupt: seed must be a non-negative integer, got {seed!r}")
    function = CORRUPTIONS[name]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        out[i] = function(image, image_rng(image, name, seed))
    return out
