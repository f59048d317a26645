"""Batch perceptual hashes (phash, dhash, ahash) equal bit for bit to imagehash.

imagehash 4.3 hashes one PIL image at a time. This module hashes a whole
(N, H, W) uint8 array with NumPy matrix products and returns, for each image,
the value ``int(str(imagehash.phash(Image.fromarray(img, "L"))), 16)`` (or
``dhash``, ``average_hash``) as one uint64.

Three steps have to match the reference exactly:

* Pillow's LANCZOS resize (imagehash's ``ANTIALIAS``). Pillow resamples one
  side at a time with weights rounded to 22-bit fixed point, and rounds each
  pass's output down to 8 bits with clipping. ``lanczos_weights`` computes the
  same integer weights, and every fixed-point sum is an integer far below
  2**53, so float64 BLAS computes it exactly.
* The DCT-II of phash, unnormalised like ``scipy.fftpack.dct``, computed here
  as two matrix products.
* The median threshold of phash. When a DCT coefficient ties with the median
  (about 4% of notMNIST glyphs), imagehash's bit comes from the rounding noise
  of scipy's FFT. Images with a coefficient near their median are hashed again
  the way imagehash does it, with ``scipy.fftpack`` on the resized image.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

try:
    from threadpoolctl import threadpool_limits
except ImportError:
    # NOTE: without threadpoolctl, BLAS keeps its own thread count. On 2 cores
    # shared with other processes that made phash about three times slower.
    threadpool_limits = None

logger = logging.getLogger(__name__)

HASH_METHODS: tuple[str, ...] = ("phash", "dhash", "ahash")
MIN_HASH_SIZE = 2
MAX_HASH_SIZE = 8  # hash_size**2 bits must fit in one uint64

# imagehash.phash resizes to hash_size * highfreq_factor pixels a side; its
# default factor is 4, so a 8x8 phash reads a 32x32 image.
PHASH_HIGHFREQ_FACTOR = 4

# Pillow: PRECISION_BITS = 32 - 8 - 2 in Resample.c (8-bit images).
PRECISION_BITS = 22
LANCZOS_SUPPORT = 3.0

# A phash coefficient closer to the median than this fraction of the block's
# largest magnitude counts as tied. On the 8,000-image real notMNIST sample our
# DCT and scipy's differ by at most 4e-15 of that magnitude, while the closest
# coefficient that is not tied sits 7e-9 of it from its median. A false alarm
# costs one scipy call and a miss costs a wrong bit, so the margin leans toward
# false alarms.
TIE_TOLERANCE = 1e-9

# Maximum pixels in one batch, counted at the larger of input and resized size,
# so that large images cannot grow a batch's float64 arrays past about 8 MB.
BATCH_PIXEL_LIMIT = 1 << 20


@dataclass(frozen=True)
class HashSpec:
    """The kind of perceptual hash: ``method`` in HASH_METHODS and its side.

    ``hash_size`` is the side of the bit grid, from 2 to 8, so a hash has
    ``hash_size**2`` bits (4 to 64). Raises ValueError for an unknown method
    or a size out of range, TypeError for a size that is not an int.
    """

    method: str = "phash"
    hash_size: int = 8

    def __post_init__(self) -> None:
        if self.method not in HASH_METHODS:
            raise ValueError(
                f"invalid hash method {self.method!r}; use one of {HASH_METHODS}"
            )
        size = self.hash_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TypeError(
                f"invalid hash_size {size!r} of type {type(size).__name__}; "
                f"use an int from {MIN_HASH_SIZE} to {MAX_HASH_SIZE}"
            )
        if not MIN_HASH_SIZE <= size <= MAX_HASH_SIZE:
            raise ValueError(
                f"invalid hash_size {size}: supported sizes are {MIN_HASH_SIZE} "
                f"to {MAX_HASH_SIZE}, because hash_size**2 bits must fit in 64"
            )
        object.__setattr__(self, "hash_size", int(size))

    @property
    def bits(self) -> int:
        """Number of bits in one hash."""
        return self.hash_size**2

    @property
    def resize_shape(self) -> tuple[int, int]:
        """(height, width) in pixels that the image is resized to before hashing."""
        if self.method == "phash":
            side = self.hash_size * PHASH_HIGHFREQ_FACTOR
            return side, side
        if self.method == "dhash":
            return self.hash_size, self.hash_size + 1
        return self.hash_size, self.hash_size


@dataclass(frozen=True, eq=False)
class ImageHashes:
    """Hashes of one kind for N images, one uint64 each.

    Bit order is imagehash's: the first bit of the row-major bit grid is the
    most significant, so ``values[i] == int(str(imagehash_object), 16)``.
    ``values`` is stored as a read-only view.
    """

    spec: HashSpec
    values: np.ndarray  # (N,) uint64

    def __post_init__(self) -> None:
        if not isinstance(self.spec, HashSpec):
            raise TypeError(
                f"spec must be a HashSpec, got {type(self.spec).__name__}; "
                "pass HashSpec(method, hash_size)"
            )
        values = np.asarray(self.values)
        if values.ndim != 1:
            raise ValueError(
                f"hash values must be 1-D, got shape {values.shape}; "
                "pass one value per image"
            )
        if values.dtype != np.uint64:
            raise ValueError(
                f"hash values must be uint64, got {values.dtype}; convert "
                "signed 64-bit storage with values.view(np.uint64)"
            )
        if self.spec.bits < 64 and len(values) and values.max() >> self.spec.bits:
            raise ValueError(
                f"hash value {int(values.max()):#x} has more than the "
                f"{self.spec.bits} bits of {self.spec}; check the spec"
            )
        values = values.view()
        values.flags.writeable = False
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int | slice | np.ndarray) -> ImageHashes:
        """Return the hashes at ``index`` (int, slice, index array or mask).

        An int index gives a subset of length 1, not a scalar.
        """
        return ImageHashes(self.spec, np.atleast_1d(self.values[index]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageHashes):
            return NotImplemented
        return self.spec == other.spec and np.array_equal(self.values, other.values)

    __hash__ = None  # type: ignore[assignment]  # equality depends on array contents

    def check_comparable(self, other: ImageHashes) -> None:
        """Raise ValueError, naming both specs, unless ``other`` has this spec."""
        if self.spec != other.spec:
            raise ValueError(
                f"cannot compare hashes of {self.spec} with hashes of {other.spec}; "
                "compute both with the same HashSpec"
            )

    def to_hex(self) -> list[str]:
        """Format each hash as ``str()`` of the matching imagehash object does."""
        width = math.ceil(self.spec.bits / 4)
        return [f"{int(value):0{width}x}" for value in self.values]

    @classmethod
    def concatenate(cls, parts: Iterable[ImageHashes]) -> ImageHashes:
        """Join hash sets of one spec in order; ValueError if specs differ."""
        parts = list(parts)
        if not parts:
            raise ValueError("cannot concatenate an empty list of hash sets")
        for part in parts[1:]:
            parts[0].check_comparable(part)
        return cls(parts[0].spec, np.concatenate([part.values for part in parts]))


def compute_hashes(
    pixels: np.ndarray,
    spec: HashSpec = HashSpec(),
    batch_size: int = 512,
    progress: bool = False,
    blas_threads: int | None = 1,
) -> ImageHashes:
    """Hash every image of ``pixels``, a (N, H, W) uint8 grayscale array.

    H and W may be any sizes of at least 1. Each value equals imagehash's hash
    of ``Image.fromarray(pixels[i], "L")`` with ``spec``'s method and size
    (phash with imagehash's default ``highfreq_factor=4``). Images are hashed
    at most ``batch_size`` at a time, and fewer when they are large (see
    BATCH_PIXEL_LIMIT). The default of 512 keeps a batch's float64
    intermediates (about 9 MB for 28x28 phash) in cache. Batches of 8192 ran
    about half as fast on a loaded 2-core AMD EPYC. ``progress`` shows a tqdm
    bar over the batches.

    ``blas_threads`` caps BLAS threads while hashing (None keeps the BLAS
    default). The matrix products are only 28 to 32 wide, so extra threads
    gain little. When other processes share the cores, OpenBLAS threads wait
    on each other, and on 2 loaded cores one thread hashed about three times
    faster than two. The cap needs threadpoolctl and is skipped without it.

    Raises ValueError for a dtype other than uint8, a shape that is not
    (N, H, W), an empty side, or a batch_size or blas_threads below 1, and
    TypeError when pixels is not an ndarray or a count is not an int.
    """
    pixels = check_pixels(pixels)
    check_positive_int("batch_size", batch_size)
    if blas_threads is not None:
        check_positive_int("blas_threads", blas_threads)

    _, in_height, in_width = pixels.shape
    height, width = spec.resize_shape
    batch_pixels = max(in_height, height) * max(in_width, width)
    batch_size = max(1, min(batch_size, BATCH_PIXEL_LIMIT // batch_pixels))

    values = np.empty(len(pixels), dtype=np.uint64)
    starts = range(0, len(pixels), batch_size)
    with blas_thread_limit(blas_threads):
        for start in tqdm(starts, desc=spec.method, unit="batch", disable=not progress):
            batch = pixels[start : start + batch_size]
            values[start : start + len(batch)] = pack_bits(hash_bits(batch, spec))
    return ImageHashes(spec, values)


def blas_thread_limit(threads: int | None) -> contextlib.AbstractContextManager:
    """Return a context that caps BLAS at ``threads`` threads (None: no cap).

    Without threadpoolctl the context does nothing.
    """
    if threads is None or threadpool_limits is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def check_positive_int(name: str, value: object) -> None:
    """Raise an error naming ``name`` unless ``value`` is an int of at least 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"invalid {name} {value!r}; use a positive int")
    if value < 1:
        raise ValueError(f"invalid {name} {value}; use a positive int")


