"""Read one archive into arrays: labels, PNG bytes, hashes and digests.

The main process streams the tar.gz once and hands chunks of member bytes to
worker processes, which decode them, hash them and send back what
deduplication needs. Decoded pixels stay in the workers: only the PNG bytes
(about 450 bytes an image) and the pixels of the few near-uniform images,
which are compared by pixels rather than by hash, come back.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dedup.exact import pixel_digests
from dedup.hashing import HashSpec, ImageHashes, blas_thread_limit, compute_hashes
from dedup.variants import VariantHashes, compute_variant_hashes
from dedup.near import near_uniform_mask

from .archive import Member, iter_members
from .constants import CLASS_NAMES, IMAGE_PIXELS, IMAGE_SHAPE, Tarball
from .fastpng import inflate_fast_path, unfilter_with_pillow
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
    png: list[bytes]  # canonical PNG bytes of each image
    hashes: ImageHashes  # perceptual hashes of the pixels
    variants: VariantHashes  # hashes of the median-filtered, trimmed and shifted pixels
    digests: np.ndarray  # (N, 2) uint64: 128-bit blake2b of the pixels, the identity of exact duplicates
    near_uniform: np.ndarray  # (N,) bool, see dedup.near.near_uniform_mask
    uniform_pixels: np.ndarray  # (M, 784) uint8 pixels of the near-uniform images
    hash_spec: HashSpec
    report: ReadReport = field(repr=False)

    def __len__(self) -> int:
        return len(self.sources)

    def pixels(self, index: int) -> np.ndarray:
        """Decode one image's canonical pixels again from its PNG bytes."""
        return decode_image(self.png[index])[0]


@dataclass
class DecodedChunk:
    """What a worker returns for one chunk of members."""

    png: list[bytes]
    hashes: np.ndarray
    variants: VariantHashes
    digests: np.ndarray
    near_uniform: np.ndarray
    uniform_pixels: np.ndarray  # (n_near_uniform, 784) uint8
    ok: list[bool]  # per member of the chunk: True when it became a row
    rejections: list[tuple[str, str]]  # per rejected member: (reason, detail)
    converted: int


def decode_chunk(payload: tuple[list[bytes], HashSpec]) -> DecodedChunk:
    """Decode, canonicalise and hash a chunk of member bytes (runs in a worker)."""
    blobs, spec = payload
    decoded = np.empty((len(blobs), *IMAGE_SHAPE), dtype=np.uint8)
    problems: dict[int, tuple[str, str]] = {}
    converted_at: set[int] = set()

    # 8-bit grayscale PNGs, nearly all of notMNIST, are inflated here and
    # unfiltered by Pillow as one batch; the rest are decoded one by one.
    # Both give the pixels decode_image gives.
    fast, filtered, slow = inflate_fast_path(blobs)
    if fast:
        decoded[fast] = unfilter_with_pillow(filtered)
    for position in slow:
        try:
            image, was_converted = decode_image(blobs[position])
        except ImageRejected as rejection:
            problems[position] = (rejection.reason.value, rejection.detail)
            continue
        decoded[position] = image
        if was_converted:
            converted_at.add(position)

    ok = [position not in problems for position in range(len(blobs))]
    rejections = [problems[position] for position in sorted(problems)]
    converted = len(converted_at)
    kept = [position for position, good in enumerate(ok) if good]
    pixels = decoded[kept]
    png = [
        encode_png(decoded[position]) if position in converted_at else blobs[position]
        for position in kept
    ]

    if not png:
        # Every member was rejected; numpy cannot reshape an empty batch to
        # (0, -1), which the digest and uniform checks do.
        return DecodedChunk(
            png,
            np.empty(0, np.uint64),
            VariantHashes.empty(spec.hash_size),
            np.empty((0, 2), np.uint64),
            np.zeros(0, bool),
            np.empty((0, IMAGE_PIXELS), np.uint8),
            ok,
            rejections,
            converted,
        )
    digests = pixel_digests(pixels)
    # One BLAS thread: the products are small, and on shared cores extra
    # threads wait on each other (see compute_hashes).
    with blas_thread_limit(1):
        hashes = compute_hashes(pixels, spec, blas_threads=None).values
        variants = compute_variant_hashes(pixels, spec.hash_size, blas_threads=None)
    near_uniform = near_uniform_mask(pixels)
    uniform_pixels = pixels[near_uniform].reshape(-1, IMAGE_PIXELS)
    return DecodedChunk(
        png, hashes, variants, digests, near_uniform, uniform_pixels, ok, rejections, converted
    )


