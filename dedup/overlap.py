"""How much the splits overlap: exact and near duplicates within and across them.

For a pair of splits (or one split with itself) the report counts:

- ``exact_rows``: rows whose pixels also occur in the other split (within one
  split: rows whose pixels occur more than once in it);
- ``exact_images``: the distinct images behind those rows;
- ``near_rows`` and ``near_images``: the same for rows that have a near
  duplicate (a different image within the distance) in the other split.

A row can count as both exact and near. Label conflicts are exact-duplicate
groups, and near-duplicate links, whose images carry different labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .index import DuplicateIndex

SPLIT_PAIRS: tuple[tuple[str, str], ...] = (
    ("train", "train"),
    ("train", "validation"),
    ("train", "test"),
    ("validation", "test"),
)


@dataclass(frozen=True)
class OverlapRow:
    """Overlap between two splits, or within one when ``first == second``."""

    first: str
    second: str
    exact_rows: int
    exact_images: int
    near_rows: int
    near_images: int

    @property
    def label(self) -> str:
        return f"within {self.first}" if self.first == self.second else f"{self.first} ∩ {self.second}"


@dataclass(frozen=True)
class OverlapReport:
    """The overlap table plus label conflicts, for one set of splits."""

    max_distance: int
    method: str
    rule: str  # the near-duplicate rule in words, from DedupSettings.describe
    rows: tuple[OverlapRow, ...]
    conflicting_groups: int  # exact-duplicate groups with more than one label
    conflicting_rows: int
    cross_label_links: int  # near-duplicate links whose images carry different labels

    def to_dict(self) -> dict:
        data = asdict(self)
        data["rows"] = [dict(asdict(row), label=row.label) for row in self.rows]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> OverlapReport:
        """Rebuild a report from ``to_dict`` output, as stored in overlap.json."""
        rows = tuple(
            OverlapRow(
                row["first"],
                row["second"],
                row["exact_rows"],
                row["exact_images"],
                row["near_rows"],
                row["near_images"],
            )
            for row in data["rows"]
        )
        # Reports written before the variant comparisons have no "rule".
        rule = data.get(
            "rule", f"{data['method']} Hamming distance <= {data['max_distance']}"
        )
        return cls(
            data["max_distance"],
            data["method"],
            rule,
            rows,
            data["conflicting_groups"],
            data["conflicting_rows"],
            data["cross_label_links"],
        )

    def total_cross_split(self) -> tuple[int, int]:
        """Return (exact_rows, near_rows) summed over the pairs of different splits."""
        cross = [row for row in self.rows if row.first != row.second]
        return sum(r.exact_rows for r in cross), sum(r.near_rows for r in cross)

    def format_table(self) -> str:
        header = f"{'':<22}{'exact rows':>12}{'exact images':>14}{'near rows':>11}{'near images':>13}"
        lines = [header]
        for row in self.rows:
            lines.append(
                f"{row.label:<22}{row.exact_rows:>12,}{row.exact_images:>14,}"
                f"{row.near_rows:>11,}{row.near_images:>13,}"
            )
        lines.append(
            f"near = {self.rule}; "
            f"label-conflicting exact groups: {self.conflicting_groups:,} "
            f"({self.conflicting_rows:,} rows); cross-label near links: {self.cross_label_links:,}"
        )
        return "\n".join(lines)


def _count_rows(index: DuplicateIndex, rows: np.ndarray, flagged_groups: np.ndarray) -> tuple[int, int]:
    groups = index.group[rows]
    hit = flagged_groups[groups]
    return int(hit.sum()), int(len(np.unique(groups[hit])))


def _presence(index: DuplicateIndex, rows: np.ndarray) -> np.ndarray:
    present = np.zeros(index.num_groups, dtype=bool)
    present[index.group[rows]] = True
    return present


def overlap_report(
    index: DuplicateIndex,
    splits: dict[str, np.ndarray],
    labels: np.ndarray,
    pairs: tuple[tuple[str, str], ...] = SPLIT_PAIRS,
) -> OverlapReport:
    """Count exact and near overlap between ``splits`` (image indices into ``index``)."""
    table = []
    for first, second in pairs:
        a, b = splits[first], splits[second]
        if first == second:
            counts = np.bincount(index.group[a], minlength=index.num_groups)
            exact_groups = counts > 1
            near_groups = index.has_neighbour_in(counts > 0)
            exact_rows, exact_images = _count_rows(index, a, exact_groups)
            near_rows, near_images = _count_rows(index, a, near_groups)
        else:
            in_a, in_b = _presence(index, a), _presence(index, b)
            shared = in_a & in_b
            both = np.concatenate([a, b])
            exact_rows, exact_images = _count_rows(index, both, shared)
            near_a = index.has_neighbour_in(in_b)  # groups of a linked into b
            near_b = index.has_neighbour_in(in_a)
            rows_a, _ = _count_rows(index, a, near_a)
            rows_b, _ = _count_rows(index, b, near_b)
            groups = np.concatenate(
                [index.group[a][near_a[index.group[a]]], index.group[b][near_b[index.group[b]]]]
            )
            near_rows, near_images = rows_a + rows_b, int(len(np.unique(groups)))
        table.append(OverlapRow(first, second, exact_rows, exact_images, near_rows, near_images))

    everything = np.unique(np.concatenate([splits[name] for name in splits]))
    present = _presence(index, everything)
    conflicting = index.conflicting & present
    conflicting_rows = int(conflicting[index.group[everything]].sum())

    group_label = np.full(index.num_groups, -1, dtype=np.int64)
    group_label[index.group[everything]] = labels[everything]
    owner = np.repeat(np.arange(index.num_groups), np.diff(index.neighbour_start))
    linked = present[owner] & present[index.neighbours] & (owner < index.neighbours)
    cross_label = int(np.count_nonzero(group_label[owner[linked]] != group_label[index.neighbours[linked]]))

    return OverlapReport(
        max_distance=index.settings.max_distance,
        method=index.settings.method,
        rule=index.settings.describe(),
        rows=tuple(table),
        conflicting_groups=int(conflicting.sum()),
        conflicting_rows=conflicting_rows,
        cross_label_links=cross_label,
    )
