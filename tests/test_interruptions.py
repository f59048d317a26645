"""Builds killed or interrupted in each phase, and builds that run out of disk.

One earlier build is made first. Each scenario copies its output folder and
datasets cache, then starts a new build over them (other seed and sizes) in a
fresh process. It stops that build when the phase under test leaves a visible
mark:

- reading: decoding workers appear;
- builder and cache: the staging cache folder appears;
- export: a Parquet shard appears in the staging folder;
- swap: the output path turns into the new folder.

After the stop the earlier build must be intact and loadable, from the folder
and by name from the cache, and the same command run again must finish without
any manual clean-up.

The scenarios run side by side in threads to keep the wall time down; each
has its own folders and its own process group. Loading runs in the pytest
process with ``cache_dir`` pointed at the scenario's cache and the offline
switches of ``datasets`` and ``huggingface_hub`` turned on, which is what
HF_DATASETS_CACHE and HF_HUB_OFFLINE set in a fresh process.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import huggingface_hub
import pyarrow.parquet as pq
import pytest
from broken_inputs import write_small_tarballs
from datasets.exceptions import DatasetGenerationError

from notmnist_ds.atomic import (
    DiskFullError,
    backup_path,
    disk_full_reported,
    explain_disk_full,
    find_disk_full,
    recover,
    remove_abandoned,
)
from notmnist_ds.build import build
from notmnist_ds.constants import SPLIT_NAMES
from notmnist_ds.pipeline import BuildOptions

# Glyphs a letter in the archives these tests build: fewer than the sample
# tarballs hold, because every build here reads both archives whole.
LARGE_PER_LETTER = 200
SMALL_PER_LETTER = 60
PREVIOUS_OPTIONS = BuildOptions(train_size=500, validation_size=100, test_size=100)
PREVIOUS_ARGS = ["--train-size", "500", "--valid-size", "100", "--test-size", "100"]
# Larger splits than the earlier build, so each later phase lasts long enough
# to be stopped inside; the other seed gives another fingerprint.
NEXT_ARGS = [
    "--train-size",
    "1800",
    "--valid-size",
    "200",
    "--test-size",
    "500",
    "--seed",
    "1",
]
STAGING_CACHE_PREFIX = ".notmnist-staging-"
TRIGGER_TIMEOUT = 180  # seconds for a phase to start on a loaded machine
PROCESS_TIMEOUT = 300
POLL_SECONDS = 0.002
# Files the swap scenario adds to the earlier build, so that deleting it after
# the exchange takes long enough to be killed inside.
SWAP_EXTRA_FILES = 20_000

LIMITED_LAUNCHER = """
import os, resource, signal, sys
limit = int(sys.argv[1])
# Ignored, so that a write past the limit fails with EFBIG instead of
# killing the process.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
os.execv(sys.executable, [sys.executable, "-m", "notmnist_ds.cli", *sys.argv[2:]])
"""


def clean_environment(root: Path) -> dict[str, str]:
    """Environment of a child: its own datasets cache and home, offline."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environment.update(
        HF_DATASETS_CACHE=str(root / "cache"),
        HF_HOME=str(root / "hf-home"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        # Any request that slipped past offline mode would hit a closed local port.
        HF_ENDPOINT="http://127.0.0.1:9",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        no_proxy="127.0.0.1",
    )
    return environment


def build_arguments(
    tarballs: Path, output: Path, sizes: list[str], workers: int
) -> list:
    return [
        "-q",
        "build",
        "--data-dir",
        str(tarballs),
        "--no-verify",
        "--output",
        str(output),
        *sizes,
        "--workers",
        str(workers),
    ]


