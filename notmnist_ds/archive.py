"""Stream the members of a notMNIST tar.gz without extracting it.

Only regular files directly inside a letter folder ``A`` ... ``J`` become image
candidates, either under one top folder (``notMNIST_large/A/x.png``, whatever
the top folder is called) or with none (``A/x.png``). Everything else is
counted in the ReadReport with an IgnoreReason.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import logging
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .constants import CLASS_NAMES, Tarball
from .report import IgnoreReason, ReadReport, SkipReason

logger = logging.getLogger(__name__)

# A 28x28 PNG with every optional chunk filled in stays far below this; a
# larger member is skipped without being read.
MAX_MEMBER_BYTES = 1 << 20

OS_JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", "Icon\r"})
OS_JUNK_FOLDERS = frozenset({"__MACOSX", ".Trashes", ".Spotlight-V100", ".fseventsd"})

LETTER_IDS = {letter: i for i, letter in enumerate(CLASS_NAMES)}

GZIP_MAGIC = b"\x1f\x8b"
# A POSIX or GNU tar header has "ustar" at byte 257.
TAR_MAGIC = b"ustar"
TAR_MAGIC_OFFSET = 257


class ArchiveError(RuntimeError):
    """The archive itself cannot be read: not gzip, not tar, or cut short."""


@dataclass(frozen=True)
class Member:
    """A regular file inside a letter folder: a candidate image."""

    name: str  # the path as stored in the archive, made printable
    source: str  # stable id: "<archive root>/<letter>/<file name>"
    label: int  # index into CLASS_NAMES
    font: str  # the font file the image was rendered from
    data: bytes  # the member's bytes
    size: int  # the member's size in bytes as the archive states it


def printable_name(name: str) -> str:
    """Make a member name valid UTF-8 text: undecodable bytes become ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def font_from_file_name(file_name: str) -> str:
    """Decode the font file name that notMNIST encodes in base64 as the PNG's name.

    ``QWxnZXJpYW4udHRm.png`` gives ``Algerian.ttf``. A stem that is not valid
    base64 of UTF-8 text is returned as it is.
    """
    stem = file_name[:-4] if file_name.lower().endswith(".png") else file_name
    try:
        decoded = base64.b64decode(stem.encode("ascii"), validate=True)
        font = decoded.decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError):
        return stem
    if not font or not font.isprintable():
        return stem
    return font


def classify(info: tarfile.TarInfo) -> tuple[IgnoreReason | None, str, int]:
    """Decide whether a member is an image candidate.

    Returns ``(reason, file_name, label)``: a reason to ignore it, or None with
    the file name and the letter's label.
    """
    name = info.name
    if name.startswith("/") or ".." in name.split("/"):
        return IgnoreReason.UNSAFE_PATH, "", -1
    parts = [part for part in name.split("/") if part not in ("", ".")]

    if info.isdir():
        return IgnoreReason.DIRECTORY, "", -1
    if info.issym() or info.islnk():
        return IgnoreReason.LINK, "", -1
    if not info.isfile():
        return IgnoreReason.SPECIAL_FILE, "", -1
    if not parts:
        return IgnoreReason.OUTSIDE_LETTER_FOLDERS, "", -1

    file_name = parts[-1]
    if (
        file_name in OS_JUNK_NAMES
        or file_name.startswith(".")
        or any(part in OS_JUNK_FOLDERS for part in parts[:-1])
    ):
        return IgnoreReason.OS_JUNK, "", -1

    if len(parts) == 3 and parts[1] in LETTER_IDS:
        return None, file_name, LETTER_IDS[parts[1]]
    if len(parts) == 2 and parts[0] in LETTER_IDS:
        return None, file_name, LETTER_IDS[parts[0]]
    return IgnoreReason.OUTSIDE_LETTER_FOLDERS, "", -1


def check_gzip_header(path: Path, tarball: Tarball) -> None:
    """Raise ArchiveError, naming the file and the fix, unless it starts like gzip."""
    with open(path, "rb") as handle:
        head = handle.read(TAR_MAGIC_OFFSET + len(TAR_MAGIC))
    if head.startswith(GZIP_MAGIC):
        return
    if not head:
        problem = "is empty (0 bytes)"
    elif head[TAR_MAGIC_OFFSET:].startswith(TAR_MAGIC):
        problem = "is an uncompressed tar archive, not gzip-compressed"
    else:
        problem = f"is not a gzip file (it starts with {head[:8]!r})"
    raise ArchiveError(
        f"{path} {problem}; expected {tarball.file_name} as published, so "
        f"download it again"
    )