def check_pixels(pixels: np.ndarray) -> np.ndarray:
    """Return ``pixels`` if it is a (N, H, W) uint8 ndarray, else raise an error."""
    if not isinstance(pixels, np.ndarray):
        raise TypeError(
            f"pixels must be a NumPy array, got {type(pixels).__name__}; "
            "pass np.asarray(images, dtype=np.uint8)"
        )
    if pixels.dtype != np.uint8:
        fix = (
            "scale [0, 1] floats with (pixels * 255).round().astype(np.uint8)"
            if np.issubdtype(pixels.dtype, np.floating)
            else "convert 0-255 values with pixels.astype(np.uint8)"
        )
        raise ValueError(
            f"pixels must be uint8 grayscale, got dtype {pixels.dtype} "
            f"with shape {pixels.shape}; {fix}"
        )
    if pixels.ndim != 3:
        raise ValueError(
            f"pixels must have shape (N, H, W), got shape {pixels.shape}; "
            "add a leading axis with pixels[None] for a single image"
        )
    if pixels.shape[1] < 1 or pixels.shape[2] < 1:
        raise ValueError(
            f"pixels has an empty side, shape {pixels.shape}; images need H, W >= 1"
        )
    return pixels


def hash_bits(pixels: np.ndarray, spec: HashSpec) -> np.ndarray:
    """Return the (N, hash_size, hash_size) bool bit grids of ``spec``'s method."""
    height, width = spec.resize_shape
    resized = resize_lanczos(pixels, height, width)
    if spec.method == "phash":
        return phash_bits(resized, spec.hash_size)
    if spec.method == "dhash":
        return resized[:, :, 1:] > resized[:, :, :-1]
    # ahash: pixel > mean. Comparing integers, pixel * count > sum, is exact
    # and equal to imagehash's float comparison, because numpy's float64 sum
    # of at most 64 bytes is exact and sum / count is never rounded onto an
    # integer it does not equal.
    totals = resized.sum(axis=(1, 2), dtype=np.int64)[:, None, None]
    return resized.astype(np.int64) * spec.bits > totals


