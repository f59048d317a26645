"""Damaged, repacked and hostile tar.gz archives through the reader and a build.

Each archive is written by the test. A damaged archive must raise ArchiveError
naming the file and the fix. Every member that does not become a row must be
listed with a reason from ``notmnist_ds.report``, so nothing is lost silently.
"""

from __future__ import annotations

import base64
import csv
import json
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from broken_inputs import (
    TarEntry,
    gray_png,
    gzip_bytes,
    ihdr_payload,
    letter_entries,
    pillow_png,
    png_from_chunks,
    png_header_only,
    regular,
    tar_member_offsets,
    write_tar,
)
from PIL import Image

from dedup.hashing import HashSpec
from dedup.near import DedupSettings
from notmnist_ds.archive import ArchiveError, font_from_file_name, iter_members
from notmnist_ds.build import build
from notmnist_ds.cli import main
from notmnist_ds.constants import CLASS_NAMES, LARGE, SMALL, SPLIT_NAMES
from notmnist_ds.images import decode_image
from notmnist_ds.pipeline import BuildOptions
from notmnist_ds.reader import read_archive
from notmnist_ds.report import IgnoreReason, ReadReport, SkipReason
from notmnist_ds.sample_tarballs import encode_png, member_name

ALL_REASONS = {r.value for r in SkipReason} | {r.value for r in IgnoreReason}


@pytest.fixture(scope="module")
def glyphs(real_sample):
    return real_sample


@pytest.fixture(scope="module")
def good_entries(glyphs) -> list[TarEntry]:
    """Three real glyphs of each letter under notMNIST_large/."""
    pixels, labels = glyphs
    return letter_entries(pixels, labels, per_letter=3)


def read(path: Path, tarball=LARGE):
    return read_archive(path, tarball, HashSpec(), workers=1, progress=False)


def reasons_by_member(report: ReadReport) -> dict[str, str]:
    return {omission.member: omission.reason for omission in report.omissions}


# -- archives that cannot be read -------------------------------------------


def test_archive_cut_mid_member_raises(good_entries, tmp_path):
    path = write_tar(tmp_path / LARGE.file_name, good_entries)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError) as caught:
        read(path)
    message = str(caught.value)
    assert str(path) in message
    assert "damaged" in message
    assert "download it again" in message


def test_archive_tar_cut_mid_member_then_gzipped_raises(good_entries, tmp_path):
    whole = tmp_path / "whole.tar"
    write_tar(whole, good_entries, compress=False)
    tar_bytes = whole.read_bytes()
    _, _, data_offset = tar_member_offsets(tar_bytes)[5]
    path = tmp_path / LARGE.file_name
    path.write_bytes(gzip_bytes(tar_bytes[: data_offset + 100]))
    with pytest.raises(ArchiveError) as caught:
        read(path)
    assert str(path) in str(caught.value)
    assert "after 6 members" in str(caught.value)


def test_archive_tar_cut_at_member_boundary_raises(good_entries, tmp_path):
    whole = tmp_path / "whole.tar"
    write_tar(whole, good_entries, compress=False)
    tar_bytes = whole.read_bytes()
    _, header_offset, _ = tar_member_offsets(tar_bytes)[7]
    path = tmp_path / LARGE.file_name
    path.write_bytes(gzip_bytes(tar_bytes[:header_offset]))
    with pytest.raises(ArchiveError) as caught:
        read(path)
    message = str(caught.value)
    assert "after 7 members" in message
    assert "end-of-archive marker" in message


def test_archive_tar_cut_inside_header_raises(good_entries, tmp_path):
    whole = tmp_path / "whole.tar"
    write_tar(whole, good_entries, compress=False)
    tar_bytes = whole.read_bytes()
    _, header_offset, _ = tar_member_offsets(tar_bytes)[7]
    path = tmp_path / LARGE.file_name
    path.write_bytes(gzip_bytes(tar_bytes[: header_offset + 200]))
    with pytest.raises(ArchiveError) as caught:
        read(path)
    assert "after 7 members" in str(caught.value)


