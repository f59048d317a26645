"""One global pass over all images: exact groups and the near-duplicate graph.

The overlap report and the sanitized splits query this index about groups,
so no split needs a search of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .exact import conflicting_groups, exact_group_ids
from .near import DedupSettings, ImageSet, find_duplicate_pairs

logger = logging.getLogger(__name__)


@dataclass
class DuplicateIndex:
    """Exact-duplicate groups and near-duplicate links between groups.

    Images with identical pixels share a group. Two groups are linked when
    their images are near duplicates under ``settings``; links never join a
    group to itself.
    """

    settings: DedupSettings
    group: np.ndarray  # (N,) int64 group id of each image
    conflicting: np.ndarray  # (G,) bool: members carry different labels
    neighbour_start: np.ndarray  # (G + 1,) int64 CSR offsets into neighbours
    neighbours: np.ndarray  # int64 group ids
    neighbour_distance: np.ndarray  # int16 Hamming distance, -1 where pixels decided
    neighbour_comparison: np.ndarray  # int8 index into dedup.near.COMPARISONS

    @property
    def num_groups(self) -> int:
        return len(self.conflicting)

    @property
    def num_links(self) -> int:
        return len(self.neighbours) // 2

    def neighbours_of(self, group_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the groups linked to ``group_id`` and the distance of each link."""
        start, stop = self.neighbour_start[group_id], self.neighbour_start[group_id + 1]
        return self.neighbours[start:stop], self.neighbour_distance[start:stop]

    def comparisons_of(self, group_id: int) -> np.ndarray:
        """Return how each link of ``neighbours_of(group_id)`` was found."""
        start, stop = self.neighbour_start[group_id], self.neighbour_start[group_id + 1]
        return self.neighbour_comparison[start:stop]

    def has_neighbour_in(self, member_groups: np.ndarray) -> np.ndarray:
        """Return, per group, whether it links to any group flagged in ``member_groups``."""
        owner = np.repeat(np.arange(self.num_groups), np.diff(self.neighbour_start))
        result = np.zeros(self.num_groups, dtype=bool)
        result[owner[member_groups[self.neighbours]]] = True
        return result


def build_index(images: ImageSet, settings: DedupSettings) -> DuplicateIndex:
    """Group exact duplicates, then link near-duplicate groups by one search."""
    group = exact_group_ids(images.digests)
    num_groups = int(group.max()) + 1 if len(group) else 0
    conflicting = np.zeros(num_groups, dtype=bool)
    conflicting[conflicting_groups(group, images.labels)] = True

    representatives = np.full(num_groups, -1, dtype=np.int64)
    # The first image of each group stands for it (ids follow first occurrence).
    first = np.unique(group, return_index=True)[1]
    representatives[:] = first
    pairs = find_duplicate_pairs(images.subset(representatives), settings)

    a = np.concatenate([pairs.first, pairs.second])
    b = np.concatenate([pairs.second, pairs.first])
    distance = np.concatenate([pairs.distance, pairs.distance])
    comparison = np.concatenate([pairs.comparison, pairs.comparison])
    order = np.lexsort((b, a))
    a, b, distance, comparison = a[order], b[order], distance[order], comparison[order]
    start = np.zeros(num_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(a, minlength=num_groups), out=start[1:])
    logger.info(
        "Duplicate index: %d images in %d distinct images, %d near-duplicate links "
        "(%s), %d label-conflicting groups",
        len(group),
        num_groups,
        len(pairs),
        settings.describe(),
        int(conflicting.sum()),
    )
    return DuplicateIndex(settings, group, conflicting, start, b, distance, comparison)
