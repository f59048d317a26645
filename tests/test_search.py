"""Tests for the exact Hamming near-pair search in dedup.search.

Every search result is compared with the brute-force reference, which is
itself checked on a hand-computed example.
"""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dedup import search
from dedup.search import (
    HASH_BITS,
    NearPairs,
    brute_force_pairs,
    brute_force_pairs_between,
    choose_blocks,
    find_near_pairs,
    find_near_pairs_between,
    hamming_ball_size,
    make_blocks,
)

DISTANCES = [0, 1, 4, 6, 8, 12]

# Layouts whose blocks need more flip patterns than this are left out of the
# tests, so that each search takes milliseconds.
TEST_PATTERN_LIMIT = 400


def feasible_block_counts(k: int, limit: int = TEST_PATTERN_LIMIT) -> list[int]:
    """Return the block counts for ``k`` whose blocks need at most ``limit`` patterns."""
    counts = []
    for count in range(1, min(k + 1, HASH_BITS) + 1):
        blocks = make_blocks(k, count)
        patterns = sum(hamming_ball_size(b.width, b.radius) - 1 for b in blocks)
        if patterns <= limit:
            counts.append(count)
    return counts


def random_hashes(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**64 - 1, size, dtype=np.uint64, endpoint=True)


def flip_random_bits(
    hashes: np.ndarray, max_bits: int, rng: np.random.Generator
) -> np.ndarray:
    """Flip 0 to ``max_bits`` distinct random bits of each hash."""
    flipped = hashes.copy()
    counts = rng.integers(0, max_bits + 1, len(hashes))
    for index, count in enumerate(counts):
        for bit in rng.choice(HASH_BITS, size=count, replace=False):
            flipped[index] ^= np.uint64(1) << np.uint64(bit)
    return flipped


def clustered_hashes(seed: int) -> np.ndarray:
    """Hashes near 60 random centres, with many exact duplicates."""
    rng = np.random.default_rng(seed)
    centres = random_hashes(60, seed)
    copies = centres[rng.integers(0, len(centres), 1500)]
    near = flip_random_bits(copies, 6, rng)
    duplicates = near[rng.integers(0, len(near), 300)]
    return rng.permutation(np.concatenate((centres, near, duplicates)))


def assert_same_pairs(result: NearPairs, expected: NearPairs) -> None:
    assert len(result) == len(expected)
    assert np.array_equal(result.first, expected.first)
    assert np.array_equal(result.second, expected.second)
    assert np.array_equal(result.distance, expected.distance)
    assert result.first.dtype == np.int64
    assert result.second.dtype == np.int64
    assert result.distance.dtype == np.uint8


@pytest.fixture(scope="module")
def real_phashes(real_sample) -> np.ndarray:
    """imagehash.phash of the 8,000 real images as uint64, first hash bit highest."""
    pixels, _ = real_sample
    values = [int(str(imagehash.phash(Image.fromarray(image))), 16) for image in pixels]
    return np.array(values, dtype=np.uint64)


# The reference itself.


def test_brute_force_pairs_known_example():
    hashes = np.array([0b0000, 0b0001, 0b0111, 0b0000, 2**64 - 1], dtype=np.uint64)
    pairs = brute_force_pairs(hashes, 2)
    assert pairs.first.tolist() == [0, 0, 1, 1]
    assert pairs.second.tolist() == [1, 3, 2, 3]
    assert pairs.distance.tolist() == [1, 0, 2, 1]


def test_brute_force_pairs_between_known_example():
    queries = np.array([0b0011, 2**63], dtype=np.uint64)
    targets = np.array([0b0001, 0b1100, 2**63 + 1, 0b0011], dtype=np.uint64)
    pairs = brute_force_pairs_between(queries, targets, 1)
    assert pairs.first.tolist() == [0, 0, 1]
    assert pairs.second.tolist() == [0, 3, 2]
    assert pairs.distance.tolist() == [1, 0, 1]


# Equality with the reference.


