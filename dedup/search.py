"""Find every pair of 64-bit hashes within a Hamming distance, without testing all pairs.

The search is exact: it returns the same pairs as testing every pair, which
``brute_force_pairs`` does as the reference. It uses multi-index hashing
(Norouzi, Punjani and Fleet, "Fast Exact Search in Hamming Space with
Multi-Index Hashing", IEEE TPAMI 36(6), 2014). The 64 bits are cut into m
contiguous blocks. Write k = q*m + a with 0 <= a < m. Two hashes within distance
k differ in at most q bits in one of the first a + 1 blocks, or in at most q - 1
bits in one of the others, because otherwise their distance would be at least
(a + 1)(q + 1) + (m - a - 1)q = k + 1. Plain pigeonhole (m = k + 1 blocks that
must match exactly) is the case q = 0.

For each block the hashes are sorted by the block's value. Every group of equal
values is paired with each group whose value differs in at most the block's
radius of bits, and each candidate pair is then tested on all 64 bits. A pair is
kept only in the first block where it qualifies, so it is reported once.
Candidates are expanded and tested in chunks of about ``CHUNK_CANDIDATES``, so a
large group of near-identical hashes costs time but no more memory than that.

Exact duplicates are collapsed before the search and expanded at the end, so a
hash repeated c times is searched once.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

HASH_BITS = 64

# Candidate pairs expanded and tested at once. The temporary arrays take about
# 50 bytes a candidate, so a chunk needs about 100 MB.
CHUNK_CANDIDATES = 1 << 21

# Blocks up to this width find groups through a table of 2**width entries;
# wider blocks use binary search over the sorted group values.
MAX_TABLE_WIDTH = 24

# Relative costs of the search's steps in nanoseconds, measured with
# benchmarks/bench_search.py on a 2-core AMD EPYC (Zen 4). They only rank the
# block layouts, so they need to be right to within a factor of about two.
PROBE_COST_TABLE = 4.0  # one group looked up in a table, per flip pattern
PROBE_COST_SEARCH = 40.0  # one group looked up by binary search
CANDIDATE_COST = 12.0  # one candidate pair expanded and tested
BRUTE_FORCE_COST = 1.5  # one pair tested by brute force


@dataclass(frozen=True)
class NearPairs:
    """Pairs of hashes within a Hamming distance, sorted by (first, second).

    ``first`` and ``second`` are int64 indices into the searched arrays: both
    into the same array for ``find_near_pairs`` (with first < second), into the
    queries and the targets for ``find_near_pairs_between``. ``distance`` is the
    uint8 Hamming distance of each pair, from 0 to 64.
    """

    first: np.ndarray
    second: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:
        return len(self.first)


@dataclass(frozen=True)
class Block:
    """A contiguous run of hash bits and how many of them a search lets differ.

    A radius of -1 means the block is not searched.
    """

    shift: int
    width: int
    radius: int

    @property
    def mask(self) -> np.uint64:
        """The block's bits in place within a 64-bit hash."""
        return np.uint64(((1 << self.width) - 1) << self.shift)


def make_blocks(k: int, count: int) -> list[Block]:
    """Cut 64 bits into ``count`` blocks, highest bits first, with radii for ``k``.

    Widths differ by at most one bit, and the wider blocks come first and get
    the larger radius.
    """
    if not 1 <= count <= min(k + 1, HASH_BITS):
        raise ValueError(
            f"invalid block count {count} for k={k}: use 1 to {min(k + 1, HASH_BITS)}"
        )
    base_width, wider = divmod(HASH_BITS, count)
    quotient, remainder = divmod(k, count)
    blocks = []
    top = HASH_BITS
    for index in range(count):
        width = base_width + (1 if index < wider else 0)
        radius = quotient if index <= remainder else quotient - 1
        top -= width
        blocks.append(Block(shift=top, width=width, radius=radius))
    return blocks


def hamming_ball_size(width: int, radius: int) -> int:
    """Return how many ``width``-bit values lie within ``radius`` of a value."""
    return sum(math.comb(width, bits) for bits in range(radius + 1))