def test_archive_damaged_header_mid_archive_raises(good_entries, tmp_path):
    whole = tmp_path / "whole.tar"
    write_tar(whole, good_entries, compress=False)
    tar_bytes = bytearray(whole.read_bytes())
    _, header_offset, _ = tar_member_offsets(bytes(tar_bytes))[4]
    # A wrong checksum makes tarfile end the listing here without an error.
    tar_bytes[header_offset + 148 : header_offset + 156] = b"0000001\x00"
    path = tmp_path / LARGE.file_name
    path.write_bytes(gzip_bytes(bytes(tar_bytes)))
    with pytest.raises(ArchiveError) as caught:
        read(path)
    message = str(caught.value)
    assert "after 4 members" in message
    assert "damaged header" in message


@pytest.mark.parametrize("cut", [1, 4, 7])
def test_archive_cut_inside_gzip_trailer_raises(good_entries, tmp_path, cut):
    path = write_tar(tmp_path / LARGE.file_name, good_entries)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])  # the trailer is the last 8 bytes
    with pytest.raises(ArchiveError) as caught:
        read(path)
    assert str(path) in str(caught.value)
    assert "damaged" in str(caught.value)


def test_archive_wrong_gzip_checksum_says_damaged(good_entries, tmp_path):
    path = write_tar(tmp_path / LARGE.file_name, good_entries)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # first byte of the CRC-32 in the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError) as caught:
        read(path)
    message = str(caught.value)
    assert "damaged" in message
    assert "not a gzip" not in message


def test_archive_bytes_after_gzip_stream_raise(good_entries, tmp_path):
    path = write_tar(tmp_path / LARGE.file_name, good_entries)
    path.write_bytes(path.read_bytes() + b"<html>moved</html>")
    with pytest.raises(ArchiveError) as caught:
        read(path)
    assert "damaged" in str(caught.value)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "is empty"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "is not a gzip file"),
        (b"PK\x03\x04" + b"\x00" * 100, "is not a gzip file"),
    ],
    ids=["empty", "html", "zip"],
)
def test_archive_not_gzip_names_file(tmp_path, content, expected):
    path = tmp_path / LARGE.file_name
    path.write_bytes(content)
    with pytest.raises(ArchiveError) as caught:
        read(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message
    assert "download it again" in message


def test_archive_uncompressed_tar_names_cause(good_entries, tmp_path):
    path = write_tar(tmp_path / LARGE.file_name, good_entries, compress=False)
    with pytest.raises(ArchiveError) as caught:
        read(path)
    assert "uncompressed tar archive" in str(caught.value)


def test_archive_gzip_without_tar_raises(tmp_path):
    path = tmp_path / LARGE.file_name
    path.write_bytes(gzip_bytes(b"just some text, not a tar archive\n" * 40))
    with pytest.raises(ArchiveError) as caught:
        read(path)
    assert "contains no tar archive" in str(caught.value)


# -- layouts -----------------------------------------------------------------


@pytest.mark.parametrize(
    "top", ["renamed_top", ""], ids=["other-top-folder", "no-top-folder"]
)
def test_archive_reads_any_top_folder(glyphs, tmp_path, top):
    pixels, labels = glyphs
    entries = letter_entries(pixels, labels, per_letter=2, root=top)
    report = read(write_tar(tmp_path / LARGE.file_name, entries)).report
    assert report.rows == 20
    assert report.omissions == []


def test_archive_source_uses_published_root(glyphs, tmp_path):
    pixels, labels = glyphs
    entries = letter_entries(pixels, labels, per_letter=1, root="mirror_copy")
    images = read(write_tar(tmp_path / LARGE.file_name, entries))
    assert all(source.startswith("notMNIST_large/") for source in images.sources)
    assert images.sources[0] == "notMNIST_large/A/" + entries[0].name.split("/")[-1]


def test_archive_two_folders_deep_is_outside(glyphs, tmp_path):
    pixels, labels = glyphs
    entries = letter_entries(pixels, labels, per_letter=1, root="a/b")
    report = read(write_tar(tmp_path / LARGE.file_name, entries)).report
    assert report.rows == 0
    assert set(reasons_by_member(report).values()) == {"outside_letter_folders"}
    assert len(report.ignored) == 10


def test_archive_missing_letter_counts_zero(good_entries, tmp_path):
    entries = [e for e in good_entries if "/C/" not in e.name]
    report = read(write_tar(tmp_path / LARGE.file_name, entries)).report
    counts = report.to_dict()["rows_per_letter"]
    assert counts["C"] == 0
    assert counts["A"] == 3
    assert list(counts) == list(CLASS_NAMES)
    assert report.missing_letters() == ["C"]


def test_build_missing_letter_names_letter_and_counts(glyphs, tmp_path, capsys):
    pixels, labels = glyphs
    large = [e for e in letter_entries(pixels, labels, 20) if "/G/" not in e.name]
    small = letter_entries(
        pixels, labels, 5, root=SMALL.root, first_font=9000, skip=100
    )
    write_tar(tmp_path / "data" / LARGE.file_name, large)
    write_tar(tmp_path / "data" / SMALL.file_name, small)
    code = main(
        [
            "-q",
            "build",
            "--data-dir",
            str(tmp_path / "data"),
            "--no-verify",
            "--output",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--train-size",
            "100",
            "--valid-size",
            "50",
            "--test-size",
            "50",
            "--workers",
            "1",
        ]
    )
    error = capsys.readouterr().err
    assert code == 2
    assert "letter G has 0 readable images in notMNIST_large.tar.gz" in error
    assert "need 15 per letter" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name, reason",
    [
        ("notMNIST_large/K/eA==.png", "outside_letter_folders"),
        ("notMNIST_large/a/eA==.png", "outside_letter_folders"),
        ("notMNIST_large/readme.txt", "outside_letter_folders"),
        ("notMNIST_large/A/deeper/eA==.png", "outside_letter_folders"),
        ("__MACOSX/notMNIST_large/A/._eA==.png", "os_junk"),
        ("notMNIST_large/A/.DS_Store", "os_junk"),
        ("notMNIST_large/A/._eA==.png", "os_junk"),
        ("notMNIST_large/B/Thumbs.db", "os_junk"),
        ("../eA==.png", "unsafe_path"),
        ("/A/eA==.png", "unsafe_path"),
        ("notMNIST_large/A/../../B/eA==.png", "unsafe_path"),
    ],
)
def test_archive_ignores_member_by_path(good_entries, tmp_path, name, reason):
    entries = [regular(name, encode_png(np.zeros((28, 28), np.uint8))), *good_entries]
    report = read(write_tar(tmp_path / LARGE.file_name, entries)).report
    assert reasons_by_member(report) == {name: reason}
    assert report.rows == 30