@pytest.mark.parametrize("k", DISTANCES)
def test_find_near_pairs_random_hashes(k):
    hashes = random_hashes(3000, seed=k)
    # Uniform hashes rarely lie within 12 bits, so add near copies of some.
    rng = np.random.default_rng(100 + k)
    hashes = np.concatenate((hashes, flip_random_bits(hashes[:500], k + 2, rng)))
    assert_same_pairs(find_near_pairs(hashes, k), brute_force_pairs(hashes, k))


@pytest.mark.parametrize("k", DISTANCES)
def test_find_near_pairs_clustered_hashes(k):
    hashes = clustered_hashes(seed=k)
    expected = brute_force_pairs(hashes, k)
    assert len(expected) >= 1000  # the duplicates and clusters give many pairs
    assert_same_pairs(find_near_pairs(hashes, k), expected)


@pytest.mark.parametrize("k", DISTANCES)
def test_find_near_pairs_every_block_count(k):
    hashes = clustered_hashes(seed=20 + k)
    expected = brute_force_pairs(hashes, k)
    for count in [0, *feasible_block_counts(k)]:
        pairs = find_near_pairs(hashes, k, block_count=count)
        assert np.array_equal(pairs.first, expected.first), f"block_count={count}"
        assert np.array_equal(pairs.second, expected.second), f"block_count={count}"
        assert np.array_equal(pairs.distance, expected.distance), f"block_count={count}"


@pytest.mark.parametrize("k", DISTANCES)
def test_find_near_pairs_real_phashes(real_phashes, k):
    expected = brute_force_pairs(real_phashes, k)
    assert_same_pairs(find_near_pairs(real_phashes, k), expected)
    # Also the layout with the most blocks that the tests allow.
    count = max(feasible_block_counts(k))
    assert_same_pairs(find_near_pairs(real_phashes, k, block_count=count), expected)


def test_find_near_pairs_real_phashes_sorted(real_phashes):
    pairs = find_near_pairs(real_phashes, 8)
    order = np.lexsort((pairs.second, pairs.first))
    assert np.array_equal(order, np.arange(len(pairs)))
    assert np.all(pairs.first < pairs.second)


def test_find_near_pairs_real_phashes_distance(real_phashes):
    pairs = find_near_pairs(real_phashes, 12)
    difference = real_phashes[pairs.first] ^ real_phashes[pairs.second]
    counted = [int(value).bit_count() for value in difference]
    assert counted == pairs.distance.tolist()
    assert pairs.distance.max() == 12


@pytest.mark.parametrize("k", DISTANCES)
def test_find_near_pairs_between_clustered_hashes(k):
    rng = np.random.default_rng(40 + k)
    targets = clustered_hashes(seed=40 + k)
    queries = np.concatenate(
        (
            flip_random_bits(targets[rng.integers(0, len(targets), 400)], 8, rng),
            random_hashes(200, seed=50 + k),
        )
    )
    expected = brute_force_pairs_between(queries, targets, k)
    assert_same_pairs(find_near_pairs_between(queries, targets, k), expected)
    for count in [0, *feasible_block_counts(k)]:
        pairs = find_near_pairs_between(queries, targets, k, block_count=count)
        assert np.array_equal(pairs.first, expected.first), f"block_count={count}"
        assert np.array_equal(pairs.second, expected.second), f"block_count={count}"
        assert np.array_equal(pairs.distance, expected.distance), f"block_count={count}"


@pytest.mark.parametrize("k", DISTANCES)
def test_find_near_pairs_between_real_phashes(real_phashes, k):
    queries, targets = real_phashes[:3000], real_phashes[3000:]
    expected = brute_force_pairs_between(queries, targets, k)
    assert_same_pairs(find_near_pairs_between(queries, targets, k), expected)


def test_find_near_pairs_chunks_split_large_group(monkeypatch):
    # 400 equal hashes give 79,800 pairs in one group, many times the chunk.
    monkeypatch.setattr(search, "CHUNK_CANDIDATES", 1000)
    hashes = np.concatenate((np.full(400, 12345, np.uint64), clustered_hashes(seed=7)))
    for count in (3, 4, 7):
        pairs = find_near_pairs(hashes, 6, block_count=count)
        assert_same_pairs(pairs, brute_force_pairs(hashes, 6))


