"""Decode batches of notMNIST PNGs into uint8 arrays, pixel for pixel as Pillow.

A build stores every image as an 8-bit grayscale 28x28 PNG (colour type 0, no
interlacing, no transparency). Decoding those one by one through Pillow costs
tens of microseconds an image, most of it per-call overhead. Here a batch
takes a fast path in three steps:

1. Check each PNG's layout in Python and inflate its IDAT data with
   ``zlib.decompress``. That gives 28 filtered rows of 1 + 28 bytes.
2. Stack the filtered rows of all images into one tall PNG, 28 pixels wide,
   with one all-zero row (filter type 0) before each image. PNG filters only
   read the row above, and a zero row decodes to zeros, so each image's first
   row sees the same all-zero "previous row" as in its own file.
3. Let Pillow decode that one PNG. Its C code undoes the five filter types
   (None, Sub, Up, Average, Paeth) for the whole batch in one call. The
   unfiltering is Pillow's own, so the pixels cannot differ from a per-image
   decode. Unfiltering in NumPy instead, vectorised across images with a loop
   over rows and columns, measured 1.1 to 1.9 times slower
   (``benchmarks/results/load.md``).

Any PNG that leaves the fast path's narrow layout goes through
``images.decode_image``, which uses Pillow and the package's one conversion
rule. That covers other sizes, colour types and bit depths, interlacing,
transparency, unknown or compressed ancillary chunks, bad chunk CRCs and
damaged data. So every image decodes to exactly what ``decode_image`` returns,
or the batch raises the same ImageRejected for the first image it rejects.

Checksums: Pillow 13 verifies the CRC of each chunk before the image data and
never the CRC of IDAT chunks, while zlib verifies the stream's Adler-32. The
fast path checks the CRC of every non-IDAT chunk and leaves IDAT CRCs
unchecked, as Pillow does, so a bad IDAT CRC decodes in both. Any chunk that
fails a check goes through Pillow, which decides.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .constants import IMAGE_SIDE
from .images import PNG_SIGNATURE, ImageRejected, decode_image
from .report import SkipReason

logger = logging.getLogger(__name__)

FILTERED_ROW_BYTES = 1 + IMAGE_SIDE  # the filter type byte, then 28 pixels
FILTERED_IMAGE_BYTES = IMAGE_SIDE * FILTERED_ROW_BYTES
MAX_FILTER_TYPE = 4  # 0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth

# Images inflated and unfiltered together, as one tall PNG. 4,096 images make
# 3.4 MB of filtered rows and a PNG of 3.3 million pixels, far below Pillow's
# decompression-bomb limit (89.5 million by default). Chunks of 8,192 measured
# slower, 1,024 and 2,048 no faster.
IMAGES_PER_DECODE = 4096

MAX_STORED_BLOCK = 65_535  # bytes in one stored deflate block (RFC 1951)

# A zero row with filter type 0: it decodes to zeros, the "previous row" that
# every image's first row expects.
SEPARATOR_ROW = bytes(FILTERED_ROW_BYTES)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """Return one PNG chunk: length, type, data and CRC-32 of type and data."""
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


# Signature plus the IHDR chunk of a 28x28 8-bit grayscale (colour type 0) PNG
# with compression 0, filter method 0 and no interlacing, CRC included. One
# comparison of a PNG's first 33 bytes checks all of it.
CANONICAL_HEAD = PNG_SIGNATURE + png_chunk(
    b"IHDR", struct.pack(">IIBBBBB", IMAGE_SIDE, IMAGE_SIDE, 8, 0, 0, 0, 0)
)
IEND_CHUNK = png_chunk(b"IEND", b"")
# A PNG made of the head, one IDAT chunk and IEND is this many bytes plus the
# IDAT data.
SINGLE_IDAT_OVERHEAD = len(CANONICAL_HEAD) + 12 + len(IEND_CHUNK)

# Ancillary chunks that never change the pixels Pillow 13.0 decodes from an
# 8-bit grayscale PNG (read from its PngImagePlugin), with the minimum length
# below which Pillow raises. Pillow stores them in ``image.info`` or ignores
# them, and applies none of them to the pixels. Chunks that Pillow inflates
# (iCCP, zTXt, iTXt), tRNS and the APNG chunks go through Pillow instead.
PASSIVE_CHUNKS: dict[bytes, int] = {
    b"gAMA": 4,
    b"cHRM": 32,
    b"sRGB": 1,
    b"pHYs": 9,
    b"sBIT": 0,
    b"bKGD": 0,
    b"tIME": 0,
    b"tEXt": 0,
}


class BatchImageRejected(ImageRejected):
    """ImageRejected for one image of a batch.

    ``position`` is the image's index in the batch and ``image_detail`` the
    message without it, for callers that report a row number instead.
    """

    def __init__(self, reason: SkipReason, detail: str, position: int) -> None:
        super().__init__(reason, f"image {position} of the batch: {detail}")
        self.position = position
        self.image_detail = detail


def decode_png_batch(blobs: Sequence[bytes]) -> np.ndarray:
    """Decode PNG files into a uint8 array of shape (N, 28, 28).

    Image ``i`` of the result equals ``images.decode_image(blobs[i])[0]``
    exactly. That is Pillow's decode followed by the package's canonical
    conversion to 8-bit gray. 8-bit grayscale 28x28 PNGs take the batch fast
    path; any other PNG goes through ``decode_image``. Raises
    BatchImageRejected, a subclass of ImageRejected that carries the
    ``SkipReason`` from ``decode_image`` and the image's ``position``, for the
    first image (in batch order) that ``decode_image`` rejects. A ``None``
    entry raises it with reason EMPTY.
    """
    count = len(blobs)
    pixels = np.empty((count, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    slow_total = 0
    # Inflate and unfilter one chunk at a time, so that a large batch's
    # inflated rows never pile up beyond the CPU cache's reach.
    for offset in range(0, count, IMAGES_PER_DECODE):
        chunk = blobs[offset : offset + IMAGES_PER_DECODE]
        positions, filtered, slow = inflate_fast_path(chunk)
        if positions:
            decoded = unfilter_with_pillow(filtered)
            if len(positions) == len(chunk):
                pixels[offset : offset + len(chunk)] = decoded
            else:
                pixels[[offset + position for position in positions]] = decoded
        for position in slow:
            pixels[offset + position] = decode_one_with_pillow(
                chunk[position], offset + position
            )
        slow_total += len(slow)
    if slow_total:
        logger.debug(
            "%d of %d images were decoded one by one by Pillow", slow_total, count
        )
    return pixels


def inflate_fast_path(
    blobs: Sequence[bytes],
) -> tuple[list[int], list[bytes], list[int]]:
    """Inflate the IDAT data of every PNG that qualifies for the fast path.

    Returns ``(positions, filtered, slow)``: the batch positions of the
    qualifying images, their filtered rows (812 bytes each, same order) and the
    positions of every other image, in increasing order.
    """
    positions: list[int] = []
    filtered: list[bytes] = []
    slow: list[int] = []
    head = CANONICAL_HEAD
    head_length = len(head)
    for position, blob in enumerate(blobs):
        if blob is None or blob[:head_length] != head:
            slow.append(position)
            continue
        # The layout every build writes, checked inline: head, one IDAT, IEND.
        length = int.from_bytes(blob[33:37], "big")
        if (
            length + SINGLE_IDAT_OVERHEAD == len(blob)
            and blob[37:41] == b"IDAT"
            and blob[-12:] == IEND_CHUNK
        ):
            stream = blob[41 : 41 + length]
        else:
            stream = idat_stream(blob)
            if stream is None:
                slow.append(position)
                continue
        try:
            rows = zlib.decompress(stream)
        except zlib.error:
            slow.append(position)
            continue
        # Pillow ignores bytes past the last row; such files are rare, so they
        # take the slow path rather than a second rule here.
        if len(rows) != FILTERED_IMAGE_BYTES:
            slow.append(position)
            continue
        positions.append(position)
        filtered.append(rows)

    if filtered:
        positions, filtered, rejected = drop_invalid_filter_types(positions, filtered)
        if rejected:
            slow = sorted(slow + rejected)
    return positions, filtered, slow


def idat_stream(blob: bytes) -> bytes | None:
    """Return the joined IDAT data of a canonical-header PNG, or None.

    None means the PNG needs Pillow. That is the case for a chunk other than
    IDAT, IEND or a passive ancillary chunk, and for a non-IDAT chunk with a
    bad CRC. It is also the case when the IDAT chunks do not follow one
    another, IEND is missing or not last, or a chunk is cut.
    """
    if blob[: len(CANONICAL_HEAD)] != CANONICAL_HEAD:
        return None
    end = len(blob)
    position = len(CANONICAL_HEAD)
    parts: list[bytes] = []
    idat_finished = False
    while position + 12 <= end:
        length = int.from_bytes(blob[position : position + 4], "big")
        kind = blob[position + 4 : position + 8]
        data_end = position + 8 + length
        if data_end + 4 > end:
            return None
        if kind == b"IDAT":
            if idat_finished:
                # Pillow reads image data from the first run of IDAT chunks
                # only; leave such files to it.
                return None
            parts.append(blob[position + 8 : data_end])
        else:
            stored_crc = int.from_bytes(blob[data_end : data_end + 4], "big")
            if zlib.crc32(blob[position + 4 : data_end]) != stored_crc:
                return None
            if kind == b"IEND":
                if parts and length == 0 and data_end + 4 == end:
                    return b"".join(parts)
                return None
            minimum_length = PASSIVE_CHUNKS.get(kind)
            if minimum_length is None or length < minimum_length:
                return None
            idat_finished = bool(parts)
        position = data_end + 4
    return None


def drop_invalid_filter_types(
    positions: list[int], filtered: list[bytes]
) -> tuple[list[int], list[bytes], list[int]]:
    """Move images with a row filter type above 4 out of the fast path.

    Pillow rejects such an image, and inside a tall PNG it would fail the
    whole batch. Returns the kept positions and rows, and the removed
    positions.
    """
    rows = np.frombuffer(b"".join(filtered), np.uint8)
    filter_types = rows.reshape(len(filtered), IMAGE_SIDE, FILTERED_ROW_BYTES)[:, :, 0]
    invalid = np.flatnonzero((filter_types > MAX_FILTER_TYPE).any(axis=1))
    if not invalid.size:
        return positions, filtered, []
    invalid_set = set(invalid.tolist())
    kept = [i for i in range(len(filtered)) if i not in invalid_set]
    return (
        [positions[i] for i in kept],
        [filtered[i] for i in kept],
        [positions[i] for i in invalid.tolist()],
    )


def unfilter_with_pillow(filtered: Sequence[bytes]) -> np.ndarray:
    """Undo the PNG row filters of up to IMAGES_PER_DECODE images in one decode.

    ``filtered`` contains each image's 28 filtered rows (812 bytes, filter types
    0 to 4). Returns a uint8 view of shape (len(filtered), 28, 28).
    """
    count = len(filtered)
    idat = stored_zlib_stream(SEPARATOR_ROW + SEPARATOR_ROW.join(filtered))
    header = struct.pack(
        ">IIBBBBB", IMAGE_SIDE, count * (IMAGE_SIDE + 1), 8, 0, 0, 0, 0
    )
    idat_crc = zlib.crc32(idat, zlib.crc32(b"IDAT"))
    png = b"".join(
        (
            PNG_SIGNATURE,
            png_chunk(b"IHDR", header),
            struct.pack(">I", len(idat)),
            b"IDAT",
            idat,
            struct.pack(">I", idat_crc),
            IEND_CHUNK,
        )
    )
    with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
        stacked = np.asarray(image)
    return stacked.reshape(count, IMAGE_SIDE + 1, IMAGE_SIDE)[:, 1:, :]


def stored_zlib_stream(data: bytes) -> bytes:
    """Wrap ``data`` in a zlib stream of stored (uncompressed) deflate blocks.

    Pillow then only copies the rows before unfiltering them. Built by hand
    because ``zlib.compress(data, 0)`` took about ten times as long (zlib
    1.2.13, 3.4 MB of rows).
    """
    pieces = [b"\x78\x01"]  # deflate, 32 KiB window, no preset dictionary
    view = memoryview(data)
    for start in range(0, max(len(data), 1), MAX_STORED_BLOCK):
        block = view[start : start + MAX_STORED_BLOCK]
        is_final = start + MAX_STORED_BLOCK >= len(data)
        # Header bits: BFINAL, then BTYPE 00 (stored); then LEN and its
        # one's complement NLEN, little-endian.
        pieces.append(struct.pack("<BHH", is_final, len(block), 0xFFFF ^ len(block)))
        pieces.append(block)
    pieces.append(struct.pack(">I", zlib.adler32(data)))
    return b"".join(pieces)


def decode_one_with_pillow(blob: bytes | None, position: int) -> np.ndarray:
    """Decode one image with ``decode_image``, naming its batch position on error."""
    if blob is None:
        raise BatchImageRejected(SkipReason.EMPTY, "no PNG bytes (None)", position)
    try:
        pixels, _ = decode_image(blob)
    except ImageRejected as error:
        raise BatchImageRejected(error.reason, error.detail, position) from error
    return pixels
