"""Synthetic anomalies made from normal images, to choose how to score without any real anomaly.

Each generator takes one normal image (C, H, W) float32 in [0, 1], a texture source (another
normal image of the same shape; only ``perlin`` uses it) and a ``numpy.random.Generator``, and
returns the changed image and its mask (H, W) uint8, 1 = changed region:

- ``cutpaste``: a rectangle (2-15% of the image, aspect ratio 1:3 to 3:1) cut from the same image
  and pasted elsewhere with a small colour jitter (CutPaste, Li et al. 2021);
- ``scar``: CutPaste's thin variant: a long narrow strip at a random angle, moved within the image;
- ``perlin``: a thresholded Perlin-noise mask with a random lattice scale per axis, inside which
  texture from another normal image (randomly flipped and shifted) is blended in with opacity
  beta in [0.1, 1] (DRAEM, Zavrtanik et al. 2021, with the training images as the texture source);
- ``blur``: a Gaussian blur inside a random elliptical blob;
- ``intensity``: a brightness and contrast change inside a random elliptical blob.

``make_synthetic`` cycles through the generators in order, keeps every pixel outside the mask
exactly as it was, and re-draws until the mask is non-empty and the mean absolute change inside it
reaches ``min_change``. Output ``i`` depends only on its image, the source images and the
``i``-th child of the random generator (``Generator.spawn``), so it does not depend on how many
other images are made in the same call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from gonomaly.data import NORMAL_GROUP, ImageSet
from gonomaly.errors import GonomalyError

Generator = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]

PATCH_AREA = (0.02, 0.15)  # CutPaste's patch: 2-15% of the image
ASPECT_RATIO = (1 / 3, 3.0)
PERLIN_THRESHOLD = 0.5  # DRAEM's threshold on noise scaled to about [-1, 1]
MAX_PERLIN_EXPONENT = 5  # DRAEM's coarsest-to-finest lattice: 2**0 to 2**5 cells across 256 px
OPACITY = (0.1, 1.0)


def _uniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in [low, high] inclusive; ``low`` when the range is empty."""
    return int(rng.integers(low, max(low, high) + 1))


