"""Download the notMNIST tarballs into a cache folder and verify them.

A download is written to ``<file_name>.part`` beside its target and renamed into
place only after its byte size and sha256 match the Tarball. A killed process
therefore leaves at most a ``.part`` file, and the next run resumes it with an
HTTP Range request and verifies the resumed whole. Mirrors are tried in order.
A mirror fails on a refused or timed-out connection, an HTTP error status, or a
body that is not a gzip file, such as an HTML page served with status 200.

Hashing the large archive takes about a second, so the sha256 of a checked file
is stored in ``<file_name>.verified.json`` beside it, keyed on the file's
resolved path, byte size and mtime_ns. An edit that keeps the size and then
restores the mtime is not detected.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from .constants import MIRRORS, Tarball

try:
    import fcntl
except ImportError:  # Windows has no flock
    fcntl = None

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "NOTMNIST_CACHE"
CHUNK_SIZE = 1 << 20  # bytes per read from the network and from disk
GZIP_MAGIC = b"\x1f\x8b"
PART_SUFFIX = ".part"
RECORD_SUFFIX = ".verified.json"
LOCK_SUFFIX = ".lock"
# A mirror that drops the connection is retried with a Range request as long as
# each attempt receives some bytes, up to this many attempts in all.
MAX_ATTEMPTS_PER_MIRROR = 10
USER_AGENT = "notmnist-ds (Python urllib)"

LOCAL_ADVICE = (
    "The file is damaged, incomplete or not the published archive. Replace it: "
    "delete it and run again without --data-dir to download a fresh copy, or pass "
    "--no-verify (verify=False) to use a modified copy on purpose."
)
DOWNLOAD_ADVICE = (
    "Nothing was saved. Check that the mirrors serve the published archive, or "
    "pass --no-verify (verify=False) to accept a modified copy."
)


class DownloadError(RuntimeError):
    """No mirror delivered a tarball. ``failures`` lists (url, reason) pairs."""

    def __init__(self, file_name: str, failures: Sequence[tuple[str, str]]) -> None:
        self.file_name = file_name
        self.failures = list(failures)
        lines = [f"Could not download {file_name} from any mirror:"]
        lines += [f"  {url}: {reason}" for url, reason in self.failures]
        lines.append(
            "Check the network connection and the mirror URLs, or download the file "
            "yourself and pass its folder with --data-dir."
        )
        super().__init__("\n".join(lines))


class VerificationError(ValueError):
    """A file whose byte size or sha256 differs from the Tarball's.

    ``field`` is "size" or "sha256", and ``expected`` and ``actual`` are its two
    values (bytes or hex digest). After a failed download, ``path`` is the target
    that was not written and ``failures`` lists (url, reason) for every mirror.
    """

    def __init__(
        self,
        message: str,
        path: Path,
        field: str,
        expected: int | str,
        actual: int | str,
        failures: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.path = path
        self.field = field
        self.expected = expected
        self.actual = actual
        self.failures = list(failures)


class _MirrorError(Exception):
    """A mirror that cannot deliver the tarball, with the reason in plain words.

    ``mismatch`` is (field, expected, actual) when the mirror's copy differs
    from the Tarball, as opposed to a network or HTTP failure.
    """

    def __init__(
        self, reason: str, mismatch: tuple[str, int | str, int | str] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.mismatch = mismatch


class _InterruptedTransfer(Exception):
    """A connection that failed after the response started. ``received`` counts
    the body bytes written to the ``.part`` file in that attempt."""

    def __init__(self, received: int, reason: str) -> None:
        super().__init__(reason)
        self.received = received
        self.reason = reason


def default_cache_dir() -> Path:
    """Return ``$NOTMNIST_CACHE`` if set and not empty, else ``~/.cache/notmnist``."""
    value = os.environ.get(CACHE_ENV_VAR, "")
    if value:
        return Path(value).expanduser()
    return Path.home() / ".cache" / "notmnist"


# Verification


def compute_sha256(path: Path) -> str:
    """Return the sha256 of the file at ``path`` as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def _read_record(path: Path, stat: os.stat_result) -> str | None:
    """Return the stored sha256 of ``path`` if its record matches ``stat``."""
    try:
        record = json.loads(_record_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.info("Ignoring unreadable record %s: %s", _record_path(path), error)
        return None
    if not isinstance(record, dict):
        return None
    key_matches = (
        record.get("path") == str(path.resolve())
        and record.get("size") == stat.st_size
        and record.get("mtime_ns") == stat.st_mtime_ns
    )
    digest = record.get("sha256")
    if not key_matches or not isinstance(digest, str):
        return None
    return digest if re.fullmatch("[0-9a-f]{64}", digest) else None


def _write_record(path: Path, stat: os.stat_result, digest: str) -> None:
    """Store ``digest`` for ``path`` as it was at ``stat``, replacing the record
    atomically. A folder that cannot be written only costs a re-hash next time."""
    record = {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": digest,
    }
    record_path = _record_path(path)
    temporary: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            "w",
            encoding="utf-8",
            dir=path.parent,
            prefix=record_path.name,
            suffix=".tmp",
            delete=False,
        ) as file:
            temporary = Path(file.name)
            json.dump(record, file)
        os.replace(temporary, record_path)
    except OSError as error:
        logger.info(
            "Could not store the sha256 of %s in %s (%s), so it will be hashed "
            "again next time.",
            path,
            record_path,
            error,
        )
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """Return the sha256 of ``path``, from its record when the path, size and
    mtime_ns still match, else computed and recorded."""
    path = Path(path)
    stat = path.stat()
    digest = _read_record(path, stat)
    if digest is None:
        digest = compute_sha256(path)
        if path.stat().st_mtime_ns == stat.st_mtime_ns:
            _write_record(path, stat, digest)
    return digest