def phash_bits(resized: np.ndarray, hash_size: int) -> np.ndarray:
    """Return phash bit grids from (N, S, S) uint8 images resized by Pillow."""
    count, side, _ = resized.shape
    basis = dct_matrix(side)[:hash_size]  # (hash_size, side)
    low = basis @ resized.astype(np.float64) @ basis.T
    flat = low.reshape(count, -1)

    # The median as numpy.median computes it, taken from a sort, which is
    # much faster than numpy.median along an axis.
    ordered = np.sort(flat, axis=1)
    middle = flat.shape[1] // 2
    if flat.shape[1] % 2:
        medians = ordered[:, middle : middle + 1]
    else:
        medians = (
            ordered[:, middle - 1 : middle] + ordered[:, middle : middle + 1]
        ) / 2
    bits = flat > medians

    # With an odd number of bits the median is itself a coefficient, which is
    # never above itself. Any other coefficient near the median is a tie.
    margin = TIE_TOLERANCE * np.abs(flat).max(axis=1)
    near = (np.abs(flat - medians) <= margin[:, None]).sum(axis=1)
    tied = np.flatnonzero(near > flat.shape[1] % 2)
    if len(tied):
        logger.debug(
            "phash: %d of %d images have a DCT coefficient tied with the median; "
            "hashing them with scipy.fftpack",
            len(tied),
            count,
        )
        bits[tied] = phash_bits_scipy(resized[tied], hash_size).reshape(len(tied), -1)
    return bits.reshape(count, hash_size, hash_size)