def tree_digest(folder: Path) -> dict[str, str]:
    """Return the sha256 of every file under ``folder`` by relative path."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def cache_entries(cache: Path) -> dict[str, dict[str, str]]:
    """Return the digest of each finished cache entry ``notmnist/<config>/<v>/<hash>``."""
    return {
        entry.relative_to(cache).as_posix(): tree_digest(entry)
        for entry in sorted(cache.glob("notmnist/*/*/*"))
        if entry.is_dir()
    }


def load_raw_sources(run: Run, attempt: str) -> dict[str, dict[str, list[str]]]:
    """Load the raw config from the output folder and by name from the cache.

    Returns the sources of each split of both. ``attempt`` names the folder
    that receives the Arrow files ``datasets`` makes from the Parquet shards.
    """
    with pytest.MonkeyPatch.context() as patch:
        # A folder named notmnist in the working directory would win over the cache.
        patch.chdir(run.root)
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        from_folder = datasets.load_dataset(
            str(run.output), "raw", cache_dir=str(run.root / "loads" / attempt)
        )
        from_cache = datasets.load_dataset("notmnist", "raw", cache_dir=str(run.cache))
    return {
        "folder": {split: list(from_folder[split]["source"]) for split in SPLIT_NAMES},
        "cache": {split: list(from_cache[split]["source"]) for split in SPLIT_NAMES},
    }


def raw_sources(folder: Path) -> dict[str, list[str]]:
    return {
        split: [
            source
            for shard in sorted((folder / "raw").glob(f"{split}-*.parquet"))
            for source in pq.read_table(shard, columns=["source"])["source"].to_pylist()
        ]
        for split in SPLIT_NAMES
    }


def child_pids(pid: int) -> list[int]:
    """Return the ids of the direct children of ``pid`` (Linux /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def has_exited(pid: int) -> bool:
    """True when ``pid`` is gone or a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def kill_group(process: subprocess.Popen) -> None:
    """End whatever is left of a child's process group (its id is the child's)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- the earlier build -------------------------------------------------------


@dataclass
class Previous:
    root: Path
    output: Path
    cache: Path
    digest: dict[str, str]
    entries: dict[str, dict[str, str]]
    sources: dict[str, list[str]]


@pytest.fixture(scope="module")
def tarballs(real_sample, tmp_path_factory) -> Path:
    pixels, labels = real_sample
    return write_small_tarballs(
        pixels,
        labels,
        tmp_path_factory.mktemp("tarballs"),
        LARGE_PER_LETTER,
        SMALL_PER_LETTER,
    )


@pytest.fixture(scope="module")
def previous(tarballs, tmp_path_factory) -> Previous:
    root = tmp_path_factory.mktemp("previous")
    output, cache = root / "out", root / "cache"
    build(
        output,
        PREVIOUS_OPTIONS,
        data_dir=tarballs,
        verify=False,
        workers=1,
        cache_dir=cache,
        progress=False,
    )
    return Previous(
        root,
        output,
        cache,
        tree_digest(output),
        cache_entries(cache),
        raw_sources(output),
    )


# -- stopping a build ----------------------------------------------------------


@dataclass
class Run:
    """One scenario's folders, process and what was seen when it was stopped."""

    root: Path
    output: Path
    cache: Path
    process: subprocess.Popen | None = None
    trigger_seen: bool = False
    workers_at_stop: list[int] = field(default_factory=list)
    staging_before_stop: list[str] = field(default_factory=list)
    staging_at_stop: list[str] = field(default_factory=list)
    returncode: int | None = None
    log: str = ""
    output_digest: dict[str, str] = field(default_factory=dict)
    entries: dict[str, dict[str, str]] = field(default_factory=dict)
    leftovers_after_stop: list[str] = field(default_factory=list)
    workers_exited: bool = False
    loaded_after_stop: dict = field(default_factory=dict)
    rebuild: subprocess.CompletedProcess | None = None
    loaded_after_rebuild: dict = field(default_factory=dict)
    leftovers_after_rebuild: list[str] = field(default_factory=list)


def staging_names(run: Run) -> list[str]:
    names = [p.name for p in run.output.parent.glob(f".{run.output.name}.*")]
    names += [p.name for p in run.cache.glob(STAGING_CACHE_PREFIX + "*")]
    return sorted(names)


