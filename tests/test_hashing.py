"""Batch perceptual hashes against imagehash and Pillow, image by image."""

from __future__ import annotations

import subprocess
import sys

import imagehash
import numpy as np
import pytest
import scipy.fftpack
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dedup.hashing import (
    HASH_METHODS,
    HashSpec,
    ImageHashes,
    compute_hashes,
    hamming_distance,
    pairwise_hamming_distance,
    popcount64,
    popcount64_swar,
    probe_pillow_vertical_first,
    resample_height,
    resample_width,
    resize_lanczos,
)

IMAGEHASH_FUNCTIONS = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "ahash": imagehash.average_hash,
}


def imagehash_objects(pixels: np.ndarray, spec: HashSpec) -> list:
    function = IMAGEHASH_FUNCTIONS[spec.method]
    return [
        function(Image.fromarray(image, "L"), hash_size=spec.hash_size)
        for image in pixels
    ]


def imagehash_values(pixels: np.ndarray, spec: HashSpec) -> np.ndarray:
    objects = imagehash_objects(pixels, spec)
    return np.array([int(str(h), 16) for h in objects], dtype=np.uint64)


@pytest.fixture(scope="module")
def sample_pixels(real_sample) -> np.ndarray:
    pixels, _ = real_sample
    return pixels


@pytest.fixture(scope="module")
def reference_hashes(sample_pixels):
    """imagehash values of the whole real sample, computed once per spec."""
    cache: dict[HashSpec, np.ndarray] = {}

    def lookup(spec: HashSpec) -> np.ndarray:
        if spec not in cache:
            cache[spec] = imagehash_values(sample_pixels, spec)
        return cache[spec]

    return lookup


def pillow_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    resized = Image.fromarray(image, "L").resize((width, height), Image.LANCZOS)
    return np.asarray(resized)


@pytest.mark.parametrize("method", HASH_METHODS)
def test_real_sample_matches_imagehash(method, sample_pixels, reference_hashes):
    spec = HashSpec(method, 8)
    hashes = compute_hashes(sample_pixels, spec)
    expected = reference_hashes(spec)
    mismatched = np.flatnonzero(hashes.values != expected)
    assert len(hashes) == len(sample_pixels)
    assert hashes.spec == spec
    assert mismatched.size == 0, f"{method} differs on images {mismatched[:10]}"


@pytest.mark.parametrize(
    ("method", "hash_size"),
    [
        ("phash", 2),
        ("phash", 4),
        ("phash", 5),
        ("phash", 7),
        ("dhash", 3),
        ("ahash", 5),
    ],
)
def test_other_sizes_match_imagehash(method, hash_size, sample_pixels):
    # hash_size 7 makes phash resize 28x28 to 28x28, which Pillow skips, and
    # odd sizes put the median on a coefficient.
    subset = sample_pixels[:1500]
    spec = HashSpec(method, hash_size)
    hashes = compute_hashes(subset, spec)
    mismatched = np.flatnonzero(hashes.values != imagehash_values(subset, spec))
    assert mismatched.size == 0, f"{spec} differs on images {mismatched[:10]}"


def test_phash_tied_medians_match_imagehash(sample_pixels, reference_hashes):
    # A tie in imagehash's own arithmetic: the median of scipy's 8x8
    # low-frequency block equals one of its coefficients.
    tied = []
    for index, image in enumerate(sample_pixels):
        resized = pillow_resize(image, 32, 32)
        dct = scipy.fftpack.dct(scipy.fftpack.dct(resized, axis=0), axis=1)
        low = dct[:8, :8]
        if (low == np.median(low)).any():
            tied.append(index)
    tied = np.array(tied)
    hashes = compute_hashes(sample_pixels[tied], HashSpec("phash", 8))
    expected = reference_hashes(HashSpec("phash", 8))[tied]
    assert len(tied) >= 100, f"only {len(tied)} tied images; the sample changed?"
    assert np.array_equal(hashes.values, expected)


