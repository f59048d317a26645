"""Tests for downloading, resuming and verifying tarballs against local servers."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import random
import tarfile
from pathlib import Path

import pytest
from http_servers import (
    DropAfter,
    LocalServer,
    ServeBytes,
    ServeHTML,
    ServeStatus,
    Stall,
    corrupt,
    refused_url,
)

from notmnist_ds.constants import LARGE, SMALL, Tarball
from notmnist_ds.download import (
    PART_SUFFIX,
    RECORD_SUFFIX,
    DownloadError,
    VerificationError,
    default_cache_dir,
    fetch_tarball,
    fetch_tarballs,
    locate_tarballs,
    verify_file,
)

FILE_NAME = LARGE.file_name
NUM_BYTES = 300_000
DROP_AFTER = 100_000


def make_archive_bytes(num_bytes: int, seed: int) -> bytes:
    """Return ``num_bytes`` of seeded random bytes that begin with the gzip magic."""
    return b"\x1f\x8b\x08\x00" + random.Random(seed).randbytes(num_bytes - 4)


def describe(data: bytes, template: Tarball = LARGE) -> Tarball:
    """Return ``template`` with the size and sha256 of ``data``."""
    return dataclasses.replace(
        template, num_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


@pytest.fixture
def data() -> bytes:
    return make_archive_bytes(NUM_BYTES, seed=1)


@pytest.fixture
def tarball(data: bytes) -> Tarball:
    return describe(data)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    # Keep urllib from sending requests for 127.0.0.1 to a proxy.
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with LocalServer() as running:
        yield running


def fetch(tarball: Tarball, cache_dir: Path, mirrors: list[str], **options) -> Path:
    return fetch_tarball(tarball, cache_dir, mirrors=mirrors, progress=False, **options)


def test_fetch_downloads_and_verifies(server, data, tarball, tmp_path):
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data))

    path = fetch(tarball, tmp_path, [server.url("/mirror/")])

    assert path == tmp_path / FILE_NAME
    assert path.read_bytes() == data
    assert not (tmp_path / (FILE_NAME + PART_SUFFIX)).exists()
    assert len(server.requests) == 1
    assert server.requests[0].header("Range") is None


def test_fetch_records_sha256_beside_file(server, data, tarball, tmp_path):
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data))

    path = fetch(tarball, tmp_path, [server.url("/mirror/")])

    record = json.loads((tmp_path / (FILE_NAME + RECORD_SUFFIX)).read_text())
    assert record["sha256"] == tarball.sha256
    assert record["size"] == NUM_BYTES
    assert record["mtime_ns"] == path.stat().st_mtime_ns
    assert record["path"] == str(path.resolve())


def test_fetch_serves_real_sample_tarball(server, sample_tarballs, tmp_path):
    source = sample_tarballs / SMALL.file_name
    content = source.read_bytes()
    tarball = describe(content, SMALL)
    server.route(f"/mirror/{SMALL.file_name}", DropAfter(content, len(content) // 3))

    path = fetch_tarball(
        tarball, tmp_path, mirrors=[server.url("/mirror/")], progress=True
    )

    assert path.read_bytes() == content
    with tarfile.open(path, "r:gz") as archive:
        names = archive.getnames()
    assert all(name.startswith(SMALL.root + "/") for name in names)
    assert len(names) > 0


def test_fetch_resumes_after_dropped_connection(server, data, tarball, tmp_path):
    server.route(f"/mirror/{FILE_NAME}", DropAfter(data, DROP_AFTER))

    path = fetch(tarball, tmp_path, [server.url("/mirror/")])

    assert len(server.requests) == 2
    assert server.requests[0].header("Range") is None
    assert server.requests[1].header("Range") == f"bytes={DROP_AFTER}-"
    assert path.read_bytes() == data


def test_fetch_resumes_after_repeated_drops(server, data, tarball, tmp_path):
    server.route(f"/mirror/{FILE_NAME}", DropAfter(data, DROP_AFTER, times=2))

    path = fetch(tarball, tmp_path, [server.url("/mirror/")])

    ranges = [request.header("Range") for request in server.requests]
    assert ranges == [None, f"bytes={DROP_AFTER}-", f"bytes={2 * DROP_AFTER}-"]
    assert path.read_bytes() == data


def test_fetch_resumes_part_of_killed_process(server, data, tarball, tmp_path):
    (tmp_path / (FILE_NAME + PART_SUFFIX)).write_bytes(data[:DROP_AFTER])
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data))

    path = fetch(tarball, tmp_path, [server.url("/mirror/")])

    assert len(server.requests) == 1
    assert server.requests[0].header("Range") == f"bytes={DROP_AFTER}-"
    assert path.read_bytes() == data
    assert not (tmp_path / (FILE_NAME + PART_SUFFIX)).exists()


def test_fetch_restarts_when_server_ignores_range(server, data, tarball, tmp_path):
    (tmp_path / (FILE_NAME + PART_SUFFIX)).write_bytes(data[:DROP_AFTER])
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data, honour_range=False))

    path = fetch(tarball, tmp_path, [server.url("/mirror/")])

    assert len(server.requests) == 1
    assert server.requests[0].header("Range") == f"bytes={DROP_AFTER}-"
    assert path.read_bytes() == data


def test_fetch_uses_whole_part_without_request(server, data, tarball, tmp_path):
    (tmp_path / (FILE_NAME + PART_SUFFIX)).write_bytes(data)
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data))

    path = fetch(tarball, tmp_path, [server.url("/mirror/")])

    assert server.requests == []
    assert path.read_bytes() == data


def test_fetch_redownloads_corrupt_part(server, data, tarball, tmp_path):
    stale_prefix = corrupt(data)[:DROP_AFTER]
    (tmp_path / (FILE_NAME + PART_SUFFIX)).write_bytes(stale_prefix)
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data))

    path = fetch(tarball, tmp_path, [server.url("/mirror/")])

    ranges = [request.header("Range") for request in server.requests]
    assert ranges == [f"bytes={DROP_AFTER}-", None]
    assert path.read_bytes() == data


def test_fetch_discards_part_longer_than_archive(server, data, tarball, tmp_path):
    (tmp_path / (FILE_NAME + PART_SUFFIX)).write_bytes(data + b"extra")
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data))

    path = fetch(tarball, tmp_path, [server.url("/mirror/")])

    assert server.requests[0].header("Range") is None
    assert path.read_bytes() == data


def test_fetch_unverified_restarts_after_416(server, data, tarball, tmp_path):
    (tmp_path / (FILE_NAME + PART_SUFFIX)).write_bytes(data + b"extra")
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data))

    path = fetch(tarball, tmp_path, [server.url("/mirror/")], verify=False)

    ranges = [request.header("Range") for request in server.requests]
    assert ranges == [f"bytes={NUM_BYTES + 5}-", None]
    assert path.read_bytes() == data


def test_fetch_unverified_accepts_whole_part_on_416(server, data, tarball, tmp_path):
    (tmp_path / (FILE_NAME + PART_SUFFIX)).write_bytes(data)
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data))

    path = fetch(tarball, tmp_path, [server.url("/mirror/")], verify=False)

    assert len(server.requests) == 1
    assert server.requests[0].header("Range") == f"bytes={NUM_BYTES}-"
    assert path.read_bytes() == data


@pytest.mark.parametrize("status", [404, 500])
def test_fetch_falls_back_after_http_error(server, data, tarball, tmp_path, status):
    server.route(f"/broken/{FILE_NAME}", ServeStatus(status))
    server.route(f"/good/{FILE_NAME}", ServeBytes(data))

    path = fetch(tarball, tmp_path, [server.url("/broken/"), server.url("/good/")])

    assert [request.path for request in server.requests] == [
        f"/broken/{FILE_NAME}",
        f"/good/{FILE_NAME}",
    ]
    assert path.read_bytes() == data


def test_fetch_falls_back_after_refused_connection(server, data, tarball, tmp_path):
    server.route(f"/good/{FILE_NAME}", ServeBytes(data))

    with refused_url() as refused:
        path = fetch(tarball, tmp_path, [refused, server.url("/good/")])

    assert len(server.requests) == 1
    assert path.read_bytes() == data


def test_fetch_falls_back_after_timeout(server, data, tarball, tmp_path, caplog):
    server.route(f"/slow/{FILE_NAME}", Stall(seconds=10))
    server.route(f"/good/{FILE_NAME}", ServeBytes(data))

    with caplog.at_level(logging.WARNING, logger="notmnist_ds.download"):
        path = fetch(
            tarball,
            tmp_path,
            [server.url("/slow/"), server.url("/good/")],
            timeout=0.5,
        )

    assert path.read_bytes() == data
    assert "timed out after 0.5 s" in caplog.text


@pytest.mark.parametrize(
    "content_type", ["text/html; charset=utf-8", "application/octet-stream"]
)
def test_fetch_rejects_html_with_status_200(
    server, data, tarball, tmp_path, caplog, content_type
):
    server.route(f"/portal/{FILE_NAME}", ServeHTML(content_type=content_type))
    server.route(f"/good/{FILE_NAME}", ServeBytes(data))

    with caplog.at_level(logging.WARNING, logger="notmnist_ds.download"):
        path = fetch(tarball, tmp_path, [server.url("/portal/"), server.url("/good/")])

    assert path.read_bytes() == data
    assert server.url(f"/portal/{FILE_NAME}") in caplog.text
    assert "HTML" in caplog.text or "gzip magic" in caplog.text


def test_fetch_html_keeps_part_from_earlier_run(server, data, tarball, tmp_path):
    part = tmp_path / (FILE_NAME + PART_SUFFIX)
    part.write_bytes(data[:DROP_AFTER])
    server.route(f"/portal/{FILE_NAME}", ServeHTML(content_type="text/plain"))
    server.route(f"/good/{FILE_NAME}", ServeBytes(data))

    path = fetch(tarball, tmp_path, [server.url("/portal/"), server.url("/good/")])

    assert server.requests[1].header("Range") == f"bytes={DROP_AFTER}-"
    assert path.read_bytes() == data


def test_fetch_falls_back_after_wrong_bytes(server, data, tarball, tmp_path):
    server.route(f"/bad/{FILE_NAME}", ServeBytes(corrupt(data)))
    server.route(f"/good/{FILE_NAME}", ServeBytes(data))

    path = fetch(tarball, tmp_path, [server.url("/bad/"), server.url("/good/")])

    assert len(server.requests) == 2
    assert path.read_bytes() == data


@pytest.mark.parametrize("send_length", [True, False])
def test_fetch_size_mismatch_raises(server, data, tarball, tmp_path, send_length):
    server.route(
        f"/mirror/{FILE_NAME}", ServeBytes(data + b"extra", send_length=send_length)
    )

    with pytest.raises(VerificationError) as caught:
        fetch(tarball, tmp_path, [server.url("/mirror/")])

    assert caught.value.field == "size"
    assert caught.value.expected == NUM_BYTES
    assert caught.value.actual > NUM_BYTES
    assert server.url(f"/mirror/{FILE_NAME}") in str(caught.value)
    assert "--no-verify" in str(caught.value)
    assert not (tmp_path / FILE_NAME).exists()
    assert not (tmp_path / (FILE_NAME + PART_SUFFIX)).exists()


def test_fetch_short_file_raises_size_mismatch(server, data, tarball, tmp_path):
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data[:-1], send_length=False))

    with pytest.raises(VerificationError) as caught:
        fetch(tarball, tmp_path, [server.url("/mirror/")])

    assert caught.value.field == "size"
    assert caught.value.actual == NUM_BYTES - 1
    assert not (tmp_path / FILE_NAME).exists()


def test_fetch_sha256_mismatch_raises(server, data, tarball, tmp_path):
    wrong = corrupt(data)
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(wrong))

    with pytest.raises(VerificationError) as caught:
        fetch(tarball, tmp_path, [server.url("/mirror/")])

    message = str(caught.value)
    assert caught.value.field == "sha256"
    assert caught.value.actual == hashlib.sha256(wrong).hexdigest()
    assert tarball.sha256 in message
    assert hashlib.sha256(wrong).hexdigest() in message
    assert FILE_NAME in message
    assert not (tmp_path / FILE_NAME).exists()
    assert not (tmp_path / (FILE_NAME + PART_SUFFIX)).exists()


def test_fetch_all_mirrors_failing_names_each(server, tarball, tmp_path):
    server.route(f"/missing/{FILE_NAME}", ServeStatus(404))
    server.route(f"/failing/{FILE_NAME}", ServeStatus(500))

    with refused_url() as refused:
        mirrors = [server.url("/missing/"), server.url("/failing/"), refused]
        with pytest.raises(DownloadError) as caught:
            fetch(tarball, tmp_path, mirrors)

    message = str(caught.value)
    lines = message.splitlines()
    urls = [mirror + FILE_NAME for mirror in mirrors]
    assert [url for url, _ in caught.value.failures] == urls
    assert any(urls[0] in line and "404" in line for line in lines)
    assert any(urls[1] in line and "500" in line for line in lines)
    assert any(urls[2] in line and "refused" in line.lower() for line in lines)
    assert not (tmp_path / FILE_NAME).exists()


def test_fetch_reuses_verified_cached_file(server, data, tarball, tmp_path):
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data))
    first = fetch(tarball, tmp_path, [server.url("/mirror/")])

    second = fetch(tarball, tmp_path, [server.url("/mirror/")])

    assert second == first
    assert len(server.requests) == 1


def test_fetch_concurrent_callers_download_once(server, data, tarball, tmp_path):
    # The delay keeps the first download open while the second caller starts.
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data, delay=0.3))
    mirrors = [server.url("/mirror/")]

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(fetch, tarball, tmp_path, mirrors) for _ in range(2)]
        paths = [future.result() for future in futures]

    assert paths == [tmp_path / FILE_NAME, tmp_path / FILE_NAME]
    assert len(server.requests) == 1
    assert paths[0].read_bytes() == data


def test_fetch_rejects_modified_cached_file(server, data, tarball, tmp_path):
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(data))
    path = fetch(tarball, tmp_path, [server.url("/mirror/")])
    path.write_bytes(corrupt(data))

    with pytest.raises(VerificationError) as caught:
        fetch(tarball, tmp_path, [server.url("/mirror/")])

    assert caught.value.field == "sha256"
    assert str(path) in str(caught.value)
    assert "delete it" in str(caught.value)
    assert path.exists()


def test_fetch_unverified_keeps_modified_copy(server, data, tarball, tmp_path, caplog):
    server.route(f"/mirror/{FILE_NAME}", ServeBytes(corrupt(data)))

    with caplog.at_level(logging.WARNING, logger="notmnist_ds.download"):
        path = fetch(tarball, tmp_path, [server.url("/mirror/")], verify=False)

    assert path.read_bytes() == corrupt(data)
    assert str(path) in caplog.text
    assert "will not match the published dataset" in caplog.text


def test_fetch_rejects_non_http_mirror(tarball, tmp_path):
    with pytest.raises(ValueError, match="ftp://example.invalid/"):
        fetch(tarball, tmp_path, ["ftp://example.invalid/"])


def test_fetch_tarballs_returns_paths_by_name(server, tmp_path):
    large_data = make_archive_bytes(NUM_BYTES, seed=2)
    small_data = make_archive_bytes(NUM_BYTES // 3, seed=3)
    server.route(f"/mirror/{LARGE.file_name}", ServeBytes(large_data))
    server.route(f"/mirror/{SMALL.file_name}", ServeBytes(small_data))
    tarballs = [describe(large_data, LARGE), describe(small_data, SMALL)]

    paths = fetch_tarballs(
        tarballs, tmp_path, mirrors=[server.url("/mirror/")], progress=False
    )

    assert paths == {
        "large": tmp_path / LARGE.file_name,
        "small": tmp_path / SMALL.file_name,
    }
    assert paths["large"].read_bytes() == large_data
    assert paths["small"].read_bytes() == small_data


def test_default_cache_dir_reads_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTMNIST_CACHE", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"

    monkeypatch.delenv("NOTMNIST_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "notmnist"


def test_verify_file_trusts_record_until_mtime(data, tarball, tmp_path):
    path = tmp_path / FILE_NAME
    path.write_bytes(data)
    verify_file(path, tarball)
    # A same-size edit that restores the mtime keeps the record valid, so the
    # recorded sha256 is used in place of a new hash.
    stat = path.stat()
    path.write_bytes(corrupt(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    verify_file(path, tarball)

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(VerificationError) as caught:
        verify_file(path, tarball)

    assert caught.value.field == "sha256"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        FILE_NAME,
        FILE_NAME + RECORD_SUFFIX,
    ]


def test_verify_file_ignores_unreadable_record(data, tarball, tmp_path):
    path = tmp_path / FILE_NAME
    path.write_bytes(data)
    record = tmp_path / (FILE_NAME + RECORD_SUFFIX)
    record.write_text("{not json")

    verify_file(path, tarball)

    assert json.loads(record.read_text())["sha256"] == tarball.sha256


def test_verify_file_size_mismatch_names_values(data, tarball, tmp_path):
    path = tmp_path / FILE_NAME
    path.write_bytes(data[:-10])

    with pytest.raises(VerificationError) as caught:
        verify_file(path, tarball)

    message = str(caught.value)
    assert str(path) in message
    assert f"size is {NUM_BYTES - 10} bytes" in message
    assert f"expected {NUM_BYTES}" in message
    assert not (tmp_path / (FILE_NAME + RECORD_SUFFIX)).exists()


def write_local_copies(folder: Path) -> list[Tarball]:
    large_data = make_archive_bytes(NUM_BYTES, seed=4)
    small_data = make_archive_bytes(NUM_BYTES // 3, seed=5)
    (folder / LARGE.file_name).write_bytes(large_data)
    (folder / SMALL.file_name).write_bytes(small_data)
    return [describe(large_data, LARGE), describe(small_data, SMALL)]


def test_locate_tarballs_finds_good_files(tmp_path):
    tarballs = write_local_copies(tmp_path)

    paths = locate_tarballs(tmp_path, tarballs)

    assert paths == {
        "large": tmp_path / LARGE.file_name,
        "small": tmp_path / SMALL.file_name,
    }


def test_locate_tarballs_missing_file_names_it(tmp_path):
    tarballs = write_local_copies(tmp_path)
    (tmp_path / SMALL.file_name).unlink()

    with pytest.raises(FileNotFoundError) as caught:
        locate_tarballs(tmp_path, tarballs)

    message = str(caught.value)
    assert str(tmp_path / SMALL.file_name) in message
    assert str(tmp_path / LARGE.file_name) not in message
    assert "--data-dir" in message


def test_locate_tarballs_modified_file_raises(tmp_path):
    tarballs = write_local_copies(tmp_path)
    modified = tmp_path / SMALL.file_name
    modified.write_bytes(corrupt(modified.read_bytes()))

    with pytest.raises(VerificationError) as caught:
        locate_tarballs(tmp_path, tarballs)

    assert caught.value.path == modified
    assert caught.value.field == "sha256"
    assert "--no-verify" in str(caught.value)


def test_locate_tarballs_unverified_warns(tmp_path, caplog):
    tarballs = write_local_copies(tmp_path)
    modified = tmp_path / SMALL.file_name
    modified.write_bytes(corrupt(modified.read_bytes()))

    with caplog.at_level(logging.WARNING, logger="notmnist_ds.download"):
        paths = locate_tarballs(tmp_path, tarballs, verify=False)

    assert paths["small"] == modified
    assert str(modified) in caplog.text
    assert "will not match the published dataset" in caplog.text
