"""Builders of damaged, hostile and unusual archives and images for tests.

Every builder writes real bytes: tar.gz files through ``tarfile`` and ``gzip``,
PNGs through Pillow, and PNGs that Pillow will not write (16-bit colour, odd
bit depths, arbitrary chunks) through ``png_from_rows`` and ``png_from_chunks``.
"""

from __future__ import annotations

import gzip
import io
import random
import struct
import tarfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from notmnist_ds.constants import CLASS_NAMES, LARGE, SMALL
from notmnist_ds.images import PNG_SIGNATURE
from notmnist_ds.sample_tarballs import encode_png, member_name, write_tarball

FIXED_MTIME = 1_315_000_000  # so the same members give the same archive bytes


@dataclass(frozen=True)
class TarEntry:
    """One member to write: a path, its bytes, and a tarfile type constant."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""


def regular(name: str, data: bytes) -> TarEntry:
    return TarEntry(name, data)


def write_tar(
    path: Path,
    entries: Iterable[TarEntry],
    compress: bool = True,
    tar_format: int = tarfile.GNU_FORMAT,
) -> Path:
    """Write ``entries`` in order as a tar, gzip-compressed when ``compress`` is True.

    Names may hold lone surrogates, which are written as the raw bytes they
    stand for, so a test can put names that are not UTF-8 into an archive.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer,
        mode="w",
        format=tar_format,
        encoding="utf-8",
        errors="surrogateescape",
    ) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.mtime = FIXED_MTIME
            info.mode = 0o755 if entry.type == tarfile.DIRTYPE else 0o644
            info.linkname = entry.linkname
            if entry.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3
            if entry.type == tarfile.REGTYPE:
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
            else:
                archive.addfile(info)
    tar_bytes = buffer.getvalue()
    path.write_bytes(gzip_bytes(tar_bytes) if compress else tar_bytes)
    return path


def gzip_bytes(data: bytes) -> bytes:
    """Compress ``data`` as one gzip member with a fixed header (no name, mtime 0)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as stream:
        stream.write(data)
    return buffer.getvalue()


def tar_member_offsets(tar_bytes: bytes) -> list[tuple[str, int, int]]:
    """Return ``(name, header_offset, data_offset)`` of each member of a tar."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as archive:
        return [(m.name, m.offset, m.offset_data) for m in archive.getmembers()]


def letter_entries(
    pixels: np.ndarray,
    labels: np.ndarray,
    per_letter: int,
    root: str = "notMNIST_large",
    first_font: int = 0,
    skip: int = 0,
) -> list[TarEntry]:
    """Return ``per_letter`` real glyphs of each letter as notMNIST-named members,
    after the first ``skip`` glyphs of each letter in sample order."""
    entries = []
    for letter_id, letter in enumerate(CLASS_NAMES):
        chosen = np.flatnonzero(labels == letter_id)[skip : skip + per_letter]
        for k, index in enumerate(chosen):
            font = f"Test Font {first_font + letter_id * per_letter + k:05d}.ttf"
            prefix = f"{root}/" if root else ""
            entries.append(
                regular(
                    f"{prefix}{letter}/{member_name(font)}", encode_png(pixels[index])
                )
            )
    return entries


def write_small_tarballs(
    pixels: np.ndarray,
    labels: np.ndarray,
    folder: Path,
    large_per_letter: int,
    small_per_letter: int,
) -> Path:
    """Write both archives into ``folder`` from the first glyphs of each letter.

    The large archive takes the first ``large_per_letter`` glyphs of each
    letter and one empty PNG in A and in D, the small one the next
    ``small_per_letter``. Returns ``folder``.
    """
    large: list[int] = []
    small: list[int] = []
    for letter in range(len(CLASS_NAMES)):
        indices = np.flatnonzero(labels == letter)
        large += list(indices[:large_per_letter])
        small += list(indices[large_per_letter : large_per_letter + small_per_letter])
    write_tarball(
        folder / LARGE.file_name,
        LARGE,
        pixels[large],
        labels[large],
        empty_members={"A": 1, "D": 1},
    )
    write_tarball(
        folder / SMALL.file_name,
        SMALL,
        pixels[small],
        labels[small],
        first_font_index=len(labels),
    )
    return folder


def repack_shuffled(source: Path, target: Path, seed: int) -> list[str]:
    """Write the members of tar.gz ``source`` to ``target`` in a shuffled order.

    Returns the new member order. Member bytes and headers are kept as they are.
    """
    with tarfile.open(source, mode="r:gz") as archive:
        members = [
            (info, archive.extractfile(info).read() if info.isfile() else None)
            for info in archive.getmembers()
        ]
    random.Random(seed).shuffle(members)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    target.write_bytes(gzip_bytes(buffer.getvalue()))
    return [info.name for info, _ in members]


# -- PNG bytes ---------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """Return one PNG chunk: length, type, payload and CRC."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def ihdr_payload(
    width: int, height: int, bit_depth: int = 8, color_type: int = 0, interlace: int = 0
) -> bytes:
    return struct.pack(
        ">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace
    )


def png_from_chunks(chunks: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Return the PNG signature followed by ``chunks`` as (type, payload) pairs."""
    return PNG_SIGNATURE + b"".join(
        png_chunk(kind, payload) for kind, payload in chunks
    )


def png_from_rows(
    rows: Sequence[bytes],
    width: int,
    bit_depth: int,
    color_type: int,
    extra_chunks: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """Encode already packed scanlines (filter type 0) as a PNG.

    ``extra_chunks`` go between IHDR and IDAT (PLTE, tRNS and the like).
    """
    raw = b"".join(b"\x00" + row for row in rows)
    return png_from_chunks(
        [
            (b"IHDR", ihdr_payload(width, len(rows), bit_depth, color_type)),
            *extra_chunks,
            (b"IDAT", zlib.compress(raw)),
            (b"IEND", b""),
        ]
    )


ADAM7_PASSES = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)  # (x0, y0, dx, dy) of each pass, as the PNG specification lists them


def png_interlaced_gray(pixels: np.ndarray) -> bytes:
    """Encode 8-bit gray pixels as an Adam7-interlaced PNG (Pillow writes none)."""
    height, width = pixels.shape
    raw = b""
    for x0, y0, dx, dy in ADAM7_PASSES:
        for y in range(y0, height, dy):
            row = pixels[y, x0::dx]
            if len(row):
                raw += b"\x00" + row.tobytes()
    return png_from_chunks(
        [
            (b"IHDR", ihdr_payload(width, height, 8, 0, interlace=1)),
            (b"IDAT", zlib.compress(raw)),
            (b"IEND", b""),
        ]
    )


def png_header_only(width: int, height: int) -> bytes:
    """Return a PNG that declares ``width`` x ``height`` pixels but has one tiny IDAT."""
    return png_from_chunks(
        [
            (b"IHDR", ihdr_payload(width, height)),
            (b"IDAT", zlib.compress(b"\x00" * 16)),
            (b"IEND", b""),
        ]
    )


def pillow_png(image: Image.Image, **save_options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save_options)
    return buffer.getvalue()


def gray_png(width: int, height: int, value: int = 128) -> bytes:
    return pillow_png(Image.new("L", (width, height), value))