def check_end_of_archive(archive: tarfile.TarFile, path: Path, count: int) -> None:
    """Raise ArchiveError unless the tar listing ended at its end-of-archive marker.

    tarfile stops listing without an error at a damaged header, or at a header
    cut short, anywhere after the first member. A real end-of-archive marker is
    a full 512-byte block of zeros followed by nothing but zeros, so anything
    else means that members were lost.
    """
    stream = archive.fileobj
    header_offset = archive.offset
    last_block = stream.tell() - header_offset
    if last_block < tarfile.BLOCKSIZE:
        raise ArchiveError(
            f"{path} ends after {count} members without the tar end-of-archive "
            f"marker (at byte {header_offset:,} of the tar), so the tar was cut short "
            f"before it was compressed; download the archive again"
        )
    while True:
        block = stream.read(1 << 20)
        if not block:
            return
        if block.count(0) != len(block):
            raise ArchiveError(
                f"{path}: the tar listing stops after {count} members at a damaged "
                f"header (byte {header_offset:,} of the tar), but more data follows; "
                f"download the archive again"
            )


def iter_members(path: Path, tarball: Tarball, report: ReadReport) -> Iterator[Member]:
    """Yield the image candidates of a tar.gz in archive order.

    Ignored members and members whose path repeats an earlier one go into
    ``report``. Raises ArchiveError, naming the file and what to do, when the
    file is empty, not gzip-compressed or not a tar. It is raised too when the
    file is cut short anywhere (inside a member, a header or the gzip trailer)
    or damaged so that a tar header or the gzip checksum does not read back.
    """
    check_gzip_header(path, tarball)
    seen_sources: dict[str, str] = {}  # stable id -> member name kept for it
    count = 0
    try:
        with gzip.open(path, "rb") as stream:
            with tarfile.open(fileobj=stream, mode="r|", errorlevel=1) as archive:
                for info in archive:
                    count += 1
                    name = printable_name(info.name)
                    reason, file_name, label = classify(info)
                    if reason is not None:
                        report.omit(name, reason)
                        continue

                    letter = CLASS_NAMES[label]
                    source = f"{tarball.root}/{letter}/{printable_name(file_name)}"
                    if source in seen_sources:
                        report.omit(
                            name,
                            SkipReason.DUPLICATE_NAME,
                            f"same letter and file name as {seen_sources[source]}, "
                            "which was kept",
                        )
                        continue
                    seen_sources[source] = name
                    if info.size > MAX_MEMBER_BYTES:
                        report.omit(
                            name,
                            SkipReason.UNDECODABLE,
                            f"{info.size:,} bytes, larger than any 28x28 PNG "
                            f"({MAX_MEMBER_BYTES:,} bytes at most)",
                        )
                        continue

                    reader = archive.extractfile(info)
                    limit = min(info.size, MAX_MEMBER_BYTES)
                    data = reader.read(limit) if reader is not None else b""
                    yield Member(
                        name=name,
                        source=source,
                        label=label,
                        font=font_from_file_name(printable_name(file_name)),
                        data=data,
                        size=info.size,
                    )
                check_end_of_archive(archive, path, count)
            # The tar ends before the gzip trailer; reading on checks its CRC
            # and length, so a copy cut inside the trailer is caught too.
            while stream.read(1 << 20):
                pass
    except tarfile.ReadError as error:
        if count == 0:
            raise ArchiveError(
                f"{path} is gzip-compressed but contains no tar archive ({error}); "
                f"expected {tarball.file_name} as published, so download it again"
            ) from error
        raise damaged_archive(path, tarball, count, error) from error
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        # gzip.BadGzipFile is an OSError: after the header check above it means
        # a failed checksum or bytes after the end of the gzip stream.
        raise damaged_archive(path, tarball, count, error) from error


def damaged_archive(
    path: Path, tarball: Tarball, count: int, error: BaseException
) -> ArchiveError:
    return ArchiveError(
        f"{path} is damaged after {count} members ({type(error).__name__}: "
        f"{error}); delete it and download it again, or check its sha256 "
        f"against {tarball.sha256}"
    )
