"""Perceptual hashes of image variants, for near duplicates that plain phash misses.

Plain phash moves by a median of 12 of 64 bits when a 28x28 glyph shifts by
one pixel, and by more than 4 bits in about one case of eight when a few
pixels are inverted. This module hashes two variants of each image so that
those pairs can still be found:

* the 3x3 median-filtered image, which removes isolated inverted pixels;
* the trimmed image: its outer one-pixel ring replaced by a copy of the line
  next to it, hashed as is (the target) and shifted by one pixel in four
  directions (the queries). When ``b`` is ``a`` moved one pixel and padded
  with any background, the trimmed ``b`` equals a shifted variant of ``a``
  (or the reverse), because everything the shift loses or adds lies in the
  ring. Four directions cover all eight, as each pair is compared both ways.

Each variant hash is a phash of the variant. The variant is resized with
LANCZOS to 4x the hash size, and the top-left hash_size x hash_size block of
its unnormalised DCT-II gives one bit per coefficient: set when above the
block's median (ties give 0), first bit most significant. Resize, trim,
shift and DCT are linear, so for every variant they collapse into one
(hash_size, side) matrix per axis, applied as two matrix products.

Unlike ``dedup.hashing``, the arithmetic is float64 without Pillow's 8-bit
rounding between passes, so the values are not imagehash's. They equal
imagehash's algorithm run on a float image (Pillow mode "F") up to rounding
at a coefficient equal to the median.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .hashing import TIE_TOLERANCE, blas_thread_limit, dct_matrix, lanczos_taps

# One-pixel shifts (rows, columns) of the queries. Each pair of opposite
# directions is covered by one of them, since pairs are compared both ways.
SHIFTS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))

# A variant whose pixel range is at most this (of 255) is too flat for a
# perceptual hash, as for near-uniform images in dedup.near.
FLAT_MAX_RANGE = 24

# A median filter erases strokes one pixel thin. The filtered image is
# compared only when it keeps at least this share of the image's ink: the sum
# of absolute differences from the background, the median of the outer ring.
# On the real 8,000-image sample the 1st percentile of the share is 0.71.
MIN_INK_KEPT = 0.5

# Images hashed per matrix product; about 6 MB of float64 a batch.
BATCH_SIZE = 1024

# Median-of-9 selection network (Paeth, Graphics Gems, 1990): 19
# compare-exchanges, after which element 4 is the median.
MEDIAN_OF_9_NETWORK = (
    (1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8),
    (0, 3), (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4),
    (4, 2),
)  # fmt: skip


@dataclass(frozen=True)
class VariantHashes:
    """Variant hashes of N images, as 64-bit phash-like values.

    ``filtered`` hashes the median-filtered image, ``trimmed`` the trimmed
    image, and ``shifted[:, s]`` the trimmed image moved by ``SHIFTS[s]``.
    ``filtered_usable`` and ``trimmed_usable`` are False where that variant
    is flat (range at most FLAT_MAX_RANGE), and ``filtered_usable`` also
    where the filter kept less than MIN_INK_KEPT of the ink. Hashes that are
    not usable are never compared.
    """

    hash_size: int
    filtered: np.ndarray  # (N,) uint64
    trimmed: np.ndarray  # (N,) uint64
    shifted: np.ndarray  # (N, len(SHIFTS)) uint64
    filtered_usable: np.ndarray  # (N,) bool
    trimmed_usable: np.ndarray  # (N,) bool

    def __len__(self) -> int:
        return len(self.filtered)

    def __getitem__(self, index: np.ndarray | slice) -> VariantHashes:
        """Return the variant hashes at ``index`` (slice, index array or mask)."""
        return VariantHashes(
            self.hash_size,
            self.filtered[index],
            self.trimmed[index],
            self.shifted[index],
            self.filtered_usable[index],
            self.trimmed_usable[index],
        )

    @classmethod
    def concatenate(cls, parts: Iterable[VariantHashes]) -> VariantHashes:
        """Join variant hashes of one hash size in order."""
        parts = list(parts)
        if not parts:
            raise ValueError("cannot concatenate an empty list of variant hashes")
        sizes = {part.hash_size for part in parts}
        if len(sizes) != 1:
            raise ValueError(
                f"cannot join variant hashes of hash sizes {sorted(sizes)}; "
                "compute them all with one hash size"
            )
        return cls(
            sizes.pop(),
            np.concatenate([part.filtered for part in parts]),
            np.concatenate([part.trimmed for part in parts]),
            np.concatenate([part.shifted for part in parts]),
            np.concatenate([part.filtered_usable for part in parts]),
            np.concatenate([part.trimmed_usable for part in parts]),
        )

    @classmethod
    def empty(cls, hash_size: int) -> VariantHashes:
        return cls(
            hash_size,
            np.empty(0, np.uint64),
            np.empty(0, np.uint64),
            np.empty((0, len(SHIFTS)), np.uint64),
            np.zeros(0, bool),
            np.zeros(0, bool),
        )


def compute_variant_hashes(
    pixels: np.ndarray, hash_size: int = 8, blas_threads: int | None = 1
) -> VariantHashes:
    """Hash the median-filtered, trimmed and shifted variants of (N, S, S) uint8 images.

    Images must be square with a side of at least 4 (two ring lines around
    content). ``blas_threads`` caps BLAS threads as in
    ``dedup.hashing.compute_hashes``. Raises ValueError for another shape or
    dtype, or a hash_size outside 2 to 8.
    """
    pixels = np.asarray(pixels)
    if (
        pixels.dtype != np.uint8
        or pixels.ndim != 3
        or pixels.shape[1] != pixels.shape[2]
    ):
        raise ValueError(
            f"expected (N, S, S) uint8 images, got {pixels.dtype} of shape "
            f"{pixels.shape}; decode to 8-bit grayscale squares first"
        )
    side = pixels.shape[1]
    if side < 4:
        raise ValueError(f"images of side {side} are too small; the minimum is 4")
    if not 2 <= hash_size <= 8:
        raise ValueError(f"hash_size must be between 2 and 8, got {hash_size}")

    count = len(pixels)
    result = VariantHashes(
        hash_size,
        np.empty(count, np.uint64),
        np.empty(count, np.uint64),
        np.empty((count, len(SHIFTS)), np.uint64),
        np.empty(count, bool),
        np.empty(count, bool),
    )
    whole = whole_image_operator(side, hash_size)
    # Rows of the trimmed operators for shifts -1, 0 and +1, stacked.
    trimmed = np.concatenate([trimmed_operator(side, hash_size, s) for s in (-1, 0, 1)])
    with blas_thread_limit(blas_threads):
        for start in range(0, count, BATCH_SIZE):
            batch = pixels[start : start + BATCH_SIZE]
            stop = start + len(batch)
            filtered = median_filter_3x3(batch)
            result.filtered[start:stop] = _threshold_at_median(
                whole @ filtered.astype(np.float64) @ whole.T
            )
            result.filtered_usable[start:stop] = (
                _value_range(filtered) > FLAT_MAX_RANGE
            ) & _keeps_ink(batch, filtered)
            result.trimmed_usable[start:stop] = (
                _value_range(batch[:, 1:-1, 1:-1]) > FLAT_MAX_RANGE
            )
            grids = _trimmed_coefficients(batch, trimmed, hash_size)
            result.trimmed[start:stop] = _threshold_at_median(grids[:, 1, 1])
            for column, (rows, columns) in enumerate(SHIFTS):
                result.shifted[start:stop, column] = _threshold_at_median(
                    grids[:, rows + 1, columns + 1]
                )
    for array in (result.filtered, result.trimmed, result.shifted):
        array.flags.writeable = False
    return result


def _trimmed_coefficients(
    batch: np.ndarray, operators: np.ndarray, hash_size: int
) -> np.ndarray:
    """Return (n, 3, 3, h, h) DCT blocks of the trimmed image at every row and column shift.

    Index [:, r + 1, c + 1] is the block of the trimmed image shifted by r
    rows and c columns. Both products are single large matrix products over
    the whole batch rather than n small ones.
    """
    n, side, _ = batch.shape
    width = operators.shape[0]  # 3 * hash_size
    images = batch.astype(np.float64)
    # Columns first: [image, row, (column shift, kx)].
    by_column = (images.reshape(n * side, side) @ operators.T).reshape(n, side, width)
    # Then rows: [image, (column shift, kx), (row shift, ky)].
    by_row = by_column.transpose(0, 2, 1).reshape(n * width, side) @ operators.T
    blocks = by_row.reshape(n, 3, hash_size, 3, hash_size)
    # To [image, row shift, column shift, ky, kx].
    return blocks.transpose(0, 3, 1, 4, 2)


def _threshold_at_median(blocks: np.ndarray) -> np.ndarray:
    """Pack (n, h, h) coefficients into (n,) uint64: bit set where above the median."""
    n = len(blocks)
    flat = np.ascontiguousarray(blocks).reshape(n, -1)
    size = flat.shape[1]
    middle = size // 2
    # A full sort of these short rows is several times faster than
    # np.partition, because NumPy sorts them with SIMD instructions.
    ordered = np.sort(flat, axis=1)
    if size % 2:
        medians = ordered[:, middle : middle + 1]
    else:
        medians = (
            ordered[:, middle - 1 : middle] + ordered[:, middle : middle + 1]
        ) / 2
    # Symmetric glyphs have DCT coefficients that are exactly 0 in exact
    # arithmetic, and often the median is one of them. Their float values
    # are rounding noise, so a coefficient counts as above the median only
    # by more than TIE_TOLERANCE times the block's largest magnitude.
    margin = TIE_TOLERANCE * np.abs(flat).max(axis=1, keepdims=True)
    padded = np.zeros((n, 64), dtype=bool)
    padded[:, 64 - size :] = flat > medians + margin
    return np.packbits(padded, axis=1).view(">u8").ravel().astype(np.uint64)


def _keeps_ink(images: np.ndarray, filtered: np.ndarray) -> np.ndarray:
    """Return True where ``filtered`` keeps at least MIN_INK_KEPT of the ink of ``images``."""
    ring = np.concatenate(
        [images[:, 0], images[:, -1], images[:, 1:-1, 0], images[:, 1:-1, -1]], axis=1
    )
    # Twice the median is an integer, so the sums are exact in int32.
    doubled_background = np.rint(2 * np.median(ring, axis=1)).astype(np.int16)
    doubled_background = doubled_background[:, None, None]
    ink = np.abs(2 * images.astype(np.int16) - doubled_background).sum(axis=(1, 2))
    kept = np.abs(2 * filtered.astype(np.int16) - doubled_background).sum(axis=(1, 2))
    return kept >= MIN_INK_KEPT * ink


def _value_range(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1)
    return flat.max(axis=1).astype(np.int16) - flat.min(axis=1)


def median_filter_3x3(pixels: np.ndarray) -> np.ndarray:
    """Return the 3x3 median of each pixel of (N, H, W) uint8 images, edges replicated."""
    padded = np.pad(pixels, ((0, 0), (1, 1), (1, 1)), mode="edge")
    _, height, width = pixels.shape
    window = [
        padded[:, dy : dy + height, dx : dx + width]
        for dy in range(3)
        for dx in range(3)
    ]
    for low, high in MEDIAN_OF_9_NETWORK:
        # New arrays each time, so the views into ``padded`` are never written.
        window[low], window[high] = (
            np.minimum(window[low], window[high]),
            np.maximum(window[low], window[high]),
        )
    return window[4]


@functools.cache
def lanczos_float_weights(in_size: int, out_size: int) -> np.ndarray:
    """Return the (out_size, in_size) LANCZOS resize matrix with float weights.

    The taps are Pillow's (support 3 scaled by the downscale factor, rows
    normalised to sum 1), without its rounding to 22-bit fixed point.
    """
    matrix = np.zeros((out_size, in_size))
    for out_index, (first, taps) in enumerate(lanczos_taps(in_size, out_size)):
        total = math.fsum(taps)
        matrix[out_index, first : first + len(taps)] = [tap / total for tap in taps]
    matrix.flags.writeable = False
    return matrix


@functools.cache
def whole_image_operator(side: int, hash_size: int) -> np.ndarray:
    """Return the (hash_size, side) matrix from image rows to low DCT rows."""
    resize = lanczos_float_weights(side, 4 * hash_size)
    operator = dct_matrix(4 * hash_size)[:hash_size] @ resize
    operator.flags.writeable = False
    return operator


@functools.cache
def trimmed_operator(side: int, hash_size: int, shift: int) -> np.ndarray:
    """Return the (hash_size, side) operator of the trimmed image moved by ``shift`` lines.

    Line i of the result is line ``clip(i, 1, side - 2) - shift`` of the
    input: the outer ring copies its inner neighbour, and a shift of +1 moves
    content toward higher indices.
    """
    select = np.zeros((side, side))
    for line in range(side):
        select[line, min(max(line, 1), side - 2) - shift] = 1.0
    operator = whole_image_operator(side, hash_size) @ select
    operator.flags.writeable = False
    return operator
