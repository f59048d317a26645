"""Broken and unusual PNG members through ``decode_image`` and the reader.

Expected pixel values are worked out by hand from the conversion rule in the
``notmnist_ds.images`` docstring, not computed with the code under test.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from broken_inputs import (
    gray_png,
    ihdr_payload,
    letter_entries,
    pillow_png,
    png_from_chunks,
    png_from_rows,
    png_header_only,
    png_interlaced_gray,
    regular,
    write_tar,
)
from PIL import Image

from dedup.hashing import HashSpec
from notmnist_ds.constants import LARGE
from notmnist_ds.images import (
    PNG_SIGNATURE,
    ImageRejected,
    decode_image,
    encode_png,
    to_canonical_pixels,
)
from notmnist_ds.reader import read_archive
from notmnist_ds.report import SkipReason

SIDE = 28


def tile(values: list, channels: int = 1) -> np.ndarray:
    """Repeat ``values`` along each row of a 28x28 image."""
    row = np.resize(np.asarray(values), (SIDE, channels) if channels > 1 else SIDE)
    return np.broadcast_to(row, (SIDE, *row.shape)).copy()


def first_values(data: bytes, count: int) -> list[int]:
    pixels, _ = decode_image(data)
    return pixels[0, :count].tolist()


def rejection(data: bytes) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        decode_image(data)
    return caught.value


# -- rejected bytes ----------------------------------------------------------


def test_decode_empty_is_empty():
    assert rejection(b"").reason is SkipReason.EMPTY


@pytest.mark.parametrize(
    "data",
    [
        b"GIF89a\x1c\x00\x1c\x00",
        b"\xff\xd8\xff\xe0\x00\x10JFIF",
        b"hello",
        b"\x89PNX\r\n\x1a\n" + b"\x00" * 40,
    ],
    ids=["gif", "jpeg", "text", "bad-signature"],
)
def test_decode_not_png_is_not_png(data):
    error = rejection(data)
    assert error.reason is SkipReason.NOT_PNG
    assert "PNG signature" in error.detail


@pytest.mark.parametrize("keep", [8, 20, 40, 60, 0.5, 0.9], ids=str)
def test_decode_truncated_is_undecodable(keep):
    data = encode_png(np.random.default_rng(0).integers(0, 256, (SIDE, SIDE), np.uint8))
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    assert rejection(data[:cut]).reason is SkipReason.UNDECODABLE


def test_decode_missing_pixel_data_is_undecodable():
    data = png_from_chunks([(b"IHDR", ihdr_payload(SIDE, SIDE)), (b"IEND", b"")])
    assert rejection(data).reason is SkipReason.UNDECODABLE


def test_decode_invalid_bit_depth_has_stable_detail():
    data = png_from_chunks(
        [
            (b"IHDR", ihdr_payload(SIDE, SIDE, bit_depth=3)),
            (b"IDAT", zlib.compress(b"\x00" * 900)),
            (b"IEND", b""),
        ]
    )
    error = rejection(data)
    assert error.reason is SkipReason.UNDECODABLE
    assert " at 0x" not in error.detail  # no memory address in the skip report


@pytest.mark.parametrize(
    "width, height", [(1, 1), (4, 9), (27, 28), (29, 28), (28, 27), (28, 29), (0, 0)]
)
def test_decode_wrong_size_is_wrong_size(width, height):
    data = pillow_png(Image.new("L", (max(width, 1), max(height, 1)), 200))
    if (width, height) == (0, 0):
        data = png_header_only(0, 0)
    error = rejection(data)
    assert error.reason is SkipReason.WRONG_SIZE
    assert f"{width}x{height}" in error.detail


def test_decode_huge_canvas_allocates_nothing():
    data = png_header_only(100_000, 100_000)
    tracemalloc.start()
    try:
        error = rejection(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.reason is SkipReason.WRONG_SIZE
    assert "100000x100000" in error.detail
    assert peak < 1 << 20


MEMORY_PROBE = """
import resource, sys, zlib
sys.path.insert(0, "tests")
from broken_inputs import ihdr_payload, png_from_chunks, png_header_only
from notmnist_ds.images import ImageRejected, decode_image
bomb = png_from_chunks([
    (b"IHDR", ihdr_payload(28, 28)),
    (b"IDAT", zlib.compress(b"\\x00" * (29 * 28 + (200 << 20)), 9)),
    (b"IEND", b""),
])
inputs = [png_header_only(100_000, 100_000), png_header_only(28, 2**31 - 1), bomb]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcomes = []
for data in inputs:
    try:
        decode_image(data)
        outcomes.append("row")
    except ImageRejected as error:
        outcomes.append(error.reason.value)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after - before, *outcomes)