@pytest.mark.parametrize("method", HASH_METHODS)
@pytest.mark.parametrize("level", [0, 1, 128, 255])
def test_uniform_images_match_imagehash(method, level):
    pixels = np.full((2, 28, 28), level, dtype=np.uint8)
    spec = HashSpec(method, 8)
    hashes = compute_hashes(pixels, spec)
    assert np.array_equal(hashes.values, imagehash_values(pixels, spec))


def test_uniform_images_phash_values():
    black = np.zeros((1, 28, 28), dtype=np.uint8)
    white = np.full((1, 28, 28), 255, dtype=np.uint8)
    # Only the DC coefficient exceeds the median, unless it is zero too.
    assert compute_hashes(white).values[0] == 0x8000000000000000
    assert compute_hashes(black).values[0] == 0


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    method=st.sampled_from(HASH_METHODS),
    hash_size=st.integers(2, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_shape_matches_imagehash(height, width, method, hash_size, seed):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (2, height, width), dtype=np.uint8)
    # Sharp black and white blocks make the LANCZOS lobes overshoot and clip.
    blocks = np.where(rng.random((2, height, width)) < 0.5, 0, 255).astype(np.uint8)
    pixels = np.concatenate([noise, blocks])
    spec = HashSpec(method, hash_size)
    hashes = compute_hashes(pixels, spec)
    assert np.array_equal(hashes.values, imagehash_values(pixels, spec))


@pytest.mark.parametrize(
    ("shape", "method"),
    [((1, 1), "phash"), ((17, 40), "dhash"), ((64, 64), "phash"), ((56, 29), "ahash")],
)
def test_rescaled_glyphs_match_imagehash(shape, method, sample_pixels):
    # Real glyphs scaled by Pillow to another size, then hashed at that size.
    glyphs = np.stack([pillow_resize(image, *shape) for image in sample_pixels[:200]])
    spec = HashSpec(method, 8)
    hashes = compute_hashes(glyphs, spec)
    assert np.array_equal(hashes.values, imagehash_values(glyphs, spec))