@pytest.mark.parametrize(
    "entry, reason",
    [
        (TarEntry("notMNIST_large/A", type=tarfile.DIRTYPE), "directory"),
        (
            TarEntry("notMNIST_large/A/s.png", type=tarfile.SYMTYPE, linkname="x.png"),
            "link",
        ),
        (
            TarEntry("notMNIST_large/A/h.png", type=tarfile.LNKTYPE, linkname="x.png"),
            "link",
        ),
        (TarEntry("notMNIST_large/A/c.png", type=tarfile.CHRTYPE), "special_file"),
        (TarEntry("notMNIST_large/A/b.png", type=tarfile.BLKTYPE), "special_file"),
        (TarEntry("notMNIST_large/A/f.png", type=tarfile.FIFOTYPE), "special_file"),
    ],
    ids=["directory", "symlink", "hardlink", "char-device", "block-device", "fifo"],
)
def test_archive_ignores_member_by_type(good_entries, tmp_path, entry, reason):
    report = read(write_tar(tmp_path / LARGE.file_name, [entry, *good_entries])).report
    assert reasons_by_member(report) == {entry.name: reason}
    assert report.rows == 30


def test_archive_hidden_file_first_keeps_rest(good_entries, tmp_path):
    hidden = regular("notMNIST_large/A/.hidden.png", b"\x00" * 5000)
    report = read(write_tar(tmp_path / LARGE.file_name, [hidden, *good_entries])).report
    assert reasons_by_member(report) == {hidden.name: "os_junk"}
    assert report.rows == 30
    assert dict(report.rows_per_letter) == {letter: 3 for letter in CLASS_NAMES}


