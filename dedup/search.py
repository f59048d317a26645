"""Find every pair of 64-bit hashes within a Hamming distance, without testing all pairs.

The search is exact: it returns the same pairs as testing every pair, which
``brute_force_pairs`` does as the reference. It uses multi-index hashing
(Norouzi, Punjani and Fleet, "Fast Exact Search in Hamming Space with
Multi-Index Hashing", IEEE TPAMI 36(6), 2014). The 64 bits are dealt into m
disjoint blocks. Write k = q*m + a with 0 <= a < m. Two hashes within distance
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
The result itself takes 17 bytes a pair, and about 8 more while it is sorted.

``choose_blocks`` picks the number of blocks from a cost estimate, and falls
back to brute force when that is cheaper (small sets, or k above about 16).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

HASH_BITS = 64

# Candidate pairs expanded and tested at once. The temporary arrays take about
# 40 bytes a candidate, so about 10 MB. At 530,000 hashes and k = 6, chunks of
# 4 million candidates made the search 1.4 times slower, as their arrays no
# longer fit in the CPU caches.
CHUNK_CANDIDATES = 1 << 18

# A block looks groups up in a table of 2**width entries when the width is at
# most MAX_TABLE_WIDTH and the table has at most TABLE_ENTRIES_PER_HASH entries
# per hash. Other blocks use binary search over the sorted group values.
MAX_TABLE_WIDTH = 24
TABLE_ENTRIES_PER_HASH = 32

# Most flip patterns a block may probe (hamming_ball_size - 1). Layouts with
# more are rejected, because their probing alone would take hours.
MAX_FLIP_PATTERNS = 1 << 20

# Largest set a search accepts, so that two indices and a distance pack into
# one int64 sort key.
MAX_HASHES = 1 << 28

# Costs of the search's steps in nanoseconds, fitted to timings of 530,000
# uniform random hashes at k = 4, 6 and 8 on a 2-core AMD EPYC (Zen 4) with
# numpy 2.4. Only their ratios matter, because they just rank block layouts.
PROBE_COST_TABLE = 15.0  # one group looked up in a table, per flip pattern
PROBE_COST_SEARCH = 25.0  # one group looked up by binary search
PATTERN_COST = 40_000.0  # fixed cost of one flip pattern
BLOCK_COST = 200_000.0  # fixed cost of one block
TABLE_ENTRY_COST = 1.0  # one table entry allocated and filled
CANDIDATE_COST = 7.0  # one candidate pair expanded and tested
BRUTE_FORCE_COST = 4.0  # one pair tested by brute force


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


# The order in which bits are dealt into blocks. Perceptual hashes such as
# imagehash's phash store an 8x8 grid row by row from the most significant bit,
# and the low-frequency corner is far from balanced (its first bit is almost
# always 1). Stepping 7 bits walks the anti-diagonals, so every block mixes low
# and high frequencies. On the hashes of benchmarks/bench_search.py at k = 6
# this tests 28% fewer candidates than contiguous blocks with 4 blocks, and 40%
# fewer with 3. The order makes no difference to uniform random hashes.
DEFAULT_BIT_ORDER = tuple(
    HASH_BITS - 1 - (7 * index) % HASH_BITS for index in range(64)
)


@dataclass(frozen=True)
class Block:
    """A set of hash bits and how many of them may differ for a block match.

    ``bits`` are bit positions (0 is the least significant). A radius of -1
    means the block is not searched.
    """

    bits: tuple[int, ...]
    radius: int

    @property
    def width(self) -> int:
        return len(self.bits)

    @property
    def mask(self) -> np.uint64:
        """The block's bits in place within a 64-bit hash."""
        return np.uint64(sum(1 << bit for bit in self.bits))

    def values(self, hashes: np.ndarray) -> np.ndarray:
        """Return each hash's block bits packed into the low ``width`` bits."""
        values = np.zeros(len(hashes), dtype=np.uint64)
        for position, bit in enumerate(self.bits):
            values |= ((hashes >> np.uint64(bit)) & np.uint64(1)) << np.uint64(position)
        return values