def phash_bits_scipy(resized: np.ndarray, hash_size: int) -> np.ndarray:
    """Return phash bit grids computed as imagehash 4.3 computes them."""
    # Imported here so that importing this module does not load scipy.
    import scipy.fftpack

    grids = np.empty((len(resized), hash_size, hash_size), dtype=bool)
    for i, image in enumerate(resized):
        # One C-contiguous image at a time, as imagehash passes it, so scipy's
        # rounding is the same.
        image = np.ascontiguousarray(image)
        dct = scipy.fftpack.dct(scipy.fftpack.dct(image, axis=0), axis=1)
        low = dct[:hash_size, :hash_size]
        grids[i] = low > np.median(low)
    return grids


@functools.cache
def dct_matrix(size: int) -> np.ndarray:
    """Return the (size, size) DCT-II matrix of ``scipy.fftpack.dct(norm=None)``.

    Row k is ``2 * cos(pi * k * (2n + 1) / (2 * size))`` over n.
    """
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    matrix = 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * size))
    matrix.flags.writeable = False
    return matrix


def resize_lanczos(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (N, H, W) uint8 images to (N, height, width) as Pillow does.

    Equals ``Image.fromarray(img, "L").resize((width, height), LANCZOS)`` for
    the installed Pillow: one pass a side, skipped when that side keeps its
    size, each rounding its output to uint8, in the order Pillow chooses.
    """
    _, in_height, in_width = pixels.shape
    if pillow_runs_vertical_first(in_height, in_width, height, width):
        return resample_width(resample_height(pixels, height), width)
    return resample_height(resample_width(pixels, width), height)


def resample_width(pixels: np.ndarray, width: int) -> np.ndarray:
    """Run Pillow's horizontal LANCZOS pass: (N, H, W) to (N, H, width) uint8."""
    count, height, in_width = pixels.shape
    if width == in_width:
        return pixels
    weights = lanczos_weights(in_width, width)  # (width, in_width)
    # One large product over all rows; NumPy's mixed uint8 @ float64 product
    # is several times slower than converting first.
    rows = pixels.reshape(count * height, in_width).astype(np.float64)
    return round_fixed_point(rows @ weights.T).reshape(count, height, width)


def resample_height(pixels: np.ndarray, height: int) -> np.ndarray:
    """Run Pillow's vertical LANCZOS pass: (N, H, W) to (N, height, W) uint8."""
    in_height = pixels.shape[1]
    if height == in_height:
        return pixels
    weights = lanczos_weights(in_height, height)  # (height, in_height)
    return round_fixed_point(weights @ pixels.astype(np.float64))


def pillow_runs_vertical_first(
    in_height: int, in_width: int, height: int, width: int
) -> bool:
    """Return whether Pillow resizes this shape with the vertical pass first.

    Pillow 13.0 (``ImagingResampleInner`` in ``src/libImaging/Resample.c``)
    runs the vertical pass first when the height loses more than twice as many
    pixels as the width. Some earlier releases always start with the
    horizontal pass. The two orders round differently, so for such shapes the
    installed Pillow is probed once to learn which order it uses.
    """
    shrink = in_height - height
    if not (shrink > 0 and shrink > 2 * (in_width - width)):
        return False
    return probe_pillow_vertical_first()


@functools.lru_cache(maxsize=1)
def probe_pillow_vertical_first() -> bool:
    """Return whether the installed Pillow runs the vertical pass first.

    Resizes one fixed noise image whose two pass orders give different
    results, with Pillow and with both orders here. Raises RuntimeError if
    neither order matches, since hashes would then differ from imagehash's.
    """
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, (1, 56, 29), dtype=np.uint8)
    height, width = 8, 8
    expected = np.asarray(
        Image.fromarray(image[0], "L").resize((width, height), Image.LANCZOS)
    )
    vertical = resample_width(resample_height(image, height), width)[0]
    horizontal = resample_height(resample_width(image, width), height)[0]
    if np.array_equal(expected, vertical):
        return True
    if np.array_equal(expected, horizontal):
        return False
    raise RuntimeError(
        f"Pillow {Image.__version__} resizes differently from this module's copy "
        "of its LANCZOS resampling, so hashes would not match imagehash; "
        "report the Pillow version or pin the Pillow release that matches"
    )


def round_fixed_point(sums: np.ndarray) -> np.ndarray:
    """Turn exact fixed-point sums into uint8 pixels as Pillow's clip8 does."""
    # Pillow accumulates in a C int starting from one half (1 << 21), shifts
    # right by 22 bits (a floor) and clips to 0..255. Its weights keep every
    # sum inside the int32 range, so the cast to int32 is exact.
    fixed = sums.astype(np.int32)
    fixed += 1 << (PRECISION_BITS - 1)
    fixed >>= PRECISION_BITS
    np.clip(fixed, 0, 255, out=fixed)
    return fixed.astype(np.uint8)