def estimate_cost(blocks: list[Block], size_a: int, size_b: int | None) -> float:
    """Estimate a search's time in nanoseconds, assuming uniform random hashes.

    ``size_b`` is None when searching within one set of ``size_a`` hashes.
    Clustered hashes add candidates to every layout alike, so the estimate
    still ranks layouts sensibly for them.
    """
    pair_count = size_a * (size_a - 1) / 2 if size_b is None else size_a * size_b
    cost = 0.0
    for block in blocks:
        if block.radius < 0:
            continue
        ball = hamming_ball_size(block.width, block.radius)
        groups = min(size_a, 2**block.width)
        if block.width <= MAX_TABLE_WIDTH:
            probe_cost = PROBE_COST_TABLE
        else:
            probe_cost = PROBE_COST_SEARCH
        cost += groups * (ball - 1) * probe_cost
        cost += pair_count * ball / 2**block.width * CANDIDATE_COST
    return cost


def choose_blocks(k: int, size_a: int, size_b: int | None) -> list[Block] | None:
    """Return the cheapest block layout for ``k``, or None when brute force is cheaper."""
    pair_count = size_a * (size_a - 1) / 2 if size_b is None else size_a * size_b
    best_blocks = None
    best_cost = pair_count * BRUTE_FORCE_COST
    for count in range(1, min(k + 1, HASH_BITS) + 1):
        blocks = make_blocks(k, count)
        cost = estimate_cost(blocks, size_a, size_b)
        if cost < best_cost:
            best_blocks, best_cost = blocks, cost
    return best_blocks


if hasattr(np, "bitwise_count"):
    popcount = np.bitwise_count
else:  # numpy < 2.0 has no bitwise_count
    _BYTE_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], np.uint8)

    def popcount(values: np.ndarray) -> np.ndarray:
        """Return the number of set bits of each uint64 value, as uint8."""
        as_bytes = np.ascontiguousarray(values, dtype=np.uint64).view(np.uint8)
        as_bytes = as_bytes.reshape(*np.shape(values), 8)
        return _BYTE_POPCOUNT[as_bytes].sum(axis=-1, dtype=np.uint8)


def validate_hashes(name: str, hashes: np.ndarray) -> None:
    """Raise ValueError unless ``hashes`` is a one-dimensional uint64 array."""
    if not isinstance(hashes, np.ndarray):
        raise ValueError(
            f"{name} must be a numpy array of uint64, got {type(hashes).__name__}; "
            f"convert it with np.asarray({name}, dtype=np.uint64)"
        )
    if hashes.dtype != np.uint64:
        raise ValueError(
            f"{name} must have dtype uint64, got {hashes.dtype}; reinterpret signed "
            f"64-bit hashes with {name}.view(np.uint64)"
        )
    if hashes.ndim != 1:
        raise ValueError(
            f"{name} must be one-dimensional, got shape {hashes.shape}; "
            f"flatten it with {name}.ravel()"
        )


def validate_distance(k: int) -> None:
    """Raise ValueError unless ``k`` is an integer from 0 to 64."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer from 0 to 64, got {k!r}")
    if not 0 <= k <= HASH_BITS:
        raise ValueError(f"k must be from 0 to 64 (bits of a hash), got {k}")


@dataclass(frozen=True)
class _Groups:
    """Hashes sorted by one block's value, with the runs of equal values."""

    order: np.ndarray  # int64 index in the searched array of each sorted hash
    hashes: np.ndarray  # uint64 hashes in sorted order
    values: np.ndarray  # uint64 distinct block values, ascending
    starts: np.ndarray  # int64 sorted position where each group starts
    lengths: np.ndarray  # int64 size of each group
    table: np.ndarray | None  # group number of each block value, -1 if absent

    def find(self, values: np.ndarray) -> np.ndarray:
        """Return the group number of each block value, or -1 where none has it."""
        if self.table is not None:
            return self.table[values.astype(np.intp)]
        positions = np.searchsorted(self.values, values)
        positions = np.minimum(positions, len(self.values) - 1)
        return np.where(self.values[positions] == values, positions, -1)


