"""Batch PNG decoding and the NumPy view, against Pillow image by image.

The reference for every image is ``images.decode_image``: Pillow's decode
followed by the package's canonical conversion. Pillow's encoder picks the
filter of each row on its own, so the PNG writer below filters rows itself.
Every file it writes is also checked to decode through Pillow to the pixels it
was made from.
"""

from __future__ import annotations

import io
import struct
import zlib

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from notmnist_ds import fastpng
from notmnist_ds.fastpng import (
    BatchImageRejected,
    decode_png_batch,
    inflate_fast_path,
    stored_zlib_stream,
)
from notmnist_ds.images import PNG_SIGNATURE, ImageRejected, decode_image
from notmnist_ds.numpy_view import load_numpy, numpy_view
from notmnist_ds.report import SkipReason

SIDE = 28
FILTER_TYPES = (0, 1, 2, 3, 4)  # None, Sub, Up, Average, Paeth


# A PNG writer with chosen row filters


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    if crc is None:
        crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def ihdr(
    width: int = SIDE,
    height: int = SIDE,
    bit_depth: int = 8,
    color_type: int = 0,
    interlace: int = 0,
) -> bytes:
    payload = struct.pack(
        ">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace
    )
    return chunk(b"IHDR", payload)


def paeth_predictor(
    left: np.ndarray, up: np.ndarray, upper_left: np.ndarray
) -> np.ndarray:
    """The Paeth predictor of the PNG specification, element by element."""
    estimate = left + up - upper_left
    distance_left = np.abs(estimate - left)
    distance_up = np.abs(estimate - up)
    distance_upper_left = np.abs(estimate - upper_left)
    return np.where(
        (distance_left <= distance_up) & (distance_left <= distance_upper_left),
        left,
        np.where(distance_up <= distance_upper_left, up, upper_left),
    )


def filter_rows(pixels: np.ndarray, filter_types: np.ndarray) -> np.ndarray:
    """Filter 8-bit gray images (N, H, W) with one filter type per image row.

    Returns uint8 (N, H, 1 + W): each row's filter type byte, then its bytes.
    """
    count, height, width = pixels.shape
    values = pixels.astype(np.int16)
    left = np.zeros_like(values)
    left[:, :, 1:] = values[:, :, :-1]
    up = np.zeros_like(values)
    up[:, 1:, :] = values[:, :-1, :]
    upper_left = np.zeros_like(values)
    upper_left[:, 1:, 1:] = values[:, :-1, :-1]
    predictors = {
        1: lambda: left,
        2: lambda: up,
        3: lambda: (left + up) // 2,
        4: lambda: paeth_predictor(left, up, upper_left),
    }
    kinds = np.broadcast_to(np.asarray(filter_types)[:, :, None], values.shape)
    prediction = np.zeros_like(values)
    for kind, predictor in predictors.items():
        mask = kinds == kind
        if mask.any():
            prediction = np.where(mask, predictor(), prediction)
    out = np.empty((count, height, 1 + width), np.uint8)
    out[:, :, 0] = filter_types
    out[:, :, 1:] = (values - prediction) % 256
    return out