def _box_size(shape: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """Height and width of a rectangle covering PATCH_AREA of the image at a random aspect ratio."""
    height, width = shape
    area = rng.uniform(*PATCH_AREA) * height * width
    ratio = np.exp(rng.uniform(*np.log(ASPECT_RATIO)))
    box_h = int(np.clip(round(np.sqrt(area * ratio)), 1, height - 1))
    box_w = int(np.clip(round(np.sqrt(area / ratio)), 1, width - 1))
    return box_h, box_w


def colour_jitter(patch: np.ndarray, rng: np.random.Generator, strength: float = 0.1) -> np.ndarray:
    """A per-channel gain in 1 +- strength and offset in +- strength / 2, clipped to [0, 1]."""
    channels = patch.shape[0]
    gain = rng.uniform(1 - strength, 1 + strength, (channels, 1, 1))
    offset = rng.uniform(-strength / 2, strength / 2, (channels, 1, 1))
    return np.clip(patch * gain + offset, 0, 1).astype(np.float32)


def _paste_shifted(image: np.ndarray, mask: np.ndarray, shift: tuple[int, int], rng: np.random.Generator,
                   jitter: float) -> np.ndarray:
    """Fill ``mask`` with the pixels ``shift`` (rows, columns) away, clamped to the image."""
    rows, cols = np.nonzero(mask)
    height, width = mask.shape
    source = image[:, np.clip(rows + shift[0], 0, height - 1), np.clip(cols + shift[1], 0, width - 1)]
    out = image.copy()
    out[:, rows, cols] = colour_jitter(source[:, None], rng, jitter)[:, 0] if jitter else source
    return out


def cutpaste(image: np.ndarray, source: np.ndarray, rng: np.random.Generator,
             jitter: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A rectangle of the image pasted elsewhere in it, with a small colour jitter."""
    height, width = image.shape[1:]
    box_h, box_w = _box_size((height, width), rng)
    from_y, to_y = (_uniform_int(rng, 0, height - box_h) for _ in range(2))
    from_x, to_x = (_uniform_int(rng, 0, width - box_w) for _ in range(2))
    mask = np.zeros((height, width), np.uint8)
    mask[to_y:to_y + box_h, to_x:to_x + box_w] = 1
    return _paste_shifted(image, mask, (from_y - to_y, from_x - to_x), rng, jitter), mask


def _rotated_coordinates(shape: tuple[int, int], centre: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's offset from ``centre`` along and across a line at ``angle``."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    y, x = y - centre[0], x - centre[1]
    return y * np.sin(angle) + x * np.cos(angle), -y * np.cos(angle) + x * np.sin(angle)


def scar(image: np.ndarray, source: np.ndarray, rng: np.random.Generator,
         jitter: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A thin strip (2-6% of the side wide, at least a pixel; 15-40% long) at an angle, moved within
    the image: CutPaste's 2-16 x 10-25 px scar on 256 px, a little longer so that it shows at 28 px."""
    height, width = image.shape[1:]
    side = min(height, width)
    half_width = max(0.5, rng.uniform(0.02, 0.06) * side / 2)
    half_length = rng.uniform(0.15, 0.4) * side / 2
    angle = rng.uniform(0, np.pi)
    centre = rng.uniform(0.15, 0.85, 2) * (height, width)
    along, across = _rotated_coordinates((height, width), centre, angle)
    mask = ((np.abs(along) <= half_length) & (np.abs(across) <= half_width)).astype(np.uint8)
    shift = (_uniform_int(rng, -height // 3, height // 3), _uniform_int(rng, -width // 3, width // 3))
    return _paste_shifted(image, mask, shift, rng, jitter), mask


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(shape: tuple[int, int], cells: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin gradient noise, about [-1, 1], with ``cells`` (rows, columns) lattice cells
    across the image: random unit gradients on the lattice corners, each pixel's offsets to its
    four corners dotted with their gradients and blended by the quintic fade curve."""
    angles = rng.uniform(0, 2 * np.pi, (cells[0] + 1, cells[1] + 1))
    gradients = np.stack([np.sin(angles), np.cos(angles)])  # (2, rows + 1, cols + 1): (dy, dx)
    y = np.arange(shape[0]) * cells[0] / shape[0]
    x = np.arange(shape[1]) * cells[1] / shape[1]
    iy, ix = y.astype(int), x.astype(int)
    fy, fx = (y - iy)[:, None], (x - ix)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        gy, gx = gradients[:, iy + dy][:, :, ix + dx]
        return gy * (fy - dy) + gx * (fx - dx)

    u, v = _fade(fy), _fade(fx)
    top = corner(0, 0) * (1 - v) + corner(0, 1) * v
    bottom = corner(1, 0) * (1 - v) + corner(1, 1) * v
    return np.sqrt(2) * (top * (1 - u) + bottom * u)


def perlin_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """DRAEM's mask: Perlin noise with 2**k lattice cells per axis (k drawn per axis, the finest
    lattice keeping cells at least 8 pixels wide as DRAEM's does at 256 px), thresholded at
    PERLIN_THRESHOLD."""
    exponents = [_uniform_int(rng, 0, min(MAX_PERLIN_EXPONENT, int(np.log2(max(side // 8, 1)))))
                 for side in shape]
    noise = perlin_noise(shape, (2 ** exponents[0], 2 ** exponents[1]), rng)
    return (noise > PERLIN_THRESHOLD).astype(np.uint8)


def _shuffled_texture(source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The source image flipped, rotated (square images) and rolled at random, so that an aligned
    data set (the same object in every image) does not blend in the same structure at the same place."""
    texture = source[:, ::-1] if rng.random() < 0.5 else source
    texture = texture[:, :, ::-1] if rng.random() < 0.5 else texture
    if texture.shape[1] == texture.shape[2]:
        texture = np.rot90(texture, _uniform_int(rng, 0, 3), axes=(1, 2))
    shift = (_uniform_int(rng, 0, texture.shape[1] - 1), _uniform_int(rng, 0, texture.shape[2] - 1))
    return np.roll(texture, shift, axis=(1, 2))


def perlin(image: np.ndarray, source: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Another image's texture blended in with opacity beta inside a thresholded Perlin mask."""
    mask = perlin_mask(image.shape[1:], rng)
    beta = rng.uniform(*OPACITY)
    blended = (1 - beta) * image + beta * _shuffled_texture(source, rng)
    return np.where(mask.astype(bool), blended, image).astype(np.float32), mask


def blob_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A filled ellipse covering PATCH_AREA of the image, at a random place, aspect and angle."""
    height, width = shape
    area = rng.uniform(*PATCH_AREA) * height * width
    ratio = np.exp(rng.uniform(*np.log(ASPECT_RATIO)))
    semi_a, semi_b = np.sqrt(area * ratio / np.pi), np.sqrt(area / (ratio * np.pi))
    angle = rng.uniform(0, np.pi)
    centre = rng.uniform(0, 1, 2) * (height - 1, width - 1)
    along, across = _rotated_coordinates(shape, centre, angle)
    return ((along / semi_a) ** 2 + (across / semi_b) ** 2 <= 1).astype(np.uint8)


def blur(image: np.ndarray, source: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian blur (sigma 1-4% of the side, at least 0.7 px) inside a random blob."""
    mask = blob_mask(image.shape[1:], rng)
    sigma = max(0.7, rng.uniform(0.01, 0.04) * min(image.shape[1:]))
    blurred = ndimage.gaussian_filter(image, sigma=(0, sigma, sigma), mode="reflect")
    return np.where(mask.astype(bool), blurred, image).astype(np.float32), mask


def intensity(image: np.ndarray, source: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Contrast x0.5-1.5 about the blob's mean and a brightness shift of 0.05-0.25 inside a random
    blob; the shift brightens a dark region and darkens a bright one so that clipping keeps it."""
    mask = blob_mask(image.shape[1:], rng).astype(bool)
    inside = image[:, mask]
    mean = inside.mean() if inside.size else 0.0
    contrast = rng.uniform(0.5, 1.5)
    shift = rng.uniform(0.05, 0.25) * (1 if mean < 0.5 else -1)
    changed = np.clip((image - mean) * contrast + mean + shift, 0, 1)
    return np.where(mask, changed, image).astype(np.float32), mask.astype(np.uint8)


GENERATORS: dict[str, Generator] = {
    "cutpaste": cutpaste, "scar": scar, "perlin": perlin, "blur": blur, "intensity": intensity,
}
DEFAULT_KINDS = tuple(GENERATORS)
MIN_CHANGE = 0.01  # mean absolute change inside the mask, in [0, 1] intensity units (2.5 grey levels)
MAX_TRIES = 25


def _as_images(images, name: str) -> np.ndarray:
    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4 or array.shape[0] < 1 or not np.isfinite(array).all():
        raise GonomalyError(f"synthetic anomalies: {name} must be a finite (N, C, H, W) array, got "
                            f"shape {array.shape}")
    if array.min() < 0 or array.max() > 1:
        raise GonomalyError(f"synthetic anomalies: {name} must lie in [0, 1]")
    return array


def _pick_source(sources: np.ndarray, image: np.ndarray, exclude: int | None,
                 rng: np.random.Generator) -> np.ndarray:
    """A random source image other than ``exclude`` and, where one exists, not equal to the image."""
    candidates = np.delete(np.arange(len(sources)), exclude) if exclude is not None else np.arange(len(sources))
    if len(candidates) == 0:
        return sources[0]
    order = rng.permutation(candidates)
    return next((sources[j] for j in order[:MAX_TRIES] if not np.array_equal(sources[j], image)), sources[order[0]])


def synthesize_one(image: np.ndarray, source: np.ndarray, kind: str, rng: np.random.Generator,
                   min_change: float = MIN_CHANGE) -> tuple[np.ndarray, np.ndarray]:
    """One anomaly of ``kind``, re-drawn until its mask is non-empty and the mean absolute change
    inside it reaches ``min_change``; after MAX_TRIES the largest change is kept if it is not zero."""
    best, best_change = None, 0.0
    for _ in range(MAX_TRIES):
        changed, mask = GENERATORS[kind](image, source, rng)
        inside = mask.astype(bool)
        if not inside.any():
            continue
        changed = np.where(inside, np.clip(changed, 0, 1), image).astype(np.float32)
        change = float(np.abs(changed - image)[:, inside].mean())
        if change >= min_change:
            return changed, inside.astype(np.uint8)
        if change > best_change:
            best, best_change = (changed, inside.astype(np.uint8)), change
    if best is None:
        raise GonomalyError(f"synthetic anomalies: {kind} cannot change this image in {MAX_TRIES} tries "
                            f"(is it constant?)")
    return best


def make_synthetic(images, sources=None, n: int | None = None, rng: np.random.Generator | int = 0,
                   kinds: Sequence[str] = DEFAULT_KINDS,
                   min_change: float = MIN_CHANGE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` synthetic anomalies (default: one per image): output ``i`` changes ``images[i % N]``
    with generator ``kinds[i % len(kinds)]``; texture comes from a random image of ``sources``
    (default: the other images). Returns float32 (n, C, H, W) in [0, 1], uint8 masks (n, H, W)
    and the kind of each output. Deterministic for a seed; a Generator advances its spawn counter."""
    same_sources = sources is None or sources is images
    images = _as_images(images, "images")
    sources = images if sources is None else _as_images(sources, "sources")
    if sources.shape[1:] != images.shape[1:]:
        raise GonomalyError(f"synthetic anomalies: sources are {sources.shape[1:]}, images {images.shape[1:]}")
    unknown = [kind for kind in kinds if kind not in GENERATORS]
    if unknown or not kinds:
        raise GonomalyError(f"synthetic anomalies: unknown kind {unknown or kinds} "
                            f"(known: {', '.join(GENERATORS)})")
    n = len(images) if n is None else int(n)
    parent = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    anomalous = np.empty((n, *images.shape[1:]), np.float32)
    masks = np.empty((n, *images.shape[2:]), np.uint8)
    used = np.array([kinds[i % len(kinds)] for i in range(n)], dtype=object)
    for i, child in enumerate(parent.spawn(n)):
        index = i % len(images)
        source = _pick_source(sources, images[index], index if same_sources else None, child)
        anomalous[i], masks[i] = synthesize_one(images[index], source, used[i], child, min_change)
    return anomalous, masks, used.astype(str)


def synthetic_image_set(normals, sources=None, rng: np.random.Generator | int = 0,
                        kinds: Sequence[str] = DEFAULT_KINDS) -> ImageSet:
    """The normal images (label 0, group NORMAL_GROUP) followed by one synthetic anomaly of each
    (label 1, group ``synthetic_KIND``), with masks: a labelled set to rank scoring choices on."""
    normals = _as_images(normals, "normals")
    anomalous, masks, used = make_synthetic(normals, sources, len(normals), rng, kinds)
    count = len(normals)
    return ImageSet(
        images=np.concatenate([normals, anomalous]),
        labels=np.concatenate([np.zeros(count, np.int64), np.ones(count, np.int64)]),
        groups=np.array([NORMAL_GROUP] * count + [f"synthetic_{kind}" for kind in used], dtype=object),
        ids=[f"normal/{i}" for i in range(count)] + [f"synthetic_{kind}/{i}" for i, kind in enumerate(used)],
        masks=np.concatenate([np.zeros((count, *normals.shape[2:]), np.uint8), masks]),
    )
