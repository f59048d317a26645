"""Exact and near-duplicate detection, checked against brute force on real glyphs.

The reference pair sets are computed here from first principles: imagehash's
phash of each image as an int, popcount of the XOR for every pair, and the
pixel rule for near-uniform images. Nothing from dedup/search.py is used.
The variant hashes are checked against their definition (scipy's median
filter, slicing, Pillow's float LANCZOS resize and scipy's DCT), and the
variant pairs are then counted by brute force over every pair.
"""

from __future__ import annotations

import io
from collections import Counter
import tarfile
from pathlib import Path

import imagehash
import numpy as np
import pytest
import scipy.fftpack
import scipy.ndimage
from PIL import Image

from dedup.exact import exact_group_ids, pixel_digests
from dedup.hashing import HashSpec, compute_hashes
from dedup.index import build_index
from dedup.near import (
    COMPARISONS,
    NEAR_UNIFORM_MAX_MEAN_DIFFERENCE,
    NEAR_UNIFORM_MAX_RANGE,
    PIXEL_DECIDED,
    DedupSettings,
    ImageSet,
    find_duplicate_pairs,
)
from dedup.variants import FLAT_MAX_RANGE, MIN_INK_KEPT, SHIFTS, VariantHashes
from near_reference import comparison_distances
from notmnist_ds.constants import CLASS_NAMES, LARGE, SMALL
from notmnist_ds.images import decode_image
from notmnist_ds.pipeline import BuildOptions, prepare
from notmnist_ds.sample_tarballs import member_name

# imagehash's phash of any uniform image except pure black: only the DC bit set.
DEGENERATE_PHASH = 1 << 63


def png_bytes(pixels: np.ndarray, **options) -> bytes:
    """Encode a uint8 image as PNG with Pillow ``save`` options."""
    buffer = io.BytesIO()
    image = Image.fromarray(pixels, "L")
    if options.pop("palette", False):
        image = image.convert("P")
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def imagehash_phash(pixels: np.ndarray) -> int:
    return int(str(imagehash.phash(Image.fromarray(pixels, "L"))), 16)


def image_set(pixels: np.ndarray, labels: np.ndarray) -> ImageSet:
    return ImageSet.from_pixels(
        pixels,
        compute_hashes(pixels, HashSpec("phash", 8)),
        pixel_digests(pixels),
        labels,
    )


def near_uniform(pixels: np.ndarray) -> np.ndarray:
    flat = pixels.reshape(len(pixels), -1).astype(np.int16)
    return flat.max(axis=1) - flat.min(axis=1) <= NEAR_UNIFORM_MAX_RANGE


def plain_settings(k: int) -> DedupSettings:
    """Compare the hashes only, without the median-filtered and shifted variants."""
    return DedupSettings(
        max_distance=k, compare_median_filtered=False, compare_shifted=False
    )


def brute_force_pairs(
    pixels: np.ndarray,
    phash: np.ndarray,
    k: int,
    variants: VariantHashes | None = None,
) -> dict[tuple[int, int], tuple[str, int]]:
    """Return every near-duplicate pair i < j with (comparison, distance), by definition.

    Two glyphs pair when their phash values differ in at most ``k`` bits.
    With ``variants``, they also pair when both median-filtered images are
    usable and their hashes are within ``k``, or when both trimmed images are
    usable and a shifted hash of one is within ``k`` of the trimmed hash of
    the other. A pair found several ways is recorded by the first comparison
    of COMPARISONS, at its smallest distance. Two near-uniform images pair
    when their mean absolute pixel difference is at most the limit. A glyph
    never pairs with a near-uniform image.
    """
    uniform = near_uniform(pixels)
    pairs: dict[tuple[int, int], tuple[str, int]] = {}

    def record(i: int, j: int, comparison: str, distance: int) -> None:
        key = (min(i, j), max(i, j))
        candidate = (COMPARISONS.index(comparison), distance)
        current = pairs.get(key)
        if current is None or candidate < (COMPARISONS.index(current[0]), current[1]):
            pairs[key] = (comparison, distance)

    glyphs = np.flatnonzero(~uniform)
    for row, i in enumerate(glyphs):
        later = glyphs[row + 1 :]
        if variants is None:
            found = {"hash": np.bitwise_count(phash[i] ^ phash[later])}
        else:
            found = comparison_distances(phash, variants, i, later)
        for comparison, distance in found.items():
            for j, d in zip(later[distance <= k], distance[distance <= k]):
                record(int(i), int(j), comparison, int(d))

    flats = pixels.reshape(len(pixels), -1).astype(np.int16)
    blanks = np.flatnonzero(uniform)
    for row, i in enumerate(blanks):
        for j in blanks[row + 1 :]:
            if np.abs(flats[i] - flats[j]).mean() <= NEAR_UNIFORM_MAX_MEAN_DIFFERENCE:
                record(int(i), int(j), "pixels", PIXEL_DECIDED)
    return pairs


