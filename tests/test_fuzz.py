"""Property tests: hostile archives and PNG bytes never crash or hang the reader.

For any archive, ``read_archive`` (one process) either raises ArchiveError or
accounts for every member exactly once, as a row or as an omission with a
reason from ``notmnist_ds.report``. For any bytes, ``decode_image`` either
returns a 28x28 uint8 image or raises ImageRejected with a SkipReason.

The default run is small enough for CI (about 400 examples, derandomized so CI
runs are repeatable). A long, randomized run:

    HYPOTHESIS_PROFILE=long python -m pytest tests/test_fuzz.py

The profiles are registered here under their own names and applied to these
tests only, so other modules keep Hypothesis's own settings.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import signal
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from broken_inputs import TarEntry, ihdr_payload, png_chunk, write_tar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedup.hashing import HashSpec
from notmnist_ds.archive import ArchiveError
from notmnist_ds.constants import CLASS_NAMES, LARGE
from notmnist_ds.images import PNG_SIGNATURE, ImageRejected, decode_image
from notmnist_ds.reader import read_archive
from notmnist_ds.report import IgnoreReason, SkipReason
from notmnist_ds.sample_tarballs import encode_png

settings.register_profile(
    "notmnist-fuzz-ci",
    parent=settings.get_profile("ci"),
    max_examples=80,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "notmnist-fuzz-long",
    max_examples=5_000,
    deadline=timedelta(seconds=10),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FUZZ = settings.get_profile(
    "notmnist-fuzz-long" if PROFILE == "long" else "notmnist-fuzz-ci"
)

# A hang, unlike a slow example, never reaches Hypothesis's deadline check, so
# each example also runs under an alarm.
HANG_SECONDS = 60
REASONS = {r.value for r in SkipReason} | {r.value for r in IgnoreReason}
SPEC = HashSpec()


class Hang(Exception):
    """An example ran for HANG_SECONDS."""


@contextlib.contextmanager
def hang_guard(seconds: int = HANG_SECONDS) -> Iterator[None]:
    def fail(signum, frame):
        raise Hang(f"example still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- strategies ---------------------------------------------------------------

GLYPH = encode_png(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))

segments = st.one_of(
    st.sampled_from(
        [
            "notMNIST_large",
            *CLASS_NAMES,
            "K",
            "a",
            "..",
            ".",
            "",
            "__MACOSX",
            ".DS_Store",
            "._QQ==.png",
            "QWxnZXJpYW4udHRm.png",
            "Thumbs.db",
        ]
    ),
    # Lone surrogates cannot be written into a tar header, so none here.
    st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters="\x00/"),
        max_size=12,
    ),
    # Bytes that are not UTF-8, as tarfile hands them over: lone surrogates.
    st.binary(min_size=1, max_size=8)
    .filter(lambda b: b"\x00" not in b and b"/" not in b)
    .map(lambda b: b.decode("utf-8", "surrogateescape")),
)
member_names = st.builds(
    lambda absolute, parts: ("/" if absolute else "") + "/".join(parts),
    st.booleans(),
    st.lists(segments, min_size=1, max_size=5),
)


@st.composite
def png_like(draw) -> bytes:
    """The glyph's PNG, cut, with bytes changed, or with junk appended."""
    data = bytearray(GLYPH)
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data) + draw(st.binary(max_size=16))


member_bytes = st.one_of(st.binary(max_size=200), png_like(), st.just(GLYPH))

member_types = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.CONTTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.FIFOTYPE,
    ]
)


@st.composite
def tar_entries(draw) -> TarEntry:
    kind = draw(member_types)
    name = draw(member_names)
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
        return TarEntry(name, draw(member_bytes), tarfile.REGTYPE)
    link = draw(member_names) if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    return TarEntry(name, b"", kind, link)


chunk_types = st.one_of(
    st.sampled_from(
        [
            b"IHDR",
            b"PLTE",
            b"IDAT",
            b"IEND",
            b"tRNS",
            b"gAMA",
            b"sBIT",
            b"bKGD",
            b"iCCP",
            b"zTXt",
            b"iTXt",
            b"tEXt",
            b"pHYs",
            b"eXIf",
            b"acTL",
            b"fcTL",
            b"fdAT",
            b"sRGB",
            b"cHRM",
        ]
    ),
    st.binary(min_size=4, max_size=4),
)
chunk_payloads = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=2000).map(zlib.compress),
)


@st.composite
def png_with_random_chunks(draw) -> bytes:
    """The PNG signature, an IHDR with any field values, then any chunks."""
    side = st.one_of(st.just(28), st.integers(0, 64))
    header = ihdr_payload(
        draw(side),
        draw(side),
        draw(st.sampled_from([1, 2, 4, 8, 16, 0, 3, 255])),
        draw(st.sampled_from([0, 2, 3, 4, 6, 1, 5, 7])),
        draw(st.integers(0, 2)),
    )
    data = PNG_SIGNATURE + png_chunk(b"IHDR", header)
    for kind, payload in draw(
        st.lists(st.tuples(chunk_types, chunk_payloads), max_size=6)
    ):
        chunk = png_chunk(kind, payload)
        if draw(st.integers(0, 9)) == 0:  # a wrong CRC now and then
            chunk = chunk[:-4] + b"\x00\x00\x00\x00"
        data += chunk
    return data


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