def make_blocks(
    k: int, count: int, bit_order: tuple[int, ...] | None = None
) -> list[Block]:
    """Deal 64 bits into ``count`` blocks and give each its radius for ``k``.

    Blocks take consecutive runs of ``bit_order`` (default:
    ``DEFAULT_BIT_ORDER``). Widths differ by at most one bit, and the wider blocks come first
    and get the larger radius.
    """
    if not 1 <= count <= min(k + 1, HASH_BITS):
        raise ValueError(
            f"invalid block count {count} for k={k}: use 1 to {min(k + 1, HASH_BITS)}"
        )
    if bit_order is None:
        bit_order = DEFAULT_BIT_ORDER
    base_width, wider = divmod(HASH_BITS, count)
    quotient, remainder = divmod(k, count)
    blocks = []
    start = 0
    for index in range(count):
        width = base_width + (1 if index < wider else 0)
        radius = quotient if index <= remainder else quotient - 1
        blocks.append(
            Block(bits=tuple(bit_order[start : start + width]), radius=radius)
        )
        start += width
    return blocks


def hamming_ball_size(width: int, radius: int) -> int:
    """Return how many ``width``-bit values lie within ``radius`` of a value."""
    return sum(math.comb(width, bits) for bits in range(radius + 1))


def uses_table(width: int, size: int) -> bool:
    """Return whether a block of ``width`` bits over ``size`` hashes gets a table."""
    return width <= MAX_TABLE_WIDTH and 2**width <= TABLE_ENTRIES_PER_HASH * size


def estimate_cost(blocks: list[Block], size_a: int, size_b: int | None) -> float:
    """Estimate a search's time in nanoseconds, assuming uniform random hashes.

    ``size_b`` is None when searching within one set of ``size_a`` hashes.
    Clustered hashes add candidates to every layout, so the estimate ranks
    layouts less reliably for them.
    """
    pair_count = size_a * (size_a - 1) / 2 if size_b is None else size_a * size_b
    indexed_size = size_a if size_b is None else size_b
    cost = 0.0
    for block in blocks:
        if block.radius < 0:
            continue
        patterns = hamming_ball_size(block.width, block.radius) - 1
        groups = min(size_a, 2**block.width)
        cost += BLOCK_COST
        if uses_table(block.width, indexed_size):
            cost += 2**block.width * TABLE_ENTRY_COST
            cost += groups * patterns * PROBE_COST_TABLE
        else:
            cost += groups * patterns * PROBE_COST_SEARCH
        cost += patterns * PATTERN_COST
        cost += pair_count * (patterns + 1) / 2**block.width * CANDIDATE_COST
    return cost


def choose_blocks(k: int, size_a: int, size_b: int | None) -> list[Block] | None:
    """Return the cheapest block layout for ``k``, or None when brute force is cheaper.

    ``size_b`` is None when searching within one set of ``size_a`` hashes.
    """
    pair_count = size_a * (size_a - 1) / 2 if size_b is None else size_a * size_b
    best_blocks = None
    best_cost = pair_count * BRUTE_FORCE_COST
    for count in range(1, min(k + 1, HASH_BITS) + 1):
        blocks = make_blocks(k, count)
        if _largest_pattern_count(blocks) > MAX_FLIP_PATTERNS:
            continue
        cost = estimate_cost(blocks, size_a, size_b)
        if cost < best_cost:
            best_blocks, best_cost = blocks, cost
    return best_blocks


def describe(blocks: list[Block] | None) -> str:
    """Return a short description of a block layout, such as for a log line."""
    if blocks is None:
        return "brute force"
    widths = "/".join(str(block.width) for block in blocks)
    radii = "/".join(str(block.radius) for block in blocks)
    noun = "block" if len(blocks) == 1 else "blocks"
    return f"{len(blocks)} {noun} of {widths} bits, radii {radii}"


def _largest_pattern_count(blocks: list[Block]) -> int:
    return max(hamming_ball_size(block.width, block.radius) - 1 for block in blocks)


if hasattr(np, "bitwise_count"):
    popcount = np.bitwise_count