def test_archive_duplicate_path_keeps_first(glyphs, tmp_path):
    pixels, _ = glyphs
    name = "notMNIST_large/A/QQ==.png"
    entries = [
        regular(name, encode_png(pixels[0])),
        regular(name, encode_png(pixels[1])),
    ]
    images = read(write_tar(tmp_path / LARGE.file_name, entries))
    assert images.report.rows == 1
    assert reasons_by_member(images.report) == {name: "duplicate_name"}
    assert np.array_equal(decode_image(images.png[0])[0], pixels[0])


def test_archive_member_over_limit_names_size(tmp_path):
    # A 2 MiB text chunk before the pixels: no 28x28 PNG needs that much, so
    # the member is skipped unread.
    data = png_from_chunks(
        [
            (b"IHDR", ihdr_payload(28, 28)),
            (b"tEXt", b"Comment\x00" + b"x" * (2 << 20)),
            (b"IDAT", zlib.compress(b"\x00" * 29 * 28)),
            (b"IEND", b""),
        ]
    )
    entries = [regular("notMNIST_large/A/big.png", data)]
    report = read(write_tar(tmp_path / LARGE.file_name, entries)).report
    (omission,) = report.omissions
    assert omission.reason == "undecodable"
    assert f"{len(data):,} bytes, larger than any 28x28 PNG" in omission.detail


def test_archive_member_over_limit_decodable_head_skipped(tmp_path):
    # A valid 28x28 PNG followed by 2 MiB of zeros decodes from its first MiB,
    # but must not become a row carrying a cut-off file.
    data = png_from_chunks(
        [
            (b"IHDR", ihdr_payload(28, 28)),
            (b"IDAT", zlib.compress(b"\x00" * 29 * 28)),
            (b"IEND", b""),
        ]
    ) + b"\x00" * (2 << 20)
    entries = [regular("notMNIST_large/B/big28.png", data)]
    images = read(write_tar(tmp_path / LARGE.file_name, entries))
    assert len(images) == 0
    (omission,) = images.report.omissions
    assert omission.reason == "undecodable"


def test_archive_huge_canvas_member_is_wrong_size(tmp_path):
    entries = [regular("notMNIST_large/A/huge.png", png_header_only(100_000, 100_000))]
    report = read(write_tar(tmp_path / LARGE.file_name, entries)).report
    (omission,) = report.omissions
    assert omission.reason == "wrong_size"
    assert "100000x100000" in omission.detail


# -- file names --------------------------------------------------------------


@pytest.mark.parametrize(
    "file_name, font",
    [
        ("QWxnZXJpYW4udHRm.png", "Algerian.ttf"),
        ("not base64!.png", "not base64!"),
        ("QUJD.PNG", "ABC"),
        (base64.b64encode(b"\xff\xfe.ttf").decode() + ".png", "//4udHRm"),
        (base64.b64encode(b"a\x00b").decode() + ".png", "YQBi"),
        ("YWJj", "abc"),
        ("\\xff\\xfe.png", "\\xff\\xfe"),
    ],
    ids=[
        "font",
        "not-base64",
        "upper-suffix",
        "not-utf8",
        "unprintable",
        "no-suffix",
        "escaped",
    ],
)
def test_font_from_file_name(file_name, font):
    assert font_from_file_name(file_name) == font


def test_archive_non_utf8_name_gives_text_source(glyphs, tmp_path):
    pixels, _ = glyphs
    raw_name = b"notMNIST_large/B/\xff\xfe caf\xe9.png".decode(
        "utf-8", "surrogateescape"
    )
    entries = [regular(raw_name, encode_png(pixels[0]))]
    images = read(write_tar(tmp_path / LARGE.file_name, entries))
    (source,) = images.sources
    (font,) = images.fonts
    assert source == "notMNIST_large/B/\\xff\\xfe caf\\xe9.png"
    assert font == "\\xff\\xfe caf\\xe9"
    assert source.encode("utf-8").decode("utf-8") == source