def test_find_near_pairs_between_chunks_split_large_group(monkeypatch):
    monkeypatch.setattr(search, "CHUNK_CANDIDATES", 1000)
    targets = np.full(3000, 2**40 + 3, np.uint64)
    queries = np.array([2**40 + 3, 2**40 + 1, 5], dtype=np.uint64)
    pairs = find_near_pairs_between(queries, targets, 2, block_count=3)
    assert_same_pairs(pairs, brute_force_pairs_between(queries, targets, 2))
    assert len(pairs) == 6000


# Edge cases.


def test_find_near_pairs_empty():
    pairs = find_near_pairs(np.empty(0, np.uint64), 6)
    assert len(pairs) == 0
    assert pairs.first.dtype == np.int64
    assert pairs.distance.dtype == np.uint8


def test_find_near_pairs_one_hash():
    assert len(find_near_pairs(np.array([7], np.uint64), 64)) == 0


def test_find_near_pairs_all_equal():
    hashes = np.full(500, 0xDEADBEEF, np.uint64)
    for count in (0, 3, 4, 7):
        pairs = find_near_pairs(hashes, 6, block_count=count)
        first, second = np.triu_indices(500, 1)
        assert np.array_equal(pairs.first, first), f"block_count={count}"
        assert np.array_equal(pairs.second, second), f"block_count={count}"
        assert not pairs.distance.any(), f"block_count={count}"


def test_find_near_pairs_k0_only_equal_hashes():
    hashes = np.array([5, 4, 5, 1, 5, 4], dtype=np.uint64)
    pairs = find_near_pairs(hashes, 0, block_count=1)
    assert pairs.first.tolist() == [0, 0, 1, 2]
    assert pairs.second.tolist() == [2, 4, 5, 4]
    assert not pairs.distance.any()


def test_find_near_pairs_k64_every_pair():
    hashes = random_hashes(300, seed=3)
    pairs = find_near_pairs(hashes, 64)
    assert len(pairs) == 300 * 299 // 2
    assert_same_pairs(pairs, brute_force_pairs(hashes, 64))


def test_find_near_pairs_complement_at_64():
    hashes = np.array([0, 2**64 - 1], dtype=np.uint64)
    pairs = find_near_pairs(hashes, 64)
    assert pairs.distance.tolist() == [64]
    assert len(find_near_pairs(hashes, 63)) == 0


def test_find_near_pairs_between_empty_side():
    hashes = random_hashes(10, seed=4)
    assert len(find_near_pairs_between(np.empty(0, np.uint64), hashes, 8)) == 0
    assert len(find_near_pairs_between(hashes, np.empty(0, np.uint64), 8)) == 0
    assert len(brute_force_pairs_between(hashes, np.empty(0, np.uint64), 8)) == 0


def test_find_near_pairs_between_same_array():
    hashes = clustered_hashes(seed=5)[:500]
    pairs = find_near_pairs_between(hashes, hashes, 4)
    # Each hash pairs with itself, and each unordered pair appears both ways.
    within = find_near_pairs(hashes, 4)
    assert len(pairs) == len(hashes) + 2 * len(within)


# Invalid input.


@pytest.mark.parametrize(
    ("hashes", "message"),
    [
        (np.array([1, 2], dtype=np.int64), "dtype uint64, got int64"),
        (np.array([1.0, 2.0]), "dtype uint64, got float64"),
        ([1, 2], "numpy array of uint64, got list"),
        (np.zeros((2, 2), dtype=np.uint64), r"one-dimensional, got shape \(2, 2\)"),
    ],
)
def test_find_near_pairs_rejects_invalid_hashes(hashes, message):
    with pytest.raises(ValueError, match=message):
        find_near_pairs(hashes, 4)
    with pytest.raises(ValueError, match=message):
        brute_force_pairs(hashes, 4)


