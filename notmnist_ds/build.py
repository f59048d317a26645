"""``notmnist build``: archives in, a dataset folder and a cache entry out.

Phases: get and verify the archives, prepare the splits (read, split,
deduplicate, sanitize), run the dataset builder for each config, write Parquet
shards, reports, pictures and the dataset card into a staging folder, then
swap it into place. The builder's Arrow output also goes into the ``datasets``
cache under the name ``notmnist``, so ``load_dataset("notmnist")`` works from
any folder, offline. Each config's cache entry is named by a fingerprint of
the archives, the options and the package version, so changing any of them
never reuses an old result.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from . import __version__
from .atomic import (
    OutputFolderError,
    check_replaceable,
    disk_full_reported,
    recover,
    remove_abandoned,
    staging_path,
    swap_into_place,
)
from .constants import LARGE, SMALL, SPLIT_NAMES
from .download import fetch_tarballs, file_sha256, locate_tarballs
from .export import DEFAULT_MAX_SHARD_BYTES, fsync_tree, write_split
from .pipeline import CONFIG_NAMES, BuildOptions, Prepared, prepare
from .reports import write_reports

logger = logging.getLogger(__name__)

DATASET_NAME = "notmnist"


@dataclass
class BuildResult:
    """The output folder of a build, its rows per split and its timings."""

    output: Path
    fingerprint: str
    prepared: Prepared
    split_sizes: dict[str, dict[str, int]]
    shards: dict[str, list[str]]
    seconds: dict[str, float] = field(default_factory=dict)


def cache_hash(fingerprint: str, config: str) -> str:
    """Name of a config's cache folder; configs differ so the bare name can
    tell them apart, and the newest entry is the one ``load_dataset`` picks."""
    return hashlib.sha256(f"{fingerprint}/{config}".encode()).hexdigest()[:16]


@dataclass
class CacheEntry:
    """A config's Arrow files: built under a staging folder, then published."""

    staged: Path | None  # None when the final entry already exists
    final: Path
    dataset: datasets.DatasetDict
    replaces_damaged: bool = False  # the final entry exists but could not be read


def stage_cache_entry(
    prepared: Prepared, config: str, cache_dir: Path, staging_cache: Path
) -> CacheEntry:
    """Run the builder for ``config`` into ``staging_cache``; return its dataset.

    An entry with the same fingerprint already in the cache was built from the
    same archives and options, so it is read instead of built again. An entry
    that cannot be read (a file deleted from the cache, say) is built again
    and replaces it when the build is published.
    """
    from loading_script import Notmnist

    hash_name = cache_hash(prepared.fingerprint, config)
    final = cache_dir / DATASET_NAME / config / str(Notmnist.VERSION) / hash_name
    damaged = False
    if final.is_dir():
        builder = Notmnist(config_name=config, hash=hash_name, cache_dir=str(cache_dir))
        try:
            return CacheEntry(None, final, builder.as_dataset())
        except OSError as error:
            logger.warning(
                "The cache entry %s cannot be read (%s); building it again", final, error
            )
            damaged = True
    builder = Notmnist(
        config_name=config,
        hash=hash_name,
        cache_dir=str(staging_cache),
        prepared=prepared,
    )
    builder.download_and_prepare()
    return CacheEntry(Path(builder.cache_dir), final, builder.as_dataset(), damaged)


def publish_cache_entries(entries: list[CacheEntry]) -> None:
    """Move staged entries into the ``datasets`` cache, one rename each, and
    mark them newest in list order, since the newest entry is what
    ``load_dataset("notmnist")`` loads."""
    # File times are coarse (a few ms), so the order is set explicitly.
    now = time.time_ns()
    for position, entry in enumerate(entries):
        if entry.staged is not None and entry.replaces_damaged and entry.final.is_dir():
            damaged = entry.final.with_name(f".{entry.final.name}-damaged-{os.getpid()}")
            os.rename(entry.final, damaged)
            shutil.rmtree(damaged, ignore_errors=True)
        if entry.staged is not None and not entry.final.is_dir():
            entry.final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(entry.staged, entry.final)
        stamp = now - (len(entries) - 1 - position) * 1_000_000_000
        os.utime(entry.final, ns=(stamp, stamp))