def test_iter_members_report_names_are_text(tmp_path):
    raw_name = b"notMNIST_large/\xff/x.png".decode("utf-8", "surrogateescape")
    report = ReadReport(LARGE.file_name)
    path = write_tar(tmp_path / LARGE.file_name, [regular(raw_name, b"x")])
    assert list(iter_members(path, LARGE, report)) == []
    (omission,) = report.omissions
    assert omission.member == "notMNIST_large/\\xff/x.png"
    assert omission.member.encode("utf-8")


# -- a whole build from a hostile archive ------------------------------------

NON_UTF8_NAME = b"notMNIST_large/E/\xff\xfeglyph.png".decode("utf-8", "surrogateescape")

# Members the build must leave out, with the reason it must give.
HOSTILE_OMISSIONS = {
    "notMNIST_large/A": "directory",
    "notMNIST_large/A/.DS_Store": "os_junk",
    "notMNIST_large/B/._QUJD.png": "os_junk",
    "__MACOSX/notMNIST_large/A/._QUJD.png": "os_junk",
    "notMNIST_large/K/SyBGb250LnR0Zg==.png": "outside_letter_folders",
    "notMNIST_large/readme.txt": "outside_letter_folders",
    "notMNIST_large/C/link.png": "link",
    "notMNIST_large/C/hard.png": "link",
    "notMNIST_large/D/device.png": "special_file",
    "notMNIST_large/D/fifo.png": "special_file",
    "../escape.png": "unsafe_path",
    "/absolute.png": "unsafe_path",
    "notMNIST_large/A/../../up.png": "unsafe_path",
    "notMNIST_large/F/empty.png": "empty",
    "notMNIST_large/F/truncated.png": "undecodable",
    "notMNIST_large/F/text.png": "not_png",
    "notMNIST_large/F/small.png": "wrong_size",
    "notMNIST_large/F/huge.png": "wrong_size",
    "notMNIST_large/G/duplicate.png": "duplicate_name",
}