"""


def test_decode_hostile_sizes_keep_rss_flat():
    # A fresh process, so that its peak resident size (KiB) reflects only
    # these decodes: a 100,000 x 100,000 canvas alone would take 10 GB, and
    # the 200 MB of zeros behind a 28x28 header must not be inflated.
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    growth_kib, *outcomes = result.stdout.split()
    assert outcomes == ["wrong_size", "wrong_size", "row"]
    assert int(growth_kib) < 64 * 1024


# -- the conversion rule, mode by mode ----------------------------------------


def test_decode_l_is_as_stored():
    pixels = np.random.default_rng(1).integers(0, 256, (SIDE, SIDE), np.uint8)
    decoded, converted = decode_image(encode_png(pixels))
    assert np.array_equal(decoded, pixels)
    assert converted is False


def test_decode_one_bit_gives_0_or_255():
    image = Image.fromarray(tile([0, 255, 255, 0]).astype(np.uint8)).convert("1")
    data = pillow_png(image)
    assert data[24:26] == b"\x01\x00"  # bit depth 1, gray
    assert first_values(data, 4) == [0, 255, 255, 0]
    assert decode_image(data)[1] is True


@pytest.mark.parametrize(
    "bit_depth, packed, expected",
    [
        (2, bytes([0b00011011]) * 7, [0, 85, 170, 255]),
        (4, bytes([0x0F, 0x5A]) * 7, [0, 255, 85, 170]),
    ],
)
def test_decode_low_bit_gray_scales(bit_depth, packed, expected):
    data = png_from_rows([packed] * SIDE, SIDE, bit_depth, color_type=0)
    pixels, converted = decode_image(data)
    assert pixels[0, :4].tolist() == expected
    assert converted is True


def test_decode_16_bit_gray_rounds_over_257():
    samples = [0, 128, 129, 257, 32767, 32896, 65407, 65535]
    data = pillow_png(Image.fromarray(tile(samples).astype(np.uint16)))
    assert data[24:26] == b"\x10\x00"  # bit depth 16, gray
    assert first_values(data, 8) == [0, 0, 1, 1, 127, 128, 255, 255]
    assert decode_image(data)[1] is True


def test_decode_rgb_is_bt601_luma():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30), (255, 255, 255)]
    data = pillow_png(Image.fromarray(tile(colours, 3).astype(np.uint8), "RGB"))
    # 0.299 * 255 = 76.2, 0.587 * 255 = 149.7, 0.114 * 255 = 29.1,
    # 0.299 * 10 + 0.587 * 20 + 0.114 * 30 = 18.2
    assert first_values(data, 5) == [76, 150, 29, 18, 255]
    assert decode_image(data)[1] is True


def test_decode_rgba_transparent_background_is_black():
    colours = [
        (255, 255, 255, 0),
        (255, 255, 255, 255),
        (255, 255, 255, 128),
        (200, 200, 200, 100),
        (255, 0, 0, 51),
        (0, 0, 0, 0),
    ]
    data = pillow_png(Image.fromarray(tile(colours, 4).astype(np.uint8), "RGBA"))
    # 255 * 128 / 255 = 128, 200 * 100 / 255 = 78.4, 76 * 51 / 255 = 15.2
    assert first_values(data, 6) == [0, 255, 128, 78, 15, 0]


def test_decode_la_composites_over_black():
    pairs = [(200, 100), (255, 0), (255, 255), (100, 255), (0, 255)]
    data = pillow_png(Image.fromarray(tile(pairs, 2).astype(np.uint8), "LA"))
    assert first_values(data, 5) == [78, 0, 255, 100, 0]


def test_decode_palette_is_luma_of_entry():
    image = Image.fromarray(tile([0, 1, 2, 3]).astype(np.uint8), "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 10, 20, 30, 255, 255, 255])
    assert first_values(pillow_png(image), 4) == [0, 76, 18, 255]


def test_decode_palette_transparent_index_is_black():
    image = Image.fromarray(tile([0, 1, 2, 3]).astype(np.uint8), "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 10, 20, 30, 255, 255, 255])
    assert first_values(pillow_png(image, transparency=3), 4) == [0, 76, 18, 0]


def test_decode_palette_alpha_entries_composite():
    rows = [bytes([0, 1, 2, 3] * 7)] * SIDE
    palette = bytes([0, 0, 0, 255, 255, 255, 10, 20, 30, 255, 0, 0])
    alphas = bytes([255, 128, 128, 0])
    data = png_from_rows(rows, SIDE, 8, 3, [(b"PLTE", palette), (b"tRNS", alphas)])
    # 255 * 128 / 255 = 128, 18 * 128 / 255 = 9.0
    assert first_values(data, 4) == [0, 128, 9, 0]


@pytest.mark.parametrize(
    "bit_depth, packed, key, expected",
    [
        (8, bytes([0, 7, 9, 255] * 7), 7, [0, 0, 9, 255]),
        (8, bytes([0, 7, 9, 255] * 7), 255, [0, 7, 9, 0]),
        (2, bytes([0b00011011]) * 7, 3, [0, 85, 170, 0]),
        (4, bytes([0x5A, 0xF0]) * 7, 10, [85, 0, 255, 0]),
        (1, bytes([0b01100000, 0, 0, 0]), 1, [0, 0, 0, 0]),
    ],
    ids=["8-bit", "8-bit-white", "2-bit", "4-bit", "1-bit"],
)
def test_decode_gray_transparent_colour_is_black(bit_depth, packed, key, expected):
    data = png_from_rows(
        [packed] * SIDE, SIDE, bit_depth, 0, [(b"tRNS", struct.pack(">H", key))]
    )
    pixels, converted = decode_image(data)
    assert pixels[0, :4].tolist() == expected
    assert converted is True


def test_decode_16_bit_gray_transparent_colour_is_black():
    samples = [40000, 40001, 65535, 0]
    rows = [b"".join(struct.pack(">H", v) for v in samples * 7)] * SIDE
    data = png_from_rows(rows, SIDE, 16, 0, [(b"tRNS", struct.pack(">H", 40000))])
    # 40001 / 257 = 155.6
    assert first_values(data, 4) == [0, 156, 255, 0]


def test_decode_rgb_transparent_colour_is_black():
    colours = [(255, 0, 0), (0, 255, 0), (255, 255, 255), (255, 0, 1)]
    image = Image.fromarray(tile(colours, 3).astype(np.uint8), "RGB")
    data = pillow_png(image, transparency=(255, 0, 0))
    assert first_values(data, 4) == [0, 150, 255, 76]


def test_decode_16_bit_rgb_keeps_high_byte():
    pixel = struct.pack(">HHH", 0x80FF, 0x0000, 0x0000)
    data = png_from_rows([pixel * SIDE] * SIDE, SIDE, 16, 2)
    # High byte 0x80 = 128 red, and 0.299 * 128 = 38.3.
    assert first_values(data, 1) == [38]


def test_decode_16_bit_rgb_transparent_colour_is_black():
    white = struct.pack(">HHH", 0xFFFF, 0xFFFF, 0xFFFF)
    key = struct.pack(">HHH", 0x1234, 0x5678, 0x9ABC)
    rows = [(white + key) * (SIDE // 2)] * SIDE
    data = png_from_rows(rows, SIDE, 16, 2, [(b"tRNS", key)])
    assert first_values(data, 2) == [255, 0]


def test_decode_interlaced_matches_plain():
    pixels = np.random.default_rng(2).integers(0, 256, (SIDE, SIDE), np.uint8)
    interlaced = png_interlaced_gray(pixels)
    assert interlaced[28] == 1  # interlace method in IHDR
    decoded, converted = decode_image(interlaced)
    assert np.array_equal(decoded, pixels)
    assert converted is True


def test_to_canonical_pixels_uses_stored_transparency():
    image = Image.fromarray(tile([3, 4]).astype(np.uint8))
    image.info["transparency"] = 4
    assert to_canonical_pixels(image)[0, :2].tolist() == [3, 0]


# -- uniform images and a whole archive ----------------------------------------


def test_decode_uniform_image_is_kept():
    pixels, converted = decode_image(encode_png(np.full((SIDE, SIDE), 255, np.uint8)))
    assert pixels.min() == pixels.max() == 255
    assert converted is False


BROKEN_MEMBERS = {
    "empty.png": (b"", "empty"),
    "html.png": (b"<html>moved</html>", "not_png"),
    "signature.png": (PNG_SIGNATURE, "undecodable"),
    "truncated.png": (gray_png(SIDE, SIDE, 9)[:50], "undecodable"),
    "tiny.png": (gray_png(1, 1), "wrong_size"),
    "narrow.png": (gray_png(4, 9), "wrong_size"),
    "short.png": (gray_png(27, 28), "wrong_size"),
    "wide.png": (gray_png(29, 28), "wrong_size"),
    "huge.png": (png_header_only(100_000, 100_000), "wrong_size"),
}


def test_reader_counts_broken_and_uniform_images(real_sample, tmp_path):
    pixels, labels = real_sample
    entries = letter_entries(pixels, labels, per_letter=2)
    for name, (data, _) in BROKEN_MEMBERS.items():
        entries.append(regular(f"notMNIST_large/J/{name}", data))
    for k, value in enumerate((0, 128, 255)):
        blank = encode_png(np.full((SIDE, SIDE), value, np.uint8))
        entries.append(regular(f"notMNIST_large/I/blank{k}.png", blank))
    rgba = pillow_png(Image.new("RGBA", (SIDE, SIDE), (255, 255, 255, 0)))
    entries.append(regular("notMNIST_large/H/transparent.png", rgba))

    images = read_archive(
        write_tar(tmp_path / LARGE.file_name, entries),
        LARGE,
        HashSpec(),
        workers=1,
        progress=False,
    )
    report = images.report
    skipped = {o.member.rsplit("/", 1)[1]: o.reason for o in report.skipped}
    assert skipped == {name: reason for name, (_, reason) in BROKEN_MEMBERS.items()}
    assert report.rows == 24
    # Three blanks, the fully transparent image and any uniform sample glyph.
    uniform_glyphs = sum(
        1 for e in entries[:20] if len(set(decode_image(e.data)[0].ravel())) == 1
    )
    assert report.uniform_images == 4 + uniform_glyphs
    assert report.converted_images == 1
    assert report.rows_per_letter["I"] == 5
