"""Seeded, balanced split selection that does not depend on member order.

Every image gets a key: the first 8 bytes of blake2b over the seed and its
stable id (the member path). Within a letter, images are taken in key order,
so the same archives and seed give the same split membership in any process
and on any machine, whatever order the archive stores its members in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .constants import CLASS_NAMES, NUM_CLASSES

ALL = "all"


class SplitSizeError(ValueError):
    """A split size that cannot be met or is not valid."""


def split_keys(sources: list[str], seed: int) -> np.ndarray:
    """Return the (N,) uint64 seeded sort key of each stable id."""
    prefix = f"notmnist-split\0{seed}\0".encode()
    joined = b"".join(
        hashlib.blake2b(prefix + source.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        for source in sources
    )
    return np.frombuffer(joined, dtype=">u8").astype(np.uint64)


def seeded_order(keys: np.ndarray, sources: list[str]) -> np.ndarray:
    """Return image indices sorted by key, ties broken by stable id."""
    # Ties between 64-bit keys are practically impossible, but the id keeps
    # the order total even then.
    by_source = np.argsort(np.asarray(sources, dtype=object), kind="stable")
    return by_source[np.argsort(keys[by_source], kind="stable")]


def parse_size(text: str) -> int | None:
    """Parse a split size option: a whole number of images, or ``all``."""
    if text.strip().lower() == ALL:
        return None
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise SplitSizeError(
            f"invalid split size {text!r}: give a whole number of images or 'all'"
        ) from None
    if value < NUM_CLASSES:
        raise SplitSizeError(
            f"invalid split size {value}: every split needs at least one image a "
            f"letter, so give {NUM_CLASSES} or more"
        )
    return value


def per_letter(total: int | None, split: str) -> int | None:
    """Turn a split total into a per-letter count (None stays ``all``)."""
    if total is None:
        return None
    if total % NUM_CLASSES:
        lower = total - total % NUM_CLASSES
        raise SplitSizeError(
            f"--{split}-size {total} cannot be split evenly over {NUM_CLASSES} letters; "
            f"use a multiple of {NUM_CLASSES}, such as {lower} or {lower + NUM_CLASSES}"
        )
    return total // NUM_CLASSES


@dataclass(frozen=True)
class Selection:
    """Image indices, in seeded order, of the splits drawn from one archive."""

    splits: dict[str, np.ndarray]
    pool: np.ndarray  # the images no split took, in seeded order


def select_splits(
    labels: np.ndarray,
    order: np.ndarray,
    per_letter_sizes: dict[str, int | None],
    archive: str,
) -> Selection:
    """Draw balanced splits from one archive's images.

    ``per_letter_sizes`` is ordered: splits with a number take their share of
    each letter in seeded order, one after the other, and a split sized
    ``None`` (all) takes every image left. At most one split may be ``None``.
    Raises SplitSizeError naming the letter, the images available and the
    images needed when a letter is short.
    """
    unbounded = [name for name, size in per_letter_sizes.items() if size is None]
    if len(unbounded) > 1:
        raise SplitSizeError(
            f"only one split drawn from {archive} can be 'all', got {', '.join(unbounded)}"
        )
    needed = sum(size for size in per_letter_sizes.values() if size is not None)

    taken: dict[str, list[np.ndarray]] = {name: [] for name in per_letter_sizes}
    pool = []
    ordered_labels = labels[order]
    for label, letter in enumerate(CLASS_NAMES):
        candidates = order[ordered_labels == label]
        if len(candidates) < needed:
            wanted = ", ".join(
                f"{size:,} {name}" for name, size in per_letter_sizes.items() if size
            )
            if len(candidates) == 0:
                advice = (
                    f"the archive has no images of letter {letter} at all, so check "
                    f"that it is the published {archive} (a folder {letter}/ is missing)"
                )
            else:
                advice = (
                    f"lower the sizes, for example to {len(candidates) * NUM_CLASSES:,} "
                    "in all"
                )
            raise SplitSizeError(
                f"letter {letter} has {len(candidates):,} readable images in {archive}, "
                f"but the split sizes need {needed:,} per letter ({wanted}); {advice}"
            )
        position = 0
        for name, size in per_letter_sizes.items():
            if size is not None:
                taken[name].append(candidates[position : position + size])
                position += size
        rest = candidates[position:]
        if unbounded:
            taken[unbounded[0]].append(rest)
        else:
            pool.append(rest)

    def in_seeded_order(parts: list[np.ndarray]) -> np.ndarray:
        joined = np.concatenate(parts) if parts else np.empty(0, np.int64)
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return joined[np.argsort(rank[joined], kind="stable")]

    return Selection(
        splits={name: in_seeded_order(parts) for name, parts in taken.items()},
        pool=in_seeded_order(pool),
    )