def exit_with_parent() -> None:
    """End this worker process as soon as the process that started it dies.

    Runs as the pool's initializer. A worker waits on its task queue and has
    both ends of that queue's pipe open itself, so it never sees the queue
    close. Without this watch, a build killed with SIGKILL leaves its workers
    running.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def wait_for_parent() -> None:
        parent.join()  # returns when the parent's end of the sentinel pipe closes
        os._exit(1)

    threading.Thread(target=wait_for_parent, name="parent-watch", daemon=True).start()


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while worker processes may be started.

    A started process inherits the blocked signal. Ctrl-C in a terminal signals
    the whole process group, so this makes it interrupt only the main process,
    which then cancels the pool, and no worker prints a traceback of its own.
    The main process still gets the signal through another of its threads or
    as soon as the block ends.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def chunked(members: Iterator[Member], size: int) -> Iterator[list[Member]]:
    chunk: list[Member] = []
    for member in members:
        chunk.append(member)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1  # the reader raises ArchiveError for it, with the fix


def start_decoders(workers: int) -> ProcessPoolExecutor:
    """Start ``workers`` decoding processes that end when this process ends."""
    context = multiprocessing.get_context("spawn")
    with sigint_blocked():
        return ProcessPoolExecutor(workers, mp_context=context, initializer=exit_with_parent)


def read_archive(
    path: Path,
    tarball: Tarball,
    hash_spec: HashSpec,
    workers: int = 2,
    progress: bool = True,
    shared_executor: ProcessPoolExecutor | None = None,
) -> ArchiveImages:
    """Read every readable image of a notMNIST archive.

    ``workers`` is the number of decoding processes; 1 decodes in this process.
    ``shared_executor``, from ``start_decoders``, saves starting new worker
    processes for each archive; it is left running.
    Unreadable members are skipped and listed in the returned report. Raises
    ArchiveError when the archive itself is damaged.
    """
    report = ReadReport(archive=tarball.file_name)
    near_uniform: list[np.ndarray] = []
    uniform_pixels: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    variants: list[VariantHashes] = [VariantHashes.empty(hash_spec.hash_size)]
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
        executor = shared_executor or start_decoders(workers)
        try:
            in_flight: deque = deque()
            for chunk in chunks:
                payload = ([m.data for m in chunk], hash_spec)
                with sigint_blocked():
                    future = executor.submit(decode_chunk, payload)
                in_flight.append((chunk, future))
                if len(in_flight) > 2 * workers:
                    chunk, future = in_flight.popleft()
                    yield chunk, future.result()
            while in_flight:
                chunk, future = in_flight.popleft()
                yield chunk, future.result()
        except BaseException:
            # Ctrl-C, a damaged archive or a closed generator: drop the queued
            # chunks, so that each worker stops after the chunk it is decoding.
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        if shared_executor is None:
            executor.shutdown(wait=True)

    with tqdm(
        # The member count is known only for the published archive.
        total=tarball.num_png_files if _size(path) == tarball.num_bytes else None,
        desc=f"Reading {tarball.file_name}",
        unit="img",
        disable=not progress,
    ) as bar:
        for chunk, result in decoded():
            png.extend(result.png)
            near_uniform.append(result.near_uniform)
            uniform_pixels.append(result.uniform_pixels)
            hashes.append(result.hashes)
            variants.append(result.variants)
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

    report.rows = len(png)
    uniform = np.concatenate(uniform_pixels) if uniform_pixels else np.empty((0, IMAGE_PIXELS), np.uint8)
    report.uniform_images = int(np.count_nonzero(uniform.min(axis=1) == uniform.max(axis=1)))
    logger.info(report.summary())
    missing = report.missing_letters()
    if missing:
        logger.warning(
            "%s has no readable image of the letter(s) %s: the letter folder is "
            "missing or holds only unreadable files",
            tarball.file_name,
            ", ".join(missing),
        )
    return ArchiveImages(
        tarball=tarball,
        sources=sources,
        fonts=fonts,
        labels=np.asarray(labels, dtype=np.int64),
        png=png,
        hashes=ImageHashes(
            hash_spec, np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
        ),
        variants=VariantHashes.concatenate(variants),
        digests=np.concatenate(digests) if digests else np.empty((0, 2), np.uint64),
        near_uniform=np.concatenate(near_uniform) if near_uniform else np.zeros(0, bool),
        uniform_pixels=uniform,
        hash_spec=hash_spec,
        report=report,
    )