@functools.cache
def lanczos_weights(in_size: int, out_size: int) -> np.ndarray:
    """Return Pillow's 8-bit LANCZOS weights as a dense (out_size, in_size) matrix.

    Entries are Pillow's fixed-point integers (weight * 2**22, rounded half
    away from zero), stored as float64. The arithmetic follows Pillow's
    ``precompute_coeffs`` and ``normalize_coeffs_8bpc`` in the same order and
    with C's libm ``sin`` (through ``math.sin``), so the rounded weights are
    the same.
    """
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for out_index, (first, taps) in enumerate(lanczos_taps(in_size, out_size)):
        total = 0.0
        for tap in taps:
            total += tap  # summed in Pillow's order, so rounding matches
        for offset, tap in enumerate(taps):
            weight = tap / total if total != 0.0 else tap
            fixed = weight * (1 << PRECISION_BITS)
            fixed = math.trunc(fixed - 0.5) if weight < 0 else math.trunc(fixed + 0.5)
            matrix[out_index, first + offset] = fixed
    matrix.flags.writeable = False
    return matrix


def lanczos_taps(in_size: int, out_size: int) -> list[tuple[int, list[float]]]:
    """Return, per output pixel, its first input index and Pillow's unnormalised LANCZOS taps."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = LANCZOS_SUPPORT * filter_scale
    inverse_scale = 1.0 / filter_scale
    rows = []
    for out_index in range(out_size):
        center = (out_index + 0.5) * scale
        # C's (int) cast truncates toward zero; max() then clamps to the image.
        first = max(int(center - support + 0.5), 0)
        stop = min(int(center + support + 0.5), in_size)
        taps = [
            lanczos_kernel((x - center + 0.5) * inverse_scale)
            for x in range(first, stop)
        ]
        rows.append((first, taps))
    return rows


def lanczos_kernel(x: float) -> float:
    """Return Pillow's LANCZOS filter: sinc(x) * sinc(x / 3) on [-3, 3)."""
    if not -LANCZOS_SUPPORT <= x < LANCZOS_SUPPORT:
        return 0.0
    return sinc(x) * sinc(x / 3.0)


def sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack (N, ...) bool bit grids into (N,) uint64, first bit most significant."""
    flat = bits.reshape(len(bits), -1)
    padded = np.zeros((len(flat), 64), dtype=bool)
    padded[:, 64 - flat.shape[1] :] = flat
    return np.packbits(padded, axis=1).view(">u8").ravel().astype(np.uint64)


def popcount64(x: np.ndarray) -> np.ndarray:
    """Return the number of set bits of each element of a uint64 array, as uint8."""
    x = np.asarray(x)
    if x.dtype != np.uint64:
        raise ValueError(
            f"popcount64 needs a uint64 array, got {x.dtype}; "
            "convert with x.view(np.uint64) or x.astype(np.uint64)"
        )
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(x)
    return popcount64_swar(x)


def popcount64_swar(x: np.ndarray) -> np.ndarray:
    """Count set bits of uint64 values with shifts and masks, for NumPy < 2.0."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + (
        (x >> np.uint64(2)) & np.uint64(0x3333333333333333)
    )
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    # The multiply sums the eight byte counts into the top byte.
    return ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.uint8)


def hamming_distance(a: ImageHashes, b: ImageHashes) -> np.ndarray:
    """Return the bitwise Hamming distance of a[i] and b[i], as uint8 (0..64).

    The lengths must be equal, or one of them 1 (it is then compared with every
    hash of the other). Raises ValueError when the specs or lengths differ.
    """
    a.check_comparable(b)
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise ValueError(
            f"cannot compare {len(a)} hashes with {len(b)} element by element; "
            "pass equal lengths, a single hash, or use pairwise_hamming_distance"
        )
    return popcount64(a.values ^ b.values)


def pairwise_hamming_distance(a: ImageHashes, b: ImageHashes) -> np.ndarray:
    """Return the (len(a), len(b)) uint8 matrix of Hamming distances.

    Memory is len(a) * len(b) bytes plus a uint64 temporary of 8 times that,
    so callers should pass blocks of a large set. Raises ValueError when the
    specs differ.
    """
    a.check_comparable(b)
    return popcount64(a.values[:, None] ^ b.values[None, :])
