"""Exact duplicates: images whose decoded pixels are identical.

Pixels, not file bytes, decide: two PNGs of the same glyph written with other
compression settings are still duplicates. Each image is identified by a
128-bit blake2b digest of its pixels, so two different images share a digest
with probability about N**2 / 2**129 (below 1e-27 for a million images).
"""

from __future__ import annotations

import hashlib

import numpy as np


def pixel_digests(pixels: np.ndarray) -> np.ndarray:
    """Return the (N, 2) uint64 blake2b-128 digests of uint8 images (N, ...)."""
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {pixels.dtype}")
    rows = pixels.reshape(len(pixels), -1)
    joined = b"".join(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows)
    return np.frombuffer(joined, dtype="<u8").reshape(-1, 2)


def exact_group_ids(digests: np.ndarray) -> np.ndarray:
    """Number the distinct images: equal digests get equal ids.

    Returns an (N,) int64 array of ids in ``0 .. G-1``, numbered in order of
    each group's first occurrence, so the result does not depend on how the
    digests sort.
    """
    if digests.ndim != 2 or digests.shape[1] != 2:
        raise ValueError(f"digests must have shape (N, 2), got {digests.shape}")
    if len(digests) == 0:
        return np.empty(0, dtype=np.int64)
    _, first_index, inverse = np.unique(
        digests, axis=0, return_index=True, return_inverse=True
    )
    inverse = inverse.reshape(-1)
    # Renumber so that group ids follow first occurrence.
    order = np.argsort(first_index, kind="stable")
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    return renumber[inverse].astype(np.int64)


def group_sizes(group_ids: np.ndarray) -> np.ndarray:
    """Return, for each image, how many images share its group id."""
    if len(group_ids) == 0:
        return np.empty(0, dtype=np.int64)
    counts = np.bincount(group_ids)
    return counts[group_ids]


def conflicting_groups(group_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return the sorted ids of groups whose members carry more than one label."""
    if len(group_ids) == 0:
        return np.empty(0, dtype=np.int64)
    pairs = np.unique(np.stack([group_ids, labels.astype(np.int64)], axis=1), axis=0)
    groups, counts = np.unique(pairs[:, 0], return_counts=True)
    return groups[counts > 1]