def make_folder(folder: Path, option: str) -> None:
    """Create ``folder``, or raise OutputFolderError naming it and ``option``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputFolderError(
            f"cannot create {folder} ({error.strerror}); choose a writable {option}"
        ) from error


def resolve_tarballs(data_dir: Path | None, verify: bool, progress: bool) -> dict[str, Path]:
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise FileNotFoundError(
                f"--data-dir {data_dir} is not a folder; give the folder that contains "
                f"{LARGE.file_name} and {SMALL.file_name}"
            )
        return locate_tarballs(Path(data_dir), (LARGE, SMALL), verify=verify)
    return fetch_tarballs((LARGE, SMALL), verify=verify, progress=progress)


class InterruptedAfterSwap(KeyboardInterrupt):
    """Ctrl-C that arrived while the new build was put in place, which then finished."""

    def __init__(self, output: Path) -> None:
        super().__init__(str(output))
        self.output = output


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block ends, then raise KeyboardInterrupt.

    Blocking the signal with pthread_sigmask is not enough, because another
    thread of the process may receive it and Python then interrupts the main
    thread anyway. Outside the main thread the block runs unprotected, since
    only the main thread may set signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous):
            previous(signal.SIGINT, None)
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def build(
    output: Path,
    options: BuildOptions,
    data_dir: Path | None = None,
    verify: bool = True,
    workers: int = 2,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> BuildResult:
    """Build both configs into ``output``; an earlier build there stays intact
    until the new one is complete."""
    started_build = time.perf_counter()
    output = Path(output).absolute()
    if output.is_symlink():
        # The swap renames the output path itself, so it works on the folder
        # the link points to, and the link stays as it is.
        output = Path(os.path.realpath(output))
    cache_dir = Path(cache_dir or datasets.config.HF_DATASETS_CACHE).absolute()
    recover(output)
    remove_abandoned(cache_dir, f".{DATASET_NAME}-staging-")
    check_replaceable(output)

    # Both folders are made before the archives are read, so an output or a
    # cache that cannot be written fails in a second, not after minutes.
    staging = staging_path(output)
    staging_cache = cache_dir / f".{DATASET_NAME}-staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    make_folder(staging, "--output")
    try:
        make_folder(staging_cache, "--cache-dir")

        started = time.perf_counter()
        paths = resolve_tarballs(data_dir, verify, progress)
        digests = {name: file_sha256(path) for name, path in paths.items()}
        fetch_seconds = time.perf_counter() - started

        prepared = prepare(paths, digests, options, workers=workers, progress=progress)
        prepared.timer.seconds = {
            "fetch and verify": round(fetch_seconds, 3),
            **prepared.timer.seconds,
        }

        started = time.perf_counter()
        shards: dict[str, list[str]] = {}
        split_sizes: dict[str, dict[str, int]] = {}
        split_bytes: dict[str, dict[str, int]] = {}
        entries: list[CacheEntry] = []
        # Sanitized goes last: its cache entry is then the newest, the default.
        for config in ("raw", "sanitized"):
            with disk_full_reported(cache_dir, "--cache-dir"):
                entry = stage_cache_entry(prepared, config, cache_dir, staging_cache)
            entries.append(entry)
            dataset = entry.dataset
            split_sizes[config] = {}
            split_bytes[config] = {}
            for split in SPLIT_NAMES:
                table = dataset[split].data.table
                with disk_full_reported(output, "--output"):
                    written = write_split(
                        table,
                        dataset[split].features,
                        staging / config,
                        split,
                        max_shard_bytes,
                    )
                shards.setdefault(config, []).extend(
                    str(path.relative_to(staging)) for path in written
                )
                split_sizes[config][split] = dataset[split].num_rows
                split_bytes[config][split] = dataset[split].data.nbytes
            logger.info(
                "Config %s: %s rows",
                config,
                ", ".join(f"{n:,} {split}" for split, n in split_sizes[config].items()),
            )
        prepared.timer.record("write parquet", started)

        started = time.perf_counter()
        write_reports(staging, prepared, paths, split_sizes, split_bytes, shards)
        prepared.timer.record("reports and card", started)

        fsync_tree(staging)
        # The cache entries follow the output folder, so a build killed
        # before the swap leaves both the folder and the bare name as they were.
        # Ctrl-C waits for the swap and the cache entries, so the folder and
        # the bare name never disagree, and the caller learns which build won.
        try:
            with interrupts_deferred():
                swap_into_place(
                    staging, output, after_swap=lambda: publish_cache_entries(entries)
                )
        except KeyboardInterrupt as interrupt:
            raise InterruptedAfterSwap(output) from interrupt
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(staging_cache, ignore_errors=True)

    seconds = dict(prepared.timer.seconds)
    seconds["total"] = round(time.perf_counter() - started_build, 3)
    logger.info(
        "Built %s in %.1f s (notmnist-ds %s, fingerprint %s)",
        output,
        seconds["total"],
        __version__,
        prepared.fingerprint,
    )
    return BuildResult(output, prepared.fingerprint, prepared, split_sizes, shards, seconds)


__all__ = ["BuildResult", "build", "CONFIG_NAMES", "BuildOptions", "InterruptedAfterSwap"]
