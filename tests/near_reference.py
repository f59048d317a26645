"""Distances between one image and others in each near-duplicate comparison.

The reference for the variant comparisons, written from their definition
with plain NumPy, for the brute-force checks of the dedup tests.
"""

from __future__ import annotations

import numpy as np

from dedup.variants import SHIFTS, VariantHashes

# Stands for "not compared": above any Hamming distance of 64-bit hashes.
NOT_COMPARED = 65


def comparison_distances(
    phash: np.ndarray, variants: VariantHashes, i: int, others: np.ndarray
) -> dict[str, np.ndarray]:
    """Return the distance of image ``i`` to each of ``others`` in every hash comparison.

    Keys are "hash", "median_filtered" and "shifted". A comparison that does
    not apply, because a variant of either image is not usable, gives
    NOT_COMPARED. The shifted distance is the smallest over every shift of
    either image against the trimmed other.
    """
    found = {"hash": np.bitwise_count(phash[i] ^ phash[others]).astype(np.int64)}

    filtered = np.bitwise_count(variants.filtered[i] ^ variants.filtered[others])
    usable = variants.filtered_usable[i] & variants.filtered_usable[others]
    found["median_filtered"] = np.where(usable, filtered, NOT_COMPARED)

    shifted = np.full(len(others), NOT_COMPARED)
    for shift in range(len(SHIFTS)):
        forward = variants.shifted[i, shift] ^ variants.trimmed[others]
        backward = variants.shifted[others, shift] ^ variants.trimmed[i]
        shifted = np.minimum(shifted, np.bitwise_count(forward))
        shifted = np.minimum(shifted, np.bitwise_count(backward))
    usable = variants.trimmed_usable[i] & variants.trimmed_usable[others]
    found["shifted"] = np.where(usable, shifted, NOT_COMPARED)
    return found