@settings(max_examples=80, deadline=None)
@given(
    in_height=st.integers(1, 90),
    in_width=st.integers(1, 90),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_resize_lanczos_matches_pillow(in_height, in_width, height, width, seed):
    images = np.random.default_rng(seed).integers(
        0, 256, (2, in_height, in_width), dtype=np.uint8
    )
    resized = resize_lanczos(images, height, width)
    assert resized.shape == (2, height, width)
    assert np.array_equal(resized[0], pillow_resize(images[0], height, width))
    assert np.array_equal(resized[1], pillow_resize(images[1], height, width))


def test_probe_image_separates_pass_orders():
    # The probe can only tell the two pass orders apart if they disagree.
    image = np.random.default_rng(0).integers(0, 256, (1, 56, 29), dtype=np.uint8)
    vertical_first = resample_width(resample_height(image, 8), 8)
    horizontal_first = resample_height(resample_width(image, 8), 8)
    assert not np.array_equal(vertical_first, horizontal_first)
    assert isinstance(probe_pillow_vertical_first(), bool)


def test_batch_size_keeps_values(sample_pixels):
    subset = sample_pixels[:500]
    whole = compute_hashes(subset)
    batched = compute_hashes(subset, batch_size=7)
    assert whole == batched


def test_large_images_hash_in_small_batches():
    # 600x700 images exceed the per-batch pixel limit, so each batch holds one.
    images = np.random.default_rng(5).integers(0, 256, (3, 600, 700), dtype=np.uint8)
    spec = HashSpec("phash", 8)
    hashes = compute_hashes(images, spec)
    assert np.array_equal(hashes.values, imagehash_values(images, spec))


def test_compute_hashes_empty_input():
    hashes = compute_hashes(np.zeros((0, 28, 28), dtype=np.uint8))
    assert len(hashes) == 0
    assert hashes.values.dtype == np.uint64


def test_compute_hashes_rejects_float_pixels():
    pixels = np.zeros((3, 28, 28), dtype=np.float32)
    with pytest.raises(ValueError, match="float32") as error:
        compute_hashes(pixels)
    assert "(3, 28, 28)" in str(error.value)
    assert "astype(np.uint8)" in str(error.value)


def test_compute_hashes_rejects_int64_pixels():
    with pytest.raises(ValueError, match="int64"):
        compute_hashes(np.zeros((3, 28, 28), dtype=np.int64))


def test_compute_hashes_rejects_single_image():
    with pytest.raises(ValueError, match=r"\(28, 28\)"):
        compute_hashes(np.zeros((28, 28), dtype=np.uint8))


def test_compute_hashes_rejects_empty_side():
    with pytest.raises(ValueError, match="empty side"):
        compute_hashes(np.zeros((2, 0, 28), dtype=np.uint8))


def test_compute_hashes_rejects_list_input():
    with pytest.raises(TypeError, match="NumPy array"):
        compute_hashes([[[0]]])


@pytest.mark.parametrize(
    ("batch_size", "error"),
    [(0, ValueError), (-5, ValueError), (2.5, TypeError), (True, TypeError)],
)
def test_compute_hashes_rejects_bad_batch_size(batch_size, error):
    with pytest.raises(error, match="batch_size"):
        compute_hashes(np.zeros((2, 28, 28), dtype=np.uint8), batch_size=batch_size)


def test_compute_hashes_rejects_zero_blas_threads():
    with pytest.raises(ValueError, match="blas_threads"):
        compute_hashes(np.zeros((2, 28, 28), dtype=np.uint8), blas_threads=0)


def test_uncapped_blas_gives_same_hashes(sample_pixels):
    subset = sample_pixels[:300]
    assert compute_hashes(subset, blas_threads=None) == compute_hashes(subset)


@pytest.mark.parametrize("hash_size", [1, 9, 16])
def test_hash_spec_rejects_unsupported_size(hash_size):
    with pytest.raises(ValueError, match="supported sizes are 2 to 8"):
        HashSpec("phash", hash_size)


@pytest.mark.parametrize("hash_size", [8.0, "8", True])
def test_hash_spec_rejects_non_int_size(hash_size):
    with pytest.raises(TypeError, match="hash_size"):
        HashSpec("phash", hash_size)


def test_hash_spec_rejects_unknown_method():
    with pytest.raises(ValueError, match="'whash'"):
        HashSpec("whash", 8)


def test_hash_spec_accepts_numpy_int():
    spec = HashSpec("dhash", np.int64(6))
    assert spec == HashSpec("dhash", 6)
    assert type(spec.hash_size) is int
    assert spec.bits == 36


@pytest.mark.parametrize(
    "other", [HashSpec("dhash", 8), HashSpec("phash", 4)], ids=["method", "size"]
)
def test_check_comparable_rejects_other_spec(other):
    ours = ImageHashes(HashSpec("phash", 8), np.zeros(2, dtype=np.uint64))
    theirs = ImageHashes(other, np.zeros(2, dtype=np.uint64))
    with pytest.raises(ValueError) as error:
        ours.check_comparable(theirs)
    assert repr(ours.spec) in str(error.value)
    assert repr(other) in str(error.value)


def test_hamming_distance_rejects_other_spec():
    ours = ImageHashes(HashSpec("phash", 8), np.zeros(2, dtype=np.uint64))
    theirs = ImageHashes(HashSpec("ahash", 8), np.zeros(2, dtype=np.uint64))
    with pytest.raises(ValueError, match="ahash"):
        hamming_distance(ours, theirs)


def test_hamming_distance_rejects_unequal_lengths():
    spec = HashSpec()
    with pytest.raises(ValueError, match="3 hashes with 2"):
        hamming_distance(
            ImageHashes(spec, np.zeros(3, dtype=np.uint64)),
            ImageHashes(spec, np.zeros(2, dtype=np.uint64)),
        )


def test_hamming_distance_matches_imagehash_difference(sample_pixels):
    first, second = sample_pixels[:300], sample_pixels[300:600]
    spec = HashSpec("phash", 8)
    pairs = zip(
        imagehash_objects(first, spec), imagehash_objects(second, spec), strict=True
    )
    expected = [a - b for a, b in pairs]
    distances = hamming_distance(compute_hashes(first), compute_hashes(second))
    assert distances.dtype == np.uint8
    assert distances.tolist() == expected


def test_hamming_distance_broadcasts_single_hash(sample_pixels):
    hashes = compute_hashes(sample_pixels[:50])
    distances = hamming_distance(hashes[0], hashes)
    assert distances.shape == (50,)
    assert distances[0] == 0
    assert np.array_equal(distances, pairwise_hamming_distance(hashes[0], hashes)[0])


def test_pairwise_hamming_distance_matches_elementwise(sample_pixels):
    a = compute_hashes(sample_pixels[:40], HashSpec("dhash", 8))
    b = compute_hashes(sample_pixels[40:70], HashSpec("dhash", 8))
    matrix = pairwise_hamming_distance(a, b)
    assert matrix.shape == (40, 30)
    for i in range(len(a)):
        assert np.array_equal(matrix[i], hamming_distance(a[i], b))


def test_popcount64_counts_extreme_values():
    values = np.array([0, 1, 2**63, 2**64 - 1, 0x5555555555555555], dtype=np.uint64)
    assert popcount64(values).tolist() == [0, 1, 1, 64, 32]


def test_popcount64_swar_matches_python_bit_count():
    values = np.random.default_rng(1).integers(
        0, 2**64 - 1, 5000, dtype=np.uint64, endpoint=True
    )
    expected = [int(v).bit_count() for v in values]
    assert popcount64_swar(values).tolist() == expected
    assert popcount64(values).tolist() == expected


def test_popcount64_rejects_int64():
    with pytest.raises(ValueError, match="int64"):
        popcount64(np.zeros(3, dtype=np.int64))


def test_image_hashes_getitem_returns_subsets(sample_pixels):
    hashes = compute_hashes(sample_pixels[:10])
    single = hashes[3]
    assert isinstance(single, ImageHashes)
    assert single.values.tolist() == [hashes.values[3]]
    assert hashes[2:5].values.tolist() == hashes.values[2:5].tolist()
    mask = np.arange(10) % 2 == 0
    assert len(hashes[mask]) == 5
    assert hashes[np.array([9, 0])].values.tolist() == [
        hashes.values[9],
        hashes.values[0],
    ]
    assert hashes[mask].spec == hashes.spec


def test_image_hashes_values_are_read_only(sample_pixels):
    hashes = compute_hashes(sample_pixels[:4])
    with pytest.raises(ValueError):
        hashes.values[0] = 1


def test_to_hex_matches_imagehash_str(sample_pixels):
    for spec in (HashSpec("phash", 8), HashSpec("dhash", 3), HashSpec("ahash", 5)):
        expected = [str(h) for h in imagehash_objects(sample_pixels[:20], spec)]
        assert compute_hashes(sample_pixels[:20], spec).to_hex() == expected


def test_image_hashes_rejects_wide_values():
    with pytest.raises(ValueError, match="16 bits"):
        ImageHashes(HashSpec("phash", 4), np.array([1 << 16], dtype=np.uint64))


def test_image_hashes_rejects_signed_values():
    with pytest.raises(ValueError, match=r"view\(np.uint64\)"):
        ImageHashes(HashSpec(), np.zeros(3, dtype=np.int64))


def test_concatenate_keeps_order(sample_pixels):
    whole = compute_hashes(sample_pixels[:30])
    joined = ImageHashes.concatenate([whole[:10], whole[10:25], whole[25:]])
    assert joined == whole


def test_concatenate_rejects_mixed_specs(sample_pixels):
    phash = compute_hashes(sample_pixels[:5], HashSpec("phash", 8))
    dhash = compute_hashes(sample_pixels[:5], HashSpec("dhash", 8))
    with pytest.raises(ValueError, match="dhash"):
        ImageHashes.concatenate([phash, dhash])


def test_import_skips_scipy():
    # The baseline trainer must not pay for scipy; only the tie path loads it.
    code = "import sys, dedup.hashing; print('scipy' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
