"""Read one archive into arrays: pixels, labels, PNG bytes, hashes.

The main process streams the tar.gz once and hands chunks of member bytes to
worker processes, which decode them, hash them and send back uint8 arrays.
Pixels stay uint8 (784 bytes an image) in one preallocated array.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dedup.exact import pixel_digests
from dedup.hashing import HashSpec, ImageHashes, compute_hashes

from .archive import Member, iter_members
from .constants import CLASS_NAMES, IMAGE_SHAPE, Tarball
from .images import ImageRejected, decode_image, encode_png
from .report import Omission, ReadReport

logger = logging.getLogger(__name__)

CHUNK_SIZE = 2048  # members per task sent to a worker


@dataclass
class ArchiveImages:
    """The readable images of one archive, in archive order."""

    tarball: Tarball
    sources: list[str]
    fonts: list[str]
    labels: np.ndarray  # (N,) int64 class ids
    pixels: np.ndarray  # (N, 28, 28) uint8 canonical pixels
    png: list[bytes]  # canonical PNG bytes of each image
    hashes: ImageHashes  # perceptual hashes of the pixels
    digests: np.ndarray  # (N, 2) uint64: 128-bit blake2b of the pixels, the identity of exact duplicates
    hash_spec: HashSpec
    report: ReadReport = field(repr=False)

    def __len__(self) -> int:
        return len(self.sources)


@dataclass
class DecodedChunk:
    """What a worker returns for one chunk of members."""

    pixels: np.ndarray  # (n_ok, 28, 28) uint8
    png: list[bytes]
    hashes: np.ndarray
    digests: np.ndarray
    ok: list[bool]  # per member of the chunk: True when it became a row
    rejections: list[tuple[str, str]]  # per rejected member: (reason, detail)
    converted: int


def decode_chunk(payload: tuple[list[bytes], HashSpec]) -> DecodedChunk:
    """Decode, canonicalise and hash a chunk of member bytes (runs in a worker)."""
    blobs, spec = payload
    pixels = np.empty((len(blobs), *IMAGE_SHAPE), dtype=np.uint8)
    png: list[bytes] = []
    ok: list[bool] = []
    rejections: list[tuple[str, str]] = []
    converted = 0
    for data in blobs:
        try:
            image, was_converted = decode_image(data)
        except ImageRejected as rejection:
            ok.append(False)
            rejections.append((rejection.reason.value, rejection.detail))
            continue
        pixels[len(png)] = image
        if was_converted:
            converted += 1
            png.append(encode_png(image))
        else:
            png.append(data)
        ok.append(True)

    pixels = pixels[: len(png)]
    digests = pixel_digests(pixels)
    hashes = compute_hashes(pixels, spec).values if len(pixels) else np.empty(0, np.uint64)
    return DecodedChunk(pixels, png, hashes, digests, ok, rejections, converted)


def chunked(members: Iterator[Member], size: int) -> Iterator[list[Member]]:
    chunk: list[Member] = []
    for member in members:
        chunk.append(member)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_archive(
    path: Path,
    tarball: Tarball,
    hash_spec: HashSpec,
    workers: int = 2,
    progress: bool = True,
) -> ArchiveImages:
    """Read every readable image of a notMNIST archive.

    ``workers`` is the number of decoding processes; 1 decodes in this process.
    Unreadable members are skipped and listed in the returned report. Raises
    ArchiveError when the archive itself is damaged.
    """
    report = ReadReport(archive=tarball.file_name)
    capacity = max(tarball.num_png_files, 1024)
    pixels = np.empty((capacity, *IMAGE_SHAPE), dtype=np.uint8)
    hashes: list[np.ndarray] = []
    digests: list[np.ndarray] = []
    sources: list[str] = []
    fonts: list[str] = []
    labels: list[int] = []
    png: list[bytes] = []

    def decoded() -> Iterator[tuple[list[Member], DecodedChunk]]:
        chunks = chunked(iter_members(path, tarball, report), CHUNK_SIZE)
        if workers <= 1:
            for chunk in chunks:
                yield chunk, decode_chunk(([m.data for m in chunk], hash_spec))
            return
        # A bounded number of chunks in flight keeps memory flat while the
        # workers stay busy; results are taken in archive order.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as executor:
            in_flight: deque = deque()
            for chunk in chunks:
                payload = ([m.data for m in chunk], hash_spec)
                in_flight.append((chunk, executor.submit(decode_chunk, payload)))
                if len(in_flight) > 2 * workers:
                    chunk, future = in_flight.popleft()
                    yield chunk, future.result()
            while in_flight:
                chunk, future = in_flight.popleft()
                yield chunk, future.result()

    with tqdm(
        total=tarball.num_png_files,
        desc=f"Reading {tarball.file_name}",
        unit="img",
        disable=not progress,
    ) as bar:
        for chunk, result in decoded():
            start = len(png)
            if start + len(result.png) > len(pixels):
                pixels = np.concatenate([pixels, np.empty_like(pixels)])
            pixels[start : start + len(result.png)] = result.pixels
            png.extend(result.png)
            hashes.append(result.hashes)
            digests.append(result.digests)
            report.converted_images += result.converted

            rejections = iter(result.rejections)
            for member, ok in zip(chunk, result.ok):
                if ok:
                    sources.append(member.source)
                    fonts.append(member.font)
                    labels.append(member.label)
                    report.rows_per_letter[CLASS_NAMES[member.label]] += 1
                else:
                    reason, detail = next(rejections)
                    report.omissions.append(
                        Omission(tarball.file_name, member.name, reason, detail)
                    )
            bar.update(len(chunk))

    count = len(png)
    pixels = pixels[:count]
    report.rows = count
    report.uniform_images = int(np.count_nonzero(pixels.min(axis=(1, 2)) == pixels.max(axis=(1, 2))))
    logger.info(report.summary())
    return ArchiveImages(
        tarball=tarball,
        sources=sources,
        fonts=fonts,
        labels=np.asarray(labels, dtype=np.int64),
        pixels=pixels,
        png=png,
        hashes=ImageHashes(
            hash_spec, np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
        ),
        digests=np.concatenate(digests) if digests else np.empty((0, 2), np.uint64),
        hash_spec=hash_spec,
        report=report,
    )

