"""Decode 28x28 PNG images into uint8 pixels in bulk, for the baseline trainer.

8-bit grayscale PNGs, which every notMNIST build stores, are inflated with
zlib and unfiltered in NumPy across the whole batch at once. Other formats go
through Pillow one image at a time.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..constants import IMAGE_SIDE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# IHDR fields of a 28x28, 8-bit grayscale, non-interlaced PNG: width, height,
# bit depth 8, colour type 0, compression 0, filter method 0, interlace 0.
GRAY8_IHDR = IMAGE_SIDE.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
FILTERED_ROW_BYTES = 1 + IMAGE_SIDE  # the filter type byte, then the pixels
FILTERED_IMAGE_BYTES = IMAGE_SIDE * FILTERED_ROW_BYTES


def extract_gray8_stream(blob: bytes) -> bytes | None:
    """Return the zlib stream of a 28x28 8-bit grayscale non-interlaced PNG.

    Returns None for any other PNG (other size, colour type, bit depth or
    interlacing) so the caller can hand it to Pillow. Raises ValueError when
    ``blob`` is not a PNG at all.
    """
    if blob[:8] != PNG_SIGNATURE:
        raise ValueError(f"not a PNG (first bytes {blob[:8]!r})")
    if blob[12:16] != b"IHDR" or blob[16:29] != GRAY8_IHDR:
        return None
    parts = []
    position = 33  # signature (8) + IHDR chunk (4 + 4 + 13 + 4)
    while position + 8 <= len(blob):
        length = int.from_bytes(blob[position : position + 4], "big")
        kind = blob[position + 4 : position + 8]
        if kind == b"IDAT":
            parts.append(blob[position + 8 : position + 8 + length])
        elif kind == b"IEND":
            break
        position += 12 + length
    return b"".join(parts)


def unfilter_rows(filtered: np.ndarray) -> np.ndarray:
    """Undo PNG row filtering for a batch of 8-bit grayscale images.

    ``filtered`` is uint8 of shape (N, 28, 29): each row starts with its filter
    type (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth). Returns uint8 (N, 28, 28).
    The loops run over rows and, for Average and Paeth, over columns; every
    step is vectorised across the images. Raises ValueError for a filter type
    above 4, naming the image.
    """
    count = filtered.shape[0]
    filters = filtered[:, :, 0]
    if count and filters.max() > 4:
        image, row = np.argwhere(filters > 4)[0]
        raise ValueError(
            f"image {image}: invalid PNG filter type {filters[image, row]} in row {row}"
        )
    data = filtered[:, :, 1:]
    pixels = np.empty((count, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    previous = np.zeros((count, IMAGE_SIDE), np.uint8)
    for row in range(IMAGE_SIDE):
        kinds = filters[:, row]
        line = pixels[:, row, :]
        line[...] = data[:, row, :]
        chosen = np.flatnonzero(kinds == 1)
        if chosen.size:
            # A uint8 running sum wraps modulo 256, as the Sub filter does.
            line[chosen] = np.cumsum(data[chosen, row, :], axis=1, dtype=np.uint8)
        chosen = np.flatnonzero(kinds == 2)
        if chosen.size:
            line[chosen] = data[chosen, row, :] + previous[chosen]
        for kind in (3, 4):
            chosen = np.flatnonzero(kinds == kind)
            if chosen.size:
                line[chosen] = _unfilter_sequential(
                    kind, data[chosen, row, :], previous[chosen]
                )
        previous = line
    return pixels


def _unfilter_sequential(kind: int, raw: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Undo the Average (3) or Paeth (4) filter, one column at a time."""
    raw = raw.astype(np.int16)
    above = above.astype(np.int16)
    out = np.empty(raw.shape, np.int16)
    left = np.zeros(raw.shape[0], np.int16)
    upper_left = np.zeros(raw.shape[0], np.int16)
    for column in range(IMAGE_SIDE):
        up = above[:, column]
        if kind == 3:
            predictor = (left + up) >> 1
        else:
            # Distances from the estimate left + up - upper_left to each
            # neighbour. The PNG Paeth predictor breaks ties toward left, then up.
            distance_left = np.abs(up - upper_left)
            distance_up = np.abs(left - upper_left)
            distance_corner = np.abs(left + up - 2 * upper_left)
            predictor = np.where(distance_up <= distance_corner, up, upper_left)
            use_left = (distance_left <= distance_up) & (
                distance_left <= distance_corner
            )
            predictor = np.where(use_left, left, predictor)
        left = (raw[:, column] + predictor) & 0xFF
        out[:, column] = left
        upper_left = up
    return out.astype(np.uint8)


def decode_with_pillow(blob: bytes) -> np.ndarray:
    """Decode any image Pillow reads into 28x28 uint8 grayscale.

    16-bit grayscale keeps its top 8 bits, because Pillow's conversion to
    mode "L" would clip it instead of scaling.
    """
    with Image.open(io.BytesIO(blob)) as image:
        if image.size != (IMAGE_SIDE, IMAGE_SIDE):
            raise ValueError(
                f"image is {image.size[0]}x{image.size[1]}, expected 28x28"
            )
        if image.mode.startswith("I;16"):
            return (np.asarray(image) >> 8).astype(np.uint8)
        if image.mode != "L":
            image = image.convert("L")
        return np.asarray(image, dtype=np.uint8)


def decode_png_batch(blobs: Sequence[bytes | None]) -> tuple[np.ndarray, int]:
    """Decode encoded 28x28 images into uint8 (N, 28, 28) pixels.

    Images that are 8-bit grayscale PNGs, as in notMNIST builds, are inflated
    with zlib and unfiltered in bulk. That is several times faster than one
    Pillow call per image. Other formats go through Pillow and convert to
    grayscale. Returns the pixels and how many images went through Pillow.
    Raises ValueError naming the position of an empty, unreadable or wrongly
    sized image.
    """
    count = len(blobs)
    pixels = np.empty((count, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    streams: list[bytes] = []
    fast_rows: list[int] = []
    slow_rows: list[int] = []
    for position, blob in enumerate(blobs):
        if not blob:
            raise ValueError(f"image {position} is empty")
        try:
            stream = extract_gray8_stream(blob)
            if stream is None:
                slow_rows.append(position)
                continue
            raw = zlib.decompress(stream, bufsize=FILTERED_IMAGE_BYTES)
        except (ValueError, zlib.error) as error:
            raise ValueError(
                f"image {position} is not a readable PNG: {error}"
            ) from None
        if len(raw) != FILTERED_IMAGE_BYTES:
            raise ValueError(
                f"image {position}: PNG data inflates to {len(raw)} bytes, "
                f"expected {FILTERED_IMAGE_BYTES}"
            )
        streams.append(raw)
        fast_rows.append(position)
    if fast_rows:
        filtered = np.frombuffer(b"".join(streams), np.uint8)
        filtered = filtered.reshape(len(fast_rows), IMAGE_SIDE, FILTERED_ROW_BYTES)
        try:
            pixels[fast_rows] = unfilter_rows(filtered)
        except ValueError as error:
            raise ValueError(f"images from {fast_rows[0]} on: {error}") from None
    for position in slow_rows:
        try:
            pixels[position] = decode_with_pillow(blobs[position])
        except (OSError, ValueError) as error:
            raise ValueError(f"image {position}: {error}") from None
    return pixels, len(slow_rows)