def reading_started(run: Run) -> bool:
    """True once a decoding worker runs: read_archive starts them on its first chunk."""
    for pid in child_pids(run.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            return True
    return False


def builder_started(run: Run) -> bool:
    return (run.cache / f"{STAGING_CACHE_PREFIX}{run.process.pid}").exists()


def export_started(run: Run) -> bool:
    staging = run.output.parent / f".{run.output.name}.building-{run.process.pid}"
    return any((staging / "raw").glob("*.parquet"))


def make_swap_trigger(run: Run) -> Callable[[Run], bool]:
    """Return a trigger that fires once the output path names another folder."""
    inode = run.output.stat().st_ino

    def swapped(current: Run) -> bool:
        try:
            return current.output.stat().st_ino != inode
        except FileNotFoundError:
            return True  # between the two renames of the fallback swap

    return swapped


@dataclass(frozen=True)
class Scenario:
    name: str
    stop_signal: int
    trigger: str  # reading, builder, export or swap
    workers: int = 1
    whole_group: bool = False  # Ctrl-C in a terminal signals the whole group


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("kill-reading", signal.SIGKILL, "reading", workers=2),
        Scenario("kill-builder", signal.SIGKILL, "builder"),
        Scenario("kill-export", signal.SIGKILL, "export"),
        Scenario("kill-swap", signal.SIGKILL, "swap"),
        Scenario("ctrl-c-builder", signal.SIGINT, "builder", whole_group=True),
    )
}
LEAVE_LEFTOVERS = ["kill-reading", "kill-builder", "kill-export", "kill-swap"]


def copy_previous(previous: Previous, root: Path) -> Run:
    root.mkdir(parents=True)
    shutil.copytree(previous.output, root / "out")
    shutil.copytree(previous.cache, root / "cache")
    return Run(root, root / "out", root / "cache")