def _find_mismatch(
    path: Path, tarball: Tarball, use_record: bool
) -> tuple[str, int | str, int | str] | None:
    """Return (field, expected, actual) for the first of size and sha256 in which
    ``path`` differs from ``tarball``, or None when both match."""
    stat = path.stat()
    if stat.st_size != tarball.num_bytes:
        return ("size", tarball.num_bytes, stat.st_size)

    digest = _read_record(path, stat) if use_record else None
    if digest is None:
        digest = compute_sha256(path)
        # A file rewritten while it was hashed keeps no record.
        if use_record and path.stat().st_mtime_ns == stat.st_mtime_ns:
            _write_record(path, stat, digest)
    if digest != tarball.sha256:
        return ("sha256", tarball.sha256, digest)
    return None


def _describe_mismatch(field: str, expected: int | str, actual: int | str) -> str:
    if field == "size":
        return f"size is {actual} bytes, expected {expected}"
    return f"sha256 is {actual}, expected {expected}"


def verify_file(path: Path, tarball: Tarball) -> None:
    """Raise VerificationError unless ``path`` has the byte size and sha256 of
    ``tarball``.

    The size is compared first because it costs one stat. The sha256 is read
    from the record beside the file when the file's path, size and mtime_ns
    match it, and is otherwise computed and recorded. Raises FileNotFoundError
    when ``path`` does not exist.
    """
    path = Path(path)
    mismatch = _find_mismatch(path, tarball, use_record=True)
    if mismatch is None:
        return
    field, expected, actual = mismatch
    raise VerificationError(
        f"{path}: {_describe_mismatch(field, expected, actual)} for "
        f"{tarball.file_name}. {LOCAL_ADVICE}",
        path=path,
        field=field,
        expected=expected,
        actual=actual,
    )


def _check_local_copy(path: Path, tarball: Tarball, verify: bool) -> None:
    if verify:
        verify_file(path, tarball)
        return
    logger.warning(
        "Using %s WITHOUT verification (--no-verify). If it differs from the "
        "published %s, every split built from it and every result will not match "
        "the published dataset.",
        path,
        tarball.file_name,
    )


# HTTP


def _mirror_url(mirror: str, file_name: str) -> str:
    scheme = urllib.parse.urlsplit(mirror).scheme
    if scheme not in ("http", "https"):
        raise ValueError(
            f"Mirror {mirror!r} is not an http or https URL. Pass base URLs such as "
            f"{MIRRORS[0]!r}."
        )
    base = mirror if mirror.endswith("/") else mirror + "/"
    return base + urllib.parse.quote(file_name)