def hostile_entries(pixels: np.ndarray, labels: np.ndarray) -> list[TarEntry]:
    glyph = encode_png(pixels[0])
    rgb = pillow_png(Image.fromarray(np.stack([pixels[1]] * 3, axis=-1), "RGB"))
    return [
        TarEntry("notMNIST_large/A", type=tarfile.DIRTYPE),
        regular("notMNIST_large/A/.DS_Store", b"\x00\x00\x00\x01Bud1"),
        regular("notMNIST_large/B/._QUJD.png", b"\x00\x05\x16\x07"),
        regular("__MACOSX/notMNIST_large/A/._QUJD.png", b"\x00\x05\x16\x07"),
        regular("notMNIST_large/K/" + member_name("K Font.ttf"), glyph),
        regular("notMNIST_large/readme.txt", b"letters A to J\n"),
        TarEntry("notMNIST_large/C/link.png", type=tarfile.SYMTYPE, linkname="x.png"),
        TarEntry(
            "notMNIST_large/C/hard.png",
            type=tarfile.LNKTYPE,
            linkname="notMNIST_large/E/not base64!.png",
        ),
        TarEntry("notMNIST_large/D/device.png", type=tarfile.CHRTYPE),
        TarEntry("notMNIST_large/D/fifo.png", type=tarfile.FIFOTYPE),
        regular("../escape.png", glyph),
        regular("/absolute.png", glyph),
        regular("notMNIST_large/A/../../up.png", glyph),
        regular("notMNIST_large/F/empty.png", b""),
        regular("notMNIST_large/F/truncated.png", glyph[: len(glyph) // 2]),
        regular("notMNIST_large/F/text.png", b"GIF89a not a PNG at all"),
        regular("notMNIST_large/F/small.png", gray_png(27, 28)),
        regular("notMNIST_large/F/huge.png", png_header_only(100_000, 100_000)),
        regular("notMNIST_large/G/duplicate.png", encode_png(pixels[2])),
        regular("notMNIST_large/G/duplicate.png", encode_png(pixels[3])),
        regular("notMNIST_large/E/not base64!.png", encode_png(pixels[4])),
        regular(NON_UTF8_NAME, encode_png(pixels[5])),
        regular("notMNIST_large/H/rgb.png", rgb),
        regular(
            "notMNIST_large/I/blank.png", encode_png(np.full((28, 28), 255, np.uint8))
        ),
    ]


@pytest.fixture(scope="module")
def hostile_build(glyphs, tmp_path_factory):
    """A real build whose large archive holds every kind of bad member."""
    pixels, labels = glyphs
    root = tmp_path_factory.mktemp("hostile")
    large = [*hostile_entries(pixels, labels), *letter_entries(pixels, labels, 20)]
    small = letter_entries(
        pixels, labels, 8, root=SMALL.root, first_font=9000, skip=100
    )
    write_tar(root / "data" / LARGE.file_name, large)
    write_tar(root / "data" / SMALL.file_name, small)
    options = BuildOptions(
        train_size=None, validation_size=50, test_size=50, dedup=DedupSettings()
    )
    return build(
        root / "out",
        options,
        data_dir=root / "data",
        verify=False,
        workers=1,
        cache_dir=root / "cache",
        progress=False,
    )


def test_hostile_build_skipped_csv_lists_each_omission(hostile_build):
    with open(hostile_build.output / "reports" / "skipped.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    large_rows = {
        r["member"]: r["reason"] for r in rows if r["archive"] == LARGE.file_name
    }
    assert large_rows == HOSTILE_OMISSIONS
    assert all(row["reason"] in ALL_REASONS for row in rows)


def test_hostile_build_report_counts_reasons(hostile_build):
    report = json.loads(
        (hostile_build.output / "reports" / "build_report.json").read_text("utf-8")
    )
    read = report["read"]["large"]
    expected: dict[str, int] = {}
    for reason in HOSTILE_OMISSIONS.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert read["reason_counts"] == dict(sorted(expected.items()))
    assert len(read["omissions"]) == len(HOSTILE_OMISSIONS)
    # 200 letter glyphs, plus five hostile members that are good images.
    assert read["rows"] == 205
    assert read["converted_images"] == 1
    assert read["uniform_images"] >= 1


def test_hostile_build_rows_cover_every_readable_member(hostile_build):
    sources = set()
    for split in SPLIT_NAMES:
        for shard in sorted((hostile_build.output / "raw").glob(f"{split}-*.parquet")):
            sources |= set(
                pq.read_table(shard, columns=["source"])["source"].to_pylist()
            )
    large_rows = {s for s in sources if s.startswith("notMNIST_large/")}
    assert len(large_rows) == 205
    assert "notMNIST_large/E/\\xff\\xfeglyph.png" in sources
    assert "notMNIST_large/G/duplicate.png" in sources
    assert "notMNIST_large/H/rgb.png" in sources


def test_hostile_build_parquet_keeps_odd_names(hostile_build):
    rows = {}
    for shard in sorted((hostile_build.output / "raw").glob("*.parquet")):
        table = pq.read_table(shard, columns=["source", "font"]).to_pylist()
        rows.update({row["source"]: row["font"] for row in table})
    assert rows["notMNIST_large/E/\\xff\\xfeglyph.png"] == "\\xff\\xfeglyph"
    assert rows["notMNIST_large/E/not base64!.png"] == "not base64!"
    assert (
        rows["notMNIST_large/A/VGVzdCBGb250IDAwMDAwLnR0Zg==.png"]
        == "Test Font 00000.ttf"
    )


def test_hostile_build_keeps_first_duplicate(hostile_build, glyphs):
    pixels, _ = glyphs
    for shard in sorted((hostile_build.output / "raw").glob("*.parquet")):
        table = pq.read_table(shard).to_pylist()
        for row in table:
            if row["source"] == "notMNIST_large/G/duplicate.png":
                kept = decode_image(row["image"]["bytes"])[0]
    assert np.array_equal(kept, pixels[2])


def test_hostile_build_writes_no_member_to_disk(hostile_build):
    names = {p.name for p in hostile_build.output.parent.rglob("*")}
    assert "escape.png" not in names
    assert "absolute.png" not in names
    assert "up.png" not in names
