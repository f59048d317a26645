"""Replace an output folder all at once, so a failed build leaves the old one.

A build writes into a staging folder beside its output, then swaps the two
with one ``renameat2(RENAME_EXCHANGE)`` call on Linux. Where that call is
missing, two renames are used, and a folder left between them by a killed
process is put back the next time any build starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import re
import shutil
from collections.abc import Iterator
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

MARKER = Path("reports") / "build_report.json"  # present in every finished build
RENAME_EXCHANGE = 2
AT_FDCWD = -100


class OutputFolderError(RuntimeError):
    """The output path contains something a build must not replace."""


def staging_path(output: Path) -> Path:
    return output.parent / f".{output.name}.building-{os.getpid()}"


def backup_path(output: Path) -> Path:
    return output.parent / f".{output.name}.previous"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(output: Path) -> None:
    """Undo what a killed build left beside ``output``.

    Restores the previous build if a swap stopped halfway, and deletes the
    staging folders of processes that no longer run.
    """
    backup = backup_path(output)
    if backup.exists() and not output.exists():
        os.rename(backup, output)
        logger.warning("Restored %s from %s, left by an interrupted build", output, backup)
    elif backup.exists():
        shutil.rmtree(backup, ignore_errors=True)
    remove_abandoned(output.parent, f".{output.name}.building-")


def remove_abandoned(parent: Path, prefix: str) -> None:
    """Delete every folder ``parent/<prefix><pid>`` whose process no longer runs.

    Staging folders carry the id of the process that writes them, so a folder
    of a live process, such as a concurrent build, is left alone.
    """
    if not parent.is_dir():
        return
    for leftover in parent.glob(prefix + "*"):
        pid_text = leftover.name[len(prefix) :]
        if pid_text.isdigit() and _pid_alive(int(pid_text)):
            continue
        shutil.rmtree(leftover, ignore_errors=True)
        logger.info("Removed %s, left by an interrupted build", leftover)


# The files a build writes: the card, the reports and the Parquet shards.
BUILD_FILE_PATTERN = re.compile(
    r"README\.md"
    r"|reports/(build_report\.json|overlap\.json|removals\.csv|skipped\.csv"
    r"|samples\.png|near_duplicates\.png|baseline\.json)"
    r"|(raw|sanitized)/(train|validation|test)-\d{5}-of-\d{5}\.parquet"
)


def list_some(names: list[str], limit: int = 5) -> str:
    """Join the first ``limit`` names, saying how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def files_not_from_build(folder: Path) -> list[str]:
    """Return the files under ``folder`` that no build writes, sorted."""
    foreign = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_dir():
            if relative not in ("reports", "raw", "sanitized"):
                foreign.append(relative + "/")
            continue
        if not BUILD_FILE_PATTERN.fullmatch(relative):
            foreign.append(relative)
    return [name for name in foreign if not any(name.startswith(d) and name != d for d in foreign if d.endswith("/"))]


def check_replaceable(output: Path) -> None:
    """Raise OutputFolderError unless ``output`` is absent, empty or an earlier build."""
    if not output.exists():
        return
    if not output.is_dir():
        raise OutputFolderError(
            f"output path {output} is a file, not a folder; choose another --output"
        )
    if not any(output.iterdir()):
        return
    if (output / MARKER).is_file():
        foreign = files_not_from_build(output)
        if foreign:
            raise OutputFolderError(
                f"output folder {output} contains an earlier notmnist build and files the "
                f"build did not write ({list_some(foreign)}); a new build replaces the whole folder, "
                f"so move those files out or choose another --output"
            )
        return
    raise OutputFolderError(
        f"output folder {output} is not empty and contains no earlier notmnist build "
        f"({MARKER} is missing), so it will not be replaced; choose another --output "
        f"or empty it first"
    )


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically with renameat2; False where it is unavailable."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(
        AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE
    )
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(error, os.strerror(error), str(first), None, str(second))


def swap_into_place(
    staging: Path, output: Path, after_swap: Callable[[], None] | None = None
) -> None:
    """Make ``staging`` the new ``output`` and delete the old one.

    ``after_swap`` runs as soon as the new folder is in place, before the old
    one is deleted, which can take a while for a large build.
    """
    after = after_swap or (lambda: None)
    if not output.exists():
        os.rename(staging, output)
        after()
        return
    if _exchange(staging, output):
        after()
        shutil.rmtree(staging)
        return
    backup = backup_path(output)
    os.rename(output, backup)
    os.rename(staging, output)
    after()
    shutil.rmtree(backup)


# Write errors that more free space (or a higher limit) would have avoided.
DISK_FULL_ERRNOS = frozenset(
    code
    for code in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", None))
    if code is not None
)
# Cause and remedy of each of those errors, for the message.
DISK_FULL_CAUSES = {
    errno.ENOSPC: ("the disk is full", "free space there"),
    errno.EFBIG: (
        "a file reached the file-size limit",
        "raise the limit (ulimit -f)",
    ),
    getattr(errno, "EDQUOT", -1): (
        "the disk quota is used up",
        "free space there or raise the quota",
    ),
}


class DiskFullError(OSError):
    """Writing failed for lack of space: a full disk, quota or file-size limit."""

    def __init__(self, code: int, message: str, folder: Path) -> None:
        super().__init__(code, message)
        self.message = message
        self.folder = folder

    def __str__(self) -> str:
        return self.message


def find_disk_full(error: BaseException | None) -> OSError | None:
    """Return the OSError in ``error``'s chain of causes that reports a full disk,
    quota or file-size limit, or None.

    Libraries wrap write errors (``datasets`` raises DatasetGenerationError from
    them), so the chain is followed through ``__cause__`` and ``__context__``.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None


def disk_full_message(error: OSError, location: str | Path, option: str) -> str:
    """Describe a full disk, quota or file-size limit met while writing ``location``."""
    cause, advice = DISK_FULL_CAUSES.get(error.errno, ("no space is left", "free space"))
    return (
        f"could not write to {location}: {cause} ({os.strerror(error.errno)}). "
        f"To fix it, {advice}, or choose another {option}, and run the build "
        f"again; an earlier build in the output folder was left as it was"
    )


@contextlib.contextmanager
def disk_full_reported(folder: Path, option: str) -> Iterator[None]:
    """Raise DiskFullError naming ``folder`` for a full disk, quota or file-size
    limit met inside the block, whatever library raised it; other errors pass."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:
        full = find_disk_full(error)
        if full is None:
            raise
        message = disk_full_message(full, full.filename or folder, option)
        raise DiskFullError(full.errno, message, folder) from error


def explain_disk_full(error: BaseException) -> str | None:
    """Return a message for a full disk, quota or file-size limit anywhere in
    ``error``'s chain of causes, or None when the error has another cause."""
    if isinstance(error, DiskFullError):
        return str(error)
    full = find_disk_full(error)
    if full is None:
        return None
    location = full.filename or "the output folder or the datasets cache"
    return disk_full_message(full, location, "--output or --cache-dir")