def stop_build(scenario: Scenario, run: Run, tarballs: Path) -> None:
    if scenario.trigger == "swap":
        # Shards of a make-believe earlier build: many files, so deleting the
        # old folder after the exchange takes long enough to kill inside it.
        extra = run.output / "raw"
        first = extra / f"test-00000-of-{SWAP_EXTRA_FILES:05d}.parquet"
        first.write_text("x")
        for k in range(1, SWAP_EXTRA_FILES):
            os.link(first, extra / f"test-{k:05d}-of-{SWAP_EXTRA_FILES:05d}.parquet")
    triggers = {
        "reading": reading_started,
        "builder": builder_started,
        "export": export_started,
        "swap": make_swap_trigger(run),
    }
    trigger = triggers[scenario.trigger]
    arguments = build_arguments(tarballs, run.output, NEXT_ARGS, scenario.workers)
    with open(run.root / "build.log", "wb") as log:
        run.process = subprocess.Popen(
            [sys.executable, "-m", "notmnist_ds.cli", *arguments],
            env=clean_environment(run.root),
            cwd=run.root,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + TRIGGER_TIMEOUT
        while time.monotonic() < deadline and run.process.poll() is None:
            if trigger(run):
                run.trigger_seen = True
                break
            time.sleep(POLL_SECONDS)
        if run.trigger_seen:
            run.workers_at_stop = child_pids(run.process.pid)
            run.staging_before_stop = staging_names(run)
            if scenario.whole_group:
                os.killpg(run.process.pid, scenario.stop_signal)
            else:
                os.kill(run.process.pid, scenario.stop_signal)
            run.staging_at_stop = staging_names(run)
        run.returncode = run.process.wait(timeout=PROCESS_TIMEOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run.workers_exited = all(has_exited(pid) for pid in run.workers_at_stop)
            if run.workers_exited:
                break
            time.sleep(0.05)
    finally:
        kill_group(run.process)
    run.log = (run.root / "build.log").read_text(errors="replace")
    if run.output.exists():
        run.output_digest = tree_digest(run.output)
    run.entries = cache_entries(run.cache)
    run.leftovers_after_stop = staging_names(run)


def rebuild(run: Run, tarballs: Path) -> None:
    """Run the stopped build's command again, as a user would."""
    arguments = build_arguments(tarballs, run.output, NEXT_ARGS, workers=1)
    run.rebuild = subprocess.run(
        [sys.executable, "-m", "notmnist_ds.cli", *arguments],
        env=clean_environment(run.root),
        cwd=run.root,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    run.leftovers_after_rebuild = staging_names(run)


# -- a full disk: a file-size limit set in the child ----------------------------------

FILE_SIZE_LIMIT = 100_000  # bytes: below any Parquet shard or Arrow file here
# The first repeats the earlier build, whose Arrow files are in the cache, so
# it fails writing Parquet. The second fails writing Arrow files to the cache.
DISK_FULL_ARGS = {"output": PREVIOUS_ARGS, "cache": NEXT_ARGS}


def run_limited(run: Run, tarballs: Path, sizes: list) -> subprocess.CompletedProcess:
    arguments = build_arguments(tarballs, run.output, sizes, workers=1)
    return subprocess.run(
        [sys.executable, "-c", LIMITED_LAUNCHER, str(FILE_SIZE_LIMIT), *arguments],
        env=clean_environment(run.root),
        cwd=run.root,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


# -- running every scenario --------------------------------------------------------


@pytest.fixture(scope="module")
def trials(previous, tarballs, tmp_path_factory) -> dict:
    """Every scenario stopped, loaded, run again and loaded again, and the
    builds under a file-size limit, all started side by side."""
    base = tmp_path_factory.mktemp("trials")

    def stop(scenario: Scenario) -> Run:
        run = copy_previous(previous, base / scenario.name)
        stop_build(scenario, run, tarballs)
        return run

    def fill(name: str) -> tuple[Run, subprocess.CompletedProcess]:
        run = copy_previous(previous, base / f"disk-full-{name}")
        return run, run_limited(run, tarballs, DISK_FULL_ARGS[name])

    with ThreadPoolExecutor(len(SCENARIOS) + len(DISK_FULL_ARGS)) as pool:
        filled = {name: pool.submit(fill, name) for name in DISK_FULL_ARGS}
        runs = dict(zip(SCENARIOS, pool.map(stop, SCENARIOS.values())))
        disk_full = {name: future.result() for name, future in filled.items()}
    for run in runs.values():
        run.loaded_after_stop = load_raw_sources(run, "after-stop")

    # Only these scenarios leave something behind to clean up. After the
    # others the folders are byte for byte the earlier build (tested below),
    # so running again there is an ordinary build.
    again = [runs[name] for name in LEAVE_LEFTOVERS]
    with ThreadPoolExecutor(len(again)) as pool:
        list(pool.map(lambda run: rebuild(run, tarballs), again))
    for run in again:
        if run.rebuild.returncode == 0:
            run.loaded_after_rebuild = load_raw_sources(run, "after-rebuild")
    return {"stopped": runs, "disk_full": disk_full}


@pytest.fixture(scope="module")
def stopped(trials) -> dict[str, Run]:
    return trials["stopped"]


@pytest.fixture(scope="module")
def disk_full(trials) -> dict[str, tuple[Run, subprocess.CompletedProcess]]:
    """Two builds under a file-size limit: one whose Arrow files are already in
    the cache, so the Parquet export fails, and one that fails in the cache."""
    return trials["disk_full"]


NOT_SWAPPED = [name for name, s in SCENARIOS.items() if s.trigger != "swap"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_stop_lands_in_its_phase(stopped, name):
    run = stopped[name]
    trigger = SCENARIOS[name].trigger
    assert run.trigger_seen, run.log
    pid = run.process.pid
    # After SIGKILL the folders show the state the process died in; SIGINT
    # lets it clean up, so the state just before the signal is checked.
    killed = SCENARIOS[name].stop_signal == signal.SIGKILL
    state = run.staging_at_stop if killed else run.staging_before_stop
    if trigger == "reading":
        # The staging folders are made before reading, to fail fast on an
        # output or cache that cannot be written.
        assert f".out.building-{pid}" in state
        assert f"{STAGING_CACHE_PREFIX}{pid}" in state
        assert run.workers_at_stop
    if trigger == "builder":
        assert f"{STAGING_CACHE_PREFIX}{pid}" in state
    if trigger == "export":
        assert f".out.building-{pid}" in state
    if trigger == "swap":
        # The old build is still being deleted under the staging name.
        assert f".out.building-{pid}" in state


@pytest.mark.parametrize("name", SCENARIOS)
def test_stopped_build_exit_status(stopped, name):
    run = stopped[name]
    if SCENARIOS[name].stop_signal == signal.SIGKILL:
        assert run.returncode == -signal.SIGKILL
    else:
        assert run.returncode == 130, run.log


def test_ctrl_c_prints_message_and_cleans_up(stopped):
    run = stopped["ctrl-c-builder"]
    assert "interrupted; earlier output was left as it was" in run.log
    assert "Traceback" not in run.log
    assert run.leftovers_after_stop == []


def test_kill_during_reading_ends_workers(stopped):
    run = stopped["kill-reading"]
    assert len(run.workers_at_stop) >= 2  # the resource tracker and a worker
    assert run.workers_exited


@pytest.mark.parametrize("name", NOT_SWAPPED)
def test_stopped_build_leaves_output_intact(stopped, previous, name):
    assert stopped[name].output_digest == previous.digest


def test_kill_after_exchange_leaves_new_build_whole(stopped):
    run = stopped["kill-swap"]
    report = json.loads(
        (run.output / "reports" / "build_report.json").read_text(encoding="utf-8")
    )
    shards = [
        shard for config in report["configs"].values() for shard in config["shards"]
    ]
    assert report["options"]["seed"] == 1
    assert all((run.output / shard).is_file() for shard in shards)
    assert not (run.output / "raw" / f"test-00000-of-{SWAP_EXTRA_FILES:05d}.parquet").exists()


@pytest.mark.parametrize("name", SCENARIOS)
def test_stopped_build_keeps_cache_entries(stopped, previous, name):
    entries = stopped[name].entries
    for entry, digest in previous.entries.items():
        assert entries[entry] == digest


@pytest.mark.parametrize("name", NOT_SWAPPED)
def test_folder_loads_earlier_build_after_stop(stopped, previous, name):
    assert stopped[name].loaded_after_stop["folder"] == previous.sources


@pytest.mark.parametrize("name", ["kill-reading", "ctrl-c-builder"])
def test_cache_loads_earlier_build_after_stop(stopped, previous, name):
    assert stopped[name].loaded_after_stop["cache"] == previous.sources


@pytest.mark.parametrize("name", ["kill-builder", "kill-export"])
def test_cache_loads_a_whole_build_after_stop(stopped, previous, name):
    # The stopped build may have moved a finished entry into the cache before
    # it was killed. The name then loads that entry, whole, and never a mixture.
    run = stopped[name]
    loaded = run.loaded_after_stop["cache"]
    assert loaded in (previous.sources, run.loaded_after_rebuild["folder"])


def test_cache_and_folder_agree_after_kill_in_swap(stopped):
    loaded = stopped["kill-swap"].loaded_after_stop
    assert loaded["folder"] == loaded["cache"]
    assert [len(loaded["folder"][split]) for split in SPLIT_NAMES] == [1800, 200, 500]


@pytest.mark.parametrize("name", ["ctrl-c-builder"])
def test_stop_leaves_nothing_to_clean(stopped, previous, name):
    run = stopped[name]
    assert run.leftovers_after_stop == []
    assert run.entries == previous.entries


@pytest.mark.parametrize("name", LEAVE_LEFTOVERS)
def test_stop_leaves_staging_behind(stopped, name):
    assert stopped[name].leftovers_after_stop != []


@pytest.mark.parametrize("name", LEAVE_LEFTOVERS)
def test_next_run_completes_without_clean_up(stopped, name):
    run = stopped[name]
    assert run.rebuild.returncode == 0, run.rebuild.stderr
    assert run.leftovers_after_rebuild == []


@pytest.mark.parametrize("name", LEAVE_LEFTOVERS)
def test_next_run_loads_new_build(stopped, name):
    loaded = stopped[name].loaded_after_rebuild
    assert loaded["folder"] == loaded["cache"]
    assert [len(loaded["folder"][split]) for split in SPLIT_NAMES] == [1800, 200, 500]


def test_next_runs_agree_across_scenarios(stopped):
    results = [stopped[name].loaded_after_rebuild["folder"] for name in LEAVE_LEFTOVERS]
    assert all(result == results[0] for result in results)


# -- a full disk ---------------------------------------------------------------


def test_disk_full_on_output_names_output(disk_full):
    run, result = disk_full["output"]
    message = result.stderr
    assert result.returncode == 1
    assert f"could not write to {run.output}:" in message
    assert "file-size limit" in message
    assert "--output" in message
    assert "Traceback" not in message


def test_disk_full_on_cache_names_cache(disk_full):
    run, result = disk_full["cache"]
    message = result.stderr
    assert result.returncode == 1
    assert f"could not write to {run.cache}:" in message
    assert "--cache-dir" in message
    assert "Traceback" not in message


@pytest.mark.parametrize("name", ["output", "cache"])
def test_disk_full_leaves_earlier_build(disk_full, previous, name):
    run, _ = disk_full[name]
    assert tree_digest(run.output) == previous.digest
    assert cache_entries(run.cache) == previous.entries
    assert staging_names(run) == []


# -- the same, one step at a time -----------------------------------------------


def test_recover_restores_output_between_two_renames(previous, tmp_path):
    # Where renameat2 is missing, the swap renames the old build away first;
    # a kill right then leaves only the backup.
    run = copy_previous(previous, tmp_path / "run")
    os.rename(run.output, backup_path(run.output))
    recover(run.output)
    assert tree_digest(run.output) == previous.digest
    assert not backup_path(run.output).exists()


def test_recover_drops_backup_after_second_rename(previous, tmp_path):
    run = copy_previous(previous, tmp_path / "run")
    shutil.copytree(run.output, backup_path(run.output))
    (backup_path(run.output) / "README.md").unlink()  # deletion had started
    recover(run.output)
    assert tree_digest(run.output) == previous.digest
    assert not backup_path(run.output).exists()


def test_remove_abandoned_keeps_live_process_folder(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(finished.stdout)
    live = tmp_path / f"{STAGING_CACHE_PREFIX}{os.getpid()}"
    dead = tmp_path / f"{STAGING_CACHE_PREFIX}{dead_pid}"
    other = tmp_path / "notmnist"
    for folder in (live, dead, other):
        folder.mkdir()
    remove_abandoned(tmp_path, STAGING_CACHE_PREFIX)
    assert live.is_dir()
    assert not dead.exists()
    assert other.is_dir()


@pytest.mark.parametrize(
    "code, cause",
    [
        (errno.ENOSPC, "the disk is full"),
        (errno.EFBIG, "file-size limit"),
        (errno.EDQUOT, "quota"),
    ],
)
def test_disk_full_reported_names_folder_and_cause(tmp_path, code, cause):
    with (
        pytest.raises(DiskFullError) as caught,
        disk_full_reported(tmp_path, "--output"),
    ):
        raise OSError(code, os.strerror(code))
    message = str(caught.value)
    assert f"could not write to {tmp_path}:" in message
    assert cause in message
    assert "--output" in message
    assert caught.value.errno == code


def test_disk_full_found_through_wrapping_error():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/data/x.arrow")
        except OSError as error:
            raise DatasetGenerationError("An error occurred") from error
    except DatasetGenerationError as wrapped:
        found = find_disk_full(wrapped)
        message = explain_disk_full(wrapped)
    assert found is not None
    assert found.errno == errno.ENOSPC
    assert "could not write to /data/x.arrow: the disk is full" in message


def test_disk_full_reported_passes_other_errors(tmp_path):
    with pytest.raises(PermissionError), disk_full_reported(tmp_path, "--output"):
        raise PermissionError(errno.EACCES, "Permission denied")
    assert explain_disk_full(ValueError("bad")) is None