def _describe_error(error: BaseException, timeout: float) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        error = error.reason if isinstance(error.reason, BaseException) else error
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _starts_with_gzip_magic(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def _parse_content_range(header: str | None) -> tuple[int, int | None] | None:
    """Return (first byte, total length or None for "*") from a Content-Range
    header such as "bytes 100-999/1000", or None when it has another form."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", header or "")
    if match is None:
        return None
    total = None if match[3] == "*" else int(match[3])
    return int(match[1]), total


def _parse_unsatisfied_range(header: str | None) -> int | None:
    """Return the total length from a 416 Content-Range such as "bytes */1000"."""
    match = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", header or "")
    return int(match[1]) if match else None


def _read_chunk(
    response: http.client.HTTPResponse, received: int, timeout: float
) -> bytes:
    try:
        return response.read(CHUNK_SIZE)
    except (OSError, http.client.HTTPException) as error:
        raise _InterruptedTransfer(received, _describe_error(error, timeout)) from error


def _request_once(
    url: str, part: Path, expected_size: int | None, progress: bool, timeout: float
) -> bool:
    """Extend ``part`` towards the whole file at ``url`` with one request.

    Returns True when ``part`` is complete and False when it was discarded so
    the next request starts from byte 0. Raises _MirrorError when the mirror
    cannot deliver the file and _InterruptedTransfer when the body stopped early.
    """
    offset = _file_size(part)
    if expected_size is not None and offset > expected_size:
        logger.warning(
            "%s has %d bytes, more than the %d expected. Starting again from byte 0.",
            part,
            offset,
            expected_size,
        )
        part.unlink()
        offset = 0
    if offset and not _starts_with_gzip_magic(part):
        logger.warning("%s is not the start of a gzip file. Starting again.", part)
        part.unlink()
        offset = 0
    if expected_size is not None and offset == expected_size:
        return True

    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code != 416 or not offset:
            raise _MirrorError(_describe_error(error, timeout)) from error
        total = _parse_unsatisfied_range(error.headers.get("Content-Range"))
        if total == offset:
            return True
        logger.warning(
            "%s rejected the Range request for bytes %d onwards (its file has %s "
            "bytes), so %s is not a prefix of it. Starting again from byte 0.",
            url,
            offset,
            total if total is not None else "an unknown number of",
            part,
        )
        part.unlink()
        return False
    except (OSError, http.client.HTTPException) as error:
        raise _MirrorError(_describe_error(error, timeout)) from error

    with response:
        start, total = _check_response(url, response, offset)
        _stream_body(response, part, start, total, expected_size, progress, timeout)
    return True


def _check_response(
    url: str, response: http.client.HTTPResponse, offset: int
) -> tuple[int, int | None]:
    """Return (first byte, total length or None) of a response, raising
    _MirrorError when it is labelled an HTML page or has an unexpected status or
    range."""
    content_type = response.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() == "text/html":
        raise _MirrorError(
            f"served an HTML page (Content-Type: {content_type}) instead of the "
            f"archive, with status {response.status}"
        )

    if response.status == 206:
        content_range = response.headers.get("Content-Range")
        parsed = _parse_content_range(content_range)
        if parsed is None or parsed[0] != offset:
            raise _MirrorError(
                f"returned Content-Range {content_range!r} for a Range request for "
                f"bytes {offset} onwards"
            )
        start, total = parsed
    elif response.status == 200:
        if offset:
            logger.info(
                "%s ignored the Range request for bytes %d onwards and sent the "
                "whole file, so the download starts again from byte 0.",
                url,
                offset,
            )
        start = 0
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    else:
        raise _MirrorError(
            f"unexpected HTTP status {response.status} {response.reason}"
        )

    return start, total


def _stream_body(
    response: http.client.HTTPResponse,
    part: Path,
    start: int,
    total: int | None,
    expected_size: int | None,
    progress: bool,
    timeout: float,
) -> None:
    """Write the body of ``response``, which begins at byte ``start`` of the
    file, into ``part`` at that position."""
    received = 0
    chunk = _read_chunk(response, received, timeout)
    # Check before opening the file, because opening from byte 0 truncates
    # whatever an earlier run left.
    if start == 0 and not chunk.startswith(GZIP_MAGIC):
        raise _MirrorError(
            f"sent a body that does not start with the gzip magic bytes 1f 8b, so it "
            f"is not a tar.gz archive (it starts with {chunk[:16]!r})"
        )
    # Checked after the magic bytes, so that an HTML page is reported as one.
    if expected_size is not None and total is not None and total != expected_size:
        raise _MirrorError(
            f"announced {total} bytes, expected {expected_size}",
            mismatch=("size", expected_size, total),
        )

    mode = "ab" if start else "wb"
    with (
        open(part, mode) as file,
        tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(PART_SUFFIX),
            disable=not progress,
        ) as bar,
    ):
        while chunk:
            file.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
            if expected_size is not None and start + received > expected_size:
                raise _MirrorError(
                    f"sent more than the {expected_size} bytes expected",
                    mismatch=("size", expected_size, start + received),
                )
            chunk = _read_chunk(response, received, timeout)

    if total is not None and start + received < total:
        raise _InterruptedTransfer(
            received,
            f"the connection closed after byte {start + received} of {total}",
        )


def _transfer(
    url: str, part: Path, expected_size: int | None, progress: bool, timeout: float
) -> None:
    """Bring ``part`` up to the whole file at ``url``, resuming from its current
    size and again after each interrupted attempt that received bytes."""
    for attempt in range(1, MAX_ATTEMPTS_PER_MIRROR + 1):
        try:
            if _request_once(url, part, expected_size, progress, timeout):
                return
        except _InterruptedTransfer as error:
            if error.received == 0 or attempt == MAX_ATTEMPTS_PER_MIRROR:
                raise _MirrorError(
                    f"{error.reason} (attempt {attempt} of at most "
                    f"{MAX_ATTEMPTS_PER_MIRROR})"
                ) from error
            logger.warning(
                "%s: %s. Resuming from byte %d.", url, error.reason, _file_size(part)
            )
    raise _MirrorError(f"gave up after {MAX_ATTEMPTS_PER_MIRROR} attempts")


def _try_mirror(
    url: str, part: Path, tarball: Tarball, verify: bool, progress: bool, timeout: float
) -> None:
    """Download ``url`` into ``part`` and verify the whole, raising _MirrorError
    on failure. A mismatching ``part`` is deleted."""
    resumed_from = _file_size(part)
    expected_size = tarball.num_bytes if verify else None
    logger.info(
        "Downloading %s from %s%s.",
        tarball.file_name,
        url,
        f", resuming from byte {resumed_from}" if resumed_from else "",
    )
    try:
        _transfer(url, part, expected_size, progress, timeout)
    except _MirrorError as error:
        # A size announced in the headers leaves the part as it was, which may
        # still be a good prefix for the next mirror. A body that ran past the
        # expected size leaves a part that is certainly not one.
        if error.mismatch is not None and _file_size(part) > tarball.num_bytes:
            part.unlink()
        raise
    if not verify:
        return

    mismatch = _find_mismatch(part, tarball, use_record=False)
    if mismatch is None:
        return
    part.unlink()
    if resumed_from:
        # The prefix that an earlier run left may be stale, so download the
        # whole file once more before counting this mirror as failed.
        logger.warning(
            "%s, resumed from byte %d, failed verification (%s). Downloading it "
            "again from byte 0.",
            part,
            resumed_from,
            _describe_mismatch(*mismatch),
        )
        _try_mirror(url, part, tarball, verify, progress, timeout)
        return
    raise _MirrorError(_describe_mismatch(*mismatch), mismatch=mismatch)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an advisory lock on ``path`` so that two processes sharing a cache
    do not write the same ``.part`` file."""
    if fcntl is None:
        # NOTE: without flock, concurrent downloads into one cache can collide.
        yield
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("Waiting for %s, locked by another download.", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(
    tarball: Tarball,
    target: Path,
    mirrors: Sequence[str],
    verify: bool,
    progress: bool,
    timeout: float,
) -> None:
    part = target.with_name(target.name + PART_SUFFIX)
    urls = [_mirror_url(mirror, tarball.file_name) for mirror in mirrors]
    failures: list[tuple[str, str]] = []
    last_mismatch: tuple[str, int | str, int | str] | None = None
    for index, url in enumerate(urls):
        try:
            _try_mirror(url, part, tarball, verify, progress, timeout)
        except _MirrorError as error:
            failures.append((url, error.reason))
            last_mismatch = error.mismatch or last_mismatch
            next_step = (
                "Trying the next mirror" if index + 1 < len(urls) else "No mirrors left"
            )
            logger.warning("Mirror failed: %s: %s. %s.", url, error.reason, next_step)
            continue

        os.replace(part, target)
        if verify:
            _write_record(target, target.stat(), tarball.sha256)
        else:
            _check_local_copy(target, tarball, verify=False)
        logger.info("Saved %s from %s.", target, url)
        return

    if last_mismatch is None:
        raise DownloadError(tarball.file_name, failures)
    field, expected, actual = last_mismatch
    heading = (
        f"{target}: no mirror served a copy of {tarball.file_name} that passed "
        "verification:"
    )
    lines = [heading]
    lines += [f"  {url}: {reason}" for url, reason in failures]
    lines.append(DOWNLOAD_ADVICE)
    raise VerificationError(
        "\n".join(lines),
        path=target,
        field=field,
        expected=expected,
        actual=actual,
        failures=failures,
    )


def fetch_tarball(
    tarball: Tarball,
    cache_dir: Path | None = None,
    mirrors: Sequence[str] = MIRRORS,
    verify: bool = True,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Return the path of ``tarball`` in ``cache_dir``, downloading it if missing.

    ``cache_dir`` defaults to default_cache_dir(). ``mirrors`` are http(s) base
    URLs, tried in order, to which the file name is appended. ``timeout`` is
    the number of seconds to wait to connect and for each read. With ``verify``,
    a cached or downloaded file must match the byte size and sha256 of
    ``tarball``. Without it, any gzip body is accepted and a warning is logged.

    Raises VerificationError when the cached file fails verification, which is
    left in place, or when no mirror served a copy that passed, with nothing
    saved. Raises DownloadError when every mirror failed for other reasons, and
    ValueError when ``mirrors`` is empty or a mirror is not an http(s) URL.
    """
    if not mirrors:
        raise ValueError(
            f"No mirrors given for {tarball.file_name}. Pass at least one base URL."
        )
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / tarball.file_name
    if target.exists():
        _check_local_copy(target, tarball, verify)
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.with_name(target.name + LOCK_SUFFIX)):
        # Another process may have finished the download while this one waited.
        if target.exists():
            _check_local_copy(target, tarball, verify)
            return target
        _download(tarball, target, mirrors, verify, progress, timeout)
    return target


def fetch_tarballs(
    tarballs: Sequence[Tarball],
    cache_dir: Path | None = None,
    mirrors: Sequence[str] = MIRRORS,
    verify: bool = True,
    progress: bool = True,
    timeout: float = 60.0,
) -> dict[str, Path]:
    """Fetch each tarball as fetch_tarball() does and return the paths keyed by
    Tarball.name."""
    return {
        tarball.name: fetch_tarball(
            tarball, cache_dir, mirrors, verify, progress, timeout
        )
        for tarball in tarballs
    }


def locate_tarballs(
    data_dir: Path, tarballs: Sequence[Tarball], verify: bool = True
) -> dict[str, Path]:
    """Return the paths of ``tarballs`` in ``data_dir``, keyed by Tarball.name.

    Each file must be named Tarball.file_name. With ``verify`` it must match the
    byte size and sha256 (VerificationError otherwise). Without it, a warning
    that results will not match the published dataset is logged for each file.
    Raises FileNotFoundError naming every missing file and how to get it.
    """
    data_dir = Path(data_dir)
    paths = {tarball.name: data_dir / tarball.file_name for tarball in tarballs}
    missing = [tarball for tarball in tarballs if not paths[tarball.name].is_file()]
    if missing:
        listed = ", ".join(str(paths[tarball.name]) for tarball in missing)
        sources = ", ".join(
            _mirror_url(MIRRORS[0], tarball.file_name) for tarball in missing
        )
        raise FileNotFoundError(
            f"Not found: {listed}. Download {sources} into {data_dir}, or leave out "
            f"--data-dir to download into the cache folder {default_cache_dir()}."
        )
    for tarball in tarballs:
        _check_local_copy(paths[tarball.name], tarball, verify)
    return paths