@st.composite
def png_with_random_pixels(draw) -> bytes:
    """A 28x28 PNG of any valid type whose scanlines, filter bytes included,
    are random, with optional PLTE and tRNS chunks of any length."""
    color_type = draw(st.sampled_from(sorted(CHANNELS)))
    bit_depth = draw(st.sampled_from(BIT_DEPTHS[color_type]))
    interlace = draw(st.integers(0, 1))
    stride = (28 * CHANNELS[color_type] * bit_depth + 7) // 8
    size = (stride + 1) * 28 * (2 if interlace else 1)
    raw = draw(st.binary(min_size=size // 2, max_size=size))
    chunks = [(b"IHDR", ihdr_payload(28, 28, bit_depth, color_type, interlace))]
    if color_type == 3 or draw(st.booleans()):
        chunks.append((b"PLTE", draw(st.binary(max_size=3 * 256))))
    if draw(st.booleans()):
        chunks.append((b"tRNS", draw(st.binary(max_size=256))))
    compressed = zlib.compress(raw)
    cut = draw(st.integers(0, len(compressed)))
    chunks += [(b"IDAT", compressed[:cut]), (b"IDAT", compressed[cut:]), (b"IEND", b"")]
    return PNG_SIGNATURE + b"".join(
        png_chunk(kind, payload) for kind, payload in chunks
    )


# -- checks ---------------------------------------------------------------------


def check_decoded(data: bytes) -> None:
    with hang_guard():
        try:
            pixels, converted = decode_image(data)
        except ImageRejected as rejection:
            assert rejection.reason in SkipReason
            assert " at 0x" not in rejection.detail
            return
    assert pixels.shape == (28, 28)
    assert pixels.dtype == np.uint8
    assert isinstance(converted, bool)


def read_entries(entries: list[TarEntry], tar_format: int):
    with tempfile.TemporaryDirectory() as folder:
        path = write_tar(Path(folder) / LARGE.file_name, entries, tar_format=tar_format)
        with hang_guard():
            return read_archive(path, LARGE, SPEC, workers=1, progress=False)


@pytest.fixture(scope="module")
def good_archive() -> bytes:
    """A small valid tar.gz to damage: glyphs, an empty PNG and a folder."""
    entries = [
        TarEntry("notMNIST_large/A", type=tarfile.DIRTYPE),
        TarEntry("notMNIST_large/A/QQ==.png", GLYPH),
        TarEntry("notMNIST_large/B/Qg==.png", b""),
        TarEntry("notMNIST_large/C/Qw==.png", GLYPH),
    ]
    with tempfile.TemporaryDirectory() as folder:
        return write_tar(Path(folder) / "good.tar.gz", entries).read_bytes()


# -- properties -------------------------------------------------------------------


@FUZZ
@given(
    st.lists(tar_entries(), max_size=8),
    st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
)
def test_reader_accounts_for_every_member(entries, tar_format):
    images = read_entries(entries, tar_format)
    report = images.report
    assert report.rows + len(report.omissions) == len(entries)
    assert report.rows == len(images.sources) == len(images.png)
    assert all(omission.reason in REASONS for omission in report.omissions)
    for text in [*images.sources, *images.fonts, *(o.member for o in report.omissions)]:
        text.encode("utf-8")  # no lone surrogates: valid text for CSV and Parquet
    assert all(0 <= label < len(CLASS_NAMES) for label in images.labels)


@FUZZ
@given(st.data())
def test_reader_damaged_archive_raises_archive_error(good_archive, data):
    damaged = bytearray(good_archive)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(damaged) - 1))
        damaged[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        damaged = damaged[: data.draw(st.integers(0, len(damaged)))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / LARGE.file_name
        path.write_bytes(bytes(damaged))
        try:
            with hang_guard():
                images = read_archive(path, LARGE, SPEC, workers=1, progress=False)
        except ArchiveError as error:
            assert str(path) in str(error)
            return
    # Changes that gzip does not check (header fields such as mtime) can leave
    # the archive whole; then all four members are still accounted for.
    assert images.report.rows + len(images.report.omissions) == 4


@FUZZ
@given(st.binary(max_size=400))
def test_decode_arbitrary_bytes(data):
    check_decoded(data)


@FUZZ
@given(st.binary(max_size=400))
def test_decode_arbitrary_bytes_after_signature(data):
    check_decoded(PNG_SIGNATURE + data)


@FUZZ
@given(png_with_random_chunks())
def test_decode_random_chunks(data):
    check_decoded(data)


@FUZZ
@given(png_with_random_pixels())
def test_decode_random_pixel_data(data):
    check_decoded(data)


def test_hang_guard_interrupts_a_hang():
    with pytest.raises(Hang), hang_guard(1):
        while True:
            pass


def test_gzip_header_fields_are_not_checked(good_archive):
    # Supports the fallback in test_reader_damaged_archive_raises_archive_error:
    # a changed mtime in the gzip header still decompresses to the same tar.
    changed = bytearray(good_archive)
    changed[4:8] = struct.pack("<I", 123456)
    assert gzip.decompress(bytes(changed)) == gzip.decompress(good_archive)
    assert io.BytesIO(bytes(changed)).read(2) == b"\x1f\x8b"