else:  # numpy < 2.0 has no bitwise_count
    # NOTE: this fallback has never run, because the tests use numpy 2.
    _BYTE_POPCOUNT = np.array([value.bit_count() for value in range(256)], np.uint8)

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


def _group_by_block(hashes: np.ndarray, block: Block, with_table: bool) -> _Groups:
    values = block.values(hashes)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    boundaries = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    starts = np.concatenate(([0], boundaries))
    lengths = np.diff(np.append(starts, len(values)))
    group_values = sorted_values[starts]
    table = None
    if with_table and uses_table(block.width, len(hashes)):
        table = np.full(1 << block.width, -1, dtype=np.int32)
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
    Passing pairs are stored as keys packed by ``_pack_pairs``.
    """

    def __init__(
        self,
        side_a: _Groups,
        side_b: _Groups,
        k: int,
        earlier_blocks: list[Block],
        within: bool,
        index_bits: int,
    ) -> None:
        self.side_a = side_a
        self.side_b = side_b
        self.k = k
        self.earlier_blocks = [block for block in earlier_blocks if block.radius >= 0]
        self.within = within
        self.index_bits = index_bits
        self.pending: list[_Rows] = []
        self.pending_candidates = 0
        self.candidates = 0
        self.arange = np.arange(CHUNK_CANDIDATES)
        self.keys: list[np.ndarray] = []

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
        ends = np.cumsum(target_length)
        total = int(ends[-1])
        self.candidates += total
        if len(self.arange) < total:
            self.arange = np.arange(total)
        # The targets of a row are consecutive sorted positions, so candidate c
        # of the chunk tests position (offset of its row) + c.
        position_b = np.repeat(target_start - (ends - target_length), target_length)
        position_b += self.arange[:total]
        difference = self.side_b.hashes.take(position_b)
        difference ^= np.repeat(self.side_a.hashes.take(row), target_length)
        distance = popcount(difference)
        hit = np.flatnonzero(distance <= self.k)
        difference = difference[hit]
        for block in self.earlier_blocks:
            found_before = popcount(difference & block.mask) <= block.radius
            hit = hit[~found_before]
            difference = difference[~found_before]

        first = self.side_a.order[row[np.searchsorted(ends, hit, side="right")]]
        second = self.side_b.order[position_b[hit]]
        if self.within:
            first, second = np.minimum(first, second), np.maximum(first, second)
        self.keys.append(_pack_pairs(first, second, distance[hit], self.index_bits))


def _pack_pairs(
    first: np.ndarray, second: np.ndarray, distance: np.ndarray, index_bits: int
) -> np.ndarray:
    """Pack pairs into int64 keys that sort by (first, second).

    Sorting one key is several times faster than a lexsort of three arrays. The
    distance (at most 64) takes the low 7 bits, then ``second``, then ``first``.
    """
    key = first << (index_bits + 7)
    key |= second << 7
    key |= distance
    return key


def _unpack_pairs(keys: np.ndarray, index_bits: int) -> NearPairs:
    """Unpack keys made by ``_pack_pairs``, reusing their memory for ``first``."""
    distance = keys.astype(np.uint8)  # keeps the low 8 bits
    distance &= 127
    second = keys >> 7
    second &= (1 << index_bits) - 1
    keys >>= index_bits + 7
    return NearPairs(first=keys, second=second, distance=distance)


def _index_bits(size_a: int, size_b: int) -> int:
    """Return the bits a packed key needs for one index, or raise ValueError."""
    index_bits = max(size_a - 1, size_b - 1, 1).bit_length()
    if 2 * index_bits + 7 > 63:
        raise ValueError(
            f"cannot search {max(size_a, size_b)} hashes: packed pair keys allow at "
            f"most {MAX_HASHES}; split the set and search the parts"
        )
    return index_bits


def _search_blocks(
    hashes_a: np.ndarray, hashes_b: np.ndarray | None, k: int, blocks: list[Block]
) -> NearPairs:
    """Return the pairs within ``k``, sorted, using the given block layout.

    ``hashes_b`` is None to search within ``hashes_a``, and then each pair
    has first < second.
    """
    within = hashes_b is None
    size_b = len(hashes_a) if within else len(hashes_b)
    index_bits = _index_bits(len(hashes_a), size_b)
    keys: list[np.ndarray] = []
    searched = [block for block in blocks if block.radius >= 0]
    progress = tqdm(
        total=sum(hamming_ball_size(block.width, block.radius) for block in searched),
        desc="near-pair search",
        unit="pattern",
        disable=None,  # shown only on a terminal
        leave=False,
    )
    for index, block in enumerate(blocks):
        if block.radius < 0:
            continue
        side_a = _group_by_block(hashes_a, block, with_table=within)
        if within:
            side_b = side_a
        else:
            side_b = _group_by_block(hashes_b, block, with_table=True)
        tester = _CandidateTester(side_a, side_b, k, blocks[:index], within, index_bits)

        if within:
            tester.add(_rows_within_groups(side_a))
        else:
            groups_b = side_b.find(side_a.values)
            matched = np.flatnonzero(groups_b >= 0)
            tester.add(_rows_between_groups(side_a, matched, side_b, groups_b[matched]))
        progress.update()

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
            progress.update()
        tester.flush()

        logger.debug(
            "block %d (%d bits, radius %d): %d groups, %d candidates, %d pairs",
            index,
            block.width,
            block.radius,
            len(side_a.values),
            tester.candidates,
            sum(len(part) for part in tester.keys),
        )
        keys += tester.keys
    progress.close()

    all_keys = np.concatenate(keys) if keys else np.empty(0, dtype=np.int64)
    all_keys.sort()
    return _unpack_pairs(all_keys, index_bits)


def _concatenate(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=dtype)
    return np.concatenate(parts).astype(dtype, copy=False)


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
    blocks = make_blocks(k, block_count)
    if _largest_pattern_count(blocks) > MAX_FLIP_PATTERNS:
        raise ValueError(
            f"block count {block_count} for k={k} needs "
            f"{_largest_pattern_count(blocks)} flip patterns in a block, more than "
            f"{MAX_FLIP_PATTERNS}; use more blocks, or block_count=None to choose"
        )
    return blocks


def find_near_pairs(
    hashes: np.ndarray, k: int, *, block_count: int | None = None
) -> NearPairs:
    """Find every pair ``i < j`` with ``popcount(hashes[i] ^ hashes[j]) <= k``.

    ``hashes`` is a one-dimensional uint64 array and ``k`` an integer from 0 to
    64. Equal hashes at different indices are pairs at distance 0. The result is
    sorted by (first, second) and equals ``brute_force_pairs(hashes, k)``.

    ``block_count`` fixes the number of blocks (1 to k + 1, or 0 for brute
    force) instead of letting a cost estimate choose. The result is the same.
    Raises ValueError for an invalid array, ``k`` or ``block_count``, or for
    more than ``MAX_HASHES`` hashes.

    Memory grows with the result, about 25 bytes a pair while it is sorted. A
    value that occurs c times alone gives c(c-1)/2 pairs, which is why callers
    remove uniform images (phash 0x8000000000000000) first.
    """
    validate_hashes("hashes", hashes)
    validate_distance(k)
    if len(hashes) < 2:
        return _empty_pairs()

    blocks = _resolve_blocks(k, len(hashes), None, block_count)
    logger.debug("searching %d hashes at k=%d: %s", len(hashes), k, describe(blocks))
    if blocks is None:
        return brute_force_pairs(hashes, k)
    return _search_blocks(hashes, None, k, blocks)


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

    blocks = _resolve_blocks(k, len(queries), len(targets), block_count)
    logger.debug(
        "searching %d queries against %d targets at k=%d: %s",
        len(queries),
        len(targets),
        k,
        describe(blocks),
    )
    if blocks is None:
        return brute_force_pairs_between(queries, targets, k)
    return _search_blocks(queries, targets, k, blocks)


# Pairs tested at once by brute force. The uint64, uint8 and bool temporaries
# take about 160 MB.
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
        # Rows start..stop-1 against columns start+1..size-1. The columns at
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