def _group_by_block(hashes: np.ndarray, block: Block) -> _Groups:
    values = (hashes >> np.uint64(block.shift)) & np.uint64((1 << block.width) - 1)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    boundaries = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    starts = np.concatenate(([0], boundaries))
    lengths = np.diff(np.append(starts, len(values)))
    group_values = sorted_values[starts]
    table = None
    if block.width <= MAX_TABLE_WIDTH:
        table = np.full(1 << block.width, -1, dtype=np.int64)
        table[group_values.astype(np.intp)] = np.arange(len(group_values))
    return _Groups(order, hashes[order], group_values, starts, lengths, table)


def _flip_patterns(width: int, radius: int) -> Iterator[int]:
    """Yield every ``width``-bit value with 1 to ``radius`` bits set."""
    for bits in range(1, radius + 1):
        for positions in itertools.combinations(range(width), bits):
            yield sum(1 << position for position in positions)


def _exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    return np.cumsum(values) - values


@dataclass(frozen=True)
class _Rows:
    """Candidate pairs in compact form: sorted position ``row`` of one side paired
    with sorted positions ``target_start`` to ``target_start + target_length - 1``
    of the other side."""

    row: np.ndarray
    target_start: np.ndarray
    target_length: np.ndarray


def _rows_between_groups(
    side_a: _Groups, groups_a: np.ndarray, side_b: _Groups, groups_b: np.ndarray
) -> _Rows:
    """Pair every member of each group ``groups_a[i]`` with all of ``groups_b[i]``."""
    lengths = side_a.lengths[groups_a]
    first_row = side_a.starts[groups_a] - _exclusive_cumsum(lengths)
    row = np.repeat(first_row, lengths) + np.arange(lengths.sum())
    target_start = np.repeat(side_b.starts[groups_b], lengths)
    target_length = np.repeat(side_b.lengths[groups_b], lengths)
    return _Rows(row, target_start, target_length)


def _rows_within_groups(side: _Groups) -> _Rows:
    """Pair every member of each group with the members sorted after it."""
    multiple = np.flatnonzero(side.lengths >= 2)
    lengths = side.lengths[multiple]
    ends = np.repeat(side.starts[multiple] + lengths, lengths)
    rows = _rows_between_groups(side, multiple, side, multiple)
    return _Rows(rows.row, rows.row + 1, ends - rows.row - 1)


class _CandidateTester:
    """Test candidate pairs from one block on all 64 bits, in bounded chunks.

    A pair passes when its distance is at most ``k`` and no earlier searched
    block already qualified it, which is what makes each pair reported once.
    """

    def __init__(
        self,
        side_a: _Groups,
        side_b: _Groups,
        k: int,
        earlier_blocks: list[Block],
    ) -> None:
        self.side_a = side_a
        self.side_b = side_b
        self.k = k
        self.earlier_blocks = [block for block in earlier_blocks if block.radius >= 0]
        self.pending: list[_Rows] = []
        self.pending_candidates = 0
        self.candidates = 0
        self.first: list[np.ndarray] = []
        self.second: list[np.ndarray] = []
        self.distance: list[np.ndarray] = []

    def add(self, rows: _Rows) -> None:
        count = int(rows.target_length.sum())
        if count == 0:
            return
        self.pending.append(rows)
        self.pending_candidates += count
        if self.pending_candidates >= CHUNK_CANDIDATES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        row = np.concatenate([rows.row for rows in self.pending])
        target_start = np.concatenate([rows.target_start for rows in self.pending])
        target_length = np.concatenate([rows.target_length for rows in self.pending])
        self.pending = []
        self.pending_candidates = 0

        ends = np.cumsum(target_length)
        start = 0
        done = 0  # candidates before row ``start``
        while start < len(row):
            # Take rows up to CHUNK_CANDIDATES candidates, and at least one row,
            # whose length is at most the size of the other side.
            stop = int(np.searchsorted(ends, done + CHUNK_CANDIDATES, side="right"))
            stop = max(stop, start + 1)
            self._test(
                row[start:stop], target_start[start:stop], target_length[start:stop]
            )
            done = int(ends[stop - 1])
            start = stop

    def _test(
        self, row: np.ndarray, target_start: np.ndarray, target_length: np.ndarray
    ) -> None:
        total = int(target_length.sum())
        self.candidates += total
        position_a = np.repeat(row, target_length)
        offset = target_start - _exclusive_cumsum(target_length)
        position_b = np.repeat(offset, target_length) + np.arange(total)

        difference = self.side_a.hashes[position_a] ^ self.side_b.hashes[position_b]
        distance = popcount(difference)
        hit = np.flatnonzero(distance <= self.k)
        difference = difference[hit]
        for block in self.earlier_blocks:
            found_before = popcount(difference & block.mask) <= block.radius
            hit = hit[~found_before]
            difference = difference[~found_before]

        self.first.append(self.side_a.order[position_a[hit]])
        self.second.append(self.side_b.order[position_b[hit]])
        self.distance.append(distance[hit])