def gray_pngs(
    pixels: np.ndarray,
    filter_types: np.ndarray,
    level: int = 6,
    idat_parts: int = 1,
) -> list[bytes]:
    """Write 8-bit grayscale 28x28 PNGs with the given row filter types.

    ``filter_types`` has shape (N, 28). ``idat_parts`` splits each image's
    zlib stream into that many IDAT chunks.
    """
    filtered = filter_rows(pixels, filter_types)
    blobs = []
    for rows in filtered:
        stream = zlib.compress(rows.tobytes(), level)
        step = -(-len(stream) // idat_parts)
        idat = b"".join(
            chunk(b"IDAT", stream[i : i + step]) for i in range(0, len(stream), step)
        )
        blobs.append(PNG_SIGNATURE + ihdr() + idat + chunk(b"IEND", b""))
    return blobs


def assemble(*chunks: bytes) -> bytes:
    return PNG_SIGNATURE + b"".join(chunks)


def idat_of(pixels: np.ndarray, filter_type: int = 0) -> bytes:
    filtered = filter_rows(pixels[None], np.full((1, pixels.shape[0]), filter_type))
    return chunk(b"IDAT", zlib.compress(filtered.tobytes()))


ADAM7_PASSES = (  # (row start, column start, row step, column step)
    (0, 0, 8, 8),
    (0, 4, 8, 8),
    (4, 0, 8, 4),
    (0, 2, 4, 4),
    (2, 0, 4, 2),
    (0, 1, 2, 2),
    (1, 0, 2, 1),
)


def interlaced_gray_png(pixels: np.ndarray) -> bytes:
    """Write an Adam7-interlaced 8-bit gray PNG, each pass filtered with Paeth."""
    passes = []
    for row_start, column_start, row_step, column_step in ADAM7_PASSES:
        reduced = pixels[row_start::row_step, column_start::column_step]
        if reduced.size:
            kinds = np.full((1, reduced.shape[0]), 4)
            passes.append(filter_rows(reduced[None], kinds).tobytes())
    stream = zlib.compress(b"".join(passes))
    return assemble(ihdr(interlace=1), chunk(b"IDAT", stream), chunk(b"IEND", b""))


def pillow_png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def reference(blobs: list[bytes]) -> np.ndarray:
    return np.stack([decode_image(blob)[0] for blob in blobs])


def noise_images(count: int, seed: int) -> np.ndarray:
    """Random pixels: unlike glyphs, no row is blank, so every filter has work."""
    return np.random.default_rng(seed).integers(0, 256, (count, SIDE, SIDE), np.uint8)


@pytest.fixture(scope="module")
def sample_pixels(real_sample) -> np.ndarray:
    pixels, _ = real_sample
    return pixels


# Bit-identical to Pillow on real images


@pytest.mark.parametrize("level", [1, 6, 9])
def test_decode_matches_pillow_per_compress_level(sample_pixels, level):
    blobs = [
        pillow_png(Image.fromarray(pixels, "L"), compress_level=level)
        for pixels in sample_pixels
    ]
    decoded = decode_png_batch(blobs)
    assert decoded.dtype == np.uint8
    assert decoded.shape == sample_pixels.shape
    assert np.array_equal(decoded, sample_pixels)
    # Pillow's own decode of every image at the default level, of every
    # fourth image at the others.
    step = 1 if level == 6 else 4
    assert np.array_equal(decoded[::step], reference(blobs[::step]))


@pytest.mark.parametrize("strategy", [1, 2, 3, 4])  # FILTERED, HUFFMAN_ONLY, RLE, FIXED
def test_decode_matches_pillow_per_zlib_strategy(sample_pixels, strategy):
    subset = sample_pixels[:1000]
    blobs = [
        pillow_png(Image.fromarray(pixels, "L"), compress_type=strategy)
        for pixels in subset
    ]
    assert np.array_equal(decode_png_batch(blobs), reference(blobs))


@pytest.mark.parametrize("filter_type", FILTER_TYPES)
def test_decode_each_filter_type_on_real_images(sample_pixels, filter_type):
    kinds = np.full((len(sample_pixels), SIDE), filter_type)
    blobs = gray_pngs(sample_pixels, kinds)
    # Pillow decodes what the writer made to the source pixels.
    assert np.array_equal(reference(blobs[::4]), sample_pixels[::4])
    assert np.array_equal(decode_png_batch(blobs), sample_pixels)


def test_decode_mixed_filters_on_real_images(sample_pixels):
    kinds = np.random.default_rng(0).integers(0, 5, (len(sample_pixels), SIDE))
    blobs = gray_pngs(sample_pixels, kinds, level=9)
    assert np.array_equal(reference(blobs), sample_pixels)
    assert np.array_equal(decode_png_batch(blobs), sample_pixels)


@pytest.mark.parametrize("filter_type", FILTER_TYPES)
def test_decode_first_row_ignores_previous_image(filter_type):
    # Noise fills every row, so an image whose first row (Up, Average, Paeth)
    # read the last row of the image before it would decode wrong.
    pixels = noise_images(64, seed=filter_type)
    kinds = np.full((64, SIDE), filter_type)
    blobs = gray_pngs(pixels, kinds)
    assert np.array_equal(reference(blobs), pixels)
    assert np.array_equal(decode_png_batch(blobs), pixels)


def test_decode_batch_spans_several_tall_pngs(sample_pixels, monkeypatch):
    # Seven images per tall PNG, with slow-path images between them, so the
    # fast results land at scattered positions across chunk boundaries.
    monkeypatch.setattr(fastpng, "IMAGES_PER_DECODE", 7)
    pixels = noise_images(40, seed=7)
    kinds = np.random.default_rng(7).integers(0, 5, (40, SIDE))
    blobs = gray_pngs(pixels, kinds, level=1)
    slow = [0, 5, 6, 13, 39]
    for position in slow:
        blobs[position] = pillow_png(
            Image.fromarray(pixels[position], "L").convert("RGB")
        )
    decoded = decode_png_batch(blobs)
    assert np.array_equal(decoded, reference(blobs))
    fast = np.delete(np.arange(40), slow)
    assert np.array_equal(decoded[fast], pixels[fast])


@settings(max_examples=60, deadline=None)
@given(
    images=st.lists(
        st.binary(min_size=SIDE * SIDE, max_size=SIDE * SIDE), min_size=1, max_size=6
    ),
    kinds=st.lists(st.integers(0, 4), min_size=SIDE, max_size=SIDE),
    parts=st.integers(1, 5),
    level=st.integers(0, 9),
)
def test_decode_any_pixels_filters_and_idat_split(images, kinds, parts, level):
    pixels = np.stack(
        [np.frombuffer(image, np.uint8).reshape(SIDE, SIDE) for image in images]
    )
    filter_types = np.tile(np.asarray(kinds), (len(images), 1))
    blobs = gray_pngs(pixels, filter_types, level=level, idat_parts=parts)
    assert np.array_equal(decode_png_batch(blobs), pixels)
    assert np.array_equal(reference(blobs), pixels)


@pytest.mark.parametrize("size", [0, 1, 65_535, 65_536, 200_000])
def test_stored_zlib_stream_round_trips(size):
    data = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
    assert zlib.decompress(stored_zlib_stream(data)) == data


def test_decode_empty_batch():
    decoded = decode_png_batch([])
    assert decoded.shape == (0, SIDE, SIDE)
    assert decoded.dtype == np.uint8


# Which files take the fast path


def test_fast_path_takes_pillow_and_split_idat_pngs(sample_pixels):
    pixels = sample_pixels[:20]
    blobs = [pillow_png(Image.fromarray(image, "L")) for image in pixels]
    blobs += gray_pngs(pixels, np.full((20, SIDE), 4), idat_parts=3)
    positions, filtered, slow = inflate_fast_path(blobs)
    assert positions == list(range(40))
    assert slow == []
    assert all(len(rows) == SIDE * (SIDE + 1) for rows in filtered)


def test_fast_path_keeps_passive_chunks(sample_pixels):
    pixels = sample_pixels[0]
    blob = assemble(
        ihdr(),
        chunk(b"gAMA", struct.pack(">I", 45455)),
        chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
        idat_of(pixels, 4),
        chunk(b"tEXt", b"Comment\x00made by a test"),
        chunk(b"IEND", b""),
    )
    positions, _, slow = inflate_fast_path([blob])
    assert positions == [0]
    assert slow == []
    assert np.array_equal(decode_png_batch([blob])[0], decode_image(blob)[0])


# Files that leave the fast path decode exactly as decode_image does


def fallback_cases(pixels: np.ndarray) -> dict[str, bytes]:
    gray = Image.fromarray(pixels, "L")
    rgb = np.stack([pixels, 255 - pixels, pixels // 2], axis=-1)
    alpha = np.tile(np.arange(0, 252, 9, dtype=np.uint8), (SIDE, 1))
    wide = (pixels.astype(np.uint16) * 257 + 100).astype(np.uint16)
    buffer = io.BytesIO()
    # The brightest value is transparent, so compositing over black changes it.
    gray.save(buffer, format="PNG", transparency=int(pixels.max()))
    return {
        "rgb": pillow_png(Image.fromarray(rgb, "RGB")),
        "rgba": pillow_png(Image.fromarray(np.dstack([rgb, alpha]), "RGBA")),
        "la": pillow_png(Image.merge("LA", (gray, Image.fromarray(alpha, "L")))),
        "palette": pillow_png(gray.convert("P")),
        "gray16": pillow_png(Image.fromarray(wide)),
        "bilevel": pillow_png(gray.convert("1")),
        "gray_trns": buffer.getvalue(),
        "interlaced": interlaced_gray_png(pixels),
        "iccp": assemble(
            ihdr(),
            chunk(b"iCCP", b"profile\x00\x00" + zlib.compress(b"not a real profile")),
            idat_of(pixels),
            chunk(b"IEND", b""),
        ),
        "split_idat_run": assemble(
            ihdr(),
            idat_of(pixels),
            chunk(b"tEXt", b"Comment\x00between"),
            chunk(b"IDAT", b""),
            chunk(b"IEND", b""),
        ),
        "bad_idat_crc": idat_crc_broken(pixels),
        "trailing_bytes": pillow_png(gray) + b"junk after IEND",
    }


def idat_crc_broken(pixels: np.ndarray) -> bytes:
    idat = idat_of(pixels)
    return assemble(ihdr(), idat[:-4] + b"\x00\x00\x00\x00", chunk(b"IEND", b""))


@pytest.mark.parametrize(
    "case",
    [
        "rgb",
        "rgba",
        "la",
        "palette",
        "gray16",
        "bilevel",
        "gray_trns",
        "interlaced",
        "iccp",
        "split_idat_run",
        "bad_idat_crc",
        "trailing_bytes",
    ],
)
def test_decode_other_pngs_match_decode_image(sample_pixels, case):
    pixels = sample_pixels[11]
    blob = fallback_cases(pixels)[case]
    # Between fast-path images, so the positions of both kinds are checked.
    neighbours = [
        pillow_png(Image.fromarray(image, "L")) for image in sample_pixels[:4]
    ]
    blobs = neighbours[:2] + [blob] + neighbours[2:]
    decoded = decode_png_batch(blobs)
    assert np.array_equal(decoded[2], decode_image(blob)[0])
    assert np.array_equal(decoded[[0, 1, 3, 4]], sample_pixels[:4])


def test_interlaced_writer_matches_pillow(sample_pixels):
    pixels = sample_pixels[5]
    blob = interlaced_gray_png(pixels)
    with Image.open(io.BytesIO(blob)) as image:
        assert image.info.get("interlace") == 1
        assert np.array_equal(np.asarray(image), pixels)
    assert np.array_equal(decode_png_batch([blob])[0], pixels)


def test_decode_bad_idat_crc_decodes_like_pillow(sample_pixels):
    # Pillow does not check IDAT CRCs, so neither rejects the file.
    blob = idat_crc_broken(sample_pixels[3])
    assert np.array_equal(decode_image(blob)[0], sample_pixels[3])
    assert np.array_equal(decode_png_batch([blob])[0], sample_pixels[3])


# Broken files raise what decode_image raises


def broken_cases(pixels: np.ndarray) -> dict[str, bytes]:
    good = pillow_png(Image.fromarray(pixels, "L"))
    idat = idat_of(pixels)
    bad_filter = filter_rows(pixels[None], np.zeros((1, SIDE), int))
    bad_filter[0, 5, 0] = 5
    return {
        "empty": b"",
        "not_png": b"GIF89a" + bytes(40),
        "cut_in_idat": good[: len(good) // 2],
        "header_only": good[:33],
        "wrong_size": assemble(ihdr(width=32, height=32), idat, chunk(b"IEND", b"")),
        "garbage_stream": assemble(
            ihdr(), chunk(b"IDAT", b"x\x9c" + bytes(range(200))), chunk(b"IEND", b"")
        ),
        "short_stream": assemble(
            ihdr(), chunk(b"IDAT", zlib.compress(bytes(100))), chunk(b"IEND", b"")
        ),
        "filter_type_5": assemble(
            ihdr(),
            chunk(b"IDAT", zlib.compress(bad_filter.tobytes())),
            chunk(b"IEND", b""),
        ),
        "bad_ancillary_crc": assemble(
            ihdr(),
            chunk(b"gAMA", struct.pack(">I", 45455), crc=0),
            idat,
            chunk(b"IEND", b""),
        ),
        # Pillow rejects an ICC profile compressed by any method but 0.
        "iccp_unknown_compression": assemble(
            ihdr(),
            chunk(b"iCCP", b"profile\x00\x01" + bytes(20)),
            idat,
            chunk(b"IEND", b""),
        ),
        "bad_ihdr_crc": PNG_SIGNATURE
        + ihdr()[:-4]
        + b"\x00\x00\x00\x00"
        + idat
        + chunk(b"IEND", b""),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "not_png",
        "cut_in_idat",
        "header_only",
        "wrong_size",
        "garbage_stream",
        "short_stream",
        "filter_type_5",
        "bad_ancillary_crc",
        "iccp_unknown_compression",
        "bad_ihdr_crc",
    ],
)
def test_decode_broken_png_raises_like_decode_image(sample_pixels, case):
    blob = broken_cases(sample_pixels[0])[case]
    with pytest.raises(ImageRejected) as expected:
        decode_image(blob)
    good = [pillow_png(Image.fromarray(image, "L")) for image in sample_pixels[:3]]
    with pytest.raises(BatchImageRejected) as caught:
        decode_png_batch(good + [blob])
    assert caught.value.reason == expected.value.reason
    assert caught.value.position == 3
    assert caught.value.image_detail == expected.value.detail
    assert "image 3 of the batch" in str(caught.value)


def test_decode_reports_first_broken_image(sample_pixels):
    good = pillow_png(Image.fromarray(sample_pixels[0], "L"))
    blobs = [good, good[:40], good, b"", good]
    with pytest.raises(BatchImageRejected) as caught:
        decode_png_batch(blobs)
    assert caught.value.position == 1
    assert caught.value.reason == SkipReason.UNDECODABLE


def test_decode_none_is_empty(sample_pixels):
    good = pillow_png(Image.fromarray(sample_pixels[0], "L"))
    with pytest.raises(BatchImageRejected) as caught:
        decode_png_batch([good, None])
    assert caught.value.reason == SkipReason.EMPTY
    assert caught.value.position == 1


# numpy_view and load_numpy on a real build


@pytest.fixture(scope="module")
def built(sample_build, tmp_path_factory) -> datasets.DatasetDict:
    cache = tmp_path_factory.mktemp("load-cache")
    return datasets.load_dataset(
        str(sample_build.output), "sanitized", cache_dir=str(cache)
    )


@pytest.fixture(scope="module")
def train_pixels(built) -> np.ndarray:
    """Every train image decoded by ``datasets`` itself, one row at a time."""
    train = built["train"]
    return np.stack([np.asarray(train[i]["image"]) for i in range(train.num_rows)])


def test_numpy_view_iter_matches_datasets_decode(built, train_pixels):
    train = built["train"]
    images, labels, fonts = [], [], []
    for batch in numpy_view(train).iter(batch_size=1000):
        assert batch["image"].dtype == np.uint8
        assert batch["label"].dtype == np.int64
        images.append(batch["image"])
        labels.append(batch["label"])
        fonts.extend(batch["font"].tolist())
    assert np.array_equal(np.concatenate(images), train_pixels)
    assert np.concatenate(labels).tolist() == train["label"]
    assert fonts == train["font"]


def test_numpy_view_row_and_slice(built, train_pixels):
    view = numpy_view(built["train"])
    row = view[7]
    assert row["image"].shape == (SIDE, SIDE)
    assert np.array_equal(row["image"], train_pixels[7])
    assert row["label"] == built["train"][7]["label"]
    assert np.array_equal(view[100:130]["image"], train_pixels[100:130])


def test_numpy_view_follows_shuffle(built):
    shuffled = built["train"].shuffle(seed=3)
    expected = np.stack([np.asarray(shuffled[i]["image"]) for i in range(500)])
    first = next(numpy_view(shuffled).iter(batch_size=500))
    assert np.array_equal(first["image"], expected)


def test_numpy_view_columns_and_splits(built):
    view = numpy_view(built, columns=["image", "label"])
    assert set(view) == {"train", "validation", "test"}
    batch = next(view["test"].iter(batch_size=10))
    assert sorted(batch) == ["image", "label"]
    assert isinstance(built["test"].features["image"], datasets.Image)
    assert built["test"].features["image"].decode


def test_numpy_view_unknown_column(built):
    with pytest.raises(ValueError, match="'pixels'"):
        numpy_view(built["test"], columns=["image", "pixels"])


def test_numpy_view_needs_image_column(built):
    with pytest.raises(ValueError, match="datasets.Image"):
        numpy_view(built["test"].remove_columns("image"))


def test_load_numpy_matches_datasets_decode(built, train_pixels):
    images, labels = load_numpy(built["train"], progress=False)
    assert np.array_equal(images, train_pixels)
    assert labels.dtype == np.int64
    assert labels.tolist() == built["train"]["label"]


def test_load_numpy_follows_select(built, train_pixels):
    rows = [4000, 3, 999, 17]
    images, _ = load_numpy(built["train"].select(rows), progress=False)
    assert np.array_equal(images, train_pixels[rows])


def test_numpy_view_rejects_iterable_dataset(built):
    with pytest.raises(TypeError, match="IterableDataset"):
        numpy_view(built["test"].to_iterable_dataset())


def test_load_numpy_rejects_dataset_dict(built):
    with pytest.raises(TypeError, match="dataset\\['train'\\]"):
        load_numpy(built)


def path_only_dataset(sample_pixels, tmp_path) -> datasets.Dataset:
    path = tmp_path / "letter.png"
    path.write_bytes(pillow_png(Image.fromarray(sample_pixels[1], "L")))
    good = pillow_png(Image.fromarray(sample_pixels[0], "L"))
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list("ABCDEFGHIJ")),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "image": [
                {"bytes": good, "path": None},
                {"bytes": None, "path": str(path)},
            ],
            "label": [0, 1],
        },
        features=features,
    )


def test_numpy_view_path_only_row_names_path(sample_pixels, tmp_path):
    dataset = path_only_dataset(sample_pixels, tmp_path)
    with pytest.raises(ImageRejected, match="letter.png"):
        numpy_view(dataset)[0:2]


def test_load_numpy_path_only_row_names_row(sample_pixels, tmp_path):
    dataset = path_only_dataset(sample_pixels, tmp_path)
    with pytest.raises(ImageRejected) as caught:
        load_numpy(dataset, progress=False)
    assert "row 1:" in str(caught.value)
    assert "letter.png" in str(caught.value)
    assert caught.value.reason == SkipReason.EMPTY
