"""Replace an output folder all at once, so a failed build leaves the old one.

A build writes into a staging folder beside its output, then swaps the two
with one ``renameat2(RENAME_EXCHANGE)`` call on Linux. Where that call is
missing, two renames are used, and a folder left between them by a killed
process is put back the next time any build starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

MARKER = Path("reports") / "build_report.json"  # present in every finished build
RENAME_EXCHANGE = 2
AT_FDCWD = -100


class OutputFolderError(RuntimeError):
    """The output path holds something a build must not replace."""


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

    prefix = f".{output.name}.building-"
    if not output.parent.is_dir():
        return
    for leftover in output.parent.glob(prefix + "*"):
        pid_text = leftover.name[len(prefix) :]
        if pid_text.isdigit() and _pid_alive(int(pid_text)):
            continue
        shutil.rmtree(leftover, ignore_errors=True)
        logger.info("Removed %s, left by an interrupted build", leftover)


def check_replaceable(output: Path) -> None:
    """Raise OutputFolderError unless ``output`` is absent, empty or an earlier build."""
    if not output.exists():
        return
    if not output.is_dir():
        raise OutputFolderError(
            f"output path {output} is a file, not a folder; choose another --output"
        )
    if (output / MARKER).is_file() or not any(output.iterdir()):
        return
    raise OutputFolderError(
        f"output folder {output} is not empty and holds no earlier notmnist build "
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


def swap_into_place(staging: Path, output: Path) -> None:
    """Make ``staging`` the new ``output`` and delete the old one."""
    if not output.exists():
        os.rename(staging, output)
        return
    if _exchange(staging, output):
        shutil.rmtree(staging)
        return
    backup = backup_path(output)
    os.rename(output, backup)
    os.rename(staging, output)
    shutil.rmtree(backup)