def _search_blocks(
    hashes_a: np.ndarray, hashes_b: np.ndarray | None, k: int, blocks: list[Block]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the pairs within ``k`` as unsorted (first, second, distance) arrays.

    ``hashes_b`` is None to search within ``hashes_a``. Then each unordered pair
    appears once, in either order.
    """
    within = hashes_b is None
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    distance: list[np.ndarray] = []
    for index, block in enumerate(blocks):
        if block.radius < 0:
            continue
        side_a = _group_by_block(hashes_a, block)
        side_b = side_a if within else _group_by_block(hashes_b, block)
        tester = _CandidateTester(side_a, side_b, k, blocks[:index])

        if within:
            tester.add(_rows_within_groups(side_a))
        else:
            groups_b = side_b.find(side_a.values)
            matched = np.flatnonzero(groups_b >= 0)
            tester.add(_rows_between_groups(side_a, matched, side_b, groups_b[matched]))

        for pattern in _flip_patterns(block.width, block.radius):
            if within:
                # Each unordered pair of groups is visited from the group whose
                # value has the pattern's highest bit clear, so once.
                top_bit = np.uint64(1 << (pattern.bit_length() - 1))
                groups_a = np.flatnonzero((side_a.values & top_bit) == 0)
            else:
                groups_a = np.arange(len(side_a.values))
            groups_b = side_b.find(side_a.values[groups_a] ^ np.uint64(pattern))
            matched = groups_b >= 0
            tester.add(
                _rows_between_groups(
                    side_a, groups_a[matched], side_b, groups_b[matched]
                )
            )
        tester.flush()

        kept = sum(len(part) for part in tester.first)
        logger.debug(
            "block of bits %d-%d, radius %d: %d groups, %d candidates, %d pairs",
            block.shift,
            block.shift + block.width - 1,
            block.radius,
            len(side_a.values),
            tester.candidates,
            kept,
        )
        first += tester.first
        second += tester.second
        distance += tester.distance
    return _concatenate(first, np.int64), _concatenate(second, np.int64), _concatenate(
        distance, np.uint8
    )


def _concatenate(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=dtype)
    return np.concatenate(parts).astype(dtype, copy=False)


@dataclass(frozen=True)
class _Duplicates:
    """The distinct values of a hash array and where each occurs."""

    values: np.ndarray  # uint64 distinct hashes, ascending
    members: np.ndarray  # int64 input indices, grouped by value, ascending within
    starts: np.ndarray  # int64 where each value's indices start in ``members``
    counts: np.ndarray  # int64 how often each value occurs


def _collapse_duplicates(hashes: np.ndarray) -> _Duplicates:
    values, inverse, counts = np.unique(
        hashes, return_inverse=True, return_counts=True
    )
    members = np.argsort(inverse, kind="stable")
    counts = counts.astype(np.int64)
    return _Duplicates(values, members, _exclusive_cumsum(counts), counts)


def _expand_duplicates(
    first: np.ndarray,
    second: np.ndarray,
    distance: np.ndarray,
    side_a: _Duplicates,
    side_b: _Duplicates,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn pairs of distinct values into pairs of every index holding them."""
    if side_a.counts.max(initial=1) == 1 and side_b.counts.max(initial=1) == 1:
        return side_a.members[first], side_b.members[second], distance
    counts_a = side_a.counts[first]
    counts_b = side_b.counts[second]
    sizes = counts_a * counts_b
    owner = np.repeat(np.arange(len(first)), sizes)
    offset = np.arange(owner.size) - np.repeat(_exclusive_cumsum(sizes), sizes)
    count_b = counts_b[owner]
    offset_a = offset // count_b
    offset_b = offset - offset_a * count_b
    expanded_first = side_a.members[side_a.starts[first][owner] + offset_a]
    expanded_second = side_b.members[side_b.starts[second][owner] + offset_b]
    return expanded_first, expanded_second, distance[owner]


def _pairs_among_duplicates(side: _Duplicates) -> tuple[np.ndarray, np.ndarray]:
    """Return every pair of indices that hold the same value (distance 0)."""
    multiple = np.flatnonzero(side.counts >= 2)
    counts = side.counts[multiple]
    ends = np.repeat(side.starts[multiple] + counts, counts)
    position = np.repeat(
        side.starts[multiple] - _exclusive_cumsum(counts), counts
    ) + np.arange(counts.sum())
    partner_count = ends - position - 1
    first = np.repeat(position, partner_count)
    second = np.repeat(
        position + 1 - _exclusive_cumsum(partner_count), partner_count
    ) + np.arange(partner_count.sum())
    return side.members[first], side.members[second]


def _sorted_pairs(
    first: np.ndarray, second: np.ndarray, distance: np.ndarray, second_size: int
) -> NearPairs:
    """Sort pairs by (first, second) and wrap them as NearPairs."""
    first_size = int(first.max(initial=0)) + 1
    if first_size * second_size < 2**56:
        # Pack each pair into one int64, with the distance (at most 64) in the
        # low 7 bits, because sorting one key is much faster than a lexsort.
        key = (first * second_size + second) << 7 | distance.astype(np.int64)
        key.sort()
        distance = (key & 127).astype(np.uint8)
        first, second = np.divmod(key >> 7, second_size)
    else:
        order = np.lexsort((second, first))
        first, second, distance = first[order], second[order], distance[order]
    return NearPairs(
        first=first.astype(np.int64, copy=False),
        second=second.astype(np.int64, copy=False),
        distance=distance.astype(np.uint8, copy=False),
    )


def _empty_pairs() -> NearPairs:
    empty = np.empty(0, dtype=np.int64)
    return NearPairs(empty, empty.copy(), np.empty(0, dtype=np.uint8))


def _resolve_blocks(
    k: int, size_a: int, size_b: int | None, block_count: int | None
) -> list[Block] | None:
    if block_count is None:
        return choose_blocks(k, size_a, size_b)
    if block_count == 0:
        return None
    return make_blocks(k, block_count)


def find_near_pairs(
    hashes: np.ndarray, k: int, *, block_count: int | None = None
) -> NearPairs:
    """Find every pair ``i < j`` with ``popcount(hashes[i] ^ hashes[j]) <= k``.

    ``hashes`` is a one-dimensional uint64 array and ``k`` an integer from 0 to
    64. Equal hashes at different indices are pairs at distance 0. The result is
    sorted by (first, second) and equals ``brute_force_pairs(hashes, k)``.

    ``block_count`` fixes the number of blocks (1 to k + 1, or 0 for brute
    force) instead of letting a cost estimate choose; the result is the same.
    Raises ValueError for an invalid array, ``k`` or ``block_count``.
    """
    validate_hashes("hashes", hashes)
    validate_distance(k)
    if len(hashes) < 2:
        return _empty_pairs()

    distinct = _collapse_duplicates(hashes)
    blocks = _resolve_blocks(k, len(distinct.values), None, block_count)
    logger.debug("searching %d distinct hashes with %s", len(distinct.values), blocks)
    if blocks is None:
        pairs = brute_force_pairs(distinct.values, k)
        first, second, distance = pairs.first, pairs.second, pairs.distance
    else:
        first, second, distance = _search_blocks(distinct.values, None, k, blocks)

    first, second, distance = _expand_duplicates(
        first, second, distance, distinct, distinct
    )
    same_first, same_second = _pairs_among_duplicates(distinct)
    first = np.concatenate((first, same_first))
    second = np.concatenate((second, same_second))
    distance = np.concatenate((distance, np.zeros(len(same_first), np.uint8)))
    return _sorted_pairs(
        np.minimum(first, second), np.maximum(first, second), distance, len(hashes)
    )


def find_near_pairs_between(
    queries: np.ndarray,
    targets: np.ndarray,
    k: int,
    *,
    block_count: int | None = None,
) -> NearPairs:
    """Find every ``(i, j)`` with ``popcount(queries[i] ^ targets[j]) <= k``.

    Both arrays are one-dimensional uint64, and ``k`` is an integer from 0 to
    64. ``first`` indexes ``queries`` and ``second`` indexes ``targets``. The
    result is sorted by (first, second) and equals
    ``brute_force_pairs_between(queries, targets, k)``. ``block_count`` is as
    for ``find_near_pairs``. Raises ValueError for an invalid array, ``k`` or
    ``block_count``.
    """
    validate_hashes("queries", queries)
    validate_hashes("targets", targets)
    validate_distance(k)
    if len(queries) == 0 or len(targets) == 0:
        return _empty_pairs()

    side_a = _collapse_duplicates(queries)
    side_b = _collapse_duplicates(targets)
    blocks = _resolve_blocks(k, len(side_a.values), len(side_b.values), block_count)
    logger.debug(
        "searching %d distinct queries against %d distinct targets with %s",
        len(side_a.values),
        len(side_b.values),
        blocks,
    )
    if blocks is None:
        pairs = brute_force_pairs_between(side_a.values, side_b.values, k)
        first, second, distance = pairs.first, pairs.second, pairs.distance
    else:
        first, second, distance = _search_blocks(
            side_a.values, side_b.values, k, blocks
        )
    first, second, distance = _expand_duplicates(
        first, second, distance, side_a, side_b
    )
    return _sorted_pairs(first, second, distance, len(targets))


# Pairs tested at once by brute force; the uint64 and uint8 temporaries take
# about 150 MB.
BRUTE_FORCE_CHUNK = 1 << 24


def brute_force_pairs(hashes: np.ndarray, k: int) -> NearPairs:
    """Test every pair ``i < j`` of ``hashes`` and return those within ``k``.

    The reference for ``find_near_pairs``: O(N**2) time, memory bounded by
    ``BRUTE_FORCE_CHUNK``. Raises ValueError as ``find_near_pairs`` does.
    """
    validate_hashes("hashes", hashes)
    validate_distance(k)
    size = len(hashes)
    rows_per_chunk = max(1, BRUTE_FORCE_CHUNK // max(size, 1))
    first, second, distance = [], [], []
    for start in range(0, max(size - 1, 0), rows_per_chunk):
        stop = min(start + rows_per_chunk, size - 1)
        # Rows start..stop-1 against columns start+1..size-1; the columns at
        # or before a row are dropped below.
        chunk_distance = popcount(hashes[start:stop, None] ^ hashes[None, start + 1 :])
        row, column = np.nonzero(chunk_distance <= k)
        keep = column >= row
        first.append(start + row[keep])
        second.append(start + 1 + column[keep])
        distance.append(chunk_distance[row[keep], column[keep]])
    return NearPairs(
        _concatenate(first, np.int64),
        _concatenate(second, np.int64),
        _concatenate(distance, np.uint8),
    )


def brute_force_pairs_between(
    queries: np.ndarray, targets: np.ndarray, k: int
) -> NearPairs:
    """Test every ``(i, j)`` of queries and targets and return those within ``k``.

    The reference for ``find_near_pairs_between``, with the same costs and
    errors as ``brute_force_pairs``.
    """
    validate_hashes("queries", queries)
    validate_hashes("targets", targets)
    validate_distance(k)
    rows_per_chunk = max(1, BRUTE_FORCE_CHUNK // max(len(targets), 1))
    first, second, distance = [], [], []
    for start in range(0, len(queries) if len(targets) else 0, rows_per_chunk):
        stop = min(start + rows_per_chunk, len(queries))
        chunk_distance = popcount(queries[start:stop, None] ^ targets[None, :])
        row, column = np.nonzero(chunk_distance <= k)
        first.append(start + row)
        second.append(column)
        distance.append(chunk_distance[row, column])
    return NearPairs(
        _concatenate(first, np.int64),
        _concatenate(second, np.int64),
        _concatenate(distance, np.uint8),
    )