def reference_variant_hash(image: np.ndarray) -> int:
    """Hash a variant by definition: Pillow's float LANCZOS resize, scipy's DCT, median."""
    picture = Image.fromarray(image.astype(np.float32), "F")
    resized = np.asarray(picture.resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(resized, axis=0), axis=1)[:8, :8]
    # A coefficient above the median by at most 1e-9 times the largest
    # magnitude ties with it and gives 0.
    bits = (dct > np.median(dct) + 1e-9 * np.abs(dct).max()).ravel()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def trim_and_shift(image: np.ndarray, rows: int = 0, columns: int = 0) -> np.ndarray:
    """Copy the lines next to the outer ring onto it, then move by (rows, columns)."""
    side = image.shape[0]
    lines = np.clip(np.arange(side), 1, side - 2)
    return image[lines - rows][:, lines - columns]


def shifted_glyph(image: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Move a glyph by (rows, columns) pixels, filling with its border's median."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    result = np.full_like(image, int(np.median(border)))
    side = image.shape[0]
    result[max(rows, 0) : side + min(rows, 0), max(columns, 0) : side + min(columns, 0)] = (
        image[max(-rows, 0) : side + min(-rows, 0), max(-columns, 0) : side + min(-columns, 0)]
    )
    return result


@pytest.fixture(scope="module")
def sample_phash(real_sample) -> np.ndarray:
    """imagehash's phash of each of the 8,000 real images, as uint64."""
    pixels, _ = real_sample
    return np.array([imagehash_phash(image) for image in pixels], dtype=np.uint64)


@pytest.fixture(scope="module")
def sample_set(real_sample) -> ImageSet:
    pixels, labels = real_sample
    return image_set(pixels, labels)


def distinct_glyph_indices(pixels: np.ndarray, count: int) -> list[int]:
    """Return the first ``count`` images that are glyphs and unique in ``pixels``."""
    _, first, counts = np.unique(
        pixels.reshape(len(pixels), -1), axis=0, return_index=True, return_counts=True
    )
    unique = np.sort(first[counts == 1])
    unique = unique[~near_uniform(pixels[unique])]
    return unique[:count].tolist()


# Exact duplicates


def test_exact_groups_ignore_png_encoding(real_sample):
    pixels, _ = real_sample
    glyph = pixels[distinct_glyph_indices(pixels, 1)[0]]
    encodings = [
        png_bytes(glyph, compress_level=0),
        png_bytes(glyph, compress_level=9),
        png_bytes(glyph, palette=True),
    ]
    other = png_bytes(np.ascontiguousarray(glyph[::-1]))
    decoded = np.stack([decode_image(data)[0] for data in [*encodings, other]])
    groups = exact_group_ids(pixel_digests(decoded))

    assert len({len(data) for data in encodings}) == 3
    assert len(set(encodings)) == 3
    assert groups[0] == groups[1]
    assert groups[0] == groups[2]
    assert groups[3] != groups[0]


def write_archive(path: Path, root: str, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def exact_duplicate_build(real_sample, tmp_path_factory):
    """Prepare splits from two archives that share one glyph in three encodings.

    The large archive (train) contains the glyph compressed at level 0 and at
    level 9, and the small archive (test) contains it as a palette PNG. The other
    members are distinct real glyphs, two per letter in each archive.
    """
    pixels, labels = real_sample
    chosen = distinct_glyph_indices(pixels, 400)
    per_letter: dict[int, list[int]] = {}
    for index in chosen:
        per_letter.setdefault(int(labels[index]), []).append(index)
    shared = per_letter[0].pop()
    large_members, small_members = [], []
    for label, letter in enumerate(CLASS_NAMES):
        for n, index in enumerate(per_letter[label][:4]):
            members = large_members if n < 2 else small_members
            font = f"Other {letter} {n}.ttf"
            members.append((f"{letter}/{member_name(font)}", png_bytes(pixels[index])))
    copies = {
        "large level 0": (large_members, png_bytes(pixels[shared], compress_level=0)),
        "large level 9": (large_members, png_bytes(pixels[shared], compress_level=9)),
        "small palette": (small_members, png_bytes(pixels[shared], palette=True)),
    }
    sources = {}
    for font, (members, data) in copies.items():
        name = f"A/{member_name(font + '.ttf')}"
        members.append((name, data))
        root = LARGE.root if members is large_members else SMALL.root
        sources[font] = f"{root}/{name}"

    folder = tmp_path_factory.mktemp("exact_archives")
    write_archive(folder / LARGE.file_name, LARGE.root, large_members)
    write_archive(folder / SMALL.file_name, SMALL.root, small_members)
    options = BuildOptions(train_size=None, validation_size=0, test_size=None)
    prepared = prepare(
        {LARGE.name: folder / LARGE.file_name, SMALL.name: folder / SMALL.file_name},
        {LARGE.name: "unverified", SMALL.name: "unverified"},
        options,
        workers=1,
        progress=False,
    )
    position = {}
    for image in range(len(prepared.labels())):
        position[prepared.source(image)] = image
    return prepared, {font: position[source] for font, source in sources.items()}


def test_prepare_groups_copies_across_archives(exact_duplicate_build):
    prepared, image = exact_duplicate_build
    group = prepared.index.group

    assert group[image["large level 0"]] == group[image["large level 9"]]
    assert group[image["large level 0"]] == group[image["small palette"]]
    assert prepared.index.num_groups == len(prepared.labels()) - 2


def test_overlap_counts_copies_within_and_across(exact_duplicate_build):
    prepared, _ = exact_duplicate_build
    rows = {(row.first, row.second): row for row in prepared.overlap["raw"].rows}

    assert rows[("train", "train")].exact_rows == 2
    assert rows[("train", "train")].exact_images == 1
    assert rows[("train", "test")].exact_rows == 3
    assert rows[("train", "test")].exact_images == 1


def test_sanitize_drops_copies_within_and_across(exact_duplicate_build):
    prepared, image = exact_duplicate_build
    train = set(prepared.sanitized.splits["train"].tolist())
    test = set(prepared.sanitized.splits["test"].tolist())
    removals = {removal.image: removal for removal in prepared.sanitized.removals}
    train_copies = {image["large level 0"], image["large level 9"]}
    dropped_train_copy = (train_copies - train).pop()

    assert len(train_copies & train) == 1
    assert image["small palette"] not in test
    assert removals[dropped_train_copy].reason == "exact_duplicate_within_split"
    assert removals[dropped_train_copy].matched in train_copies & train
    assert removals[image["small palette"]].reason == "exact_duplicate_of_train"
    assert removals[image["small palette"]].matched in train_copies & train
    assert removals[image["small palette"]].distance == 0


# Near duplicates against brute force


def test_batch_phash_equals_imagehash_on_sample(sample_set, sample_phash):
    assert np.array_equal(sample_set.hashes.values, sample_phash)


@pytest.mark.parametrize("k", [0, 4, 8])
def test_duplicate_pairs_equal_brute_force(real_sample, sample_set, sample_phash, k):
    pixels, _ = real_sample
    expected = brute_force_pairs(pixels, sample_phash, k)
    found = find_duplicate_pairs(sample_set, plain_settings(k))
    actual = {
        (int(a), int(b)): (COMPARISONS[c], int(d))
        for a, b, d, c in zip(found.first, found.second, found.distance, found.comparison)
    }
    hash_distances = [d for kind, d in expected.values() if kind == "hash"]

    assert len(found) == len(actual)
    assert actual == expected
    assert max(hash_distances) == k


@pytest.mark.parametrize("k", [2, 4])
def test_variant_pairs_equal_brute_force(real_sample, sample_set, sample_phash, k):
    pixels, _ = real_sample
    expected = brute_force_pairs(pixels, sample_phash, k, sample_set.variants)
    found = find_duplicate_pairs(sample_set, DedupSettings(max_distance=k))
    actual = {
        (int(a), int(b)): (COMPARISONS[c], int(d))
        for a, b, d, c in zip(found.first, found.second, found.distance, found.comparison)
    }
    kinds = Counter(kind for kind, _ in expected.values())

    assert len(found) == len(actual)
    assert actual == expected
    assert kinds["median_filtered"] > 0
    assert kinds["shifted"] > 0


def test_variant_hashes_equal_definition(real_sample, sample_set):
    pixels, _ = real_sample
    variants = sample_set.variants
    mismatched_bits = []
    # Every third image keeps this quick. Flat variants are never compared,
    # and their coefficients tie, so their bits are float rounding noise.
    for i in range(0, len(pixels), 3):
        image = pixels[i]
        actual, expected = [], []
        if variants.filtered_usable[i]:
            filtered = scipy.ndimage.median_filter(image, size=3, mode="nearest")
            actual.append(variants.filtered[i])
            expected.append(reference_variant_hash(filtered))
        if variants.trimmed_usable[i]:
            actual += [variants.trimmed[i], *variants.shifted[i]]
            expected.append(reference_variant_hash(trim_and_shift(image)))
            expected += [reference_variant_hash(trim_and_shift(image, r, c)) for r, c in SHIFTS]
        mismatched_bits += [(int(a) ^ b).bit_count() for a, b in zip(actual, expected)]
    mismatched = [bits for bits in mismatched_bits if bits]

    # Float rounding may tip a coefficient that equals the median.
    assert len(mismatched_bits) > 12_000
    assert len(mismatched) <= len(mismatched_bits) // 1000
    assert max(mismatched, default=0) <= 2


def test_variant_usable_flags_equal_definition(real_sample, sample_set):
    pixels, _ = real_sample
    filtered = np.stack(
        [scipy.ndimage.median_filter(image, size=3, mode="nearest") for image in pixels]
    )
    filtered_range = np.ptp(filtered.reshape(len(pixels), -1), axis=1)
    trimmed_range = np.ptp(pixels[:, 1:-1, 1:-1].reshape(len(pixels), -1), axis=1)
    ring = np.ones((28, 28), bool)
    ring[1:-1, 1:-1] = False
    background = np.array([np.median(image[ring]) for image in pixels])[:, None, None]
    ink = np.abs(pixels - background).sum(axis=(1, 2))
    kept = np.abs(filtered - background).sum(axis=(1, 2))
    filtered_usable = (filtered_range > FLAT_MAX_RANGE) & (kept >= MIN_INK_KEPT * ink)

    assert 0 < np.count_nonzero(kept < MIN_INK_KEPT * ink) < 100
    assert np.array_equal(sample_set.variants.filtered_usable, filtered_usable)
    assert np.array_equal(sample_set.variants.trimmed_usable, trimmed_range > FLAT_MAX_RANGE)


@pytest.mark.parametrize(
    ("rows", "columns"), [(r, c) for r in (-1, 0, 1) for c in (-1, 0, 1) if (r, c) != (0, 0)]
)
def test_one_pixel_shift_found(real_sample, rows, columns):
    pixels, _ = real_sample
    chosen = distinct_glyph_indices(pixels, 40)
    originals = pixels[chosen]
    copies = np.stack([shifted_glyph(image, rows, columns) for image in originals])
    images = np.concatenate([originals, copies])
    found = find_duplicate_pairs(image_set(images, np.zeros(80)), DedupSettings())
    plain = find_duplicate_pairs(image_set(images, np.zeros(80)), plain_settings(4))
    linked = set(zip(found.first.tolist(), found.second.tolist()))
    plain_linked = set(zip(plain.first.tolist(), plain.second.tolist()))
    copy_pairs = {(i, i + 40) for i in range(40)}

    assert copy_pairs <= linked
    assert len(copy_pairs & plain_linked) < 20


def test_inverted_pixels_found_by_median_filter(real_sample):
    pixels, _ = real_sample
    chosen = distinct_glyph_indices(pixels, 200)
    originals = pixels[chosen]
    rng = np.random.default_rng(3)
    copies = originals.copy()
    for copy in copies:
        # Five pixels at least two apart, so that each is isolated.
        positions = rng.choice(12 * 12, 5, replace=False)
        rows, columns = 2 + 2 * (positions // 12), 2 + 2 * (positions % 12)
        copy[rows, columns] = 255 - copy[rows, columns]
    images = np.concatenate([originals, copies])
    labels = np.zeros(len(images))
    found = find_duplicate_pairs(image_set(images, labels), DedupSettings())
    plain = find_duplicate_pairs(image_set(images, labels), plain_settings(4))
    copy_pairs = {(i, i + 200) for i in range(200)}
    linked = copy_pairs & set(zip(found.first.tolist(), found.second.tolist()))
    plain_linked = copy_pairs & set(zip(plain.first.tolist(), plain.second.tolist()))

    # On these raw glyphs 92% of the copies are found, against 68% by phash
    # alone. An inverted pixel on an anti-aliased edge survives the filter.
    assert plain_linked <= linked
    assert len(linked) >= 180
    assert len(plain_linked) <= 150


def test_thin_strokes_not_compared_after_median_filter():
    lines = np.zeros((28, 28), np.uint8)
    lines[4:24, 8] = 255
    lines[4:24, 18] = 255
    lines[4, 8:19] = 255
    variants = image_set(lines[None], np.zeros(1)).variants

    assert not variants.filtered_usable[0]
    assert variants.trimmed_usable[0]


@pytest.mark.parametrize("k", [4])
def test_index_links_equal_brute_force(real_sample, sample_set, sample_phash, k):
    pixels, _ = real_sample
    index = build_index(sample_set, DedupSettings(max_distance=k))
    # Number the distinct images by their pixels, independently of the index.
    first_of: dict[bytes, int] = {}
    for i, image in enumerate(pixels):
        first_of.setdefault(image.tobytes(), i)
    representatives = np.array(sorted(first_of.values()))
    expected = {
        (int(representatives[a]), int(representatives[b])): found
        for (a, b), found in brute_force_pairs(
            pixels[representatives],
            sample_phash[representatives],
            k,
            sample_set.variants[representatives],
        ).items()
    }
    group_image = {int(index.group[i]): int(i) for i in representatives}
    actual = {}
    for group in range(index.num_groups):
        neighbours, distances = index.neighbours_of(group)
        comparisons = index.comparisons_of(group)
        for neighbour, distance, comparison in zip(
            neighbours.tolist(), distances.tolist(), comparisons.tolist()
        ):
            a, b = sorted((group_image[group], group_image[neighbour]))
            actual[(a, b)] = (COMPARISONS[comparison], distance)

    assert index.num_groups == len(first_of)
    assert all(
        index.group[i] == index.group[first_of[image.tobytes()]]
        for i, image in enumerate(pixels)
    )
    assert actual == expected
    assert index.num_links == len(expected)


def test_index_without_variants_keeps_hash_links_only(sample_set):
    full = build_index(sample_set, DedupSettings())
    plain = build_index(sample_set, plain_settings(4))

    assert plain.num_links < full.num_links
    assert set(plain.neighbour_comparison.tolist()) <= {
        COMPARISONS.index("hash"),
        COMPARISONS.index("pixels"),
    }


# Uniform, near-uniform and degenerate-hash images


def test_white_and_black_not_duplicates():
    images = np.stack([np.full((28, 28), 255, np.uint8), np.zeros((28, 28), np.uint8)])
    hashes = [imagehash_phash(image) for image in images]
    index = build_index(
        image_set(images, np.array([8, 8])), DedupSettings(max_distance=63)
    )

    # The hashes are one bit apart, so any hash threshold above 0 would pair them.
    assert hashes == [DEGENERATE_PHASH, 0]
    assert len(find_duplicate_pairs(image_set(images, np.array([8, 8])), DedupSettings(max_distance=63))) == 0
    assert index.num_groups == 2
    assert index.num_links == 0


def test_white_and_degenerate_glyph_not_duplicates(real_sample, sample_phash):
    pixels, _ = real_sample
    degenerate = np.flatnonzero(
        (sample_phash == np.uint64(DEGENERATE_PHASH)) & ~near_uniform(pixels)
    )
    glyph = pixels[degenerate[0]]
    images = np.stack([np.full((28, 28), 255, np.uint8), glyph])
    index = build_index(image_set(images, np.array([8, 8])), DedupSettings())

    assert len(degenerate) > 0
    assert imagehash_phash(images[0]) == imagehash_phash(glyph)
    assert int(np.ptp(glyph)) > NEAR_UNIFORM_MAX_RANGE
    assert len(find_duplicate_pairs(image_set(images, np.array([8, 8])), DedupSettings())) == 0
    assert index.num_links == 0


def test_two_white_images_exact_duplicates():
    white = np.full((28, 28), 255, np.uint8)
    decoded = np.stack(
        [decode_image(png_bytes(white, compress_level=level))[0] for level in (0, 9)]
    )
    index = build_index(image_set(decoded, np.array([8, 8])), DedupSettings())

    assert index.group[0] == index.group[1]
    assert index.num_groups == 1
    assert index.num_links == 0


def test_sample_whites_form_one_group(real_sample, sample_set):
    pixels, _ = real_sample
    index = build_index(sample_set, DedupSettings())
    white = np.flatnonzero((pixels == 255).all(axis=(1, 2)))

    assert len(white) == 111
    assert len(set(index.group[white].tolist())) == 1
    assert np.count_nonzero(index.group == index.group[white[0]]) == 111


@pytest.mark.parametrize(
    ("level", "expected_pairs"),
    [(255 - int(NEAR_UNIFORM_MAX_MEAN_DIFFERENCE), 1), (240, 0)],
)
def test_near_uniform_match_by_mean_difference(level, expected_pairs):
    images = np.stack(
        [np.full((28, 28), 255, np.uint8), np.full((28, 28), level, np.uint8)]
    )
    pairs = find_duplicate_pairs(image_set(images, np.array([8, 8])), DedupSettings(max_distance=63))

    assert len(pairs) == expected_pairs
    assert all(distance == PIXEL_DECIDED for distance in pairs.distance.tolist())


def test_near_uniform_never_pairs_with_glyph(real_sample, sample_set):
    pixels, _ = real_sample
    uniform = near_uniform(pixels)
    pairs = find_duplicate_pairs(sample_set, DedupSettings(max_distance=12))
    mixed = uniform[pairs.first] != uniform[pairs.second]
    pixel_decided = pairs.distance == PIXEL_DECIDED

    assert uniform.sum() > 111
    assert not mixed.any()
    assert np.array_equal(pixel_decided, uniform[pairs.first])


# The rule in words


def test_rule_description_names_phash_variants_for_dhash():
    rule = DedupSettings("dhash", max_distance=3).describe()

    assert rule.startswith("dhash Hamming distance <= 3")
    assert "or phash distance <= 3 after a 3x3 median filter" in rule
    assert "after a one-pixel shift" in rule


def test_rule_description_without_variants():
    assert plain_settings(5).describe() == "phash Hamming distance <= 5"


def test_pairs_need_variants_for_default_rule(sample_set):
    bare = ImageSet(
        sample_set.hashes,
        sample_set.digests,
        sample_set.labels,
        sample_set.near_uniform,
        sample_set.uniform_pixels,
    )

    with pytest.raises(ValueError) as raised:
        find_duplicate_pairs(bare, DedupSettings())
    assert "image set has none" in str(raised.value)
    assert len(find_duplicate_pairs(bare, plain_settings(4))) > 0