def test_find_near_pairs_between_names_invalid_side():
    good = np.zeros(3, np.uint64)
    with pytest.raises(ValueError, match="queries must have dtype uint64"):
        find_near_pairs_between(good.astype(np.int32), good, 4)
    with pytest.raises(ValueError, match="targets must have dtype uint64"):
        find_near_pairs_between(good, good.astype(np.int32), 4)


@pytest.mark.parametrize("k", [-1, 65, 2.0, True, "4", None])
def test_find_near_pairs_rejects_invalid_k(k):
    hashes = np.zeros(3, np.uint64)
    with pytest.raises(ValueError, match="k must be"):
        find_near_pairs(hashes, k)
    with pytest.raises(ValueError, match="k must be"):
        find_near_pairs_between(hashes, hashes, k)


def test_find_near_pairs_accepts_numpy_integer_k():
    hashes = np.array([0, 1], dtype=np.uint64)
    assert len(find_near_pairs(hashes, np.int64(1))) == 1


@pytest.mark.parametrize("count", [-1, 8])
def test_find_near_pairs_rejects_invalid_block_count(count):
    with pytest.raises(ValueError, match=f"invalid block count {count} for k=6"):
        find_near_pairs(np.zeros(3, np.uint64), 6, block_count=count)


def test_find_near_pairs_rejects_costly_block_count():
    with pytest.raises(ValueError, match="flip patterns"):
        find_near_pairs(np.zeros(3, np.uint64), 20, block_count=1)


# The block layout.


@pytest.mark.parametrize("k", range(0, 65, 3))
def test_make_blocks_partition_and_radii(k):
    for count in range(1, min(k + 1, HASH_BITS) + 1):
        blocks = make_blocks(k, count)
        bits = sorted(bit for block in blocks for bit in block.bits)
        assert bits == list(range(HASH_BITS)), f"count={count}"
        # Pigeonhole: a pair within k must be within radius in some block.
        assert sum(block.radius + 1 for block in blocks) == k + 1, f"count={count}"


def test_choose_blocks_brute_force_for_small_sets():
    assert choose_blocks(6, 100, None) is None
    assert choose_blocks(64, 10**6, None) is None


def test_choose_blocks_multi_index_for_large_sets():
    blocks = choose_blocks(6, 530_000, None)
    assert blocks is not None
    assert sum(block.radius + 1 for block in blocks) == 7


# Properties against the reference.


@st.composite
def hash_arrays(draw, max_size: int = 40) -> np.ndarray:
    """Small uint64 arrays made of near copies of a few base values."""
    bases = draw(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=4))
    size = draw(st.integers(0, max_size))
    values = []
    for _ in range(size):
        value = draw(st.sampled_from(bases))
        for bit in draw(st.lists(st.integers(0, HASH_BITS - 1), max_size=10)):
            value ^= 1 << bit
        values.append(value)
    return np.array(values, dtype=np.uint64)


@st.composite
def distance_and_block_count(draw) -> tuple[int, int | None]:
    k = draw(st.integers(0, HASH_BITS))
    count = draw(st.sampled_from([None, 0, *feasible_block_counts(k, limit=100)]))
    return k, count


@settings(max_examples=150, deadline=None)
@given(hashes=hash_arrays(), search_plan=distance_and_block_count())
def test_find_near_pairs_property(hashes, search_plan):
    k, count = search_plan
    pairs = find_near_pairs(hashes, k, block_count=count)
    assert_same_pairs(pairs, brute_force_pairs(hashes, k))


@settings(max_examples=100, deadline=None)
@given(
    queries=hash_arrays(max_size=20),
    targets=hash_arrays(),
    search_plan=distance_and_block_count(),
)
def test_find_near_pairs_between_property(queries, targets, search_plan):
    k, count = search_plan
    pairs = find_near_pairs_between(queries, targets, k, block_count=count)
    assert_same_pairs(pairs, brute_force_pairs_between(queries, targets, k))
