"""Near duplicates: images within a perceptual-hash Hamming distance.

Two glyph images are near duplicates when the Hamming distance between their
hashes is at most ``max_distance``, or, with the default settings, when the
same holds for one of two variants (see dedup.variants): their 3x3
median-filtered images, which tolerates a few inverted pixels, or a one-pixel
shift of one against the other, compared on their trimmed images.

Near-uniform images (a blank box, a letter that fills the box) are the
exception, because their hashes are degenerate. The phash of any uniform
image is ``8000000000000000``, except pure black, whose phash is 0, one bit
away. So near-uniform images are never compared by hash. They are compared
by pixels instead, with each other only: two near-uniform images are near
duplicates when their mean absolute pixel difference is at most
``NEAR_UNIFORM_MAX_MEAN_DIFFERENCE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .hashing import HashSpec, ImageHashes
from .search import NearPairs, find_near_pairs, find_near_pairs_between
from .variants import VariantHashes, compute_variant_hashes

# An image whose darkest and lightest pixels differ by at most this much (of
# 255) carries too little structure for a perceptual hash.
# NOTE: a white box with a thin gray edge line has a wider range, so it is
# compared by hash. Ten such images of the real 8,000-image sample have the
# degenerate phash 8000000000000000. They link to each other at distance 0
# but never to the all-white images, though they differ from white by a mean
# of 1.3 to 7.6 per pixel.
NEAR_UNIFORM_MAX_RANGE = 24
NEAR_UNIFORM_MAX_MEAN_DIFFERENCE = 8.0

# A search may return at most this many pairs per image on average, and at
# least MIN_PAIR_BUDGET in all. The default rule links about 3 per image on
# the full-size synthetic archives. A 4-bit hash at distance 3 links every
# pair, and for 8,000 images that took 23 GB.
MAX_PAIRS_PER_IMAGE = 100
MIN_PAIR_BUDGET = 1_000_000
# Hashes sampled on each side to estimate a search's pair count.
PAIR_SAMPLE_SIZE = 2048

# Distance recorded for a pair decided by pixels rather than by hash.
PIXEL_DECIDED = -1

# The comparisons that can link a pair, in order of preference when several
# link it: the hashes themselves, the median-filtered variants, a one-pixel
# shift, or the pixels of two near-uniform images.
COMPARISONS: tuple[str, ...] = ("hash", "median_filtered", "shifted", "pixels")
BY_HASH, BY_MEDIAN_FILTERED, BY_SHIFT, BY_PIXELS = range(len(COMPARISONS))


@dataclass(frozen=True)
class DedupSettings:
    """The definition of a near duplicate, which is part of every build's identity.

    ``compare_median_filtered`` and ``compare_shifted`` add the variant
    comparisons of dedup.variants, at the same ``max_distance``. The variants
    are always phash-like, whatever ``method`` the images are compared with.
    """

    method: str = "phash"
    hash_size: int = 8
    max_distance: int = 4
    compare_median_filtered: bool = True
    compare_shifted: bool = True

    def __post_init__(self) -> None:
        HashSpec(self.method, self.hash_size)  # validates both
        bits = self.hash_size * self.hash_size
        if not 0 <= self.max_distance < bits:
            raise ValueError(
                f"max_distance must be between 0 and {bits - 1} for {bits}-bit "
                f"hashes, got {self.max_distance}"
            )

    @property
    def hash_spec(self) -> HashSpec:
        return HashSpec(self.method, self.hash_size)

    @property
    def uses_variants(self) -> bool:
        return self.compare_median_filtered or self.compare_shifted

    def describe(self) -> str:
        """Return the rule as one phrase, for reports and the dataset card."""
        variants = []
        if self.compare_median_filtered:
            variants.append("after a 3x3 median filter")
        if self.compare_shifted:
            variants.append("after a one-pixel shift")
        rule = f"{self.method} Hamming distance <= {self.max_distance}"
        if not variants:
            return rule
        if self.method == "phash":
            return f"{rule}, as is or {' or '.join(variants)}"
        return f"{rule}, or phash distance <= {self.max_distance} {' or '.join(variants)}"

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "hash_size": self.hash_size,
            "max_distance": self.max_distance,
            "compare_median_filtered": self.compare_median_filtered,
            "compare_shifted": self.compare_shifted,
            "near_uniform_max_range": NEAR_UNIFORM_MAX_RANGE,
            "near_uniform_max_mean_difference": NEAR_UNIFORM_MAX_MEAN_DIFFERENCE,
        }


def near_uniform_mask(pixels: np.ndarray) -> np.ndarray:
    """Return True for each image whose pixel range is at most NEAR_UNIFORM_MAX_RANGE."""
    flat = pixels.reshape(len(pixels), -1)
    if len(flat) == 0:
        return np.zeros(0, dtype=bool)
    spread = flat.max(axis=1).astype(np.int16) - flat.min(axis=1)
    return spread <= NEAR_UNIFORM_MAX_RANGE


@dataclass
class ImageSet:
    """The hashes, digests, labels and near-uniform pixels of a set of images."""

    hashes: ImageHashes
    digests: np.ndarray  # (N, 2) uint64 pixel digests
    labels: np.ndarray  # (N,) int64
    near_uniform: np.ndarray  # (N,) bool
    # Pixels of the near-uniform images only, in index order, flattened.
    uniform_pixels: np.ndarray = field(repr=False, default=None)
    # Hashes of the median-filtered, trimmed and shifted variants.
    variants: VariantHashes = field(repr=False, default=None)

    @classmethod
    def from_pixels(
        cls, pixels: np.ndarray, hashes: ImageHashes, digests: np.ndarray, labels: np.ndarray
    ) -> "ImageSet":
        mask = near_uniform_mask(pixels)
        uniform = pixels[mask].reshape(int(mask.sum()), pixels[0].size if len(pixels) else 0)
        variants = compute_variant_hashes(pixels, hashes.spec.hash_size)
        return cls(hashes, digests, np.asarray(labels, np.int64), mask, uniform, variants)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> "ImageSet":
        indices = np.asarray(indices, dtype=np.int64)
        position = np.cumsum(self.near_uniform) - 1
        chosen_uniform = indices[self.near_uniform[indices]]
        return ImageSet(
            hashes=self.hashes[indices],
            digests=self.digests[indices],
            labels=self.labels[indices],
            near_uniform=self.near_uniform[indices],
            uniform_pixels=self.uniform_pixels[position[chosen_uniform]],
            variants=self.variants[indices],
        )

    @staticmethod
    def concatenate(sets: list["ImageSet"]) -> "ImageSet":
        specs = {s.hashes.spec for s in sets}
        if len(specs) != 1:
            raise ValueError(f"cannot join image sets hashed differently: {sorted(map(str, specs))}")
        return ImageSet(
            hashes=ImageHashes(specs.pop(), np.concatenate([s.hashes.values for s in sets])),
            digests=np.concatenate([s.digests for s in sets]),
            labels=np.concatenate([s.labels for s in sets]),
            near_uniform=np.concatenate([s.near_uniform for s in sets]),
            uniform_pixels=np.concatenate([s.uniform_pixels for s in sets]),
            variants=VariantHashes.concatenate([s.variants for s in sets]),
        )


@dataclass(frozen=True)
class DuplicatePairs:
    """Pairs (first < second) of near-duplicate images and how each was found.

    ``distance`` is the Hamming distance in the comparison ``comparison``
    names (an index into COMPARISONS), and PIXEL_DECIDED where pixels decided.
    """

    first: np.ndarray  # int64 indices
    second: np.ndarray  # int64 indices
    distance: np.ndarray  # int16
    comparison: np.ndarray  # int8 index into COMPARISONS

    def __len__(self) -> int:
        return len(self.first)


def _uniform_pairs(a: np.ndarray, b: np.ndarray, same_set: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) of near-uniform pixel rows within the mean-difference limit."""
    if len(a) == 0 or len(b) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    firsts, seconds = [], []
    b16 = b.astype(np.int16)
    # Bound the (block, len(b), pixels) difference array to about 32 MB.
    block_rows = max(1, (1 << 24) // (len(b) * b.shape[1]))
    for start in range(0, len(a), block_rows):
        block = a[start : start + block_rows].astype(np.int16)
        difference = np.abs(block[:, None, :] - b16[None, :, :]).mean(axis=2)
        i, j = np.nonzero(difference <= NEAR_UNIFORM_MAX_MEAN_DIFFERENCE)
        i = i + start
        if same_set:
            keep = i < j
            i, j = i[keep], j[keep]
        firsts.append(i)
        seconds.append(j)
    return np.concatenate(firsts).astype(np.int64), np.concatenate(seconds).astype(np.int64)


def _shifted_pairs(variants: VariantHashes, images: np.ndarray, max_distance: int) -> NearPairs:
    """Pairs (i, j) of ``images`` where a shifted variant of i is near the trimmed j.

    Returned with i and j as positions in ``images``; i != j, either order.
    """
    queries = variants.shifted[images].T.ravel()  # all images for shift 0, then 1, ...
    found = find_near_pairs_between(queries, variants.trimmed[images], max_distance)
    first = found.first % len(images)
    keep = first != found.second
    return NearPairs(first[keep], found.second[keep], found.distance[keep])


class TooManyPairsError(ValueError):
    """Settings under which nearly every image would be a near duplicate of many."""


def check_pair_budget(
    queries: np.ndarray, targets: np.ndarray, settings: DedupSettings, comparison: str
) -> None:
    """Raise TooManyPairsError when a search would return more than the budget of pairs.

    The count is estimated from a seeded sample of up to PAIR_SAMPLE_SIZE
    queries against as many targets, before the search allocates anything.
    The budget is MAX_PAIRS_PER_IMAGE per image, and never less than
    MIN_PAIR_BUDGET pairs.
    """
    if len(queries) == 0 or len(targets) == 0:
        return
    rng = np.random.default_rng(0)
    sample_queries = rng.choice(queries, min(len(queries), PAIR_SAMPLE_SIZE), replace=False)
    sample_targets = rng.choice(targets, min(len(targets), PAIR_SAMPLE_SIZE), replace=False)
    within = np.bitwise_count(sample_queries[:, None] ^ sample_targets[None, :])
    share = np.count_nonzero(within <= settings.max_distance) / within.size
    estimate = share * len(queries) * len(targets)
    images = max(len(queries), len(targets))
    budget = max(MIN_PAIR_BUDGET, MAX_PAIRS_PER_IMAGE * images)
    if estimate > budget:
        bits = settings.hash_size**2
        raise TooManyPairsError(
            f"the near-duplicate rule '{settings.describe()}' would link about "
            f"{estimate:,.0f} pairs among {images:,} images in the {comparison} "
            f"comparison, {estimate / images:,.0f} per image (the limit is "
            f"{MAX_PAIRS_PER_IMAGE}): with {bits}-bit hashes a distance of "
            f"{settings.max_distance} links unrelated images. Use a larger "
            "--hash-size or a smaller --max-distance"
        )


def find_duplicate_pairs(images: ImageSet, settings: DedupSettings) -> DuplicatePairs:
    """Find every near-duplicate pair (i < j) within one set, exact duplicates included.

    Raises TooManyPairsError, before searching, when the settings would link
    more pairs than check_pair_budget allows.
    """
    glyphs = np.flatnonzero(~images.near_uniform)
    uniform = np.flatnonzero(images.near_uniform)
    k = settings.max_distance
    variants = images.variants
    if settings.uses_variants and variants is None:
        raise ValueError(
            "these settings compare variant hashes, but the image set has none; "
            "make it with ImageSet.from_pixels or pass variants=compute_variant_hashes(...)"
        )
    hashes = images.hashes.values[glyphs]
    check_pair_budget(hashes, hashes, settings, settings.method)
    if settings.compare_median_filtered:
        filtered = variants.filtered[glyphs[variants.filtered_usable[glyphs]]]
        check_pair_budget(filtered, filtered, settings, "median-filtered")
    if settings.compare_shifted:
        usable = glyphs[variants.trimmed_usable[glyphs]]
        check_pair_budget(
            variants.shifted[usable].ravel(), variants.trimmed[usable], settings, "shifted"
        )
    firsts, seconds, distances, comparisons = [], [], [], []

    def add(a: np.ndarray, b: np.ndarray, distance: np.ndarray, comparison: int) -> None:
        firsts.append(np.minimum(a, b))
        seconds.append(np.maximum(a, b))
        distances.append(distance.astype(np.int16))
        comparisons.append(np.full(len(a), comparison, np.int8))

    pairs = find_near_pairs(hashes, k)
    add(glyphs[pairs.first], glyphs[pairs.second], pairs.distance, BY_HASH)
    if settings.compare_median_filtered:
        usable = glyphs[variants.filtered_usable[glyphs]]
        pairs = find_near_pairs(variants.filtered[usable], k)
        add(usable[pairs.first], usable[pairs.second], pairs.distance, BY_MEDIAN_FILTERED)
    if settings.compare_shifted:
        usable = glyphs[variants.trimmed_usable[glyphs]]
        pairs = _shifted_pairs(variants, usable, k)
        add(usable[pairs.first], usable[pairs.second], pairs.distance, BY_SHIFT)
    ui, uj = _uniform_pairs(images.uniform_pixels, images.uniform_pixels, same_set=True)
    add(uniform[ui], uniform[uj], np.full(len(ui), PIXEL_DECIDED), BY_PIXELS)

    first, second = np.concatenate(firsts), np.concatenate(seconds)
    distance, comparison = np.concatenate(distances), np.concatenate(comparisons)
    # One record a pair: the preferred comparison, then the smallest distance.
    order = np.lexsort((distance, comparison, second, first))
    first, second = first[order], second[order]
    distance, comparison = distance[order], comparison[order]
    new = np.ones(len(first), dtype=bool)
    new[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return DuplicatePairs(first[new], second[new], distance[new], comparison[new])
