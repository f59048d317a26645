"""The sanitized splits: no exact or near duplicate crosses a split boundary.

Rules, applied in split order with every candidate taken in its seeded order:

- train keeps the first image of each exact-duplicate group and drops every
  image of a group whose members carry different labels;
- validation drops images that duplicate or near-duplicate train, or an image
  it already kept, or belong to a label-conflicting group;
- test does the same against train and validation;
- validation and test are then refilled, per letter, from the unused images of
  their own archive that pass the same checks, up to their original size.

Every removal of a raw row is recorded with the row it matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .index import DuplicateIndex
from .near import COMPARISONS

REASON_LABEL_CONFLICT = "label_conflict"
REASON_EXACT_WITHIN = "exact_duplicate_within_split"
REASON_NEAR_WITHIN = "near_duplicate_within_split"


def reason_for(kind: str, split: str) -> str:
    return f"{kind}_duplicate_of_{split}"


@dataclass(frozen=True)
class Removal:
    """A raw row left out of the sanitized split, and why."""

    image: int  # image index
    split: str
    reason: str
    matched: int  # image index of the row it duplicates, -1 for label conflicts
    distance: int  # Hamming distance; 0 for exact, -1 where pixels decided or none
    comparison: str = ""  # for near duplicates, the entry of COMPARISONS that matched


@dataclass
class SanitizedSplits:
    """Sanitized image indices per split, with the record of what changed."""

    splits: dict[str, np.ndarray]
    removals: list[Removal] = field(default_factory=list)
    refilled: dict[str, int] = field(default_factory=dict)
    shortfall: dict[str, dict[int, int]] = field(default_factory=dict)  # split -> label -> missing
    rejected_candidates: dict[str, int] = field(default_factory=dict)


class _KeptGroups:
    """Groups kept so far, in earlier splits and in the split being filled."""

    def __init__(self, index: DuplicateIndex, rank: np.ndarray) -> None:
        self.index = index
        self.rank = rank
        self.owner_split: dict[int, str] = {}
        self.member: dict[int, int] = {}  # group -> an image index kept for it

    def add(self, image: int, split: str) -> None:
        group = int(self.index.group[image])
        self.owner_split.setdefault(group, split)
        self.member.setdefault(group, image)

    def check(self, image: int, split: str) -> tuple[str, int, int, str] | None:
        """Return (reason, matched image, distance, comparison) when ``image`` may not join ``split``."""
        group = int(self.index.group[image])
        if self.index.conflicting[group]:
            return REASON_LABEL_CONFLICT, -1, -1, ""
        owner = self.owner_split.get(group)
        if owner is not None:
            reason = REASON_EXACT_WITHIN if owner == split else reason_for("exact", owner)
            return reason, self.member[group], 0, ""
        # Of several kept near duplicates, report the closest, then the one
        # whose stable id sorts first, so the record does not depend on the
        # order the archive stores its members in.
        best = None
        neighbours, distances = self.index.neighbours_of(group)
        comparisons = self.index.comparisons_of(group)
        for neighbour, distance, comparison in zip(
            neighbours.tolist(), distances.tolist(), comparisons.tolist()
        ):
            owner = self.owner_split.get(neighbour)
            if owner is None:
                continue
            member = self.member[neighbour]
            candidate = (distance, int(self.rank[member]), owner, member, comparison)
            if best is None or candidate < best:
                best = candidate
        if best is None:
            return None
        distance, _, owner, member, comparison = best
        reason = REASON_NEAR_WITHIN if owner == split else reason_for("near", owner)
        return reason, member, distance, COMPARISONS[comparison]


def sanitize(
    index: DuplicateIndex,
    raw: dict[str, np.ndarray],
    pools: dict[str, np.ndarray],
    labels: np.ndarray,
    num_classes: int,
    rank: np.ndarray | None = None,
) -> SanitizedSplits:
    """Derive the sanitized splits from the raw ones.

    ``raw`` maps "train", "validation", "test" to image indices in seeded
    order; ``pools`` maps "validation" and "test" to the unused images of their
    archive, in seeded order, for refilling. Train is never refilled.
    ``rank`` orders images by stable id; it breaks ties between matches in
    the removal record (default: image index).
    """
    if rank is None:
        rank = np.arange(len(labels))
    kept = _KeptGroups(index, rank)
    result = SanitizedSplits(splits={})

    train = []
    for image in raw["train"].tolist():
        problem = kept.check(image, "train")
        if problem is None:
            kept.add(image, "train")
            train.append(image)
        else:
            reason, matched, distance, comparison = problem
            # Near duplicates inside train are allowed; only exact ones and
            # label conflicts are removed from it.
            if reason == REASON_NEAR_WITHIN:
                kept.add(image, "train")
                train.append(image)
            else:
                result.removals.append(
                    Removal(image, "train", reason, matched, distance, comparison)
                )
    result.splits["train"] = np.asarray(train, dtype=np.int64)

    for split in ("validation", "test"):
        quota = np.bincount(labels[raw[split]], minlength=num_classes)
        filled = np.zeros(num_classes, dtype=np.int64)
        chosen = []
        for image in raw[split].tolist():
            problem = kept.check(image, split)
            if problem is None:
                kept.add(image, split)
                chosen.append(image)
                filled[labels[image]] += 1
            else:
                reason, matched, distance, comparison = problem
                result.removals.append(
                    Removal(image, split, reason, matched, distance, comparison)
                )

        refilled = 0
        rejected = 0
        for image in pools[split].tolist():
            label = labels[image]
            if filled[label] >= quota[label]:
                continue
            if kept.check(image, split) is not None:
                rejected += 1
                continue
            kept.add(image, split)
            chosen.append(image)
            filled[label] += 1
            refilled += 1
            if np.array_equal(filled, quota):
                break

        result.splits[split] = np.asarray(chosen, dtype=np.int64)
        result.refilled[split] = refilled
        result.rejected_candidates[split] = rejected
        missing = quota - filled
        result.shortfall[split] = {int(k): int(v) for k, v in enumerate(missing) if v > 0}
    return result
